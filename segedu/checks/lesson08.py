"""Lesson 08 · PSPNet, FPN and why context matters: the exercise checks.

``check_pyramid_pooling``: PSPNet's pyramid pooling forward (Zhao et al., CVPR 2017), compared with
``segedu.models.pspnet.pyramid_pool``; ``check_lateral_merge``: FPN's lateral connection (Lin et al., CVPR 2017),
compared with ``segedu.models.fpn.lateral_merge``. Both also compare the gradients.
"""

from __future__ import annotations

from typing import Callable

import torch

from segedu.checks.common import agrees, compare, expect_tensor, passed

__all__ = ["check_pyramid_pooling", "check_lateral_merge"]


def _pyramid_variant(x, bins, reduce, pool="avg", keep_x=True, x_first=True, mode="bilinear", align=False,
                     kernel_pool=False):
    """The pyramid pooling forward, or one of its common mistakes (the flags), to name what a student did."""
    import torch.nn.functional as F

    size = x.shape[-2:]
    pooled = []
    for b, conv in zip(bins, reduce):
        if kernel_pool:  # a b x b *kernel* instead of b x b *bins*
            p = F.avg_pool2d(x, b, ceil_mode=True)
        else:
            p = F.adaptive_avg_pool2d(x, b) if pool == "avg" else F.adaptive_max_pool2d(x, b)
        kwargs = {"align_corners": align} if mode == "bilinear" else {}
        pooled.append(F.interpolate(conv(p), size=size, mode=mode, **kwargs))
    parts = ([x] if keep_x else []) + pooled if x_first else pooled + ([x] if keep_x else [])
    return torch.cat(parts, dim=1)


def _reduce_modules(in_channels: int, out_channels: int, count: int, gen: torch.Generator):
    """``count`` 1x1 conv + BN + ReLU modules in eval mode with random weights and BN statistics."""
    from segedu.models.deeplab import conv_bn_relu

    modules = []
    for _ in range(count):
        m = conv_bn_relu(in_channels, out_channels, 1).eval()
        with torch.no_grad():
            m[0].weight.copy_(torch.randn(m[0].weight.shape, generator=gen) * 0.5)
            m[1].running_mean.copy_(torch.randn(out_channels, generator=gen) * 0.1)
            m[1].running_var.copy_(0.5 + torch.rand(out_channels, generator=gen))
            m[1].bias.copy_(torch.rand(out_channels, generator=gen))  # mostly positive: ReLU keeps the values
        modules.append(m)
    return modules


