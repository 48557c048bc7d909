"""segedu.ops.upsample and segedu.ops.checkerboard: the lecture's worked examples exactly, and each op against torch."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from segedu.ops.upsample import (
    UPSAMPLING_METHODS,
    bed_of_nails,
    bilinear_kernel,
    bilinear_upsample,
    max_unpool,
    nearest_upsample,
    pixel_shuffle,
    transposed_conv2d,
    upsample_with,
)

SETTINGS = settings(max_examples=50, deadline=None)
seeds = st.integers(0, 2**31 - 1)
sides = st.integers(1, 7)


def randn(seed, *shape, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def int_or_pair(low, high):
    """An int, or a (height, width) tuple: both forms are accepted by the ops."""
    return st.one_of(st.integers(low, high), st.tuples(st.integers(low, high), st.integers(low, high)))


def pair(value):
    return value if isinstance(value, tuple) else (value, value)


def grid(rows):
    """A [1, 1, H, W] float tensor from nested lists."""
    return torch.tensor(rows, dtype=torch.float32)[None, None]


# ----------------------------------------------------------------------------
# the lecture's worked examples, exactly


def test_nearest_lecture_example():
    out = nearest_upsample(grid([[1, 3], [2, 0]]), 2)
    expected = grid([[1, 1, 3, 3], [1, 1, 3, 3], [2, 2, 0, 0], [2, 2, 0, 0]])
    assert torch.equal(out, expected)


def test_nearest_keeps_integer_dtype():
    x = torch.tensor([[[[1, 3], [2, 0]]]])
    out = nearest_upsample(x, 3)
    assert out.dtype == torch.int64 and out.shape == (1, 1, 6, 6)
    assert torch.equal(out[..., ::3, ::3], x)


def test_bed_of_nails_lecture_example():
    out = bed_of_nails(grid([[1, 4], [3, 2]]), 2)
    expected = grid([[1, 0, 4, 0], [0, 0, 0, 0], [3, 0, 2, 0], [0, 0, 0, 0]])
    assert torch.equal(out, expected)


def test_max_unpool_lecture_example():
    x = grid([[1, 4, 4, 8], [7, 0, 3, 2], [3, 1, 2, 1], [2, 0, 3, 5]])
    pooled, indices = F.max_pool2d(x, 2, return_indices=True)
    assert torch.equal(pooled, grid([[7, 8], [3, 5]]))
    out = max_unpool(grid([[1, 3], [2, 4]]), indices, (4, 4))
    # 7 was at (1, 0), 8 at (0, 3), 3 at (2, 0), 5 at (3, 3)
    expected = grid([[0, 0, 0, 3], [1, 0, 0, 0], [2, 0, 0, 0], [0, 0, 0, 4]])
    assert torch.equal(out, expected)


def test_bilinear_lecture_table():
    x = torch.arange(1, 10, dtype=torch.float32).view(1, 1, 3, 3)
    out = bilinear_upsample(x, size=(5, 5), align_corners=True)
    expected = grid(
        [
            [1.0, 1.5, 2.0, 2.5, 3.0],
            [2.5, 3.0, 3.5, 4.0, 4.5],
            [4.0, 4.5, 5.0, 5.5, 6.0],
            [5.5, 6.0, 6.5, 7.0, 7.5],
            [7.0, 7.5, 8.0, 8.5, 9.0],
        ]
    )
    assert torch.equal(out, expected)


def test_transposed_conv_lecture_example():
    out = transposed_conv2d(grid([[0, 2], [3, 1]]), grid([[0, 1], [2, 3]]), stride=1)
    assert torch.equal(out, grid([[0, 0, 2], [0, 7, 7], [6, 11, 3]]))


def test_transposed_conv_3x3_stride2_pad1_doubles_2x2_to_4x4():
    x, w = randn(0, 1, 2, 2, 2), randn(1, 2, 3, 3, 3)
    kwargs = dict(stride=2, padding=1, output_padding=1)
    out = transposed_conv2d(x, w, **kwargs)
    assert out.shape == (1, 3, 4, 4)
    torch.testing.assert_close(out, F.conv_transpose2d(x, w, **kwargs), rtol=1e-5, atol=1e-5)
    # without output padding the same layer gives 3x3: the conv it transposes maps 3x3 and 4x4 to 2x2
    assert transposed_conv2d(x, w, stride=2, padding=1).shape == (1, 3, 3, 3)


# ----------------------------------------------------------------------------
# nearest, bed of nails, max unpooling, pixel shuffle against torch


@SETTINGS
@given(seed=seeds, b=st.integers(1, 2), c=st.integers(1, 3), h=sides, w=sides, factor=st.integers(1, 4))
def test_nearest_equals_interpolate(seed, b, c, h, w, factor):
    x = randn(seed, b, c, h, w)
    expected = F.interpolate(x, scale_factor=factor, mode="nearest")
    assert torch.equal(nearest_upsample(x, factor), expected)


@SETTINGS
@given(seed=seeds, c=st.integers(1, 3), h=sides, w=sides, factor=st.integers(1, 4))
def test_bed_of_nails_is_a_one_hot_transposed_conv_and_a_top_left_unpool(seed, c, h, w, factor):
    x = randn(seed, 2, c, h, w)
    out = bed_of_nails(x, factor)
    # a transposed conv (stride = factor) whose kernel is 1 at its top-left tap
    one_hot = torch.zeros(c, 1, factor, factor)
    one_hot[:, :, 0, 0] = 1
    torch.testing.assert_close(out, F.conv_transpose2d(x, one_hot, stride=factor, groups=c), rtol=0, atol=0)
    # max unpooling whose remembered positions are all top-left corners
    rows, cols = torch.meshgrid(torch.arange(h) * factor, torch.arange(w) * factor, indexing="ij")
    indices = (rows * w * factor + cols).expand_as(x).contiguous()
    assert torch.equal(out, F.max_unpool2d(x, indices, factor, output_size=(h * factor, w * factor)))


@SETTINGS
@given(
    seed=seeds,
    h=st.integers(3, 9),
    w=st.integers(3, 9),
    kernel=st.integers(1, 3),
    stride=st.integers(1, 3),
    padding=st.integers(0, 1),
)
def test_max_unpool_equals_torch(seed, h, w, kernel, stride, padding):
    assume(2 * padding <= kernel)
    x = randn(seed, 2, 3, h, w)
    pooled, indices = F.max_pool2d(x, kernel, stride, padding, return_indices=True)
    if stride >= kernel:
        values = randn(seed + 1, *pooled.shape)  # windows do not overlap: any values
    else:
        values = pooled  # overlapping windows may share a position: unpool the pooled maxima
    expected = F.max_unpool2d(values, indices, kernel, stride, padding, output_size=(h, w))
    assert torch.equal(max_unpool(values, indices, (h, w)), expected)


@SETTINGS
@given(seed=seeds, c=st.integers(1, 3), h=sides, w=sides, factor=st.integers(1, 4))
def test_pixel_shuffle_equals_torch(seed, c, h, w, factor):
    x = randn(seed, 2, c * factor**2, h, w)
    out = pixel_shuffle(x, factor)
    assert torch.equal(out, F.pixel_shuffle(x, factor))
    assert torch.equal(F.pixel_unshuffle(out, factor), x)


# ----------------------------------------------------------------------------
# bilinear interpolation against F.interpolate


@SETTINGS
@given(
    seed=seeds,
    h=st.integers(1, 8),
    w=st.integers(1, 8),
    out_h=st.integers(1, 16),
    out_w=st.integers(1, 16),
    align_corners=st.booleans(),
)
def test_bilinear_size_equals_interpolate(seed, h, w, out_h, out_w, align_corners):
    x = randn(seed, 2, 3, h, w)
    out = bilinear_upsample(x, size=(out_h, out_w), align_corners=align_corners)
    expected = F.interpolate(x, size=(out_h, out_w), mode="bilinear", align_corners=align_corners)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


@SETTINGS
@given(
    seed=seeds,
    h=st.integers(1, 8),
    w=st.integers(1, 8),
    scale=st.one_of(
        st.floats(0.25, 4.0),
        st.integers(1, 4),
        st.tuples(st.floats(0.25, 4.0), st.floats(0.25, 4.0)),
    ),
    align_corners=st.booleans(),
)
def test_bilinear_scale_factor_equals_interpolate(seed, h, w, scale, align_corners):
    sy, sx = pair(scale)
    assume(math.floor(h * sy) >= 1 and math.floor(w * sx) >= 1)
    x = randn(seed, 2, 3, h, w)
    out = bilinear_upsample(x, scale_factor=scale, align_corners=align_corners)
    expected = F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=align_corners)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("scale", [1.3, (0.7, 1.5), (1.5, 0.7)])
def test_bilinear_non_integer_scale_uses_one_over_scale_factor(scale):
    # 5 x 4 at 1.3 -> 6 x 5: source coordinates use 1 / 1.3, not 5 / 6 and 4 / 5
    x = randn(7, 1, 2, 5, 4)
    expected = F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)
    by_size = F.interpolate(x, size=expected.shape[-2:], mode="bilinear", align_corners=False)
    out = bilinear_upsample(x, scale_factor=scale)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(out, by_size, atol=1e-3)  # the two conventions really differ here


def test_bilinear_axis_that_keeps_its_size_is_copied():
    # 5 * 1.1 -> 5: no interpolation along that axis, whatever 1 / 1.1 would say
    x = randn(8, 1, 2, 5, 5)
    assert torch.equal(bilinear_upsample(x, scale_factor=1.1), x)
    assert torch.equal(F.interpolate(x, scale_factor=1.1, mode="bilinear"), x)
    out = bilinear_upsample(x, scale_factor=(1.1, 2.0))
    torch.testing.assert_close(out, bilinear_upsample(x, size=(5, 10)), rtol=1e-6, atol=1e-6)


def test_bilinear_gradient_equals_interpolate():
    x = randn(3, 1, 2, 4, 5).requires_grad_()
    g = randn(4, 1, 2, 9, 7)
    (bilinear_upsample(x, size=(9, 7)) * g).sum().backward()
    ours, x.grad = x.grad, None
    (F.interpolate(x, size=(9, 7), mode="bilinear") * g).sum().backward()
    torch.testing.assert_close(ours, x.grad, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------
# FCN's bilinear kernel and the transposed-convolution form of bilinear upsampling


@pytest.mark.parametrize(
    "size, taps",
    [
        (1, [1.0]),
        (2, [0.5, 0.5]),
        (3, [0.5, 1.0, 0.5]),
        (4, [0.25, 0.75, 0.75, 0.25]),
        (5, [1 / 3, 2 / 3, 1.0, 2 / 3, 1 / 3]),
    ],
)
def test_bilinear_kernel_is_the_fcn_tent(size, taps):
    tent = torch.tensor(taps)
    weight = bilinear_kernel(3, 3, size)
    assert weight.shape == (3, 3, size, size) and weight.dtype == torch.float32
    for c in range(3):
        torch.testing.assert_close(weight[c, c], torch.outer(tent, tent))
    off_diagonal = ~torch.eye(3, dtype=torch.bool)
    assert torch.count_nonzero(weight[off_diagonal]) == 0
    per_channel = bilinear_kernel(3, 1, size)  # the form for groups=in_channels
    assert per_channel.shape == (3, 1, size, size)
    assert torch.equal(per_channel[:, 0], weight[[0, 1, 2], [0, 1, 2]])


@SETTINGS
@given(seed=seeds, c=st.integers(1, 3), h=sides, w=sides, factor=st.integers(1, 5))
def test_transposed_conv_with_bilinear_kernel_is_bilinear_upsampling(seed, c, h, w, factor):
    x = randn(seed, 2, c, h, w)
    kernel = bilinear_kernel(c, c, 2 * factor - factor % 2)
    band = factor // 2  # width of the border where the two differ
    up = dict(stride=factor, padding=band)
    out = transposed_conv2d(x, kernel, **up)
    torch.testing.assert_close(out, F.conv_transpose2d(x, kernel, **up), rtol=1e-5, atol=1e-5)
    expected = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    assert out.shape == expected.shape == (2, c, h * factor, w * factor)

    # 1. Equal away from a border band `factor // 2` pixels wide.
    inner = (..., slice(band, h * factor - band), slice(band, w * factor - band))
    torch.testing.assert_close(out[inner], expected[inner], rtol=1e-5, atol=1e-5)
    # 2. In the band the transposed conv sees zeros beyond the edge: its weights
    #    sum to less than 1 exactly there (and to 1 everywhere else).
    weight_sum = transposed_conv2d(torch.ones(1, c, h, w), kernel, **up)
    in_band = torch.ones(h * factor, w * factor, dtype=torch.bool)
    in_band[inner[1:]] = False
    assert torch.equal(weight_sum[0, 0] < 1 - 1e-6, in_band)
    torch.testing.assert_close(weight_sum[0, 0][~in_band], torch.ones(int((~in_band).sum())))
    # 3. Dividing by that weight sum (normalised convolution) gives interpolate everywhere ...
    torch.testing.assert_close(out / weight_sum, expected, rtol=1e-5, atol=1e-5)
    # 4. ... and so does repeating the edge pixel once before the transposed conv.
    padded = F.pad(x, (1, 1, 1, 1), mode="replicate")
    from_padded = transposed_conv2d(padded, kernel, stride=factor, padding=band + factor)
    torch.testing.assert_close(from_padded, expected, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------
# transposed convolution against F.conv_transpose2d


@st.composite
def transposed_conv_cases(draw):
    groups = draw(st.integers(1, 3))
    in_channels = groups * draw(st.integers(1, 3))
    out_per_group = draw(st.integers(1, 3))
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride, dilation = draw(int_or_pair(1, 3)), draw(int_or_pair(1, 3))
    padding = draw(int_or_pair(0, 3))
    limit = [max(s, d) - 1 for s, d in zip(pair(stride), pair(dilation))]
    output_padding = (draw(st.integers(0, limit[0])), draw(st.integers(0, limit[1])))
    h, w = draw(sides), draw(sides)
    out = [
        (n - 1) * s - 2 * p + d * (k - 1) + op + 1
        for n, s, p, d, k, op in zip(
            (h, w), pair(stride), pair(padding), pair(dilation), kernel, output_padding
        )
    ]
    assume(min(out) >= 1)
    return dict(
        shape=(2, in_channels, h, w),
        weight_shape=(in_channels, out_per_group, *kernel),
        bias=draw(st.booleans()),
        kwargs=dict(
            stride=stride,
            padding=padding,
            output_padding=output_padding,
            groups=groups,
            dilation=dilation,
        ),
    )


@SETTINGS
@given(seed=seeds, case=transposed_conv_cases())
def test_transposed_conv_equals_torch(seed, case):
    x, weight = randn(seed, *case["shape"]), randn(seed + 1, *case["weight_shape"])
    groups = case["kwargs"]["groups"]
    bias = randn(seed + 2, case["weight_shape"][1] * groups) if case["bias"] else None
    out = transposed_conv2d(x, weight, bias, **case["kwargs"])
    expected = F.conv_transpose2d(x, weight, bias, **case["kwargs"])
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


@SETTINGS
@given(seed=seeds, case=transposed_conv_cases())
def test_transposed_conv_gradients_equal_torch(seed, case):
    x = randn(seed, *case["shape"], dtype=torch.float64).requires_grad_()
    weight = randn(seed + 1, *case["weight_shape"], dtype=torch.float64).requires_grad_()
    bias = randn(seed + 2, case["weight_shape"][1] * case["kwargs"]["groups"], dtype=torch.float64)
    bias.requires_grad_()
    grads = []
    for op in (transposed_conv2d, F.conv_transpose2d):
        out = op(x, weight, bias, **case["kwargs"])
        grads.append(torch.autograd.grad((out * out.detach().sin()).sum(), (x, weight, bias)))
    for ours, theirs in zip(*grads):
        torch.testing.assert_close(ours, theirs)


def test_transposed_conv_gradient_reaches_input_weight_and_bias():
    x = randn(0, 2, 4, 5, 6).requires_grad_()
    weight = randn(1, 4, 3, 3, 3).requires_grad_()
    bias = torch.zeros(3, requires_grad=True)
    out = transposed_conv2d(x, weight, bias, stride=2, padding=1, output_padding=1)
    out.square().mean().backward()
    for tensor in (x, weight, bias):
        assert tensor.grad is not None and tensor.grad.abs().sum() > 0


@SETTINGS
@given(
    seed=seeds,
    groups=st.integers(1, 2),
    h=st.integers(4, 9),
    w=st.integers(4, 9),
    kernel=st.integers(1, 3),
    stride=int_or_pair(1, 3),
    padding=int_or_pair(0, 2),
    dilation=int_or_pair(1, 2),
)
def test_transposed_conv_is_the_adjoint_of_conv(seed, groups, h, w, kernel, stride, padding, dilation):
    """<conv2d(x, w), y> == <x, transposed_conv2d(y, w)> for the same weight."""
    x = randn(seed, 2, 2 * groups, h, w, dtype=torch.float64)
    weight = randn(seed + 1, 3 * groups, 2, kernel, kernel, dtype=torch.float64)
    conv = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    assume(all(n + 2 * p >= d * (kernel - 1) + 1 for n, p, d in zip((h, w), pair(padding), pair(dilation))))
    conv_x = F.conv2d(x, weight, **conv)
    y = randn(seed + 2, *conv_x.shape, dtype=torch.float64)
    # conv2d floors its output size: output_padding restores the rows it dropped
    output_padding = tuple(
        n - ((m - 1) * s - 2 * p + d * (kernel - 1) + 1)
        for n, m, s, p, d in zip((h, w), conv_x.shape[-2:], pair(stride), pair(padding), pair(dilation))
    )
    transposed_y = transposed_conv2d(y, weight, output_padding=output_padding, **conv)
    assert transposed_y.shape == x.shape
    lhs, rhs = (conv_x * y).sum(), (x * transposed_y).sum()
    torch.testing.assert_close(lhs, rhs, rtol=1e-10, atol=1e-10)


# ----------------------------------------------------------------------------
# bad input


X = torch.zeros(1, 4, 3, 3)
W = torch.zeros(4, 2, 3, 3)
POOLED, INDICES = F.max_pool2d(torch.randn(1, 4, 6, 6), 2, return_indices=True)

BAD_INPUT = [
    # (call, exception, words the message must contain)
    (lambda: nearest_upsample(X[0], 2), ValueError, "x must be 4-D"),
    (lambda: nearest_upsample(X.numpy(), 2), TypeError, "x must be a torch.Tensor"),
    (lambda: nearest_upsample(X, 0), ValueError, "factor must be an int >= 1"),
    (lambda: nearest_upsample(X, 1.5), TypeError, "factor must be an int"),
    (lambda: nearest_upsample(X, True), TypeError, "factor must be an int"),
    (lambda: bed_of_nails(X, -1), ValueError, "factor must be an int >= 1"),
    (lambda: bed_of_nails(X[None], 2), ValueError, "x must be 4-D"),
    (lambda: max_unpool(POOLED, INDICES[..., :2], (6, 6)), ValueError, "indices must have the shape of x"),
    (lambda: max_unpool(POOLED, INDICES.float(), (6, 6)), TypeError, "indices must be int64"),
    (lambda: max_unpool(POOLED, INDICES.tolist(), (6, 6)), TypeError, "indices must be a torch.Tensor"),
    (lambda: max_unpool(POOLED, INDICES, (4, 4)), ValueError, "indices must lie in"),
    (lambda: max_unpool(POOLED, INDICES, (6, 0)), ValueError, "output_size must be an int >= 1"),
    (lambda: max_unpool(POOLED, INDICES, (1, 6, 6)), ValueError, "output_size must be an int or a pair"),
    (lambda: bilinear_upsample(X, size=4, scale_factor=2), ValueError, "exactly one of size or scale_factor"),
    (lambda: bilinear_upsample(X), ValueError, "exactly one of size or scale_factor"),
    (lambda: bilinear_upsample(X.long(), size=4), TypeError, "x must be a floating-point"),
    (lambda: bilinear_upsample(X, size=4, align_corners="yes"), TypeError, "align_corners must be True or False"),
    (lambda: bilinear_upsample(X, size=(0, 4)), ValueError, "size must be an int >= 1"),
    (lambda: bilinear_upsample(X, size=2.5), TypeError, "size must be an int"),
    (lambda: bilinear_upsample(X, scale_factor=0), ValueError, "scale_factor must be a finite number > 0"),
    (lambda: bilinear_upsample(X, scale_factor=float("nan")), ValueError, "scale_factor must be a finite"),
    (lambda: bilinear_upsample(X, scale_factor="2"), TypeError, "scale_factor must be a real number"),
    (lambda: bilinear_upsample(X, scale_factor=(2, 2, 2)), ValueError, "scale_factor must be a number or"),
    (lambda: bilinear_upsample(X, scale_factor=0.2), ValueError, "scale_factor 0.2 shrinks the input"),
    (lambda: bilinear_kernel(3, 2, 4), ValueError, "out_channels must equal in_channels"),
    (lambda: bilinear_kernel(3, 3, 0), ValueError, "kernel_size must be an int >= 1"),
    (lambda: bilinear_kernel(3.0, 3, 4), TypeError, "in_channels must be an int"),
    (lambda: transposed_conv2d(X[0], W), ValueError, "x must be 4-D"),
    (lambda: transposed_conv2d(X, W[0]), ValueError, r"weight must be 4-D \[C_in, C_out / groups"),
    (lambda: transposed_conv2d(X, W[:3]), ValueError, r"weight.shape\[0\] must equal the input channels"),
    (lambda: transposed_conv2d(X, W, groups=3), ValueError, "groups \\(3\\) must divide"),
    (lambda: transposed_conv2d(X, W, groups=0), ValueError, "groups must be an int >= 1"),
    (lambda: transposed_conv2d(X, W, stride=0), ValueError, "stride must be an int >= 1"),
    (lambda: transposed_conv2d(X, W, stride=(1, 2, 3)), ValueError, "stride must be an int or a pair"),
    (lambda: transposed_conv2d(X, W, padding=-1), ValueError, "padding must be an int >= 0"),
    (lambda: transposed_conv2d(X, W, dilation=0), ValueError, "dilation must be an int >= 1"),
    (lambda: transposed_conv2d(X, W, stride=2, output_padding=2), ValueError, "output_padding must be"),
    (lambda: transposed_conv2d(X, W, padding=4), ValueError, "padding=\\(4, 4\\) leaves an empty output"),
    (lambda: transposed_conv2d(X, W, torch.zeros(3)), ValueError, "bias must be a tensor of shape \\(2,\\)"),
    (lambda: transposed_conv2d(X, W.double()), TypeError, "x and weight must share one floating-point dtype"),
    (lambda: transposed_conv2d(X.long(), W.long()), TypeError, "x and weight must share one floating-point"),
    (lambda: pixel_shuffle(X, 3), ValueError, r"channels of x \(4\) must be divisible by factor\*\*2 \(9\)"),
    (lambda: pixel_shuffle(X, 0), ValueError, "factor must be an int >= 1"),
]


@pytest.mark.parametrize("call, error, message", BAD_INPUT)
def test_bad_input_names_the_argument(call, error, message):
    with pytest.raises(error, match=message):
        call()


# ----------------------------------------------------------------------------
# upsample_with: the methods of lesson 02 side by side


def test_upsample_with_every_method_gives_the_input_size():
    image = torch.rand(1, 3, 13, 10)
    for method in UPSAMPLING_METHODS:
        for factor in (2, 3):
            small, up = upsample_with(method, image, factor)
            assert small.shape[-2:] == (13 // factor, 10 // factor)
            assert up.shape == (1, 3, 13 // factor * factor, 10 // factor * factor), (method, factor)


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_upsample_with_is_the_matching_op_on_the_shrunk_image(factor):
    image = randn(factor, 2, 3, 13, 10)
    h, w = 13 // factor * factor, 10 // factor * factor
    cropped = image[..., :h, :w]
    averaged = F.avg_pool2d(cropped, factor)
    pooled, indices = F.max_pool2d(cropped, factor, return_indices=True)
    kernel = bilinear_kernel(3, 3, 2 * factor - factor % 2)
    expected = {
        "nearest": (averaged, F.interpolate(averaged, scale_factor=factor, mode="nearest")),
        "bed of nails": (averaged, bed_of_nails(averaged, factor)),
        "max unpooling": (pooled, F.max_unpool2d(pooled, indices, factor, output_size=(h, w))),
        "bilinear": (averaged, F.interpolate(averaged, scale_factor=factor, mode="bilinear")),
        "bilinear, align_corners": (averaged, F.interpolate(averaged, size=(h, w), mode="bilinear",
                                                            align_corners=True)),
        "transposed conv, bilinear kernel": (averaged, F.conv_transpose2d(averaged, kernel, stride=factor,
                                                                          padding=factor // 2)),
    }
    assert set(expected) == set(UPSAMPLING_METHODS)
    for method, (small, up) in expected.items():
        got_small, got_up = upsample_with(method, image, factor)
        torch.testing.assert_close(got_small, small, msg=method)
        torch.testing.assert_close(got_up, up, msg=method)


@pytest.mark.parametrize("call, error, message", [
    (lambda: upsample_with("bicubic", X, 2), ValueError, "method must be one of"),
    (lambda: upsample_with(3, X, 2), TypeError, "method must be one of"),
    (lambda: upsample_with("nearest", X, 0), ValueError, "factor must be an int >= 1"),
    (lambda: upsample_with("nearest", X, -1), ValueError, "factor must be an int >= 1"),
    (lambda: upsample_with("nearest", X, 2.5), TypeError, "factor must be an int"),
    (lambda: upsample_with("nearest", X, True), TypeError, "factor must be an int"),
    (lambda: upsample_with("nearest", X, 4), ValueError, r"factor must be at most the image's height and width"),
    (lambda: upsample_with("nearest", X[0], 2), ValueError, "image must be 4-D"),
    (lambda: upsample_with("nearest", X.long(), 2), TypeError, "image must be a floating-point"),
    (lambda: upsample_with("nearest", X.tolist(), 2), TypeError, "image must be a torch.Tensor"),
])
def test_upsample_with_rejects_bad_arguments(call, error, message):
    with pytest.raises(error, match=message):
        call()


# ----------------------------------------------------------------------------
# checkerboard artefacts and the three learned upsampling layers (lesson 03)

from segedu.ops.checkerboard import LearnedUpsample, checkerboard_strength, overlap_count, overlap_range  # noqa: E402


@pytest.mark.parametrize("kernel, stride", [(k, s) for k in range(1, 8) for s in range(1, 5)])
def test_overlap_count_is_even_inside_exactly_when_the_stride_divides_the_kernel(kernel, stride):
    count = overlap_count(kernel, stride, 9)
    assert count.shape == ((9 - 1) * stride + kernel,) * 2
    assert count.sum() == 81 * kernel * kernel  # every tap of every placed kernel lands somewhere
    # inside (away from a kernel-wide border) every pixel is covered by ceil or floor of (k / s)^2 taps
    inner = count[kernel:-kernel, kernel:-kernel]
    assert inner.numel() > 0
    if kernel % stride == 0:
        assert torch.all(inner == (kernel // stride) ** 2)
    else:
        assert inner.max() > inner.min()
        assert inner.min() == (kernel // stride) ** 2 and inner.max() == (-(-kernel // stride)) ** 2


@pytest.mark.parametrize("kernel, stride", [(k, s) for k in range(1, 8) for s in range(1, 5)])
def test_overlap_range_is_the_count_inside_the_border(kernel, stride):
    count = overlap_count(kernel, stride, 9)
    inner = count[kernel:-kernel, kernel:-kernel]
    fewest, most = overlap_range(kernel, stride, 9)
    assert (fewest, most) == (int(inner.min()), int(inner.max()))
    assert (fewest == most) == (kernel % stride == 0)
    assert (fewest, most) == ((kernel // stride) ** 2, (-(-kernel // stride)) ** 2)


def test_overlap_range_takes_the_whole_output_when_no_inside_is_left_and_takes_pairs():
    assert overlap_count(3, 2, 2).shape == (5, 5)  # not more than twice the kernel: no inside
    assert overlap_range(3, 2, 2) == (1, 4)
    assert overlap_range((1, 3), (1, 2), (1, 3)) == (1, 2)  # the 1-D picture 1 1 2 1 2 1 1
    assert overlap_range((2, 3), (2, 2), (9, 9)) == (1, 2)  # rows: one tap each (2 % 2 = 0); columns: one or two
    with pytest.raises(ValueError, match="stride must be an int >= 1"):
        overlap_range(3, 0, 5)
    with pytest.raises(TypeError, match="kernel_size must be an int"):
        overlap_range(True, 2, 5)


def test_overlap_count_matches_the_lecture_1d_picture_and_takes_pairs():
    # 1-D, kernel 3, stride 2, three inputs: 1 1 2 1 2 1 1 overlaps
    assert overlap_count((1, 3), (1, 2), (1, 3))[0].tolist() == [1, 1, 2, 1, 2, 1, 1]
    assert overlap_count((2, 3), (1, 2), (2, 2)).shape == (3, 5)


def test_checkerboard_strength_sees_periodic_patterns_only():
    flat = torch.full((2, 3, 8, 8), 0.4)
    assert torch.allclose(checkerboard_strength(flat), torch.zeros(2))
    sign = (torch.arange(8)[:, None] + torch.arange(8)[None, :]) % 2 * 2 - 1.0  # +-1 checkerboard
    pattern = 0.4 + 0.1 * sign.expand(2, 3, 8, 8)
    assert torch.allclose(checkerboard_strength(pattern), torch.full((2,), 0.1), atol=1e-6)
    # a smooth ramp (0 to 0.2) differs between the grids only by its half-pixel shift: well below the pattern
    ramp = torch.linspace(0, 0.2, 64).view(1, 1, 8, 8).expand(2, 3, 8, 8).contiguous()
    assert checkerboard_strength(ramp).max() < 0.2 * 0.1
    # period 3 sees a period-3 pattern, and odd sizes are cropped
    stripes = (torch.arange(10) % 3 == 0).float().view(1, 1, 1, 10).expand(1, 1, 10, 10)
    assert checkerboard_strength(stripes, period=3) > 0.4 and checkerboard_strength(stripes, period=3).shape == (1,)
    with pytest.raises(ValueError, match="period"):
        checkerboard_strength(flat, period=1)
    with pytest.raises(ValueError, match="at least"):
        checkerboard_strength(torch.rand(1, 1, 1, 5))
    with pytest.raises(TypeError, match="floating"):
        checkerboard_strength(torch.ones(1, 1, 4, 4, dtype=torch.long))


@pytest.mark.parametrize("method", LearnedUpsample.METHODS)
@pytest.mark.parametrize("factor", [2, 3])
def test_learned_upsample_multiplies_the_size_by_factor(method, factor):
    for kernel in (1, 3, 5) + ((2, 4) if method == "transposed" else ()):
        layer = LearnedUpsample(3, 4, factor, method, kernel)
        x = torch.rand(2, 3, 5, 7, requires_grad=True)
        y = layer(x)
        assert y.shape == (2, 4, 5 * factor, 7 * factor)
        y.sum().backward()
        assert x.grad is not None and all(p.grad is not None for p in layer.parameters())


def test_flat_input_gives_a_flat_output_for_resize_conv_and_icnr_pixel_shuffle_but_not_transposed():
    torch.manual_seed(0)
    flat = torch.full((1, 2, 12, 12), 0.7)
    crop = (slice(None), slice(None), slice(6, -6), slice(6, -6))  # away from the zero-padded border
    resize = LearnedUpsample(2, 3, 2, "resize_conv")(flat)[crop]
    shuffle = LearnedUpsample(2, 3, 2, "pixel_shuffle")(flat)[crop]
    plain_shuffle = LearnedUpsample(2, 3, 2, "pixel_shuffle", icnr=False)(flat)[crop]
    transposed = LearnedUpsample(2, 3, 2, "transposed", kernel_size=3)(flat)[crop]
    assert checkerboard_strength(resize).max() < 1e-6
    assert checkerboard_strength(shuffle).max() < 1e-6  # ICNR: all sub-pixel kernels start equal
    assert checkerboard_strength(plain_shuffle).min() > 1e-3  # random sub-pixel kernels differ
    assert checkerboard_strength(transposed).min() > 1e-3  # uneven overlaps of random taps


def test_icnr_pixel_shuffle_starts_as_convolve_then_nearest_upsample():
    layer = LearnedUpsample(3, 2, 3, "pixel_shuffle", kernel_size=3)
    conv = layer.layer[0]
    x = torch.rand(1, 3, 6, 5)
    low = F.conv2d(x, conv.weight[::9], conv.bias[::9], padding=1)  # sub-pixel 0 of each output channel
    assert torch.allclose(layer(x), F.interpolate(low, scale_factor=3, mode="nearest"), atol=1e-6)


def test_learned_upsample_rejects_bad_arguments():
    with pytest.raises(ValueError, match="method"):
        LearnedUpsample(3, 3, 2, "bicubic")
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        LearnedUpsample(3, 3, 2, "resize_conv", kernel_size=4)
    with pytest.raises(ValueError, match="factor"):
        LearnedUpsample(3, 3, 0)
    with pytest.raises(ValueError, match=r"4-D"):
        LearnedUpsample(3, 3)(torch.rand(3, 8, 8))
