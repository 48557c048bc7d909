"""Lessons 05-06 exercise checks: the reference passes, plausible wrong answers are rejected (mutation tests)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from segedu import checks
from segedu.models.unet import center_crop, unet_output_size
from segedu.models.vgg_table import convolutionalize

# --------------------------------------------------------------------------- fc_to_conv


def _conv_with(linear, weight, bias=True):
    conv = nn.Conv2d(weight.shape[1], weight.shape[0], tuple(weight.shape[-2:]), bias=bias)
    with torch.no_grad():
        conv.weight.copy_(weight)
        if bias:
            conv.bias.copy_(linear.bias)
    return conv


def _channel_last(linear, c, k):  # flattening order (kh, kw, C) instead of torch's (C, kh, kw)
    w = linear.weight.detach().view(-1, k, k, c).permute(0, 3, 1, 2)
    return _conv_with(linear, w)


def _transposed_kernel(linear, c, k):  # rows and columns swapped
    return _conv_with(linear, linear.weight.detach().view(-1, c, k, k).transpose(-1, -2))


def _no_bias(linear, c, k):
    return _conv_with(linear, linear.weight.detach().view(-1, c, k, k), bias=False)


def _padded(linear, c, k):
    conv = convolutionalize(linear, c, k)
    conv.padding = (k // 2, k // 2)
    return conv


def test_fc_to_conv_accepts_the_reference(capsys):
    checks.check_fc_to_conv(convolutionalize)
    assert capsys.readouterr().out.strip().endswith("PASSED")


@pytest.mark.parametrize(
    "wrong, message",
    [
        (lambda linear, c, k: None, "None"),
        (lambda linear, c, k: linear, "nn.Conv2d"),
        (_channel_last, "channel first"),
        (_transposed_kernel, "channel first"),
        (_no_bias, "bias"),
        (_padded, "padding"),
        (lambda linear, c, k: nn.Conv2d(c, linear.out_features, k), "index"),  # fresh random weights
    ],
)
def test_fc_to_conv_rejects_wrong_answers(wrong, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_fc_to_conv(wrong)


# --------------------------------------------------------------------------- fuse_scores


def _up(x, mode="bilinear", align_corners=False):
    if mode == "nearest":
        return F.interpolate(x, scale_factor=2, mode="nearest")
    return F.interpolate(x, scale_factor=2, mode=mode, align_corners=align_corners)


def test_fuse_scores_accepts_the_reference(capsys):
    checks.check_fuse_scores(lambda s32, s16, s8: _up(_up(s32) + s16) + s8)
    assert capsys.readouterr().out.strip().endswith("PASSED")


@pytest.mark.parametrize(
    "wrong, message",
    [
        (lambda s32, s16, s8: None, "None"),
        (lambda s32, s16, s8: _up(_up(s32, "nearest") + s16, "nearest") + s8, "nearest"),
        (lambda s32, s16, s8: _up(_up(s32, align_corners=True) + s16, align_corners=True) + s8, "align_corners"),
        (lambda s32, s16, s8: _up(_up(s32)) + s8, "index"),  # forgot pool4's scores
        (lambda s32, s16, s8: _up(_up(s32) + s16), "index"),  # forgot pool3's scores
        (lambda s32, s16, s8: _up(_up(s32) + s16) * s8, "index"),  # multiplies instead of adding
        (lambda s32, s16, s8: _up(s32) + s16, "shape"),  # stops at stride 16
        (lambda s32, s16, s8: (_up(_up(s32) + s16) + s8).argmax(1, keepdim=True), "shape"),
    ],
)
def test_fuse_scores_rejects_wrong_answers(wrong, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_fuse_scores(wrong)


# --------------------------------------------------------------------------- center_crop


def _crop_ceil(x, size):  # rounds the top offset up: wrong when H - h is odd
    h, w = size
    top, left = -(-(x.shape[-2] - h) // 2), -(-(x.shape[-1] - w) // 2)
    return x[..., top : top + h, left : left + w]


def _crop_symmetric(x, size):  # cuts the same amount from both sides: one pixel too many when H - h is odd
    top, left = (x.shape[-2] - size[0]) // 2, (x.shape[-1] - size[1]) // 2
    return x[..., top : x.shape[-2] - top, left : x.shape[-1] - left]


def test_center_crop_accepts_the_reference(capsys):
    checks.check_center_crop(center_crop)
    assert capsys.readouterr().out.strip().endswith("PASSED")


@pytest.mark.parametrize(
    "wrong, message",
    [
        (lambda x, size: None, "None"),
        (_crop_ceil, "round the offset down"),
        (lambda x, size: x[..., : size[0], : size[1]], "top-left corner"),
        (lambda x, size: center_crop(x, size[::-1]).transpose(-1, -2), "index|shape"),  # h and w swapped
        (lambda x, size: torch.from_numpy(center_crop(x, size).detach().numpy().copy()), "gradient"),
        (_crop_symmetric, "shape"),
    ],
)
def test_center_crop_rejects_wrong_answers(wrong, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_center_crop(wrong)


# --------------------------------------------------------------------------- valid_output_size


def _mutant(bottleneck=True, decoder=True, encoder=True, fixed_depth=None):
    def fn(size, depth):
        depth = fixed_depth or depth
        for _ in range(depth):
            size = (size - (4 if encoder else 0)) // 2
        size -= 4 if bottleneck else 0
        for _ in range(depth):
            size = 2 * size - (4 if decoder else 0)
        return size

    return fn


def test_valid_output_size_accepts_the_reference(capsys):
    checks.check_valid_output_size(unet_output_size)
    checks.check_valid_output_size(_mutant())
    assert capsys.readouterr().out.strip().endswith("PASSED")


@pytest.mark.parametrize(
    "wrong, message",
    [
        (lambda size, depth: None, "None"),
        (lambda size, depth: 388.0, "int"),
        (_mutant(bottleneck=False), "bottleneck"),
        (_mutant(decoder=False), "after every up-convolution"),
        (_mutant(encoder=False), "before every pool"),
        (_mutant(fixed_depth=4), "loop over the depth"),
        (lambda size, depth: size - 184, "loop over the depth"),  # the paper's margin, only right at depth 4
    ],
)
def test_valid_output_size_rejects_wrong_answers(wrong, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_valid_output_size(wrong)


# --------------------------------------------------------------------------- fcn8s_forward (the larger exercise of 05)


def _wiring(pad=True, head=True, pool4=True, pool3=True, learned=True, final="learned", swap=False, crop="corner",
            result="logits"):
    """FCN-8s's forward over an encoder's taps, or one of the ways to get it wrong (the flags)."""
    from segedu.models.backbones import pad_to_multiple

    def up(x, layer, factor):
        return layer(x) if learned else F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)

    def fn(x, encoder, layers):
        height, width = x.shape[-2:]
        taps = encoder(pad_to_multiple(x, 32) if pad else x)
        pool5 = layers["head"](taps["pool5"]) if head else taps["pool5"]
        first, second = (layers["up_pool4"], layers["up_pool5"]) if swap else (layers["up_pool5"], layers["up_pool4"])
        score = layers["score_pool5"](pool5)
        score = up(score, first, 2) + (layers["score_pool4"](taps["pool4"]) if pool4 else 0)
        score = up(score, second, 2) + (layers["score_pool3"](taps["pool3"]) if pool3 else 0)
        if final == "learned":
            score = layers["upsample"](score)
        else:
            score = F.interpolate(score, scale_factor=8, mode="bilinear", align_corners=False)
        if crop == "corner":
            score = score[..., :height, :width]
        elif crop == "centre":
            top, left = (score.shape[-2] - height) // 2, (score.shape[-1] - width) // 2
            score = score[..., top : top + height, left : left + width]
        return score.argmax(1) if result == "labels" else score

    return fn


def test_fcn_forward_accepts_the_reference(capsys):
    checks.check_fcn_forward(_wiring())
    assert capsys.readouterr().out.strip().endswith("PASSED")


@pytest.mark.parametrize(
    "wrong, message",
    [
        (lambda x, encoder, layers: None, "None"),
        (_wiring(crop=None), "shape"),  # the padded size comes back
        (_wiring(result="labels"), "shape"),  # labels instead of logits
        (_wiring(pad=False), "multiple of 32"),
        (_wiring(head=False), "head"),
        (_wiring(learned=False, final="bilinear"), "F.interpolate"),
        (_wiring(final="bilinear"), "final 8x upsampling"),
        (_wiring(swap=True), "swapped"),
        (_wiring(pool3=False), "pool3"),
        (_wiring(pool4=False), "pool4"),
        (_wiring(crop="centre"), "top-left"),
    ],
)
def test_fcn_forward_rejects_wrong_answers(wrong, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_fcn_forward(wrong)


def test_fcn_forward_lets_an_unattempted_exercise_through():
    def unattempted(x, encoder, layers):
        raise NotImplementedError()

    with pytest.raises(NotImplementedError):
        checks.check_fcn_forward(unattempted)


# --------------------------------------------------------------------------- tiled_predict (the larger exercise of 06)


def _tiling(pad="mirror", step="tile", crop_tile=True, crop_image=True, margin_factor=1):
    """Overlap-tile inference, or one of the ways to get it wrong (the flags)."""
    from segedu.models.unet import mirror_pad

    def fn(unet, image, tile):
        height, width = image.shape[-2:]
        need = unet.input_size_for(tile)
        margin = margin_factor * (need - unet.output_size(need)) // 2
        rows, cols = -(-height // tile), -(-width // tile)
        stride = tile if step == "tile" else need
        bottom = (rows - 1) * stride + need - height - margin
        right = (cols - 1) * stride + need - width - margin
        if pad == "mirror":
            padded = mirror_pad(image, margin, bottom, margin, right)
        else:
            padded = F.pad(image, (margin, right, margin, bottom), mode=pad)
        out = []
        for i in range(rows):
            row = []
            for j in range(cols):
                pred = unet(padded[..., i * stride : i * stride + need, j * stride : j * stride + need])
                row.append(pred[..., :tile, :tile] if crop_tile else pred)
            out.append(torch.cat(row, dim=-1))
        out = torch.cat(out, dim=-2)
        return out[..., :height, :width] if crop_image else out

    return fn


def test_tiled_predict_accepts_the_reference(capsys):
    from segedu.models.unet import tiled_predict

    checks.check_tiled_predict(tiled_predict)
    checks.check_tiled_predict(_tiling())
    assert capsys.readouterr().out.strip().endswith("PASSED")


def _whole_image(unet, image, tile):
    from segedu.models.unet import MirrorContext

    return MirrorContext(unet)(image)


@pytest.mark.parametrize(
    "wrong, message",
    [
        (lambda unet, image, tile: None, "None"),
        (_tiling(crop_image=False), "shape"),
        (_tiling(pad="constant"), "zero-padded"),
        (_tiling(pad="replicate"), "replicate"),
        (_whole_image, "tile by tile"),
        (_tiling(step="input"), "Pad by margin"),  # tiles placed one input tile apart: no overlap
        (_tiling(margin_factor=2), "Pad by margin"),  # the whole context difference on the top/left
        (_tiling(crop_tile=False), "Pad by margin|shape"),  # each tile's extra output rows kept
    ],
)
def test_tiled_predict_rejects_wrong_answers(wrong, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_tiled_predict(wrong)
