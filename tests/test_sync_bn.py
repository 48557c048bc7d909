"""--sync-bn: with BatchNorm, N processes of batch B train like one of batch N x B only when the batch
statistics are synchronised.

torch's SyncBatchNorm runs on GPUs only (torch 2.14: its forward refuses CPU tensors under a process group,
and ``torch.batch_norm_stats`` has no CPU kernel). On two CPU processes (gloo) these tests therefore check
what can be checked without a GPU:

* ``distributed.wrap(..., sync_bn=True)`` converts every BatchNorm layer to SyncBatchNorm before DDP is built
  (on CPU processes DDP then refuses the converted layers, which shows it was handed them), and does nothing
  in a single process;
* the statistics SyncBatchNorm computes - each process's mean, variance and count, all-gathered and combined
  (``torch.nn.modules._functions.SyncBatchNorm``: ``batch_norm_gather_stats_with_counts``) - equal the
  statistics of one process over the combined batch, with the same all-gather over gloo; the statistics each
  process computes alone differ. Where torch runs SyncBatchNorm itself on the CPU, the real layer is compared;
* ``python -m segedu train --sync-bn`` refuses CPU processes up front, and is recorded in the checkpoint.
"""

from __future__ import annotations

import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from segedu import distributed, zoo
from segedu.__main__ import main

CHANNELS, PER_RANK, WORLD = 3, 2, 2


def _combined_batch() -> torch.Tensor:
    """The global batch ``[WORLD * PER_RANK, C, 5, 6]``; process r holds rows ``r * PER_RANK ..``. The
    halves differ on purpose (another mean and spread), as two shares of real data may."""
    x = torch.randn(WORLD * PER_RANK, CHANNELS, 5, 6, generator=torch.Generator().manual_seed(0))
    x[PER_RANK:] = 3 * x[PER_RANK:] + 1
    return x


