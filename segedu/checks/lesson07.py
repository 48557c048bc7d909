"""Lesson 07 · DeepLab and the dense CRF: the exercise checks.

``check_mean_field_step``: one exact mean-field iteration of the fully connected CRF (Krähenbühl and Koltun,
NeurIPS 2011), compared with ``segedu.crf.dense_crf(..., method="naive")``; ``check_aspp_rates``: the atrous
rates that keep ASPP's field of view at another output stride, compared with ``segedu.models.deeplab.aspp_rates``.
"""

from __future__ import annotations

from typing import Callable

import torch

from segedu.checks.common import agrees, compare, expect_tensor, passed, returned

__all__ = ["check_mean_field_step", "check_aspp_rates"]


def _mean_field_variant(probs, image, params, normalize=True, half=True, sign=1.0, unary=True, pixel_softmax=False):
    """One exact mean-field step, and the plausible mistakes (for the hints of ``check_mean_field_step``)."""
    from segedu.crf import bilateral_features, gaussian_features

    c, h, w = probs.shape
    q = probs.double().reshape(c, -1).t()  # [N, C]
    message = torch.zeros_like(q)
    for weight, f in ((params["w_bilateral"], bilateral_features(image, params["theta_alpha"], params["theta_beta"])),
                      (params["w_gaussian"], gaussian_features(h, w, params["theta_gamma"]))):
        f = f.double()
        k = torch.exp(-(0.5 if half else 1.0) * torch.cdist(f, f) ** 2)
        d = k.sum(1).rsqrt() if normalize else torch.ones(h * w, dtype=torch.float64)
        message += weight * d[:, None] * (k @ (d[:, None] * q))
    logits = (torch.log(q) if unary else 0) + sign * message
    return torch.softmax(logits, dim=0 if pixel_softmax else 1).t().reshape(c, h, w)


def check_mean_field_step(fn: Callable) -> None:
    """Lesson 07: ``fn(probs [C, H, W], image uint8 [3, H, W], w_bilateral, theta_alpha, theta_beta, w_gaussian,
    theta_gamma)`` returns the marginals ``Q [C, H, W]`` after ONE exact mean-field iteration started from
    ``probs``, as ``segedu.crf.dense_crf(..., iterations=1, method="naive")`` computes them."""
    from segedu.crf import dense_crf

    name = "mean_field_step"
    gen = torch.Generator().manual_seed(7)
    keys = ("w_bilateral", "theta_alpha", "theta_beta", "w_gaussian", "theta_gamma")
    cases = []
    # The worked example: a 2 x 4 image, dark on the left and bright on the right; the unary leans the wrong way
    # on column 1 (a dark pixel that looks "bright"). The appearance kernel pulls it back to its dark neighbours.
    image = torch.tensor([[10, 10, 240, 240]] * 2, dtype=torch.uint8).expand(3, 2, 4).contiguous()
    p_dark = torch.tensor([[0.9, 0.4, 0.1, 0.1]] * 2, dtype=torch.float64)
    cases.append(("the 2x4 worked example", torch.stack([p_dark, 1 - p_dark]), image,
                  dict(w_bilateral=5.0, theta_alpha=3.0, theta_beta=20.0, w_gaussian=1.0, theta_gamma=1.0)))
    for c, h, w in ((3, 5, 4), (4, 6, 7), (2, 8, 8)):
        params = dict(zip(keys, (float(torch.empty(1).uniform_(1, 10, generator=gen)),
                                 float(torch.empty(1).uniform_(2, 8, generator=gen)),
                                 float(torch.empty(1).uniform_(10, 60, generator=gen)),
                                 float(torch.empty(1).uniform_(0.5, 4, generator=gen)),
                                 float(torch.empty(1).uniform_(1, 3, generator=gen)))))
        probs = torch.randn(c, h, w, generator=gen, dtype=torch.float64).softmax(0)
        image = torch.randint(0, 256, (3, h, w), generator=gen, dtype=torch.uint8)
        cases.append((f"random case C={c}, {h}x{w}", probs, image, params))
    mistakes = {
        "no symmetric normalisation": (
            dict(normalize=False), "Divide the kernel symmetrically: D^-1/2 K D^-1/2 with D = diag(K 1) (row sums)."
        ),
        "exp(-d^2) instead of exp(-d^2 / 2)": (dict(half=False), "The Gaussian is exp(-|f_i - f_j|^2 / 2)."),
        "message subtracted": (dict(sign=-1.0), "The Potts message is ADDED to the log-probabilities: a label gets "
                                                "likelier when similar pixels hold it."),
        "unary left out": (dict(unary=False), "Keep the unary: softmax(log P + message), not softmax(message)."),
        "softmax over the pixels": (dict(pixel_softmax=True), "Normalise over the classes (each pixel's Q sums to 1)."),
    }
    for case, probs, image, params in cases:
        got = expect_tensor(fn(probs.clone(), image.clone(), **params), name, tuple(probs.shape), "Q [C, H, W]")
        if not got.is_floating_point():
            raise AssertionError(f"{name} returned dtype {got.dtype}: Q holds probabilities, a floating tensor.")
        want = dense_crf(probs, image, iterations=1, method="naive", **params)
        got64 = got.detach().double().cpu()
        if not agrees(got64, want, atol=2e-5, rtol=1e-4):
            hint = "Check the features (x, y, r, g, b divided by the thetas), the kernel, the weights."
            for mistake, (variant, text) in mistakes.items():
                if agrees(got64, _mean_field_variant(probs, image, params, **variant), atol=2e-5, rtol=1e-4):
                    hint = f"It looks like {mistake}. {text}"
                    break
            if not agrees(got64.sum(0), torch.ones_like(got64[0]), atol=1e-4):
                hint += " Also: each pixel's Q must sum to 1 over the classes."
            compare(got64, want, f"{name}, {case}", atol=2e-5, rtol=1e-4, hint=hint)
    passed(name, len(cases))


