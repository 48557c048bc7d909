"""Training outside notebooks, on one process or several: what ``python -m segedu train`` runs.

Data parallelism (PyTorch ``DistributedDataParallel``; Li et al., "PyTorch Distributed: Experiences on
Accelerating Data Parallel Training", VLDB 2020): every process (a *rank*) holds a full copy of the model,
trains on its own share of the data, and after each backward pass the gradients are averaged across ranks
(an all-reduce, overlapped with the backward pass). Since every rank starts from the same weights and
applies the same averaged gradient, the copies stay identical: N ranks with batch B train like one process
with batch N x B.

``torchrun --nproc_per_node N -m segedu train ...`` starts the N processes and tells each who it is through
environment variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``).
``setup`` reads them and joins the process group: ``nccl`` between GPUs (one GPU per rank, ``cuda:LOCAL_RANK``),
``gloo`` between CPU processes. Without those variables everything runs in one plain process.

Who sees which data:

* synthetic scenes (``ShapesDataset``): every rank draws its batches from the same scenes with its own seed
  (``seed + rank``), so the ranks' batches differ (a per-rank seed offset: no sampler needed for data that
  is rendered on demand);
* a VOC-layout folder: ``DistributedSampler`` splits each epoch's shuffled order into N disjoint shares.

Only rank 0 shows progress, evaluates and writes the checkpoint; the others wait at a barrier.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from segedu import runtime, validate, zoo

__all__ = [
    "Context", "setup", "teardown", "wrap", "unwrap", "average_buffers", "state_digest",
    "EpochLoader", "parse_data", "make_data", "check_arguments", "train",
]

SCHEDULES = ("cosine", "constant")
DATA_SEEDS = {"train": 0, "val": 1}  # the lessons' benchmark split of ShapesDataset: train seed 0, val seed 1


# --------------------------------------------------------------------------- process group


@dataclass(frozen=True)
class Context:
    """Where this process stands: ``rank`` of ``world_size`` (``local_rank`` on this machine), its
    ``device`` and the ``backend`` (``None`` for a single plain process)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that prints, evaluates and saves."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.backend is not None


def _env_int(name: str, default: int, minimum: int = 0) -> int:
    """The integer in environment variable ``name`` (``default`` when unset): a string that is not an int
    ``>= minimum`` is a wrong value (``ValueError``)."""
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an int >= {minimum}, got {value!r}") from None
    return validate.integer(number, f"environment variable {name}", minimum=minimum)


def setup(device: str | torch.device | None = None) -> Context:
    """Join the process group torchrun describes in the environment, or stay a single process.

    Args:
        device: ``None`` = ``runtime.device()``; with several ranks on CUDA each rank takes
            ``cuda:LOCAL_RANK``. ``"cpu"`` forces CPU processes (gloo) even where there is a GPU.

    Returns:
        a ``Context``. Call ``teardown`` at the end (also after an error).
    """
    world_size = _env_int("WORLD_SIZE", 1, minimum=1)
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if rank >= world_size:
        raise ValueError(f"RANK must be in [0, WORLD_SIZE), got RANK={rank}, WORLD_SIZE={world_size}")
    device = validate.torch_device(device) if device is not None else runtime.device()
    if world_size == 1:
        return Context(device=device)
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA devices: "
                             "start at most one process per GPU (--nproc_per_node)")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"  # GPU-to-GPU collectives (NVLink / InfiniBand aware)
    elif device.type == "cpu":
        backend = "gloo"  # the CPU backend
    else:
        raise ValueError(f"several processes need CUDA or CPU devices, got device {device}")
    if not dist.is_initialized():
        dist.init_process_group(backend)  # reads MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE
    return Context(rank, world_size, local_rank, device, backend)


def teardown(ctx: Context) -> None:
    """Leave the process group (nothing to do for a single process)."""
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: nn.Module, ctx: Context) -> nn.Module:
    """Move ``model`` to ``ctx.device``; with several ranks wrap it in ``DistributedDataParallel``, which
    broadcasts rank 0's weights and buffers to all ranks (identical starting points) and averages the
    gradients in every backward pass."""
    model = model.to(ctx.device)
    if ctx.device.type == "cuda":
        # fit uses channels-last on CUDA; converting before DDP is built keeps its gradient buckets' layout
        # equal to the parameters' (converting after works, but copies every gradient).
        model = model.to(memory_format=torch.channels_last)
    if not ctx.distributed:
        return model
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside a ``DistributedDataParallel`` wrapper (the model itself otherwise)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


@torch.no_grad()
def average_buffers(model: nn.Module, ctx: Context) -> None:
    """Average the floating-point buffers (BatchNorm running statistics) over the ranks, in place.

    DDP averages gradients, so parameters agree; but each rank updates its BatchNorm statistics from its
    own batch, so after the last step they differ slightly. Averaging them makes every rank hold the same
    model - the running mean of the global batch - before it is evaluated or saved.
    """
    if not ctx.distributed:
        return
    for buffer in unwrap(model).buffers():
        if buffer.is_floating_point():
            dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
            buffer.div_(ctx.world_size)