def check_pyramid_pooling(fn: Callable) -> None:
    """Lesson 08: ``fn(x, bins, reduce)`` is PSPNet's pyramid pooling forward: for each bin size ``b`` (with its
    module ``reduce[i]``) adaptive average pooling of ``x [B, C, h, w]`` to ``b x b``, the module, bilinear
    upsampling back to ``h x w`` (``align_corners=False``); returns ``torch.cat([x, pooled_1, ...], dim=1)``.
    Compared with ``segedu.models.pspnet.pyramid_pool`` on a worked example and random cases, gradients too."""
    from torch import nn

    from segedu.models.pspnet import pyramid_pool

    name = "pyramid_pooling"
    mistakes = {
        "max pooling": dict(pool="max"),
        "the features x are missing from the concatenation": dict(keep_x=False),
        "the pooled maps come before x: concatenate x first, then the bins in order": dict(x_first=False),
        "nearest-neighbour upsampling: use mode='bilinear'": dict(mode="nearest"),
        "align_corners=True: use align_corners=False": dict(align=True),
        "you pool with a b x b kernel (F.avg_pool2d); PSPNet pools to b x b bins (F.adaptive_avg_pool2d)":
            dict(kernel_pool=True),
    }

    def run(x, bins, reduce, case):
        want = pyramid_pool(x, bins, reduce)
        got = fn(x, bins, reduce)
        channels = want.shape[1]  # x's channels + each reduced map's
        if got is not None and isinstance(got, torch.Tensor) and got.shape != want.shape:
            for hint, flags in mistakes.items():
                try:
                    if agrees(got, _pyramid_variant(x, bins, reduce, **flags)):
                        raise AssertionError(f"{name}, {case}: {hint}.")
                except RuntimeError:
                    pass
        expect_tensor(got, name, tuple(want.shape),
                      f"[B, C + reduced channels, h, w] = [B, {channels}, h, w]: x followed by one map per bin")
        if not agrees(got, want, atol=1e-4):
            for hint, flags in mistakes.items():
                if agrees(got, _pyramid_variant(x, bins, reduce, **flags)):
                    raise AssertionError(f"{name}, {case}: {hint}.")
            compare(got, want, f"{name}, {case}", atol=1e-5, rtol=1e-4,
                    hint="Check each step: pool to b x b bins, apply reduce[i], upsample to (h, w), "
                    "concatenate along the channels.")
        return got, want

    # 1. Worked example: one channel 0..15 on a 4x4 map, identity modules, bins 1 and 2.
    x = torch.arange(16.0).view(1, 1, 4, 4)
    got, want = run(x, (1, 2), [nn.Identity(), nn.Identity()], "worked example (x = 0..15 on 4x4, bins (1, 2))")
    cases = 1
    # 2. Random cases: odd sizes, maps smaller than a bin, real reduction modules.
    gen = torch.Generator().manual_seed(8)
    for bins, (b, c, h, w), out in (((1, 2, 3, 6), (2, 8, 7, 9), 2), ((1, 2, 3, 6), (1, 4, 5, 4), 1),
                                    ((2, 4), (2, 6, 12, 10), 3), ((3,), (1, 3, 8, 8), 3)):
        x = torch.randn(b, c, h, w, generator=gen).requires_grad_(True)
        reduce = _reduce_modules(c, out, len(bins), gen)
        got, want = run(x, bins, reduce, f"x of shape {(b, c, h, w)}, bins {bins}")
        # 3. Gradients: the output must stay connected to x (no detach, no NumPy round trip).
        weight = torch.randn(want.shape, generator=gen)
        (want_grad,) = torch.autograd.grad((want * weight).sum(), x)
        if not got.requires_grad:
            raise AssertionError(f"{name}: the result is not connected to x (requires_grad is False): use torch "
                                 "operations only, no .detach(), .numpy() or torch.no_grad().")
        (got_grad,) = torch.autograd.grad((got * weight).sum(), x)
        compare(got_grad, want_grad, f"{name}, gradient w.r.t. x, {(b, c, h, w)}", atol=1e-5, rtol=1e-4,
                hint="The values match but the gradient does not: is some part computed without x?")
        cases += 1
    passed(name, cases)


def _merge_variant(top, feature, lateral, mode="nearest", use_lateral=True, sign=1.0, on_top=False):
    import torch.nn.functional as F

    kwargs = {"align_corners": False} if mode == "bilinear" else {}
    up = F.interpolate(top, size=feature.shape[-2:], mode=mode, **kwargs)
    if on_top:
        return feature + lateral(up)
    return (lateral(feature) if use_lateral else feature) + sign * up


