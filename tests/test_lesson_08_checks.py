"""Lesson 08's exercise checks accept the reference solutions and reject plausible wrong answers."""

import pytest
import torch
import torch.nn.functional as F

from segedu import checks


def pyramid_pooling(x, bins, reduce, *, pool="avg", keep_x=True, x_first=True, mode="bilinear", align=False,
                    kernel_pool=False, detach=False):
    """The lesson's reference solution; the keyword-only flags make the wrong variants."""
    size = x.shape[-2:]
    pooled = []
    for b, conv in zip(bins, reduce):
        if kernel_pool:
            p = F.avg_pool2d(x, b, ceil_mode=True)
        elif pool == "avg":
            p = F.adaptive_avg_pool2d(x, b)
        else:
            p = F.adaptive_max_pool2d(x, b)
        kwargs = {"align_corners": align} if mode == "bilinear" else {}
        pooled.append(F.interpolate(conv(p), size=size, mode=mode, **kwargs))
    parts = ([x] if keep_x else []) + pooled if x_first else pooled + ([x] if keep_x else [])
    out = torch.cat(parts, dim=1)
    return out.detach() if detach else out


def lateral_merge(top, feature, lateral, *, mode="nearest", factor=False, on_top=False, concat=False, sign=1.0,
                  skip_lateral=False):
    if factor:
        up = F.interpolate(top, scale_factor=2, mode=mode)
    else:
        kwargs = {"align_corners": False} if mode == "bilinear" else {}
        up = F.interpolate(top, size=feature.shape[-2:], mode=mode, **kwargs)
    if on_top:
        return feature + lateral(up)
    side = feature if skip_lateral else lateral(feature)
    return torch.cat([side, up], dim=1) if concat else side + sign * up


def test_pyramid_pooling_reference_passes(capsys):
    checks.check_pyramid_pooling(pyramid_pooling)
    assert capsys.readouterr().out.strip().endswith("PASSED")


@pytest.mark.parametrize(
    "wrong, message",
    [
        (dict(pool="max"), "max pooling"),
        (dict(keep_x=False), "features x are missing"),
        (dict(x_first=False), "concatenate x first"),
        (dict(mode="nearest"), "nearest-neighbour"),
        (dict(align=True), "align_corners=False"),
        (dict(kernel_pool=True), "adaptive_avg_pool2d"),
        (dict(detach=True), "requires_grad"),
    ],
)
def test_pyramid_pooling_mistakes_fail(wrong, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_pyramid_pooling(lambda x, bins, reduce: pyramid_pooling(x, bins, reduce, **wrong))


def test_pyramid_pooling_garbage_fails():
    with pytest.raises(AssertionError, match="None"):
        checks.check_pyramid_pooling(lambda x, bins, reduce: None)
    with pytest.raises(AssertionError, match="shape"):
        checks.check_pyramid_pooling(lambda x, bins, reduce: x)
    with pytest.raises(AssertionError, match="pyramid_pooling"):  # reduction modules not applied
        checks.check_pyramid_pooling(
            lambda x, bins, reduce: pyramid_pooling(x, bins, [lambda p: p[:, : m(p).shape[1]] for m in reduce]))


def test_lateral_merge_reference_passes(capsys):
    checks.check_lateral_merge(lateral_merge)
    assert capsys.readouterr().out.strip().endswith("PASSED")


@pytest.mark.parametrize(
    "wrong, message",
    [
        (dict(mode="bilinear"), "nearest neighbour"),
        (dict(sign=-1.0), "ADDS"),
        (dict(concat=True), "concatenating"),
        (dict(factor=True), "odd"),          # scale_factor=2 fails on odd sizes
        (dict(on_top=True), "belongs on the backbone feature"),  # the 1x1 conv applied to the wrong map
        (dict(skip_lateral=True), "through `lateral` first"),  # no 1x1 conv on the feature
    ],
)
def test_lateral_merge_mistakes_fail(wrong, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_lateral_merge(lambda top, feature, lateral: lateral_merge(top, feature, lateral, **wrong))


def test_lateral_merge_garbage_fails():
    with pytest.raises(AssertionError, match="None"):
        checks.check_lateral_merge(lambda top, feature, lateral: None)
    with pytest.raises(AssertionError, match="lateral_merge"):  # the coarse map forgotten
        checks.check_lateral_merge(lambda top, feature, lateral: lateral(feature))
    with pytest.raises(AssertionError, match="requires_grad"):
        checks.check_lateral_merge(lambda top, feature, lateral: lateral_merge(top, feature, lateral).detach())