def _statistics(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """What BatchNorm in train mode records about ``x`` (``momentum=1``: the running statistics *are* the
    batch's): the per-channel mean and the unbiased variance."""
    bn = nn.BatchNorm2d(CHANNELS, momentum=1.0).train()
    bn(x)
    return bn.running_mean.clone(), bn.running_var.clone()


def _synced_statistics(mine: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """SyncBatchNorm's statistics, computed the way it computes them: every process's per-channel mean,
    biased variance and count are all-gathered, then combined (count-weighted mean; within- plus
    between-process variance), and the running variance is made unbiased with the global count."""
    count = torch.tensor([mine.numel() / mine.shape[1]])
    mean = mine.mean(dim=(0, 2, 3))
    var = mine.var(dim=(0, 2, 3), unbiased=False)
    gathered = [torch.zeros(2 * CHANNELS + 1) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, torch.cat([mean, var, count]))  # the collective SyncBatchNorm uses with gloo
    table = torch.stack(gathered)
    means, variances, counts = table[:, :CHANNELS], table[:, CHANNELS:-1], table[:, -1:]
    total = counts.sum()
    global_mean = (counts * means).sum(0) / total
    global_var = (counts * (variances + (means - global_mean) ** 2)).sum(0) / total
    return global_mean, global_var * total / (total - 1)


def _worker(rank: int, port: int, results: dict) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        ctx = distributed.Context(rank, WORLD, rank, torch.device("cpu"), "gloo")
        plain = zoo.build_model("unet", 3, width=4)
        n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
        try:  # DDP refuses SyncBatchNorm on CPU modules: the error shows that it was handed converted layers
            distributed.wrap(plain, ctx, sync_bn=True)
            ddp_refusal = None
        except ValueError as error:
            ddp_refusal = str(error)
        # convert_sync_batchnorm swaps the layers inside the model it is given: what wrap handed to DDP
        kinds = {type(m).__name__ for m in plain.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
        converted = sum(isinstance(m, nn.SyncBatchNorm) for m in plain.modules())
        unsynced = distributed.wrap(zoo.build_model("unet", 3, width=4), ctx)
        kept = sum(type(m) is nn.BatchNorm2d for m in distributed.unwrap(unsynced).modules())

        x = _combined_batch()
        mine = x[rank * PER_RANK:(rank + 1) * PER_RANK]
        layer = nn.SyncBatchNorm(CHANNELS, momentum=1.0).train()
        try:  # the real layer, where torch supports it on CPU processes
            layer(mine)
            real = (layer.running_mean.clone(), layer.running_var.clone())
            refusal = None
        except ValueError as error:
            real, refusal = None, str(error)
        results[rank] = {
            "ddp_refusal": ddp_refusal, "bn_layers": n_bn,
            "unsynced_is_ddp": isinstance(unsynced, nn.parallel.DistributedDataParallel),
            "converted": converted, "kinds": kinds, "kept": kept, "real": real, "refusal": refusal,
            "alone": _statistics(mine), "synced": _synced_statistics(mine),
        }
    finally:
        dist.destroy_process_group()


def _run_two_processes() -> dict:
    with socket.socket() as s:  # a free port on the loopback interface
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_worker, args=(port, results), nprocs=WORLD, join=True)
        return dict(results)


@pytest.fixture(scope="module")
def two_processes():
    return _run_two_processes()


def test_wrap_converts_batchnorm_before_ddp(two_processes):
    for rank in range(WORLD):
        r = two_processes[rank]
        assert r["bn_layers"] > 0
        assert r["converted"] == r["bn_layers"] and r["kinds"] == {"SyncBatchNorm"}  # every layer, none left
        if r["ddp_refusal"] is not None:  # CPU processes: DDP saw the SyncBatchNorm layers and refused them
            assert "SyncBatchNorm layers only work with GPU modules" in r["ddp_refusal"]
        assert r["unsynced_is_ddp"] and r["kept"] == r["bn_layers"]  # without sync_bn: plain BatchNorm2d


def test_synced_statistics_are_those_of_the_combined_batch(two_processes):
    mean, var = _statistics(_combined_batch())  # one process, batch WORLD x PER_RANK
    for rank in range(WORLD):
        r = two_processes[rank]
        synced_mean, synced_var = r["synced"]
        torch.testing.assert_close(synced_mean, mean, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(synced_var, var, rtol=1e-5, atol=1e-6)
        alone_mean, alone_var = r["alone"]  # without sync: each process normalises over its own half
        assert (alone_mean - mean).abs().max() > 0.5 and (alone_var - var).abs().max() > 0.5
        if r["real"] is not None:  # torch runs SyncBatchNorm on CPU processes: the real layer agrees
            torch.testing.assert_close(r["real"][0], mean, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(r["real"][1], var, rtol=1e-5, atol=1e-6)
        else:  # why the CLI refuses --sync-bn on CPU processes
            assert "GPU" in r["refusal"]


def test_wrap_in_one_process_keeps_batchnorm():
    ctx = distributed.Context()
    model = zoo.build_model("pspnet", 2, width=4)
    assert distributed.wrap(model, ctx, sync_bn=True) is model  # nothing to synchronise with
    assert not any(isinstance(m, nn.SyncBatchNorm) for m in model.modules())
    with pytest.raises(TypeError, match="sync_bn must be True or False"):
        distributed.wrap(model, ctx, sync_bn=1)


def test_cli_refuses_sync_bn_on_cpu_processes(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun --nproc_per_node 2 sets it; no process group is formed
    monkeypatch.setenv("RANK", "1")
    out = tmp_path / "never.pt"
    rc = main(["train", "--model", "unet", "--data", "shapes", "--steps", "1", "--device", "cpu", "--sync-bn",
               "--out", str(out), "--quiet"])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m segedu train: error: sync_bn (--sync-bn) needs CUDA devices")
    assert len(err.strip().splitlines()) == 1 and not out.exists()


def test_cli_sync_bn_in_one_process_trains_and_is_recorded(tmp_path, capsys):
    out = tmp_path / "unet.pt"
    rc = main(["train", "--model", "unet", "--data", "shapes", "--steps", "2", "--device", "cpu", "--sync-bn",
               "--image-size", "32", "--batch-size", "2", "--width", "4", "--val-images", "2", "--quiet",
               "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    model, extra = zoo.load_model(out)
    assert extra["sync_bn"] is True and extra["world_size"] == 1
    assert not any(isinstance(m, nn.SyncBatchNorm) for m in model.modules())  # the file loads into plain BN
