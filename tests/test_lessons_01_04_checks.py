"""The exercise checks of lessons 01-04 accept the reference solutions and reject plausible wrong answers."""

import pytest
import torch

from segedu import checks

# --------------------------------------------------------------------------- references (as in the lessons)


def psnr_reference(x, reference):
    mse = (x - reference).pow(2).flatten(1).mean(dim=1)
    return 10 * torch.log10(1.0 / mse)


def pca_reference(x, k):
    mean = x.mean(dim=0)
    v = torch.linalg.svd(x - mean, full_matrices=False)[2][:k]
    return mean + (x - mean) @ v.T @ v


def bed_of_nails_reference(x, factor):
    b, c, h, w = x.shape
    out = x.new_zeros(b, c, h * factor, w * factor)
    out[..., ::factor, ::factor] = x
    return out


def max_unpool_reference(x, indices, output_size):
    h, w = output_size
    flat = x.new_zeros(*x.shape[:2], h * w)
    return flat.scatter(2, indices.flatten(2), x.flatten(2)).view(*x.shape[:2], h, w)


def bilinear_reference(x, out_h, out_w, align=True):
    def axis(n_in, n_out):
        if align:
            s = torch.arange(n_out, dtype=torch.float64) * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)
        else:
            s = ((torch.arange(n_out, dtype=torch.float64) + 0.5) * n_in / n_out - 0.5).clamp(min=0)
        i0 = s.floor().long().clamp(max=n_in - 1)
        return i0, (i0 + 1).clamp(max=n_in - 1), (s - i0).to(x.dtype)

    y0, y1, wy = axis(x.shape[-2], out_h)
    x0, x1, wx = axis(x.shape[-1], out_w)
    y0, y1, wy, x0, x1, wx = y0[:, None], y1[:, None], wy[:, None], x0[None], x1[None], wx[None]
    top = (1 - wx) * x[..., y0, x0] + wx * x[..., y0, x1]
    bottom = (1 - wx) * x[..., y1, x0] + wx * x[..., y1, x1]
    return (1 - wy) * top + wy * bottom


def scatter_reference(x, kernel, stride, overwrite=False, flip=False):
    (h, w), (kh, kw) = x.shape, kernel.shape
    kernel = kernel.flip(0, 1) if flip else kernel
    out = x.new_zeros((h - 1) * stride + kh, (w - 1) * stride + kw)
    for i in range(h):
        for j in range(w):
            block = (slice(i * stride, i * stride + kh), slice(j * stride, j * stride + kw))
            if overwrite:
                out[block] = x[i, j] * kernel
            else:
                out[block] += x[i, j] * kernel
    return out


def output_size_reference(size, kernel, stride=1, padding=0, output_padding=0, dilation=1):
    return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


def dilate_reference(kernel, rate):
    kh, kw = kernel.shape
    out = kernel.new_zeros(rate * (kh - 1) + 1, rate * (kw - 1) + 1)
    out[::rate, ::rate] = kernel
    return out


def receptive_field_reference(layers):
    size, jump = 1, 1
    for kernel, stride, dilation in layers:
        size += dilation * (kernel - 1) * jump
        jump *= stride
    return size, jump


# --------------------------------------------------------------------------- the references pass


@pytest.mark.parametrize(
    "check, solution",
    [
        (checks.check_psnr, psnr_reference),
        (checks.check_pca_reconstruction, pca_reference),
        (checks.check_bed_of_nails, bed_of_nails_reference),
        (checks.check_max_unpool, max_unpool_reference),
        (checks.check_bilinear_align_corners, bilinear_reference),
        (checks.check_transposed_conv_scatter, scatter_reference),
        (checks.check_transposed_output_size, output_size_reference),
        (checks.check_dilate_kernel, dilate_reference),
        (checks.check_receptive_field, receptive_field_reference),
    ],
)
def test_reference_solution_passes(check, solution, capsys):
    check(solution)
    assert capsys.readouterr().out.strip().endswith("PASSED")


# --------------------------------------------------------------------------- wrong answers fail, with a useful message


def _no_centring(x, k):
    v = torch.linalg.svd(x, full_matrices=False)[2][:k]
    return x @ v.T @ v


def _smallest_components(x, k):
    mean = x.mean(dim=0)
    vh = torch.linalg.svd(x - mean, full_matrices=False)[2]
    v = vh[vh.shape[0] - k :] if k else vh[:0]
    return mean + (x - mean) @ v.T @ v