def check_lateral_merge(fn: Callable) -> None:
    """Lesson 08: ``fn(top, feature, lateral)`` is FPN's lateral connection: the coarser level ``top [B, d, h, w]``
    upsampled by nearest neighbour to ``feature``'s size, plus ``lateral(feature)`` (a 1x1 conv ``c -> d``):
    ``[B, d, H, W]``. Compared with ``segedu.models.fpn.lateral_merge``, odd sizes and gradients included."""
    from torch import nn

    from segedu.models.fpn import lateral_merge

    name = "lateral_merge"
    mistakes = {
        "bilinear upsampling: FPN upsamples the coarser map by nearest neighbour (mode='nearest')":
            dict(mode="bilinear"),
        "you subtract the upsampled map: the lateral connection ADDS it": dict(sign=-1.0),
        "you applied `lateral` to the upsampled top: the 1x1 conv belongs on the backbone feature (c -> d channels)":
            dict(on_top=True),
        "you added the backbone feature itself: pass it through `lateral` first (the 1x1 conv, c -> d channels)":
            dict(use_lateral=False),
    }

    def run(top, feature, lateral, case):
        want = lateral_merge(top, feature, lateral)
        try:
            got = fn(top, feature, lateral)
        except NotImplementedError:  # a RuntimeError too, but it means "not attempted yet": let it through
            raise
        except RuntimeError as err:  # typically a size or channel mismatch in the addition or the conv
            raise AssertionError(
                f"{name}, {case}: your function raised `{err}`. Upsample `top` to feature.shape[-2:] (not by a "
                "factor 2: sizes can be odd), and apply `lateral` to `feature` (c channels), not to `top`."
            ) from err
        if isinstance(got, torch.Tensor) and got.shape != want.shape and got.shape[1] != want.shape[1]:
            raise AssertionError(
                f"{name}, {case}: you return {tuple(got.shape)}, expected {tuple(want.shape)}. FPN adds two maps of "
                "d channels; concatenating them (as U-Net does) doubles the channels.")
        expect_tensor(got, name, tuple(want.shape), "[B, d, H, W]: the size of feature, the channels of top")
        if not agrees(got, want, atol=1e-5):
            for hint, flags in mistakes.items():
                if agrees(got, _merge_variant(top, feature, lateral, **flags), atol=1e-5):
                    raise AssertionError(f"{name}, {case}: {hint}.")
            compare(got, want, f"{name}, {case}", atol=1e-5, rtol=1e-4,
                    hint="lateral(feature) + F.interpolate(top, size=feature.shape[-2:], mode='nearest').")
        return got, want

    # 1. Worked example: top [[1, 2], [3, 4]], feature of ones, lateral = 1x1 conv with weight 10, bias 0.
    lateral = nn.Conv2d(1, 1, 1)
    with torch.no_grad():
        lateral.weight.fill_(10.0)
        lateral.bias.zero_()
    top = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    run(top, torch.ones(1, 1, 4, 4), lateral, "worked example (2x2 top, 4x4 feature of ones, lateral x10)")
    cases = 1
    # 2. Random cases, odd sizes, several channels.
    gen = torch.Generator().manual_seed(80)
    for (b, d, h, w), (c, hh, ww) in (((2, 4, 3, 4), (6, 6, 8)), ((1, 3, 3, 4), (5, 5, 7)), ((2, 8, 1, 1), (4, 2, 2))):
        lateral = nn.Conv2d(c, d, 1)
        with torch.no_grad():
            lateral.weight.copy_(torch.randn(lateral.weight.shape, generator=gen))
            lateral.bias.copy_(torch.randn(d, generator=gen))
        top = torch.randn(b, d, h, w, generator=gen).requires_grad_(True)
        feature = torch.randn(b, c, hh, ww, generator=gen).requires_grad_(True)
        got, want = run(top, feature, lateral, f"top {(b, d, h, w)}, feature {(b, c, hh, ww)}")
        weight = torch.randn(want.shape, generator=gen)
        if not got.requires_grad:
            raise AssertionError(f"{name}: the result is not connected to the inputs (requires_grad is False): use "
                                 "torch operations only, no .detach() or torch.no_grad().")
        want_grads = torch.autograd.grad((want * weight).sum(), (top, feature))
        got_grads = torch.autograd.grad((got * weight).sum(), (top, feature))
        for what, g, wg in zip(("top", "feature"), got_grads, want_grads):
            compare(g, wg, f"{name}, gradient w.r.t. {what}, {(b, d, h, w)}", atol=1e-5, rtol=1e-4,
                    hint="Is part of the sum computed without it?")
        cases += 1
    passed(name, cases)
