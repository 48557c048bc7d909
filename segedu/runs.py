"""What ``python -m segedu train`` checks before it starts, and where a run keeps its files.

A training run that fails after an hour because of a typo in its arguments, a file it may not write or one
bad mask in the data has wasted the hour; one that overwrites a file it should not have has done worse. So
``check_arguments`` validates everything that can be known before any data is read or any weight is
initialised (``segedu.validate``'s rule: a wrong type raises ``TypeError``, a wrong value ``ValueError``, a
missing folder ``FileNotFoundError``), ``check_output`` makes sure the checkpoint can be written and
replaces nothing it should not, and ``check_data`` reads a VOC-layout folder once
(``segedu.data.voc.scan_voc``) so that a bad file is named up front instead of surfacing mid-run.

A run's files live side by side::

    runs/unet.pt          the checkpoint (--out): resumable while the run goes on, final at its end
    runs/unet.log.csv     the per-step loss and every validation (``log_path``)
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from segedu import runtime, validate, zoo

__all__ = [
    "SCHEDULES", "VARIANTS", "SHAPES_MIN_SIZE", "parse_data", "has_val_split", "log_path", "has_batchnorm",
    "model_stride", "min_image_size", "check_output", "check_resume", "check_arguments", "check_data",
]

SCHEDULES = ("cosine", "constant")
VARIANTS = ("semantic", "context")  # the ShapesDataset variants whose masks train a semantic model

# Below 32 px the synthetic scenes lose their objects: ShapesDataset drops an object with fewer than
# MIN_VISIBLE_PIXELS (8) pixels, and the smallest shapes are 12 % of the side. Measured on 200 scenes against
# the same scenes at 128 px: 96 % of the objects survive at 32 px, 87 % at 24, 56 % at 16 and 10 % at 8 px,
# where 3 scenes in 4 are empty - a model then learns "all background" and scores mIoU 1.0 on an empty
# validation set.
SHAPES_MIN_SIZE = 32


def parse_data(spec: str) -> tuple[str, Path | None]:
    """``"shapes"`` -> ``("shapes", None)``; ``"voc:PATH"`` -> ``("voc", Path(PATH))``; ``"pets:PATH"`` ->
    ``("pets", folder)`` (Oxford-IIIT Pet: ``PATH`` is its ``oxford-iiit-pet`` folder or the one above,
    ``segedu.data.pets.pets_folder``). The folder must exist (``FileNotFoundError`` otherwise); anything else
    raises ``ValueError``."""
    if not isinstance(spec, str):
        raise TypeError(f"data must be a str ('shapes', 'voc:PATH' or 'pets:PATH'), got {type(spec).__name__}")
    if spec == "shapes":
        return "shapes", None
    if spec.startswith("voc:") and len(spec) > 4:
        root = Path(spec[4:]).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"--data {spec}: VOC folder not found: {root}")
        return "voc", root
    if spec.startswith("pets:") and len(spec) > 5:
        from segedu.data.pets import pets_folder

        try:
            return "pets", pets_folder(spec[5:])
        except FileNotFoundError as error:
            raise FileNotFoundError(f"--data {spec}: {error}") from None
    raise ValueError(f"--data must be 'shapes' or 'voc:PATH' (a VOC-layout folder) or 'pets:PATH' (Oxford-IIIT "
                     f"Pet), got {spec!r}")


def has_val_split(kind: str, root: Path | None) -> bool:
    """Whether a data source has validation data: the synthetic scenes always, a VOC folder when it has
    ``ImageSets/Segmentation/val.txt``, Oxford-IIIT Pet when it has ``annotations/test.txt``."""
    if kind == "voc":
        return (root / "ImageSets" / "Segmentation" / "val.txt").is_file()
    if kind == "pets":
        return (root / "annotations" / "test.txt").is_file()
    return True


def log_path(out: str | os.PathLike) -> Path:
    """The CSV log of the run that writes checkpoint ``out``: beside it, ``runs/unet.pt`` ->
    ``runs/unet.log.csv``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.log.csv")


# --------------------------------------------------------------------------- the model