@pytest.mark.parametrize(
    "wrong, message",
    [
        (lambda x, r: None, "None"),
        (lambda x, r: 10 * torch.log10(1.0 / (x - r).pow(2).mean()), "one number for the whole batch"),
        (lambda x, r: 10 * torch.log10(1.0 / (x - r).pow(2).flatten(1).mean(1).sqrt()), "RMSE"),
        (lambda x, r: 20 * torch.log10(1.0 / (x - r).pow(2).flatten(1).mean(1)), "factor 20"),
        (lambda x, r: 10 * torch.log(1.0 / (x - r).pow(2).flatten(1).mean(1)), "natural logarithm"),
        (lambda x, r: 10 * torch.log10(1.0 / (x - r).pow(2).mean((2, 3))), "shape"),  # per channel
        (lambda x, r: 10 * torch.log10(1.0 / (x - r).abs().flatten(1).mean(1)), "mean absolute error"),
        (lambda x, r: psnr_reference(x, r).tolist(), "torch.Tensor"),
    ],
)
def test_psnr_check_rejects(wrong, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_psnr(wrong)


@pytest.mark.parametrize(
    "wrong, message",
    [
        (lambda x, k: None, "None"),
        (_no_centring, "Subtract the mean"),
        (_smallest_components, "zero variance"),
        (lambda x, k: pca_reference(x, min(k + 1, x.shape[1])), "off-by-one"),
        (lambda x, k: pca_reference(x, k)[:, :1], "shape"),
        (lambda x, k: x, "unchanged"),  # returns the input
    ],
)
def test_pca_check_rejects(wrong, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_pca_reconstruction(wrong)


def _bottom_right(x, factor):
    b, c, h, w = x.shape
    out = x.new_zeros(b, c, h * factor, w * factor)
    out[..., factor - 1 :: factor, factor - 1 :: factor] = x
    return out


def _float_output(x, factor):
    out = torch.zeros(*x.shape[:2], x.shape[2] * factor, x.shape[3] * factor)
    out[..., ::factor, ::factor] = x
    return out


@pytest.mark.parametrize(
    "wrong, message",
    [
        (lambda x, f: None, "None"),
        (lambda x, f: x.repeat_interleave(f, -2).repeat_interleave(f, -1), "nearest neighbour"),
        (_bottom_right, "bottom-right"),
        (_float_output, "dtype"),
        (lambda x, f: torch.nn.functional.pad(bed_of_nails_reference(x, f), (0, 1, 0, 1)), "shape"),
        (lambda x, f: bed_of_nails_reference(x, 2), "shape"),  # factor hard-coded
    ],
)
def test_bed_of_nails_check_rejects(wrong, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_bed_of_nails(wrong)


def _unpool_whole_tensor(x, indices, output_size):
    # the indices used as positions in the whole flattened tensor: every plane lands in the first one
    h, w = output_size
    flat = x.new_zeros(x.shape[0] * x.shape[1] * h * w)
    return flat.scatter(0, indices.flatten(), x.flatten()).view(*x.shape[:2], h, w)


def _unpool_swapped(x, indices, output_size):
    # row = i % W, col = i // W
    h, w = output_size
    out = x.new_zeros(*x.shape[:2], h, w)
    for b in range(x.shape[0]):
        for c in range(x.shape[1]):
            for v, i in zip(x[b, c].flatten(), indices[b, c].flatten().tolist()):
                if i % w < h and i // w < w:
                    out[b, c, i % w, i // w] = v
    return out


def _unpool_twice_the_size(x, indices, output_size):
    # output_size ignored at the end: the result cut to twice the pooled size (5 x 7 -> 4 x 6)
    return max_unpool_reference(x, indices, output_size)[..., : 2 * x.shape[-2], : 2 * x.shape[-1]]


def _unpool_detached(x, indices, output_size):
    return torch.tensor(max_unpool_reference(x.detach(), indices, output_size).tolist(), dtype=x.dtype)


def _unpool_float32(x, indices, output_size):
    return max_unpool_reference(x, indices, output_size).float()


@pytest.mark.parametrize(
    "wrong, message",
    [
        (lambda x, i, s: None, "None"),
        (lambda x, i, s: bed_of_nails_reference(x, 2), "bed of nails"),
        (lambda x, i, s: x.repeat_interleave(2, -2).repeat_interleave(2, -1), "nearest neighbour"),
        (_unpool_whole_tensor, "own positions"),
        (_unpool_swapped, "swapped"),
        (_unpool_twice_the_size, "output_size"),
        (_unpool_detached, "autograd"),
        (_unpool_float32, "dtype"),
    ],
)
def test_max_unpool_check_rejects(wrong, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_max_unpool(wrong)


def _swapped_weights(x, out_h, out_w):
    # 1 - w on the far neighbour: the classic swap
    flipped = bilinear_reference(x.flip(-2, -1), out_h, out_w).flip(-2, -1)
    return 0.5 * (flipped + bilinear_reference(x, out_h, out_w)) + 0.1


def _nan_for_one_row(x, out_h, out_w):
    scale_h = (x.shape[-2] - 1) / (out_h - 1) if out_h > 1 else float("nan")
    out = bilinear_reference(x, out_h, out_w)
    return out * (1 if scale_h == scale_h else float("nan"))


@pytest.mark.parametrize(
    "wrong, message",
    [
        (lambda x, h, w: None, "None"),
        (lambda x, h, w: bilinear_reference(x, h, w, align=False), "align_corners=False"),
        (_swapped_weights, "weights"),
        (_nan_for_one_row, "NaN"),
        (lambda x, h, w: bilinear_reference(x, h, w)[..., :-1], "shape"),
    ],
)
def test_bilinear_check_rejects(wrong, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_bilinear_align_corners(wrong)


def _correlation(x, kernel, stride):  # a convolution instead: shrinks instead of growing
    return torch.nn.functional.conv2d(x[None, None], kernel[None, None], stride=stride)[0, 0]


def _ignores_stride(x, kernel, stride):
    out = scatter_reference(x, kernel, 1)
    full = x.new_zeros((x.shape[0] - 1) * stride + kernel.shape[0], (x.shape[1] - 1) * stride + kernel.shape[1])
    full[: out.shape[0], : out.shape[1]] = out
    return full


@pytest.mark.parametrize(
    "wrong, message",
    [
        (lambda x, k, s: None, "None"),
        (lambda x, k, s: scatter_reference(x, k, s, overwrite=True), "Add|adds"),
        (lambda x, k, s: scatter_reference(x, k, s, flip=True), "flipped"),
        (_correlation, "shape"),
        (_ignores_stride, "stride"),
    ],
)
def test_transposed_scatter_check_rejects(wrong, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_transposed_conv_scatter(wrong)


@pytest.mark.parametrize(
    "wrong, message",
    [
        (lambda n, k, s=1, p=0, op=0, d=1: None, "None"),
        (lambda n, k, s=1, p=0, op=0, d=1: (n - 1) * s - 2 * p + k + op, "dilation"),
        (lambda n, k, s=1, p=0, op=0, d=1: (n - 1) * s - p + d * (k - 1) + op + 1, "2 \\* padding"),
        (lambda n, k, s=1, p=0, op=0, d=1: (n - 1) * s - 2 * p + d * (k - 1) + 1, "output_padding"),
        (lambda n, k, s=1, p=0, op=0, d=1: n * s - 2 * p + d * (k - 1) + op + 1, "first kernel"),
        (lambda n, k, s=1, p=0, op=0, d=1: float(output_size_reference(n, k, s, p, op, d)), "int"),
    ],
)
def test_transposed_output_size_check_rejects(wrong, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_transposed_output_size(wrong)


def _rate_times_k(kernel, rate):
    kh, kw = kernel.shape
    out = kernel.new_zeros(rate * kh, rate * kw)
    out[::rate, ::rate] = kernel
    return out


def _detached(kernel, rate):
    return torch.tensor(dilate_reference(kernel.detach(), rate).tolist())


def _rate_zeros(kernel, rate):  # rate zeros between taps instead of rate - 1
    kh, kw = kernel.shape
    out = kernel.new_zeros((rate + 1) * (kh - 1) + 1, (rate + 1) * (kw - 1) + 1)
    out[:: rate + 1, :: rate + 1] = kernel
    return out


@pytest.mark.parametrize(
    "wrong, message",
    [
        (lambda k, r: None, "None"),
        (_rate_times_k, "6x6"),
        (_rate_zeros, "shape"),
        (_detached, "autograd"),
        (lambda k, r: dilate_reference(k, r).double(), "dtype"),
    ],
)
def test_dilate_kernel_check_rejects(wrong, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_dilate_kernel(wrong)


def _no_jump(layers):
    return 1 + sum(d * (k - 1) for k, _, d in layers), 1


def _no_dilation(layers):
    size, jump = 1, 1
    for kernel, stride, _ in layers:
        size += (kernel - 1) * jump
        jump *= stride
    return size, jump


def _jump_first(layers):
    size, jump = 1, 1
    for kernel, stride, dilation in layers:
        jump *= stride
        size += dilation * (kernel - 1) * jump
    return size, jump


@pytest.mark.parametrize(
    "wrong, message",
    [
        (lambda layers: None, "None"),
        (lambda layers: receptive_field_reference(layers)[0], "pair"),
        (_no_dilation, "ignored the dilation"),
        (_no_jump, "expected"),
        (_jump_first, "expected"),
    ],
)
def test_receptive_field_check_rejects(wrong, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_receptive_field(wrong)


def test_receptive_field_check_names_the_missing_jump():
    """A stack whose stride-2 layer comes last hides the mistake; VGG16 shows it: the message says why."""
    with pytest.raises(AssertionError, match="multiply by the jump"):
        checks.check_receptive_field(lambda layers: (1 + sum(d * (k - 1) for k, _, d in layers),
                                                      receptive_field_reference(layers)[1]))
