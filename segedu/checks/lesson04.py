"""Lesson 04 · Dilated (atrous) convolution: the exercise checks.

``check_dilate_kernel``: a kernel with ``rate - 1`` zeros between its taps, compared with
``segedu.ops.dilation.dilate_kernel``; ``check_receptive_field``: the receptive field and jump of a stack of
layers (VGG16's among them), compared with ``segedu.ops.dilation.receptive_field``.
"""

from __future__ import annotations

from typing import Callable

import torch

from segedu.checks.common import compare, expect_tensor, passed, returned

__all__ = ["check_dilate_kernel", "check_receptive_field", "VGG16_FEATURES"]


def check_dilate_kernel(fn: Callable[[torch.Tensor, int], torch.Tensor]) -> None:
    """Lesson 04: ``fn(kernel, rate)`` with ``kernel`` ``[kh, kw]`` -> ``[rate * (kh - 1) + 1, rate * (kw - 1) + 1]``,
    the taps ``rate`` apart and zeros between them."""
    from segedu.ops.dilation import dilate_kernel

    name = "dilate_kernel"
    kernel = torch.arange(1, 10, dtype=torch.float32).view(3, 3)
    want = dilate_kernel(kernel[None, None], 2)[0, 0]
    got = fn(kernel.clone(), 2)
    if isinstance(got, torch.Tensor) and tuple(got.shape) == (6, 6):
        raise AssertionError(f"{name}: a 3x3 kernel at rate 2 came back 6x6. Between two taps go rate - 1 zeros, "
                             "and there is nothing after the last tap: the size is rate * (k - 1) + 1 = 5.")
    got = expect_tensor(got, name, (5, 5), "a 3x3 kernel at rate 2")
    compare(got, want, f"{name}, kernel 1..9 at rate 2", atol=1e-5,
            hint="Tap (i, j) goes to (i * rate, j * rate); everything else is 0.")
    cases = 1
    gen = torch.Generator().manual_seed(0)
    for (kh, kw), rate in (((3, 3), 1), ((3, 3), 4), ((2, 5), 3), ((1, 3), 2), ((4, 1), 5)):
        kernel = torch.randn(kh, kw, generator=gen)
        shape = (rate * (kh - 1) + 1, rate * (kw - 1) + 1)
        got = expect_tensor(fn(kernel.clone(), rate), name, shape, f"a {kh}x{kw} kernel at rate {rate}")
        compare(got, dilate_kernel(kernel[None, None], rate)[0, 0], f"{name}, {kh}x{kw} kernel, rate {rate}",
                atol=1e-5, hint="Tap (i, j) goes to (i * rate, j * rate).")
        if got.dtype != kernel.dtype:
            raise AssertionError(f"{name} changed the dtype from {kernel.dtype} to {got.dtype}: use kernel.new_zeros.")
        cases += 1
    # gradients must flow back to the taps: the dilated kernel of a layer is learned
    kernel = torch.randn(3, 3, generator=gen).requires_grad_()
    out = fn(kernel, 2)
    if not isinstance(out, torch.Tensor) or not out.requires_grad:
        raise AssertionError(f"{name}: the result does not depend on kernel for autograd. Write the taps into the "
                             "zeros with a slice assignment (out[::rate, ::rate] = kernel), do not copy numbers.")
    out.sum().backward()
    if kernel.grad is None or not torch.equal(kernel.grad, torch.ones(3, 3)):
        raise AssertionError(f"{name}: the gradient with respect to every tap should be 1 for out.sum().")
    cases += 1
    passed(name, cases)


VGG16_FEATURES = ([(3, 1)] * 2 + [(2, 2)] + [(3, 1)] * 2 + [(2, 2)] + ([(3, 1)] * 3 + [(2, 2)]) * 3)
"""VGG16's ``features`` as ``(kernel, stride)`` tuples: 13 3x3 convolutions and 5 2x2 max-pools."""


def check_receptive_field(fn: Callable[[list], tuple]) -> None:
    """Lesson 04: ``fn(layers)`` with ``layers`` a list of ``(kernel, stride, dilation)`` -> ``(size, jump)``: the
    receptive field of one output of the last layer and the distance between neighbouring outputs, in input pixels."""
    from segedu.ops.dilation import receptive_field

    name = "receptive_field"

    def ask(layers):
        got = fn([tuple(layer) for layer in layers])
        returned(got, name)
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            raise AssertionError(f"{name} must return a pair (size, jump), got {got!r}")
        return tuple(int(v) if isinstance(v, (int, float)) or torch.is_tensor(v) else v for v in got)

    fixed = [
        ([(3, 1, 1)] * 3, (7, 1), "three 3x3 convolutions"),
        ([(3, 1, r) for r in (1, 2, 4, 8)], (31, 1), "3x3 convolutions with rates 1, 2, 4, 8"),
        ([(3, 1, 1), (2, 2, 1), (3, 1, 1)], (8, 2), "conv 3x3, pool 2x2 stride 2, conv 3x3"),
        ([(k, s, 1) for k, s in VGG16_FEATURES], (212, 32), "VGG16's features"),
        ([(k, s, 1) for k, s in VGG16_FEATURES[:-1]], (196, 16), "VGG16 up to conv5_3"),
    ]
    for layers, want, what in fixed:
        got = ask(layers)
        if got != want:
            hint = "size grows by (span - 1) * jump per layer, span = dilation * (kernel - 1) + 1; then jump *= stride."
            if got[0] == 1 + sum(d * (k - 1) for k, _, d in layers):
                hint = "you forgot to multiply by the jump: after a stride-2 layer one step of the next kernel is 2 input pixels."
            elif got[0] == 1 + sum(k - 1 for k, _, _ in layers) and any(d > 1 for _, _, d in layers):
                hint = "you ignored the dilation: a 3x3 kernel at rate d spans 2 d + 1 pixels."
            raise AssertionError(f"{name}, {what}: got (size, jump) = {got}, expected {want}. {hint}")
    cases = len(fixed)
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        n = int(torch.randint(1, 7, (1,), generator=gen))
        layers = [tuple(int(v) for v in (torch.randint(1, 6, (1,), generator=gen), torch.randint(1, 4, (1,), generator=gen),
                                         torch.randint(1, 4, (1,), generator=gen))) for _ in range(n)]
        ref = receptive_field(layers)
        if ask(layers) != (ref.size, ref.jump):
            raise AssertionError(f"{name}({layers}) returned {ask(layers)}, expected {(ref.size, ref.jump)}.")
        cases += 1
    passed(name, cases)
