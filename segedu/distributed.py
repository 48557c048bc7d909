"""Training outside notebooks, on one process or several: what ``python -m segedu train`` runs.

Data parallelism (PyTorch ``DistributedDataParallel``; Li et al., "PyTorch Distributed: Experiences on
Accelerating Data Parallel Training", VLDB 2020): every process (a *rank*) holds a full copy of the model,
trains on its own share of the data, and after each backward pass the gradients are averaged across ranks
(an all-reduce, overlapped with the backward pass). Since every rank starts from the same weights and
applies the same averaged gradient, the copies stay identical.

N ranks with batch B train like one process with batch N x B only if nothing in the model looks at the
batch as a whole. BatchNorm does (Ioffe & Szegedy, ICML 2015): without ``--sync-bn`` each rank normalises
over its own B images, so the statistics - and hence the gradients - are those of batch B, and the running
statistics too (DDP copies rank 0's to every rank before each forward pass, each rank updates them from its
own batch, and ``average_buffers`` averages them at the end). With ``--sync-bn``
(``nn.SyncBatchNorm``: every BatchNorm layer all-gathers the per-rank mean, variance and count in each
forward pass) the statistics are those of all N x B images, as on one device with batch N x B (Zhang et al.,
"Context Encoding for Semantic Segmentation", CVPR 2018, introduced it for segmentation's small per-GPU
batches); torch runs it on GPUs only. (One more difference: the loss averages over each rank's labelled
pixels, so ranks with more void pixels weigh their pixels a little more.)

``torchrun --nproc_per_node N -m segedu train ...`` starts the N processes and tells each who it is through
environment variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``).
``setup`` reads them and joins the process group: ``nccl`` between GPUs (one GPU per rank, ``cuda:LOCAL_RANK``),
``gloo`` between CPU processes. Without those variables everything runs in one plain process.

Who sees which data:

* synthetic scenes (``ShapesDataset``): every rank draws its batches from the same scenes with its own seed
  (``seed + rank``), so the ranks' batches differ (a per-rank seed offset: no sampler needed for data that
  is rendered on demand);
* a VOC-layout folder: ``DistributedSampler`` splits each epoch's shuffled order into N disjoint shares.

Only rank 0 shows progress, writes the checkpoints and the log, and evaluates the final model; the others
wait at a barrier. The checks before the run starts (arguments, output file, data scan) are in
``segedu.runs``.
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
from segedu.runs import check_arguments, check_data, has_val_split, log_path, parse_data

__all__ = [
    "Context", "setup", "teardown", "wrap", "unwrap", "average_buffers", "state_digest",
    "EpochLoader", "parse_data", "make_data", "check_arguments", "train",
]
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


def wrap(model: nn.Module, ctx: Context, sync_bn: bool = False) -> nn.Module:
    """Move ``model`` to ``ctx.device``; with several ranks wrap it in ``DistributedDataParallel``, which
    broadcasts rank 0's weights and buffers to all ranks (identical starting points) and averages the
    gradients in every backward pass.

    ``sync_bn`` (several ranks only): first replace every BatchNorm layer by ``nn.SyncBatchNorm``
    (``convert_sync_batchnorm``), so that batch statistics are computed over all ranks' images. It must
    happen before DDP is built (DDP registers the modules it holds). torch runs SyncBatchNorm on GPUs only:
    on CPU processes DDP refuses the converted model (``ValueError``; the command line checks it up front).
    """
    validate.flag(sync_bn, "sync_bn")
    if sync_bn and ctx.distributed:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
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

    def state_dict(self) -> dict:
        """The epoch counter: ``fit`` saves it with a resumable checkpoint, so a resumed run shuffles the
        epoch it stopped in as the uninterrupted run did (not epoch 0's order again)."""
        return {"epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        self.epoch = validate.integer(state["epoch"], "state['epoch']", minimum=0)


def make_data(spec: str, ctx: Context, *, image_size: int, batch_size: int, seed: int = 0,
              variant: str = "semantic", train_images: int | None = None, val_images: int | None = None,
              workers: int = 0) -> tuple[Any, Any, tuple[str, ...]]:
    """Training source, validation source (or ``None``) and class names for ``spec``.

    * ``"shapes"``: ``ShapesDataset(train_images, image_size, seed=0, variant)`` rendered on ``ctx.device``
      (each rank samples it with its own seed, see ``train``) and a validation set of ``val_images`` scenes
      (seed 1): the lessons' benchmark split.
    * ``"voc:PATH"``: ``VOCSegmentation(PATH, "train")`` with ``train_transforms(image_size)`` behind an
      ``EpochLoader`` (this rank's share); ``"val"`` with ``eval_transforms`` when that split exists.
    * ``"pets:PATH"``: the same with ``OxfordPets(PATH, "trainval")`` (pet vs background, the trimap's border
      ignored) and its ``"test"`` split for validation.
    """
    kind, root = parse_data(spec)
    profile = runtime.profile()
    if kind == "shapes":
        from segedu.data.shapes import ShapesDataset

        n_train = profile.train_images if train_images is None else train_images
        train_set = ShapesDataset(n_train, size=image_size, seed=DATA_SEEDS["train"], variant=variant,
                                  device=ctx.device)
        n_val = profile.val_images if val_images is None else val_images
        val_set = ShapesDataset(n_val, size=image_size, seed=DATA_SEEDS["val"], variant=variant,
                                device=ctx.device) if n_val > 0 else None
        return train_set, val_set, tuple(train_set.classes)

    from segedu.data.pets import OxfordPets
    from segedu.data.transforms import eval_transforms, train_transforms
    from segedu.data.voc import VOCSegmentation

    reader, (train_split, val_split) = (OxfordPets, ("trainval", "test")) if kind == "pets" else \
        (VOCSegmentation, ("train", "val"))
    train_set = reader(root, train_split, train_transforms(image_size))
    loader = EpochLoader(train_set, batch_size, ctx, seed=seed, workers=workers)
    val_set = None
    if val_images != 0 and has_val_split(kind, root):
        val_set = reader(root, val_split, eval_transforms(image_size))
        if val_images is not None and val_images < len(val_set):
            val_set = torch.utils.data.Subset(val_set, range(val_images))
    return loader, val_set, tuple(train_set.classes)


# --------------------------------------------------------------------------- the command


def train(model: str, data: str, steps: int, out: str | os.PathLike, *, image_size: int | None = None,
          batch_size: int | None = None, lr: float | None = None, seed: int = 0, variant: str = "semantic",
          width: int | None = None, train_images: int | None = None, val_images: int | None = None,
          workers: int = 0, device: str | None = None, digest: str | os.PathLike | None = None,
          schedule: str = "cosine", progress: bool = True, force: bool = False,
          resume: str | os.PathLike | None = None, save_every: int | None = None, val_every: int | None = None,
          sync_bn: bool = False, scan: bool = True) -> dict:
    """Train zoo model ``model`` on ``data`` for ``steps`` steps with ``segedu.train.fit``; save to ``out``.

    Works the same in one process and under ``torchrun`` (one process per GPU, or several CPU processes).
    Sizes default to ``runtime.profile()``; ``batch_size`` is per process (global batch = ranks x batch).
    Loss: cross entropy, 255 ignored. Optimizer: Adam; ``schedule="cosine"`` decays its learning rate to 0
    over the run (Loshchilov & Hutter, "SGDR", ICLR 2017), ``"constant"`` keeps it. The decay matters for
    short runs of BatchNorm models: while the weights still move fast, the running statistics used in eval
    mode lag behind them (lesson 11).

    Before anything starts, ``segedu.runs.check_arguments`` checks every argument and the output file
    (``out`` replaces only a segedu checkpoint, and only with ``force`` or when resuming from it) and
    ``segedu.runs.check_data`` scans a VOC folder (``scan=False`` skips the scan: the CLI has done it).

    Files: ``out`` holds a resumable checkpoint every ``save_every`` steps and when the run is interrupted
    (Ctrl-C finishes the step under way, saves and raises ``KeyboardInterrupt``: ``segedu.resume``), and the
    final checkpoint at the end, still resumable (``segedu.checkpoint.save_checkpoint``; metadata: the
    ``zoo.model_spec``, classes, settings, losses and metrics - ``zoo.load_model(out)`` rebuilds it).
    ``runs.log_path(out)`` (``unet.pt`` -> ``unet.log.csv``) gets the loss of every step and every
    validation. ``resume``: a checkpoint of this run to continue from (same model and settings); the resumed
    run ends with the weights of an uninterrupted one (on a CPU bit for bit; on a GPU up to nondeterministic
    kernels). Under torchrun rank 0 writes the files; a checkpoint holds the weights, optimizer, scheduler,
    step and every rank's random generators and sampler position (gathered at each save): resume it with
    the same number of processes, each of which takes back its own state. With ``schedule="constant"`` a
    finished run can be extended (``resume=out`` and more ``steps``).

    Validation (rank 0's numbers): every ``val_every`` steps and at the end. ``sync_bn``: BatchNorm statistics
    over all ranks (``wrap``). ``digest``: a folder where every rank writes ``rank<R>.json`` with its
    ``state_digest`` and losses (to check that the ranks agree).

    Returns a summary dict (on every rank; ``"val"`` only on rank 0).
    """
    from segedu.checkpoint import read_checkpoint, save_checkpoint
    from segedu.train import evaluate, fit

    # clear errors before any data is read, any model built or any process group formed
    spec = check_arguments(model, data, schedule, width, steps=steps, image_size=image_size, batch_size=batch_size,
                           lr=lr, seed=seed, train_images=train_images, val_images=val_images, workers=workers,
                           variant=variant, device=device, out=out, force=force, resume=resume,
                           save_every=save_every, val_every=val_every, sync_bn=sync_bn, digest=digest)
    profile = runtime.profile()
    image_size = profile.image_size if image_size is None else image_size
    batch_size = profile.batch_size if batch_size is None else batch_size
    lr = profile.lr if lr is None else lr
    settings = dict(data=data, variant=variant, image_size=image_size, batch_size=batch_size, lr=lr,
                    schedule=schedule, seed=seed, run_steps=steps)  # check_arguments compares them on resume
    if scan:
        check_data(data, val_images=val_images, progress=progress and os.environ.get("RANK", "0") == "0")
    ctx = setup(device)
    try:
        train_source, val_set, classes = make_data(
            data, ctx, image_size=image_size, batch_size=batch_size, seed=seed, variant=variant,
            train_images=train_images, val_images=val_images, workers=workers)
        spec = zoo.model_spec(model, len(classes), **spec["kwargs"])
        runtime.seed_everything(seed)  # the same initial weights on every rank (DDP broadcasts rank 0's too)
        net = wrap(zoo.build_model(spec["name"], spec["num_classes"], **spec["kwargs"]), ctx, sync_bn=sync_bn)
        optimizer = torch.optim.Adam(net.parameters(), lr=lr)
        loss_fn = nn.CrossEntropyLoss(ignore_index=255)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps) if schedule == "cosine" else None
        meta = dict(spec=spec, classes=list(classes), **settings, world_size=ctx.world_size, profile=profile.name,
                    sync_bn=sync_bn)
        # One process: fit validates every val_every steps and at the end. Several: every rank validates
        # alongside (a DDP forward may broadcast buffers, so all ranks must run the same forwards), and rank
        # 0 evaluates once more after average_buffers.
        fit_val = val_set if not ctx.distributed or val_every is not None else None
        # seed + rank: each rank draws other scenes (and other augmentations / dropout masks); rank 0 shows
        # progress and writes the log. Every rank takes part in a save (its random state is gathered), and
        # rank 0 writes the file.
        history = fit(net, train_source, loss_fn, steps, optimizer, val_data=fit_val, device=ctx.device,
                      progress=progress and ctx.is_main, batch_size=batch_size, seed=seed + ctx.rank,
                      num_classes=len(classes), scheduler=scheduler, val_every=val_every, checkpoint=out,
                      save_every=save_every, resume=resume, log=log_path(out) if ctx.is_main else None,
                      checkpoint_extra=meta)
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
            metrics = None
            if val_set is not None:
                metrics = history.last_val if fit_val is not None and not ctx.distributed else evaluate(
                    plain, val_set, len(classes), batch_size=batch_size)
                metrics = {k: v for k, v in metrics.items() if k != "step"}
            summary["val"] = metrics
            # fit has just saved the last step, resumable; the final file keeps that state and adds the results
            save_checkpoint(out, plain, optimizer, resume_state=read_checkpoint(out)["resume"], **meta,
                            steps=history.steps, loss=history.loss, val=metrics, seconds=history.seconds,
                            images_per_second=history.images_per_second)
            summary["out"] = str(out)
        if ctx.distributed:
            dist.barrier()  # the others wait until the checkpoint is on disk
        return summary
    finally:
        teardown(ctx)