def state_digest(model: nn.Module) -> str:
    """SHA-256 of the model's state dict (names, dtypes, shapes and exact bytes of every tensor).

    Two models have the same digest exactly when they hold bit-identical weights and buffers: the test that
    all ranks end with the same model compares these strings.
    """
    h = hashlib.sha256()
    for name, tensor in sorted(unwrap(model).state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())  # the raw bytes, whatever the dtype
    return h.hexdigest()


# --------------------------------------------------------------------------- data


class EpochLoader:
    """A ``DataLoader`` over a ``DistributedSampler`` that reshuffles every time it is iterated.

    ``fit`` cycles an iterable source; each new pass is a new epoch, and ``set_epoch`` gives every epoch a
    new order (the same on every rank, so the shares stay disjoint). ``[B, 3, H, W]``, ``[B, H, W]`` batches.
    """

    def __init__(self, dataset, batch_size: int, ctx: Context, seed: int = 0, workers: int = 0):
        self.sampler = DistributedSampler(dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True,
                                          seed=seed)
        self.loader = DataLoader(dataset, batch_size, sampler=self.sampler, num_workers=workers,
                                 drop_last=len(self.sampler) >= batch_size, pin_memory=ctx.device.type == "cuda")
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        self.sampler.set_epoch(self.epoch)
        self.epoch += 1
        return iter(self.loader)


def parse_data(spec: str) -> tuple[str, Path | None]:
    """``"shapes"`` -> ``("shapes", None)``; ``"voc:PATH"`` -> ``("voc", Path(PATH))`` (the folder must
    exist: ``FileNotFoundError`` otherwise); anything else raises ``ValueError``."""
    if not isinstance(spec, str):
        raise TypeError(f"data must be a str ('shapes' or 'voc:PATH'), got {type(spec).__name__}")
    if spec == "shapes":
        return "shapes", None
    if spec.startswith("voc:") and len(spec) > 4:
        root = Path(spec[4:]).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"--data {spec}: VOC folder not found: {root}")
        return "voc", root
    raise ValueError(f"--data must be 'shapes' or 'voc:PATH' (a VOC-layout folder), got {spec!r}")


def make_data(spec: str, ctx: Context, *, image_size: int, batch_size: int, seed: int = 0,
              variant: str = "semantic", train_images: int | None = None, val_images: int | None = None,
              workers: int = 0) -> tuple[Any, Any, tuple[str, ...]]:
    """Training source, validation source (or ``None``) and class names for ``spec``.

    * ``"shapes"``: ``ShapesDataset(train_images, image_size, seed=0, variant)`` rendered on ``ctx.device``
      (each rank samples it with its own seed, see ``train``) and a validation set of ``val_images`` scenes
      (seed 1): the lessons' benchmark split.
    * ``"voc:PATH"``: ``VOCSegmentation(PATH, "train")`` with ``train_transforms(image_size)`` behind an
      ``EpochLoader`` (this rank's share); ``"val"`` with ``eval_transforms`` when that split exists.
    """
    kind, root = parse_data(spec)
    profile = runtime.profile()
    if kind == "shapes":
        from segedu.data.shapes import ShapesDataset

        train_set = ShapesDataset(train_images or profile.train_images, size=image_size, seed=DATA_SEEDS["train"],
                                  variant=variant, device=ctx.device)
        n_val = profile.val_images if val_images is None else val_images
        val_set = ShapesDataset(n_val, size=image_size, seed=DATA_SEEDS["val"], variant=variant,
                                device=ctx.device) if n_val > 0 else None
        return train_set, val_set, tuple(train_set.classes)

    from segedu.data.transforms import eval_transforms, train_transforms
    from segedu.data.voc import VOCSegmentation

    train_set = VOCSegmentation(root, "train", train_transforms(image_size))
    loader = EpochLoader(train_set, batch_size, ctx, seed=seed, workers=workers)
    val_set = None
    if val_images != 0 and (root / "ImageSets" / "Segmentation" / "val.txt").is_file():
        val_set = VOCSegmentation(root, "val", eval_transforms(image_size))
        if val_images is not None and val_images < len(val_set):
            val_set = torch.utils.data.Subset(val_set, range(val_images))
    return loader, val_set, tuple(train_set.classes)


# --------------------------------------------------------------------------- the command


def check_arguments(model: str, data: str, schedule: str = "cosine", width: int | None = None, *,
                    steps: int | None = None, image_size: int | None = None, batch_size: int | None = None,
                    lr: float | None = None, seed: int = 0, train_images: int | None = None,
                    val_images: int | None = None, workers: int = 0) -> dict:
    """The checks ``train`` runs before anything starts: the data source (``parse_data``), the schedule, the
    model name and width, and the sizes (``None``: not given, the profile's default).

    ``segedu.validate``'s rule: a wrong type raises ``TypeError``, a wrong value ``ValueError`` (a missing VOC
    folder ``FileNotFoundError``). Returns the model's ``zoo.model_spec`` for one class.
    """
    parse_data(data)
    validate.choice(schedule, "schedule", SCHEDULES)
    for name, value in (("steps", steps), ("image_size", image_size), ("batch_size", batch_size),
                        ("train_images", train_images)):
        if value is not None:
            validate.positive_int(value, name)
    if lr is not None:
        validate.positive_number(lr, "lr")
    validate.integer(seed, "seed")
    if val_images is not None:
        validate.integer(val_images, "val_images", minimum=0)  # 0: no validation
    validate.integer(workers, "workers", minimum=0)
    return zoo.model_spec(model, 1, **({} if width is None else {"width": width}))