def check_aspp_rates(fn: Callable) -> None:
    """Lesson 07: ``fn(output_stride, base_rates=(6, 12, 18), base_stride=16)`` returns the atrous rates (a tuple
    of ints) that give ASPP the same field of view at ``output_stride`` as ``base_rates`` at ``base_stride``, and
    raises ``ValueError`` when a rate would not be an integer. Compared with ``segedu.models.deeplab.aspp_rates``."""
    from segedu.models.deeplab import aspp_rates

    name = "aspp_rates"
    cases = [((16,), {}), ((8,), {}), ((32,), {}), ((4,), {}),
             ((16,), {"base_rates": (6, 12, 18, 24), "base_stride": 8}),  # DeepLab v2's rates, moved to stride 16
             ((8,), {"base_rates": (1, 2, 3), "base_stride": 8})]
    for args, kwargs in cases:
        case = f"{name}({', '.join([str(a) for a in args] + [f'{k}={v}' for k, v in kwargs.items()])})"
        want = aspp_rates(*args, **kwargs)
        got = fn(*args, **kwargs)
        returned(got, name)
        if isinstance(got, torch.Tensor) or not isinstance(got, (tuple, list)):
            raise AssertionError(f"{case}: return a tuple of ints, got {type(got).__name__}")
        if any(isinstance(r, bool) or not isinstance(r, int) for r in got):
            raise AssertionError(f"{case}: the rates must be Python ints (a dilation is a whole number of pixels), "
                                 f"got {[type(r).__name__ for r in got]}. Use integer arithmetic (divmod).")
        if tuple(got) != want:
            base_stride = kwargs.get("base_stride", 16)
            inverted = tuple(r * args[0] // base_stride for r in kwargs.get("base_rates", (6, 12, 18)))
            hint = ("You scaled the wrong way: at a smaller output stride the feature map is LARGER, so the same "
                    "field of view in the image needs LARGER rates (rate x base_stride / output_stride)."
                    if tuple(got) == inverted else "rate x base_stride / output_stride, for every base rate.")
            raise AssertionError(f"{case} returned {tuple(got)}, expected {want}. {hint}")
    try:
        fn(7)
    except ValueError:
        pass
    else:
        raise AssertionError(f"{name}(7) must raise ValueError: 6 x 16 / 7 is not a whole number of pixels.")
    passed(name, len(cases) + 1)