def has_batchnorm(model: nn.Module) -> bool:
    """Whether ``model`` normalises with batch statistics (any ``BatchNorm1d/2d/3d`` or ``SyncBatchNorm``).

    Such a model cannot train on batches of one image whose deepest feature map is 1 x 1 (one value per
    channel: no variance), and its statistics depend on the per-process batch (see ``--sync-bn``).
    """
    return any(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm))
               for m in model.modules())


def model_stride(model: nn.Module) -> int:
    """The total stride of ``model``'s encoder: how many input pixels one cell of its coarsest feature map
    spans (``output_stride`` of DeepLab, PSPNet and FPN, ``stride`` of FCN, ``2 ** depth`` of U-Net; 1 when
    the model says nothing)."""
    for name in ("output_stride", "stride"):
        value = getattr(model, name, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    depth = getattr(model, "depth", None)
    return 2**depth if isinstance(depth, int) and not isinstance(depth, bool) else 1


def min_image_size(model: nn.Module, data_kind: str) -> int:
    """The smallest ``--image-size`` worth training ``model`` at: its total stride (a smaller image is
    mostly padding by the coarsest feature map), and ``SHAPES_MIN_SIZE`` for the synthetic scenes."""
    return max(model_stride(model), SHAPES_MIN_SIZE if data_kind == "shapes" else 1)


# --------------------------------------------------------------------------- files


def _probe_folder(folder: Path, name: str = "--out") -> None:
    """``ValueError`` unless a file can be created in ``folder`` or, when it does not exist yet, in its nearest
    existing ancestor (which must be a folder). Tried, not inferred from permission bits: ``os.access`` says
    yes to root on a read-only file system."""
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise ValueError(f"{name}: cannot create folder {folder}: {probe} is a file, not a folder")
    try:
        fd, name = tempfile.mkstemp(prefix=".segedu-write-test.", dir=probe)
    except OSError as error:
        raise ValueError(f"{name}: cannot write in {probe}: {error.strerror or error}") from None
    os.close(fd)
    os.unlink(name)


def check_output(out: str | os.PathLike, *, force: bool = False, resume: str | os.PathLike | None = None) -> Path:
    """Make sure the run may write checkpoint ``out`` and its log (``log_path``), before it trains.

    * ``out`` must not be a folder, and its folder must exist or be creatable, and be writable;
    * an existing file at ``out`` is replaced only if it is a segedu checkpoint
      (``segedu.checkpoint.read_checkpoint`` reads it) and either ``force`` is set or the run resumes from
      it (``resume`` is ``out``): any other file is never overwritten;
    * an existing log is replaced only with ``force``, and continued (appended to) when resuming.

    Returns ``Path(out)``; raises ``ValueError`` naming the file and what to do.
    """
    if not isinstance(out, (str, os.PathLike)) or not str(out):
        raise TypeError(f"out must be a file path (str or os.PathLike), got {out!r}")
    from segedu.checkpoint import is_checkpoint
    from segedu.runlog import is_log

    validate.flag(force, "force")
    out = Path(out).expanduser()
    log = log_path(out)
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder: give a file name such as {out / 'model.pt'}")
    resuming_here = resume is not None and out.exists() and Path(resume).expanduser().resolve() == out.resolve()
    if out.exists():
        if not is_checkpoint(out):
            raise ValueError(f"--out {out} exists and is not a segedu checkpoint: refusing to overwrite it "
                             "(choose another --out)")
        if not (force or resuming_here):
            raise ValueError(f"--out {out} already holds a segedu checkpoint: pass --force to replace it, or "
                             f"--resume {out} to continue that run")
    if log.is_dir() or (log.exists() and not is_log(log)):
        raise ValueError(f"{log}, where this run would write its log, exists and is not a segedu training log: "
                         "refusing to overwrite it (choose another --out)")
    if log.exists() and not (force or resume is not None):
        raise ValueError(f"the run's log {log} already exists: pass --force to replace it (and {out.name}), or "
                         "choose another --out")
    _probe_folder(out.parent)
    return out


def check_resume(resume: str | os.PathLike, spec: dict, settings: dict) -> dict:
    """The checkpoint ``resume`` must be one ``fit`` wrote during a run (``segedu.resume.check_resume``: it
    holds the training state, at a step below ``settings["run_steps"]``), of the model of ``spec`` (same
    name and constructor arguments), saved with the same ``settings`` (``data``, ``image_size``, ``lr``, ...:
    a run resumed with others would not be the run it continues). ``run_steps`` (``--steps``) may differ
    only with a constant learning rate: a cosine schedule is laid out over the whole run. Returns the
    checkpoint's ``extra`` metadata."""
    from segedu.resume import check_resume as readable

    try:
        state = readable(resume, settings["run_steps"])
    except ValueError as error:
        raise ValueError(f"--{error}") from None
    path, extra = state["path"], state["extra"] if isinstance(state.get("extra"), dict) else {}
    saved = extra.get("spec")
    if not isinstance(saved, dict) or (saved.get("name"), saved.get("kwargs")) != (spec["name"], spec["kwargs"]):
        held = f"{saved.get('name')} {saved.get('kwargs')}" if isinstance(saved, dict) else "no model spec"
        raise ValueError(f"--resume {path} holds {held}, but this run trains {spec['name']} {spec['kwargs']}: "
                         "give the same --model and --width")
    settings = dict(settings)
    if settings.get("schedule") == "constant":
        settings.pop("run_steps")  # a constant learning rate does not depend on the run's length
    changed = [f"{key} {extra.get(key)!r} -> {value!r}" for key, value in settings.items() if extra.get(key) != value]
    if changed:
        raise ValueError(f"--resume {path} was saved by a run with other settings ({'; '.join(changed)}): "
                         "resume with the same arguments (run_steps is --steps)")
    return extra


# --------------------------------------------------------------------------- all of it


def _check_device(device: Any) -> torch.device:
    device = validate.torch_device(device, "device")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device must be cpu, cuda or mps (optionally with an index), got {str(device)!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r}: CUDA is not available on this machine (use --device cpu)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {str(device)!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    mps = getattr(torch.backends, "mps", None)
    if device.type == "mps" and not (mps is not None and mps.is_available()):
        raise ValueError(f"device {str(device)!r}: MPS is not available on this machine (use --device cpu)")
    return device


def check_arguments(model: str, data: str, schedule: str = "cosine", width: int | None = None, *,
                    steps: int | None = None, image_size: int | None = None, batch_size: int | None = None,
                    lr: float | None = None, seed: int = 0, train_images: int | None = None,
                    val_images: int | None = None, workers: int = 0, variant: str = "semantic",
                    device: str | None = None, out: str | os.PathLike | None = None, force: bool = False,
                    resume: str | os.PathLike | None = None, save_every: int | None = None,
                    val_every: int | None = None, sync_bn: bool = False,
                    digest: str | os.PathLike | None = None) -> dict:
    """Everything ``segedu.distributed.train`` checks before it reads data or builds the model it trains.

    The data source (``parse_data``), the schedule, variant, device, model name and width; the counts and
    sizes (``None``: not given, the profile's default); and then what needs the model's architecture (built
    on the ``meta`` device: no memory, no weights): a BatchNorm model refuses ``batch_size`` 1, and
    ``image_size`` must be at least ``min_image_size``. With ``out``, ``check_output``; with ``resume``,
    ``check_resume``; with ``digest``, that folder must be creatable and writable. ``sync_bn`` with several
    processes needs CUDA (torch's ``SyncBatchNorm`` runs on
    GPUs only). Returns the model's ``zoo.model_spec`` for one class.
    """
    kind, root = parse_data(data)
    validate.choice(schedule, "schedule", SCHEDULES)
    validate.choice(variant, "variant", VARIANTS)
    for name, value in (("steps", steps), ("image_size", image_size), ("batch_size", batch_size),
                        ("train_images", train_images), ("save_every", save_every), ("val_every", val_every)):
        if value is not None:
            validate.positive_int(value, name)
    if lr is not None:
        validate.positive_number(lr, "lr")
    validate.integer(seed, "seed")
    if val_images is not None:
        validate.integer(val_images, "val_images", minimum=0)  # 0: no validation
    validate.integer(workers, "workers", minimum=0)
    validate.flag(force, "force")
    validate.flag(sync_bn, "sync_bn")
    no_val = val_images == 0 or not has_val_split(kind, root)
    if val_every is not None and no_val:
        raise ValueError("val_every (--val-every) needs validation data: --val-images is 0 or the VOC folder has "
                         "no val split (ImageSets/Segmentation/val.txt; Oxford-IIIT Pet: annotations/test.txt)")
    if train_images is not None and kind != "shapes":
        raise ValueError("train_images (--train-images) sets the number of synthetic scenes: it applies to "
                         "--data shapes only (a VOC or Pets folder trains on its whole train split)")
    device = _check_device(device) if device is not None else runtime.device()
    if sync_bn and os.environ.get("WORLD_SIZE", "1") not in ("", "0", "1") and device.type != "cuda":
        raise ValueError(f"sync_bn (--sync-bn) needs CUDA devices: torch's SyncBatchNorm runs on GPUs only, "
                         f"not on {device.type} processes (there each process normalises over its own batch)")
    spec = zoo.model_spec(model, 1, **({} if width is None else {"width": width}))

    profile = runtime.profile()
    with torch.device("meta"):  # the architecture only: shapes without memory, built in milliseconds
        net = zoo.build_model(spec["name"], 1, **spec["kwargs"])
    batch_size = profile.batch_size if batch_size is None else batch_size
    if batch_size < 2 and has_batchnorm(net):
        raise ValueError(f"batch_size must be >= 2 for {spec['name']}, which uses BatchNorm: with one image per "
                         "batch its statistics come from a single image (and fail on a 1 x 1 feature map); "
                         "use --batch-size 2 or more")
    image_size = profile.image_size if image_size is None else image_size
    smallest = min_image_size(net, kind)
    if image_size < smallest:
        why = (f"{spec['name']} has total stride {model_stride(net)}" if smallest == model_stride(net) else
               f"synthetic scenes below {SHAPES_MIN_SIZE} px lose most of their objects")
        raise ValueError(f"image_size must be >= {smallest} for {spec['name']} on {kind} data ({why}), "
                         f"got {image_size}; use --image-size {smallest} or more")
    if resume is not None:
        if steps is None:
            raise ValueError("resume needs steps: the run's total number of steps, counting those already done")
        check_resume(resume, spec, dict(data=data, variant=variant, image_size=image_size, batch_size=batch_size,
                                        lr=profile.lr if lr is None else lr, schedule=schedule, seed=seed,
                                        run_steps=steps))
    if out is not None:
        check_output(out, force=force, resume=resume)
    if digest is not None:
        if not isinstance(digest, (str, os.PathLike)) or not str(digest):
            raise TypeError(f"digest must be a folder path (str or os.PathLike), got {digest!r}")
        if Path(digest).exists() and not Path(digest).is_dir():
            raise ValueError(f"--digest {digest} is a file: give a folder (each rank writes rank<R>.json there)")
        _probe_folder(Path(digest), "--digest")
    return spec


def check_data(data: str, *, val_images: int | None = None, progress: bool = False) -> dict | None:
    """Scan a ``voc:PATH`` source before training (``segedu.data.voc.scan_voc``: every file of the ``train``
    split, and of ``val`` when it exists and is used), or a ``pets:PATH`` one (``segedu.data.pets.scan_pets``:
    ``trainval``, and ``test`` for validation); ``None`` for the synthetic scenes, which need no scan.

    Returns ``{"train": report, "val": report or None}``; raises ``ValueError`` naming the first bad file.
    """
    kind, root = parse_data(data)
    if kind == "pets":
        from segedu.data.pets import scan_pets

        val = scan_pets(root, "test", progress=progress) if val_images != 0 and has_val_split(kind, root) else None
        return {"train": scan_pets(root, "trainval", progress=progress), "val": val}
    if kind != "voc":
        return None
    from segedu.data.voc import scan_voc

    reports = {"train": scan_voc(root, "train", progress=progress), "val": None}
    if val_images != 0 and (root / "ImageSets" / "Segmentation" / "val.txt").is_file():
        reports["val"] = scan_voc(root, "val", reports["train"]["num_classes"], progress=progress)
    return reports
