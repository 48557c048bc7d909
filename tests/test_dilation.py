"""segedu.ops.dilation: dilated conv against F.conv2d; receptive fields against known values and autograd."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import nn
from torchvision.models import vgg16

from segedu.ops.dilation import LayerRow, ReceptiveField, dilate_kernel, dilated_conv2d, receptive_field

SETTINGS = settings(max_examples=50, deadline=None)
seeds = st.integers(0, 2**31 - 1)


def randn(seed, *shape, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def int_or_pair(low, high):
    return st.one_of(st.integers(low, high), st.tuples(st.integers(low, high), st.integers(low, high)))


def pair(value):
    return value if isinstance(value, tuple) else (value, value)


def vgg16_features():
    # On the meta device: the layers exist, no memory is allocated or initialised.
    with torch.device("meta"):
        return vgg16(weights=None).features


# ----------------------------------------------------------------------------
# dilated convolution


def test_dilate_kernel_inserts_zeros_between_taps():
    weight = torch.arange(1.0, 10.0).view(1, 1, 3, 3)
    sparse = dilate_kernel(weight, 2)
    expected = torch.tensor(
        [
            [1, 0, 2, 0, 3],
            [0, 0, 0, 0, 0],
            [4, 0, 5, 0, 6],
            [0, 0, 0, 0, 0],
            [7, 0, 8, 0, 9],
        ],
        dtype=torch.float32,
    )
    assert torch.equal(sparse[0, 0], expected)
    assert dilate_kernel(weight, (3, 1)).shape == (1, 1, 7, 3)
    assert torch.equal(dilate_kernel(weight, 1), weight)


@SETTINGS
@given(
    seed=seeds,
    c_in=st.integers(1, 3),
    c_out=st.integers(1, 3),
    kh=st.integers(1, 4),
    kw=st.integers(1, 4),
    h=st.integers(1, 12),
    w=st.integers(1, 12),
    dilation=int_or_pair(1, 3),
    stride=int_or_pair(1, 3),
    padding=int_or_pair(0, 3),
    bias=st.booleans(),
)
def test_dilated_conv_equals_torch(seed, c_in, c_out, kh, kw, h, w, dilation, stride, padding, bias):
    spans = [d * (k - 1) + 1 for d, k in zip(pair(dilation), (kh, kw))]
    assume(all(n + 2 * p >= span for n, p, span in zip((h, w), pair(padding), spans)))
    x, weight = randn(seed, 2, c_in, h, w), randn(seed + 1, c_out, c_in, kh, kw)
    b = randn(seed + 2, c_out) if bias else None
    out = dilated_conv2d(x, weight, b, dilation=dilation, stride=stride, padding=padding)
    expected = F.conv2d(x, weight, b, stride=stride, padding=padding, dilation=dilation)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_dilated_conv_gradients_equal_torch():
    x = randn(0, 2, 3, 9, 8, dtype=torch.float64).requires_grad_()
    weight = randn(1, 4, 3, 3, 3, dtype=torch.float64).requires_grad_()
    grads = []
    for out in (dilated_conv2d(x, weight, dilation=2, padding=2), F.conv2d(x, weight, padding=2, dilation=2)):
        grads.append(torch.autograd.grad(out.sin().sum(), (x, weight)))
    for ours, theirs in zip(*grads):
        assert ours.abs().sum() > 0
        torch.testing.assert_close(ours, theirs)


def test_dilation_keeps_the_parameter_count_and_the_size_with_matching_padding():
    x, weight = randn(0, 1, 2, 16, 16), randn(1, 3, 2, 3, 3)
    for rate in (1, 2, 4, 6):
        assert dilated_conv2d(x, weight, dilation=rate, padding=rate).shape == (1, 3, 16, 16)
        assert torch.count_nonzero(dilate_kernel(weight, rate)) == weight.numel()


# ----------------------------------------------------------------------------
# receptive fields: known values


def test_vgg16_features_receptive_field():
    features = vgg16_features()
    rf = receptive_field(features)
    assert (rf.size, rf.jump, rf.start) == (212, 32, 15.5)
    assert len(rf.table) == 13 + 5  # 13 convs, 5 pools
    # up to conv5_3, without the last pool
    conv5_3 = receptive_field(features[:-1])
    assert (conv5_3.size, conv5_3.jump, conv5_3.start) == (196, 16, 7.5)
    first, pool1 = rf.table[0], rf.table[2]
    assert first == LayerRow("0 (Conv2d)", 3, 1, 1, 1, 3, 1, 0.0)
    assert pool1 == LayerRow("4 (MaxPool2d)", 2, 2, 1, 0, 6, 2, 0.5)


def test_dilation_rates_1_2_4_8_give_31():
    rf = receptive_field([(3, 1, rate) for rate in (1, 2, 4, 8)])
    assert (rf.size, rf.jump) == (31, 1)
    assert [row.size for row in rf.table] == [3, 7, 15, 31]
    assert rf.start == 15.0  # unpadded: the first output is centred 15 pixels in
    assert receptive_field([(3, 1, rate, rate) for rate in (1, 2, 4, 8)]).start == 0.0


@pytest.mark.parametrize("layers", [1, 2, 3, 5, 7])
def test_doubling_rates_grow_exponentially_while_parameters_grow_linearly(layers):
    rates = [2**i for i in range(layers)]
    assert receptive_field([(3, 1, r) for r in rates]).size == 2 ** (layers + 1) - 1
    assert receptive_field([(3, 1, 1)] * layers).size == 2 * layers + 1  # without dilation: linear


def test_tuple_forms_default_dilation_1_and_padding_0():
    two = receptive_field([(3, 2), (2, 2)])
    four = receptive_field([(3, 2, 1, 0), (2, 2, 1, 0)])
    assert two == four
    assert (two.size, two.jump, two.start) == (5, 4, 2.0)
    assert receptive_field([]) == ReceptiveField(size=1, jump=1, start=0.0, table=())


def test_module_and_tuples_agree_and_pointwise_layers_are_skipped():
    net = nn.Sequential(
        nn.Conv2d(3, 8, 5, stride=2, padding=2),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(3, stride=2, padding=1, dilation=2),
        nn.Sequential(nn.Conv2d(8, 8, 3, padding="same", dilation=3), nn.Dropout()),
        nn.AvgPool2d(2),
        nn.Conv2d(8, 4, 3, padding="valid"),
    )
    from_module = receptive_field(net)
    from_tuples = receptive_field([(5, 2, 1, 2), (3, 2, 2, 1), (3, 1, 3, 3), (2, 2, 1, 0), (3, 1, 1, 0)])
    assert (from_module.size, from_module.jump, from_module.start) == (
        from_tuples.size,
        from_tuples.jump,
        from_tuples.start,
    )
    assert [row.name for row in from_module.table] == [
        "0 (Conv2d)",
        "3 (MaxPool2d)",
        "4.0 (Conv2d)",
        "5 (AvgPool2d)",
        "6 (Conv2d)",
    ]


def test_table_prints():
    text = str(receptive_field([(3, 1, 2), (2, 2)]))
    lines = text.splitlines()
    assert lines[0].split() == ["name", "kernel", "stride", "dilation", "padding", "size", "jump", "start"]
    assert lines[1].split() == ["layer", "1", "3", "1", "2", "0", "5", "1", "2.0"]
    assert lines[-1] == "receptive field 6 px, jump 2, start 2.5"


# ----------------------------------------------------------------------------
# receptive fields: against the pixels autograd says an output depends on


@st.composite
def stacks(draw):
    """A random Sequential of square Conv2d / AvgPool2d layers with positive weights."""
    layers = []
    for _ in range(draw(st.integers(1, 4))):
        kernel, stride = draw(st.integers(1, 3)), draw(st.integers(1, 2))
        if draw(st.booleans()):
            dilation = draw(st.integers(1, 3))
            padding = draw(st.integers(0, dilation * (kernel - 1) // 2 + 1))
            conv = nn.Conv2d(1, 1, kernel, stride, padding, dilation, bias=False, dtype=torch.float64)
            nn.init.ones_(conv.weight)
            layers.append(conv)
        else:
            layers.append(nn.AvgPool2d(kernel, stride, padding=draw(st.integers(0, kernel // 2))))
    return nn.Sequential(*layers)


@SETTINGS
@given(net=stacks())
def test_receptive_field_matches_the_gradient_support(net):
    rf = receptive_field(net)
    side = 3 * rf.size + 2 * rf.jump + 8
    # the first output whose whole field lies inside the image (padding may push output 0's out)
    i = max(0, math.ceil(((rf.size - 1) / 2 - rf.start) / rf.jump))
    centre = rf.start + i * rf.jump
    assume(centre + (rf.size - 1) / 2 <= side - 1)
    x = torch.zeros(1, 1, side, side, dtype=torch.float64, requires_grad=True)
    out = net(x)
    assume(out.shape[-1] > i)
    out[0, 0, i, i].backward()
    # every weight is positive, so no contribution cancels: the support is the field
    rows = torch.nonzero(x.grad[0, 0].sum(dim=1)).flatten()
    cols = torch.nonzero(x.grad[0, 0].sum(dim=0)).flatten()
    for support in (rows, cols):
        assert support.min().item() == centre - (rf.size - 1) / 2
        assert support.max().item() == centre + (rf.size - 1) / 2


# ----------------------------------------------------------------------------
# bad input

X = torch.zeros(1, 2, 5, 5)
W = torch.zeros(3, 2, 3, 3)

BAD_INPUT = [
    (lambda: dilated_conv2d(X[0], W), ValueError, "x must be 4-D"),
    (lambda: dilated_conv2d(X, W[0]), ValueError, r"weight must be 4-D \[C_out, C_in, kh, kw\]"),
    (lambda: dilated_conv2d(X.tolist(), W), TypeError, "x must be a torch.Tensor"),
    (lambda: dilated_conv2d(X, W[:, :1]), ValueError, r"weight.shape\[1\] must equal the channels of x"),
    (lambda: dilated_conv2d(X, W, torch.zeros(2)), ValueError, r"bias must be a tensor of shape \(3,\)"),
    (lambda: dilated_conv2d(X, W, dilation=0), ValueError, "dilation must be an int >= 1"),
    (lambda: dilated_conv2d(X, W, dilation=1.5), TypeError, "dilation must be an int"),
    (lambda: dilated_conv2d(X, W, stride=0), ValueError, "stride must be an int >= 1"),
    (lambda: dilated_conv2d(X, W, padding=-1), ValueError, "padding must be an int >= 0"),
    (lambda: dilated_conv2d(X, W, dilation=3), ValueError, "x is too small: padded height 5 <"),
    (lambda: dilate_kernel(W, (2, 0)), ValueError, "rate must be an int >= 1"),
    (lambda: dilate_kernel(W[0], 2), ValueError, "weight must be 4-D"),
    (lambda: receptive_field("3x3"), TypeError, "layers must be an nn.Module or a sequence"),
    (lambda: receptive_field(3), TypeError, "layers must be an nn.Module or a sequence"),
    (lambda: receptive_field([(3,)]), TypeError, r"layers\[0\] must be a tuple \(kernel, stride"),
    (lambda: receptive_field([(3, 1), 3]), TypeError, r"layers\[1\] must be a tuple"),
    (lambda: receptive_field([(0, 1)]), ValueError, "kernel of layer 1 must be an int >= 1"),
    (lambda: receptive_field([(3, 1, 1, -1)]), ValueError, "padding of layer 1 must be an int >= 0"),
    (lambda: receptive_field([(3, 1.5)]), TypeError, "stride of layer 1 must be an int"),
    (lambda: receptive_field(nn.Sequential(nn.Conv2d(1, 1, 3), nn.Flatten(), nn.Linear(4, 2))), ValueError,
     r"layers contains 2 \(Linear\)"),
    (lambda: receptive_field(nn.Sequential(nn.Conv2d(1, 1, 3), nn.AdaptiveAvgPool2d(7))), ValueError,
     r"layers contains 1 \(AdaptiveAvgPool2d\)"),
    (lambda: receptive_field(nn.ConvTranspose2d(1, 1, 4, 2)), ValueError, r"module \(ConvTranspose2d\)"),
    (lambda: receptive_field(nn.Conv2d(1, 1, (1, 7))), ValueError, r"non-square kernel \(1, 7\)"),
    (lambda: receptive_field(nn.Conv2d(1, 1, 3, stride=(1, 2))), ValueError, r"non-square stride \(1, 2\)"),
]


@pytest.mark.parametrize("call, error, message", BAD_INPUT)
def test_bad_input_names_the_argument(call, error, message):
    with pytest.raises(error, match=message):
        call()


# ----------------------------------------------------------------------------
# footprints: which input pixels reach one output (gridding)

from segedu.ops.dilation import coverage, footprint  # noqa: E402


@pytest.mark.parametrize("rates", [(1,), (2,), (1, 2, 4), (2, 2, 2), (1, 2, 5), (3, 3), (1, 2, 4, 8)])
def test_footprint_counts_paths_and_spans_the_receptive_field(rates):
    paths = footprint(rates)
    size = receptive_field([(3, 1, r) for r in rates]).size
    assert paths.shape == (size, size) and paths.dtype == torch.int64
    assert paths.sum() == 9 ** len(rates)  # each layer multiplies the number of paths by 3 x 3
    assert torch.equal(paths, paths.flip(0)) and torch.equal(paths, paths.T)  # symmetric
    assert paths[0].any() and paths[:, 0].any()  # it reaches the edge of the field
    # the same as the gradient of one output of a real stack with all weights 1
    layers = [torch.nn.Conv2d(1, 1, 3, padding=r, dilation=r, bias=False) for r in rates]
    for layer in layers:
        torch.nn.init.ones_(layer.weight)
    x = torch.zeros(1, 1, size, size, dtype=torch.float64, requires_grad=True)
    out = torch.nn.Sequential(*layers).double()(x)
    out[0, 0, size // 2, size // 2].backward()
    assert torch.equal(x.grad[0, 0].round().long(), paths)


def test_equal_rates_grid_and_mixed_rates_do_not():
    grid = footprint((2, 2, 2))
    assert grid.shape == (13, 13)
    assert torch.equal(grid > 0, torch.zeros(13, 13, dtype=torch.bool).index_fill(0, torch.arange(0, 13, 2), True)
                       & torch.zeros(13, 13, dtype=torch.bool).index_fill(1, torch.arange(0, 13, 2), True))
    assert (grid > 0).float().mean() == pytest.approx(49 / 169)  # only every other row and column
    assert (footprint((1, 2, 5)) > 0).all() and (footprint((1, 2, 4, 8)) > 0).all()
    assert footprint((1,), kernel_size=5).shape == (5, 5)


@pytest.mark.parametrize("rates, seen", [((1, 2, 4), 1.0), ((1, 2, 5), 1.0), ((1,), 1.0), ((2, 2, 2), 49 / 169)])
def test_coverage_is_the_seen_fraction_of_the_receptive_field(rates, seen):
    # rates (2, 2, 2): a 13 x 13 field in which only offsets of even parity are reachable: 7 rows x 7 columns
    assert coverage(rates) == pytest.approx(seen, abs=1e-12)
    with pytest.raises(ValueError, match="odd"):
        coverage(rates, kernel_size=2)


def test_footprint_rejects_bad_arguments():
    with pytest.raises(ValueError, match="odd"):
        footprint((1, 2), kernel_size=2)
    with pytest.raises(ValueError, match="empty"):
        footprint(())
    with pytest.raises(ValueError, match=r"rates\[1\]"):
        footprint((1, 0))
    with pytest.raises(TypeError, match="rates"):
        footprint(2)
