"""The command line: ``python -m segedu <command>``.

    python -m segedu lessons                      list the lessons
    python -m segedu release lessons --out DIR    the student release (solutions removed)
    python -m segedu check NOTEBOOK...            run notebooks and report each exercise
    python -m segedu train --model unet --data shapes --steps 300 --out unet.pt
                                                  train a model (torchrun --nproc_per_node N -m segedu train ...)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["build_parser", "main"]


def _lessons(args) -> int:
    from segedu.course import lesson_index

    for lesson in lesson_index(args.dir):
        print(f"{lesson.number:02d}  {lesson.title:32s}  {lesson.filename}")
    return 0


def _release(args) -> int:
    from segedu.course import release

    for path in release(args.lessons, args.out):
        print(f"wrote {path}")
    return 0


def _check(args) -> int:
    from segedu.course import check_notebook, format_markdown, format_results

    results = []
    for notebook in args.notebooks:
        print(f"running {notebook} ...", flush=True)
        results += check_notebook(notebook, timeout=args.timeout)
    table = format_results(results)
    print(table)
    if args.summary:
        Path(args.summary).parent.mkdir(parents=True, exist_ok=True)
        Path(args.summary).write_text(format_markdown(results))
    return 0 if results and all(r.status == "passed" for r in results) else 1


def _train(args) -> int:
    from segedu.distributed import check_arguments, train

    try:  # argument errors get one clear line, before any process starts training
        check_arguments(args.model, args.data, args.schedule, args.width, steps=args.steps,
                        image_size=args.image_size, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                        train_images=args.train_images, val_images=args.val_images, workers=args.workers)
    except (TypeError, ValueError, FileNotFoundError) as error:
        print(f"python -m segedu train: error: {error}", file=sys.stderr)
        return 2
    s = train(args.model, args.data, args.steps, args.out, image_size=args.image_size, batch_size=args.batch_size,
              lr=args.lr, seed=args.seed, variant=args.variant, width=args.width, train_images=args.train_images,
              val_images=args.val_images, workers=args.workers, device=args.device, digest=args.digest,
              schedule=args.schedule, progress=not args.quiet)
    if s["rank"] == 0:
        val = f", val mIoU {s['val']['miou']:.3f} boundary F1 {s['val']['boundary_f1']:.3f}" if s.get("val") else ""
        print(f"{s['model']}: {s['steps']} steps on {s['world_size']} process(es), loss {s['loss_first']:.3f} -> "
              f"{s['loss_last']:.3f}{val}, {s['seconds']:.1f} s ({s['images_per_second']:.0f} img/s per process); "
              f"wrote {s['out']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command (tests read it to validate documented commands)."""
    parser = argparse.ArgumentParser(prog="python -m segedu", description="segedu course tools")
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("lessons", help="list the lessons")
    p.add_argument("dir", nargs="?", default="lessons")
    p.set_defaults(run=_lessons)

    p = commands.add_parser("release", help="write the student release of the lessons")
    p.add_argument("lessons", help="folder of instructor notebooks")
    p.add_argument("--out", required=True, help="folder for the student notebooks")
    p.set_defaults(run=_release)

    p = commands.add_parser("check", help="run notebooks and report every exercise")
    p.add_argument("notebooks", nargs="+")
    p.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    p.add_argument("--summary", help="also write the table to this file (markdown)")
    p.set_defaults(run=_check)

    p = commands.add_parser("train", help="train a model of segedu.zoo (one process, or several with torchrun)")
    p.add_argument("--model", required=True, help="fcn8s, unet, deeplabv3, deeplabv3plus, pspnet or fpn")
    p.add_argument("--data", required=True, help="'shapes' (synthetic scenes) or 'voc:PATH' (a VOC-layout folder)")
    p.add_argument("--steps", type=int, required=True, help="optimizer steps")
    p.add_argument("--out", required=True, help="checkpoint file to write (segedu.zoo.load_model reads it)")
    p.add_argument("--image-size", type=int, help="image side (default: the profile's)")
    p.add_argument("--batch-size", type=int, help="batch per process (default: the profile's)")
    p.add_argument("--lr", type=float, help="Adam learning rate (default: the profile's)")
    p.add_argument("--seed", type=int, default=0, help="initial weights and sampling (rank r uses seed + r)")
    p.add_argument("--schedule", default="cosine", choices=["cosine", "constant"], help="learning rate over the run")
    p.add_argument("--variant", default="semantic", choices=["semantic", "context"], help="shapes variant")
    p.add_argument("--width", type=int, help="base channel width of the model (default: the profile's)")
    p.add_argument("--train-images", type=int, help="distinct training scenes (shapes)")
    p.add_argument("--val-images", type=int, help="validation images (0: no validation)")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers per process (voc)")
    p.add_argument("--device", help="cpu, cuda, mps (default: the best available)")
    p.add_argument("--digest", help="folder: each rank writes rank<R>.json with its weights' SHA-256 and losses")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_train)

    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
