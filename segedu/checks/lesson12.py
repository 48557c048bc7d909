"""Lesson 12 · Instance segmentation without boxes: the exercise check.

``check_pull_term``: the pull (variance) term of the discriminative loss for one image (De Brabandere, Neven &
Van Gool, 2017), compared with ``segedu.losses.discriminative.discriminative_terms``: values on a worked example
and random maps, the gradient, and the plausible mistakes named.
"""

from __future__ import annotations

from typing import Callable

import torch

from segedu.checks.common import agrees, compare, passed, returned
from segedu.losses.discriminative import discriminative_terms

__all__ = ["check_pull_term"]


def _pull_value_and_grad(fn: Callable, name: str, embeddings: torch.Tensor, instances: torch.Tensor,
                         delta_v: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Call ``fn`` on a fresh leaf copy of ``embeddings``; the value (float64) and its gradient."""
    leaf = embeddings.detach().clone().requires_grad_(True)
    value = returned(fn(leaf, instances.clone(), delta_v), name)
    if not isinstance(value, torch.Tensor):
        raise AssertionError(f"{name} must return a torch.Tensor (a scalar the optimizer can backpropagate "
                             f"through), got {type(value).__name__}. Keep the computation in torch: no .item().")
    if value.dim() != 0:
        raise AssertionError(f"{name} returned shape {tuple(value.shape)}, expected a scalar (shape ()): one pull "
                             "value per instance is not the end - average them over the instances.")
    if not value.is_floating_point():
        raise AssertionError(f"{name} returned dtype {value.dtype}: a loss is a floating-point number.")
    if bool(torch.isnan(value.detach())):
        raise AssertionError(f"{name} returned NaN for ids {sorted(set(instances.flatten().tolist()))}: a mean over "
                             "an empty set of pixels or instances is NaN. Loop over the instance ids present (not 0, "
                             "not 255); with none, return 0 (e.g. embeddings.sum() * 0, still a tensor).")
    if not value.requires_grad:
        if float(value) == 0.0:  # an image whose embeddings all sit near their centres: no gradient to carry
            return value.detach().double(), torch.zeros_like(leaf)
        raise AssertionError(f"{name}: the result does not depend on the embeddings through autograd. Did you call "
                             ".item(), .detach() or torch.tensor(...) on an intermediate result?")
    (grad,) = torch.autograd.grad(value, leaf, allow_unused=True)
    return value.detach().double(), (torch.zeros_like(leaf) if grad is None else grad.double())


def _pull_mistakes(embeddings: torch.Tensor, instances: torch.Tensor, delta_v: float) -> dict[str, float]:
    """Wrong pull terms a student may write, each with the hint it earns."""
    x = embeddings.detach().double()

    def pull(keep=lambda i: i not in (0, 255), per_instance=True, squared_distance=False, margin=delta_v,
             clamp=True, square=True, mean_over_instances=True) -> float:
        values, sizes = [], []
        for i in instances.unique().tolist():
            if not keep(i):
                continue
            points = x[:, instances == i]
            offset = points - points.mean(1, keepdim=True)
            d = (offset**2).sum(0) if squared_distance else offset.norm(dim=0)
            h = (d - margin).clamp(min=0) if clamp else d - margin
            h = h**2 if square else h
            values.append(h.mean() if per_instance else h.sum())
            sizes.append(points.shape[1])
        if not values:
            return 0.0
        if not per_instance:
            return float(sum(values) / sum(sizes))
        return float(sum(values) / (len(values) if mean_over_instances else 1))

    return {
        "Background pixels (id 0) belong to no instance: leave them out.": pull(keep=lambda i: i != 255),
        "Ignored pixels (id 255) belong to no instance: leave them out.": pull(keep=lambda i: i != 0),
        "Average within each instance first (1 / N_c), then over the instances (1 / C): a large object must not "
        "outweigh a small one.": pull(per_instance=False),
        "Divide by the number of instances C: the paper averages the per-instance terms.":
            pull(mean_over_instances=False),
        "Use the distance ||mu_c - x_i|| (a norm), not its square, inside the hinge.": pull(squared_distance=True),
        "Square the hinge: [||mu_c - x_i|| - delta_v]_+ ** 2.": pull(square=False),
        "Clamp the hinge at 0 (max(0, .)): embeddings closer than delta_v to their centre cost nothing.":
            pull(clamp=False),
        "The hinge subtracts delta_v: only the distance beyond delta_v is penalised.": pull(margin=0.0),
    }


def _hint(got: torch.Tensor, mistakes: dict[str, float]) -> str:
    for hint, value in mistakes.items():
        if agrees(got, torch.tensor(value, dtype=torch.float64), rtol=1e-6, atol=1e-9):
            return " " + hint
    return ""


def check_pull_term(fn: Callable) -> None:
    """Lesson 12: ``fn(embeddings [D, H, W], instances [H, W], delta_v)`` -> the pull term of one image, a scalar.

    ``L_var = 1/C sum_c 1/N_c sum_{i in c} [||mu_c - x_i|| - delta_v]_+^2`` over the C instances of the image
    (ids other than 0 = background and 255 = ignored), ``mu_c`` the mean embedding of instance c; 0 for an image
    without instances (De Brabandere et al., 2017, Sec. 3.1). Compared with
    ``segedu.losses.discriminative.discriminative_terms(...)["pull"]``, values and gradients.
    """
    name = "pull_term"

    def reference(embeddings, instances, delta_v):
        return discriminative_terms(embeddings[None], instances[None], delta_v, 1.5)["pull"][0]

    def run(embeddings, instances, delta_v, case):
        got, grad = _pull_value_and_grad(fn, name, embeddings, instances, delta_v)
        want, want_grad = _pull_value_and_grad(reference, "reference", embeddings, instances, delta_v)
        if not agrees(got, want, rtol=1e-6, atol=1e-9):
            hint = _hint(got, _pull_mistakes(embeddings, instances, delta_v))
            raise AssertionError(f"{name}, {case}: got {float(got):.6f}, expected {float(want):.6f}."
                                 + (hint or " Per instance: its mean embedding mu_c, each pixel's distance to it, "
                                    "the squared hinge, the mean over its pixels; then the mean over instances."))
        compare(grad, want_grad, f"{name}, {case}: the value is right but the gradient", rtol=1e-5, atol=1e-9,
                hint="Keep every step in torch on the embeddings you were given (no .item(), no in-place edits).")

    # Worked example: 1-D embeddings of a 1 x 6 image. Instance 1: pixels at 0 and 2.4 (centre 1.2, each 1.2
    # away: (1.2 - 0.5)^2 = 0.49); instance 2: one pixel at 10 (0); background (0) at 7 and 3, ignored at -40.
    embeddings = torch.tensor([[[0.0, 2.4, 10.0, 7.0, -40.0, 3.0]]], dtype=torch.float64)
    instances = torch.tensor([[1, 1, 2, 0, 255, 0]])
    got, _ = _pull_value_and_grad(fn, name, embeddings, instances, 0.5)
    if not agrees(got, torch.tensor(0.245, dtype=torch.float64), atol=1e-9):
        hint = _hint(got, _pull_mistakes(embeddings, instances, 0.5))
        raise AssertionError(f"{name}, worked example (1-D embeddings [0, 2.4, 10, 7, -40, 3], ids [1, 1, 2, 0, "
                             f"255, 0], delta_v = 0.5): got {float(got):.6f}, expected (0.49 + 0) / 2 = 0.245."
                             + (hint or " Work it out by hand: instance 1 has centre 1.2, instance 2 centre 10."))
    cases = 1
    # No instance: nothing to pull.
    got, _ = _pull_value_and_grad(fn, name, embeddings, torch.tensor([[0, 0, 255, 0, 0, 0]]), 0.5)
    if not agrees(got, torch.tensor(0.0, dtype=torch.float64), atol=1e-12):
        raise AssertionError(f"{name}: an image with background and ignored pixels only has no instance, so its pull "
                             f"term is 0; got {float(got):.6f}.")
    cases += 1
    # Random maps: several instances of different sizes, gaps in the ids, background and ignored pixels.
    gen = torch.Generator().manual_seed(12)
    for dim, (height, width), delta_v in ((2, (6, 7), 0.5), (4, (5, 9), 0.2), (3, (8, 8), 1.0), (1, (4, 6), 0.0)):
        embeddings = torch.randn(dim, height, width, generator=gen, dtype=torch.float64) * 1.5
        instances = torch.tensor([0, 3, 3, 3, 7, 9, 255])[torch.randint(0, 7, (height, width), generator=gen)]
        run(embeddings, instances, delta_v, f"random {height}x{width} map, D={dim}, delta_v={delta_v}")
        cases += 1
    passed(name, cases)
