"""The command line: ``python -m segedu <command>``.

    python -m segedu lessons                      list the lessons
    python -m segedu release lessons --out DIR    the student release (solutions removed) and its manifest.json
    python -m segedu manifest lessons --out FILE  the manifest alone (make manifest: the package's copy)
    python -m segedu check [NOTEBOOK...]          check each exercise (default lessons/*.ipynb; --lessons 03 07)
    python -m segedu grade SUBMISSION... --out grades.csv   a gradebook of students' folders (--jobs N)
    python -m segedu train --model unet --data shapes --steps 300 --out unet.pt
                                                  train a model (torchrun --nproc_per_node N -m segedu train ...)
    python -m segedu download voc2012 [--root DIR]  fetch a dataset or weights (--list: what is there)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

__all__ = ["build_parser", "main"]


def _lessons(args) -> int:
    from segedu.course import lesson_index

    for lesson in lesson_index(args.dir):
        print(f"{lesson.number:02d}  {lesson.title:32s}  {lesson.filename}")
    return 0


def _release(args) -> int:
    from segedu.course.release import release

    try:  # a refusal (files in --out, bad markers, swapped arguments) is one line and exit code 2; nothing written
        written = release(args.lessons, args.out, force=args.force)
    except (ValueError, OSError) as error:
        print(f"python -m segedu release: error: {error}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    return 0


def _manifest(args) -> int:
    from segedu.course.manifest import build_manifest, manifest_text

    try:
        text = manifest_text(build_manifest(args.lessons))
    except (ValueError, OSError) as error:
        print(f"python -m segedu manifest: error: {error}", file=sys.stderr)
        return 2
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"wrote {args.out}")
    else:
        print(text, end="")
    return 0


def _interrupted(message: str, main_rank: bool) -> int:
    if main_rank:
        print(f"python -m segedu train: {message}", file=sys.stderr)
    return 130  # the shell's code for a run stopped by Ctrl-C (128 + SIGINT)


def _train(args) -> int:
    from segedu.distributed import train
    from segedu.runs import check_arguments, check_data

    settings = dict(image_size=args.image_size, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                    variant=args.variant, width=args.width, train_images=args.train_images,
                    val_images=args.val_images, workers=args.workers, device=args.device, schedule=args.schedule,
                    force=args.force, resume=args.resume, save_every=args.save_every, val_every=args.val_every,
                    sync_bn=args.sync_bn)
    main_rank = os.environ.get("RANK", "0") == "0"
    try:  # every argument, the output file and the data are checked before anything trains: one clear line
        check_arguments(args.model, args.data, steps=args.steps, out=args.out, digest=args.digest, **settings)
        check_data(args.data, val_images=args.val_images, progress=not args.quiet and main_rank)
    except (TypeError, ValueError, OSError) as error:
        print(f"python -m segedu train: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return _interrupted("interrupted before training; nothing was written", main_rank)
    try:
        s = train(args.model, args.data, args.steps, args.out, digest=args.digest, progress=not args.quiet,
                  scan=False, **settings)
    except KeyboardInterrupt:  # fit has saved the last whole step (if any) and said where
        return _interrupted("interrupted", main_rank)
    if s["rank"] == 0:
        val = f", val mIoU {s['val']['miou']:.3f} boundary F1 {s['val']['boundary_f1']:.3f}" if s.get("val") else ""
        print(f"{s['model']}: {s['steps']} steps on {s['world_size']} process(es), loss {s['loss_first']:.3f} -> "
              f"{s['loss_last']:.3f}{val}, {s['seconds']:.1f} s ({s['images_per_second']:.0f} img/s per process); "
              f"wrote {s['out']}")
    return 0


def _download(args) -> int:
    from segedu.data import download as dl

    command = "python -m segedu download"
    root = dl.data_root(args.root)
    if args.list or not args.names:
        origin = "--root" if args.root else f"${dl.DATA_ENV}" if os.environ.get(dl.DATA_ENV) else "default"
        print(f"data folder: {root} ({origin}; set {dl.DATA_ENV} or pass --root to change it)")
        for row in dl.status(root):
            where = f"present: {row['path']}" if row["path"] else "not downloaded"
            print(f"  {row['name']:20s} {row['kind']:8s} {row['size']:>7s}  {where}")
        return 0
    try:
        items = [dl.resource(name) for name in args.names]
    except (TypeError, ValueError) as error:
        print(f"{command}: error: {error}", file=sys.stderr)
        return 2
    for item in items:
        present = dl.available(item, root)
        if present is not None and item.kind == "dataset":  # weights: download() checks the file's checksum
            print(f"{item.name}: already present in {present}")
            continue
        print(f"{item.name}: {item.title} ({item.size}) -> {dl.install_path(item, root)}")
        try:
            path = dl.download(item, root, mirror=args.mirror, progress=not args.quiet,
                               keep_archives=args.keep_archives)
        except (dl.DownloadError, dl.UnsafeArchiveError, OSError) as error:
            print(f"{command}: error: {error}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print(f"{command}: interrupted; run it again to resume", file=sys.stderr)
            return 130
        print(f"{item.name}: ready in {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command (tests read it to validate documented commands)."""
    from segedu.course.commands import add_check_parser, add_grade_parser

    parser = argparse.ArgumentParser(prog="python -m segedu", description="segedu course tools")
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("lessons", help="list the lessons")
    p.add_argument("dir", nargs="?", default="lessons")
    p.set_defaults(run=_lessons)

    p = commands.add_parser("release", help="write the student release of the lessons")
    p.add_argument("lessons", help="folder of instructor notebooks")
    p.add_argument("--out", required=True, help="folder for the student notebooks and manifest.json")
    p.add_argument("--force", action="store_true",
                   help="replace files already in --out (never a folder of instructor notebooks)")
    p.set_defaults(run=_release)

    p = commands.add_parser("manifest", help="the exercises and check-cell hashes of the lessons (JSON)")
    p.add_argument("lessons", help="folder of instructor notebooks")
    p.add_argument("--out", help="file to write (the package's copy: segedu/course/manifest.json); default stdout")
    p.set_defaults(run=_manifest)

    add_check_parser(commands)  # segedu.course.commands: check and grade
    add_grade_parser(commands)

    p = commands.add_parser(
        "train", help="train a model of segedu.zoo (one process, or several with torchrun)",
        description="Train a model of segedu.zoo. Every argument, the output file and a VOC folder's files are "
                    "checked before training starts (a bad one: one line on stderr, exit code 2). The run writes "
                    "OUT (a resumable checkpoint every --save-every steps and on Ctrl-C, the final one at the "
                    "end) and, beside it, the CSV log OUT_STEM.log.csv (runs/unet.pt -> runs/unet.log.csv): the "
                    "loss of every step and every validation.")
    p.add_argument("--model", required=True, help="fcn8s, unet, deeplabv3, deeplabv3plus, pspnet or fpn")
    p.add_argument("--data", required=True, help="'shapes' (synthetic scenes), 'voc:PATH' (a VOC-layout folder) or "
                                                 "'pets:PATH' (Oxford-IIIT Pet: pet vs background)")
    p.add_argument("--steps", type=int, required=True, help="optimizer steps of the whole run (>= 1)")
    p.add_argument("--out", required=True,
                   help="checkpoint file to write (segedu.zoo.load_model reads it); an existing file is replaced "
                        "only if it is a segedu checkpoint and --force is given (or --resume names it)")
    p.add_argument("--force", action="store_true", help="replace the segedu checkpoint and log already at --out")
    p.add_argument("--resume", metavar="CKPT",
                   help="continue the run saved in CKPT (same arguments; usually CKPT is --out)")
    p.add_argument("--save-every", type=int, metavar="N", help="write a resumable checkpoint to --out every N steps")
    p.add_argument("--val-every", type=int, metavar="N", help="validate every N steps (and at the end), into the log")
    p.add_argument("--image-size", type=int,
                   help="image side (default: the profile's); at least the model's total stride, 32 for shapes")
    p.add_argument("--batch-size", type=int, help="batch per process (default: the profile's; >= 2 with BatchNorm)")
    p.add_argument("--lr", type=float, help="Adam learning rate (default: the profile's)")
    p.add_argument("--seed", type=int, default=0, help="initial weights and sampling (rank r uses seed + r)")
    p.add_argument("--schedule", default="cosine", choices=["cosine", "constant"], help="learning rate over the run")
    p.add_argument("--variant", default="semantic", choices=["semantic", "context"], help="shapes variant")
    p.add_argument("--width", type=int, help="base channel width of the model (default: the profile's)")
    p.add_argument("--train-images", type=int, help="distinct training scenes (shapes only; default: the profile's)")
    p.add_argument("--val-images", type=int, help="validation images (0: no validation)")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers per process (voc)")
    p.add_argument("--device", help="cpu, cuda, mps (default: the best available)")
    p.add_argument("--sync-bn", action="store_true",
                   help="under torchrun: BatchNorm statistics over all processes' images (SyncBatchNorm, GPUs only); "
                        "without it each process normalises over its own batch")
    p.add_argument("--digest", help="folder: each rank writes rank<R>.json with its weights' SHA-256 and losses")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_train)

    p = commands.add_parser(
        "download", help="download a dataset or pretrained weights (voc2012, pets, deeplabv3_resnet50, resnet50, ...)",
        description="Download datasets and pretrained weights into the data folder (--root, else $SEGEDU_DATA, "
                    "else a per-user folder; --list shows it and what is there). Downloads resume where they "
                    "stopped, every file is checked against its checksum, and without a network the error says "
                    "which files to fetch by hand and where to put them. Exit code 0: done; 1: a download "
                    "failed; 2: an unknown name.")
    p.add_argument("names", nargs="*", metavar="NAME",
                   help="voc2012, pets, deeplabv3_resnet50, deeplabv3_resnet101, resnet18, resnet34, resnet50, "
                        "resnet101, or torchvision weights by their name (ResNet50_Weights.IMAGENET1K_V1)")
    p.add_argument("--list", action="store_true", help="show the data folder and what is downloaded")
    p.add_argument("--root", help="the data folder (default: $SEGEDU_DATA, else ~/.local/share/segedu)")
    p.add_argument("--mirror", metavar="URL", help="fetch every file from URL/<file name> instead (a local copy)")
    p.add_argument("--keep-archives", action="store_true", help="keep the downloaded archives after unpacking")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_download)

    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