def train(model: str, data: str, steps: int, out: str | os.PathLike, *, image_size: int | None = None,
          batch_size: int | None = None, lr: float | None = None, seed: int = 0, variant: str = "semantic",
          width: int | None = None, train_images: int | None = None, val_images: int | None = None,
          workers: int = 0, device: str | None = None, digest: str | os.PathLike | None = None,
          schedule: str = "cosine", progress: bool = True) -> dict:
    """Train zoo model ``model`` on ``data`` for ``steps`` steps with ``segedu.train.fit``; save to ``out``.

    Works the same in one process and under ``torchrun`` (one process per GPU, or several CPU processes).
    Sizes default to ``runtime.profile()``; ``batch_size`` is per process (global batch = ranks x batch).
    Loss: cross entropy, 255 ignored. Optimizer: Adam; ``schedule="cosine"`` decays its learning rate to 0
    over the run (Loshchilov & Hutter, "SGDR", ICLR 2017), ``"constant"`` keeps it. The decay matters for
    short runs of BatchNorm models: while the weights still move fast, the running statistics used in eval
    mode lag behind them (lesson 11). Rank 0 evaluates on the validation set and writes the checkpoint
    (``segedu.checkpoint.save_checkpoint``; metadata: the ``zoo.model_spec``, classes, settings, losses and
    metrics - ``zoo.load_model(out)`` rebuilds it). ``digest``: a folder where every rank writes
    ``rank<R>.json`` with its ``state_digest`` and losses (to check that the ranks agree).

    Returns a summary dict (on every rank; ``"val"`` only on rank 0).
    """
    from segedu.checkpoint import save_checkpoint
    from segedu.train import evaluate, fit

    # clear errors before any process group is formed
    spec = check_arguments(model, data, schedule, width, steps=steps, image_size=image_size, batch_size=batch_size,
                           lr=lr, seed=seed, train_images=train_images, val_images=val_images, workers=workers)
    profile = runtime.profile()
    image_size = profile.image_size if image_size is None else image_size
    batch_size = profile.batch_size if batch_size is None else batch_size
    lr = profile.lr if lr is None else lr
    ctx = setup(device)
    try:
        train_source, val_set, classes = make_data(
            data, ctx, image_size=image_size, batch_size=batch_size, seed=seed, variant=variant,
            train_images=train_images, val_images=val_images, workers=workers)
        spec = zoo.model_spec(model, len(classes), **spec["kwargs"])
        runtime.seed_everything(seed)  # the same initial weights on every rank (DDP broadcasts rank 0's too)
        net = wrap(zoo.build_model(spec["name"], spec["num_classes"], **spec["kwargs"]), ctx)
        optimizer = torch.optim.Adam(net.parameters(), lr=lr)
        loss_fn = nn.CrossEntropyLoss(ignore_index=255)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps) if schedule == "cosine" else None
        # seed + rank: each rank draws other scenes (and other augmentations / dropout masks); rank 0 shows progress.
        history = fit(net, train_source, loss_fn, steps, optimizer, device=ctx.device,
                      progress=progress and ctx.is_main, batch_size=batch_size, seed=seed + ctx.rank,
                      num_classes=len(classes), scheduler=scheduler)
        average_buffers(net, ctx)
        plain = unwrap(net)
        summary = {"model": spec["name"], "data": data, "steps": history.steps, "world_size": ctx.world_size,
                   "rank": ctx.rank, "loss_first": history.loss[0], "loss_last": history.loss[-1],
                   "seconds": history.seconds, "images_per_second": history.images_per_second}
        if digest is not None:
            folder = Path(digest)
            folder.mkdir(parents=True, exist_ok=True)
            record = {**summary, "digest": state_digest(plain), "loss": history.loss}
            (folder / f"rank{ctx.rank}.json").write_text(json.dumps(record, indent=1) + "\n")
        if ctx.is_main:
            metrics = evaluate(plain, val_set, len(classes), batch_size=batch_size) if val_set is not None else None
            summary["val"] = metrics
            save_checkpoint(
                out, plain, optimizer, spec=spec, classes=list(classes), data=data, variant=variant,
                image_size=image_size, batch_size=batch_size, lr=lr, schedule=schedule, seed=seed,
                world_size=ctx.world_size, profile=profile.name, steps=history.steps, loss=history.loss, val=metrics,
                seconds=history.seconds, images_per_second=history.images_per_second,
            )
            summary["out"] = str(out)
        if ctx.distributed:
            dist.barrier()  # the others wait until the checkpoint is on disk
        return summary
    finally:
        teardown(ctx)
