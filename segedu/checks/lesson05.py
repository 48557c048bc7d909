"""Lesson 05 · Fully convolutional networks (Long et al., CVPR 2015): the exercise checks.

``check_fc_to_conv``: a fully connected layer turned into the equivalent convolution, compared with
``segedu.models.vgg_table.convolutionalize``; ``check_fuse_scores``: FCN-8s's coarse-to-fine fusion of the score
maps, compared with ``segedu.models.fcn.fuse``; ``check_fcn_forward``: FCN-8s's skip fusion wired into a given
encoder (pad, score, upsample, add, crop), compared with ``segedu.models.fcn.FCN``.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from segedu.checks.common import agrees, compare, expect_tensor, passed, returned

__all__ = ["check_fc_to_conv", "check_fuse_scores", "check_fcn_forward"]


def check_fc_to_conv(fn: Callable) -> None:
    """Lesson 05: ``fn(linear, in_channels, kernel_size)`` returns an ``nn.Conv2d`` computing ``linear`` on every
    ``kernel_size x kernel_size`` window of a ``[B, in_channels, H, W]`` map (``linear.in_features = in_channels
    * k * k``, flattened channel-first). Compared with ``segedu.models.vgg_table.convolutionalize``."""
    from torch import nn

    from segedu.models.vgg_table import convolutionalize

    name = "fc_to_conv"
    gen = torch.Generator().manual_seed(5)
    cases = 0
    # fc6-like (a 7x7 window of many channels), fc7/fc8-like (1x1), and a small 3x3 one.
    for in_channels, k, out in ((6, 7, 5), (16, 1, 4), (3, 3, 2)):
        linear = nn.Linear(in_channels * k * k, out)
        with torch.no_grad():
            linear.weight.copy_(torch.randn(linear.weight.shape, generator=gen))
            linear.bias.copy_(torch.randn(out, generator=gen))
        conv = fn(linear, in_channels, k)
        returned(conv, name)
        if not isinstance(conv, nn.Conv2d):
            raise AssertionError(f"{name} must return an nn.Conv2d, got {type(conv).__name__}")
        if tuple(conv.weight.shape) != (out, in_channels, k, k):
            raise AssertionError(
                f"{name}: the conv weight has shape {tuple(conv.weight.shape)}, expected {(out, in_channels, k, k)} "
                "= [out_features, in_channels, k, k]"
            )
        if conv.bias is None:
            raise AssertionError(f"{name}: the conv has no bias, but the linear layer has one: copy it too.")
        if conv.stride != (1, 1) or conv.padding != (0, 0) or conv.dilation != (1, 1):
            raise AssertionError(f"{name}: use stride 1, no padding and no dilation (got stride {conv.stride}, "
                                 f"padding {conv.padding}, dilation {conv.dilation}).")
        x = torch.randn(2, in_channels, k, k, generator=gen)
        with torch.no_grad():
            compare(conv(x).flatten(1), linear(x.flatten(1)), f"{name}, a {in_channels}x{k}x{k} input",
                    atol=1e-5, rtol=1e-4,
                    hint="The linear layer reads x.flatten(1), i.e. channel first, then row, then column: reshape "
                    "linear.weight to [out, in_channels, k, k] in that order (no transposes).")
            big = torch.randn(2, in_channels, k + 3, k + 2, generator=gen)
            compare(conv(big), convolutionalize(linear, in_channels, k)(big), f"{name}, a larger input map",
                    atol=1e-5, rtol=1e-4,
                    hint="On a larger map every output position must be the linear layer applied to its window.")
        cases += 1
    passed(name, cases)


def check_fuse_scores(fn: Callable) -> None:
    """Lesson 05: ``fn(score32, score16, score8)`` returns FCN-8s's fused scores at stride 8: upsample 2x
    (bilinear, ``align_corners=False``) and add, twice. ``[B, K, h, w]``, ``[B, K, 2h, 2w]``,
    ``[B, K, 4h, 4w]`` -> ``[B, K, 4h, 4w]``. Compared with ``segedu.models.fcn.fuse`` using untrained
    (exactly bilinear) ``Upsample`` layers."""
    from segedu.models.fcn import Upsample, fuse

    name = "fuse_scores"
    gen = torch.Generator().manual_seed(6)
    cases = 0
    for batch, classes, h, w in ((1, 3, 2, 2), (2, 6, 3, 5), (1, 21, 4, 4)):
        s32 = torch.randn(batch, classes, h, w, generator=gen)
        s16 = torch.randn(batch, classes, 2 * h, 2 * w, generator=gen)
        s8 = torch.randn(batch, classes, 4 * h, 4 * w, generator=gen)
        up = Upsample(classes, 2)
        with torch.no_grad():
            want = fuse(fuse(s32, s16, up), s8, up)
        got = expect_tensor(fn(s32.clone(), s16.clone(), s8.clone()), name, tuple(s8.shape),
                            "the fused scores at stride 8, the size of score8")
        if not got.is_floating_point():
            raise AssertionError(f"{name} returned dtype {got.dtype}: scores are floats.")
        case = f"K={classes}, score32 of {h}x{w}"

        def nearest(x):
            return F.interpolate(x, scale_factor=2, mode="nearest")

        def corners(x):
            return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)

        for wrong, hint in (
            (nearest, "you upsampled with 'nearest': FCN's upsampling starts as bilinear."),
            (corners, "you used align_corners=True; FCN's bilinear kernel matches align_corners=False."),
        ):
            if agrees(got, wrong(wrong(s32) + s16) + s8, atol=1e-5) and h > 1:
                raise AssertionError(f"{name}, {case}: {hint}")
        compare(got, want, f"{name}, {case}", atol=1e-5, rtol=1e-4,
                hint="Fuse from coarse to fine: up2(up2(score32) + score16) + score8, with "
                "F.interpolate(..., scale_factor=2, mode='bilinear', align_corners=False).")
        cases += 1
    passed(name, cases)


# The layers of FCN-8s that come after the encoder, by their names in ``segedu.models.fcn.FCN``.
_LAYERS = ("head", "score_pool5", "score_pool4", "score_pool3", "up_pool5", "up_pool4", "upsample")


def _fcn_case(gen: torch.Generator, classes: int, width: int, convs):
    """An FCN-8s over a small VGG-style encoder with every layer random (in eval mode): the skip score layers,
    which FCN starts at zero, and the upsampling layers, which start as bilinear, are perturbed so that leaving
    one out, or using another in its place, changes the logits."""
    from torch import nn

    from segedu.models.backbones import VGGBackbone
    from segedu.models.fcn import FCN

    fcn = FCN(classes, "8s", VGGBackbone(width=width, convs=convs, batch_norm=True), head_channels=4 * width,
              head_kernel=3, dropout=0.0)
    with torch.no_grad():
        for module in fcn.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                scale = 0.3 if isinstance(module, nn.ConvTranspose2d) else 1.0
                noise = torch.randn(module.weight.shape, generator=gen) * scale / module.weight[0].numel() ** 0.5
                if isinstance(module, nn.ConvTranspose2d):
                    module.weight.add_(noise)  # still roughly bilinear: a learned upsampling after training
                else:
                    module.weight.copy_(noise * 3 ** 0.5)
                if module.bias is not None:
                    module.bias.copy_(torch.randn(module.bias.shape, generator=gen) * 0.1)
            elif isinstance(module, nn.BatchNorm2d):
                module.running_mean.copy_(torch.randn(module.num_features, generator=gen) * 0.1)
                module.running_var.copy_(0.5 + torch.rand(module.num_features, generator=gen))
    fcn.eval()
    layers = nn.ModuleDict({name: getattr(fcn, name) for name in _LAYERS})
    return fcn, layers


def _fcn_mistakes(x, encoder, layers):
    """The logits of common wrong wirings, to name the one a student made."""
    from segedu.models.backbones import pad_to_multiple

    height, width = x.shape[-2:]
    taps = encoder(pad_to_multiple(x, 32))
    s5 = layers["score_pool5"](layers["head"](taps["pool5"]))
    s4, s3 = layers["score_pool4"](taps["pool4"]), layers["score_pool3"](taps["pool3"])
    up = layers["up_pool5"], layers["up_pool4"]

    def bilinear(s, factor):
        return F.interpolate(s, scale_factor=factor, mode="bilinear", align_corners=False)

    def crop(s):
        return s[..., :height, :width]

    full = layers["upsample"](up[1](up[0](s5) + s4) + s3)
    top, left = (full.shape[-2] - height) // 2, (full.shape[-1] - width) // 2
    return {
        "you upsampled with F.interpolate: use the learned layers layers['up_pool5'], layers['up_pool4'] and "
        "layers['upsample'] (trained, they are no longer bilinear)":
            crop(bilinear(bilinear(bilinear(s5, 2) + s4, 2) + s3, 8)),
        "the final 8x upsampling is F.interpolate: use layers['upsample']":
            crop(bilinear(up[1](up[0](s5) + s4) + s3, 8)),
        "up_pool5 and up_pool4 are swapped: up_pool5 doubles the stride-32 scores, up_pool4 the fused stride-16 "
        "ones": crop(layers["upsample"](up[0](up[1](s5) + s4) + s3)),
        "pool3's scores are missing (that is FCN-16s with an 8x step)": crop(layers["upsample"](up[1](up[0](s5) + s4))),
        "pool4's scores are missing: add layers['score_pool4'](pool4) to the upsampled stride-32 scores":
            crop(layers["upsample"](up[1](up[0](s5)) + s3)),
        "you kept the centre of the padded logits: the padding sits at the bottom and right, so keep the top-left "
        "H x W corner": full[..., top : top + height, left : left + width],
    }


def check_fcn_forward(fn: Callable) -> None:
    """Lesson 05: ``fn(x, encoder, layers)`` is FCN-8s's forward wired into a given encoder: pad ``x [B, C, H, W]``
    to a multiple of 32, take the encoder's ``pool3`` / ``pool4`` / ``pool5`` maps, score pool5 through
    ``layers["head"]`` and ``layers["score_pool5"]``, upsample 2x (``layers["up_pool5"]``) and add
    ``layers["score_pool4"](pool4)``, upsample 2x (``layers["up_pool4"]``) and add ``layers["score_pool3"](pool3)``,
    upsample 8x (``layers["upsample"]``) and keep the top-left ``H x W``: logits ``[B, K, H, W]``.
    Compared with ``segedu.models.fcn.FCN`` (the same layers) on encoders of two widths and depths and inputs
    of several sizes."""
    name = "fcn8s_forward"
    gen = torch.Generator().manual_seed(55)
    cases = 0
    # (classes, encoder width, convs per stage, input batch and size): a multiple of 32, then sizes that
    # need padding (odd, non-square).
    for classes, width, convs, shape in ((3, 4, (1, 1, 2, 2, 2), (1, 3, 64, 64)),
                                         (2, 4, (2, 2, 3, 3, 3), (2, 3, 45, 70)),
                                         (5, 6, (1, 1, 1, 1, 1), (1, 3, 33, 97))):
        fcn, layers = _fcn_case(gen, classes, width, convs)
        x = torch.randn(shape, generator=gen)
        with torch.no_grad():
            want = fcn(x)
            try:
                got = fn(x.clone(), fcn.backbone, layers)
            except NotImplementedError:
                raise
            except RuntimeError as error:  # a size or channel mismatch inside the student's wiring
                raise AssertionError(
                    f"{name}, input {tuple(shape)}: your function raised RuntimeError: {error}. Two usual causes: "
                    "x was not padded to a multiple of 32 (pad_to_multiple(x, 32)), so the maps to add differ "
                    "in size; or pool5 went to layers['score_pool5'] without layers['head'] (fc6/fc7) first."
                ) from None
            case = f"{name}, {classes} classes, input {tuple(shape)}"
            got = expect_tensor(got, name, tuple(want.shape), "logits [B, K, H, W] at the input's size")
            for hint, wrong in _fcn_mistakes(x, fcn.backbone, layers).items():
                if wrong.shape == want.shape and agrees(got, wrong, atol=1e-5) and not agrees(wrong, want, atol=1e-5):
                    raise AssertionError(f"{case}: {hint}.")
            compare(got, want, case, atol=1e-4, rtol=1e-4,
                    hint="Score pool5 (head, then score_pool5), then twice: upsample 2x with the up layer of that "
                    "level and add the next skip's scores; finally layers['upsample'] and the top-left H x W.")
        cases += 1
    passed(name, cases)
