"""What every exercise check shares: ``rel_error``, reading the student's answer, and one comparison.

A check calls the student's function, makes sure it returned something (``returned``) of the right kind and
shape (``expect_tensor``), then compares it with the package's reference (``compare``). ``compare`` raises an
``AssertionError`` that names the first entry that differs, by how much, and what to look at; ``agrees`` asks
the same question without raising, to recognise a known mistake and name it in the message. ``passed`` prints
the line a check ends with.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["rel_error", "returned", "expect_tensor", "compare", "agrees", "passed"]


def rel_error(x: torch.Tensor, y: torch.Tensor) -> float:
    """Largest relative error ``|x - y| / max(1e-8, |x| + |y|)``, as in CS231n."""
    x, y = torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64)
    return float(((x - y).abs() / (x.abs() + y.abs()).clamp_min(1e-8)).max())


def passed(name: str, cases: int) -> None:
    """Print the line a check ends with: ``"<name>: <cases> cases - PASSED"``."""
    print(f"{name}: {cases} cases - PASSED")


def returned(value: Any, name: str) -> Any:
    """``value``, unless the student's function returned ``None`` (a forgotten ``return``, the usual first bug)."""
    if value is None:
        raise AssertionError(f"{name} returned None: did you forget the `return` statement?")
    return value


def expect_tensor(value: Any, name: str, shape: tuple, what: str) -> torch.Tensor:
    """``value`` if it is a tensor of ``shape``; otherwise say what was expected (``what`` describes it)."""
    returned(value, name)
    if not isinstance(value, torch.Tensor):
        raise AssertionError(f"{name} must return a torch.Tensor ({what}), got {type(value).__name__}")
    if tuple(value.shape) != tuple(shape):
        raise AssertionError(f"{name} returned shape {tuple(value.shape)}, expected {tuple(shape)} ({what})")
    return value


def _index(flat: int, shape: torch.Size) -> tuple[int, ...]:
    """The index ``(i, j, ...)`` of entry ``flat`` of a tensor of ``shape`` (``()`` for a 0-d tensor)."""
    if not shape:
        return ()
    return tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), shape))


def _text(index: tuple[int, ...]) -> str:
    """An index as the student would write it: ``2`` for a vector, ``(0, 1, 3)`` otherwise."""
    return str(index[0]) if len(index) == 1 else str(index)


def compare(got: Any, want: torch.Tensor, what: str, *, atol: float, rtol: float = 0.0, hint: str = "",
            equal_nan: bool = False) -> None:
    """Raise an ``AssertionError`` for the student unless ``got`` matches the reference ``want`` entry by entry.

    ``got`` must be a tensor of ``want``'s shape (any dtype: both are compared in float64 on the CPU) with
    ``|got - want| <= atol + rtol * |want|`` everywhere (``torch.isclose``: float32 sums differ in the last
    digits). A NaN never matches, except with ``equal_nan=True``, where ``got`` must hold NaN exactly where
    ``want`` does (an IoU is undefined, NaN, for a class absent from both the prediction and the target).

    The message starts with ``what`` (the function and the case, e.g. ``"psnr, random images of shape
    (1, 1, 5, 7)"``), then says, in this order: a wrong type or shape; NaN in the wrong places (``equal_nan``);
    NaN or inf where the reference is finite; otherwise the entry at the index with the largest excess over
    the tolerance, its value and the expected one, and the largest error. ``hint`` (what to check) ends it.
    """
    hint = f" {hint}" if hint else ""
    if not isinstance(got, torch.Tensor):
        raise AssertionError(f"{what}: expected a torch.Tensor, got {type(got).__name__}.{hint}")
    if got.shape != want.shape:
        raise AssertionError(f"{what}: you return shape {tuple(got.shape)}, expected {tuple(want.shape)}.{hint}")
    got = got.detach().to(device="cpu", dtype=torch.float64)
    want = want.detach().to(device="cpu", dtype=torch.float64)
    close = torch.isclose(got, want, rtol=rtol, atol=atol, equal_nan=equal_nan)
    if bool(close.all()):
        return
    if equal_nan and not torch.equal(got.isnan(), want.isnan()):
        wrong = torch.nonzero((got.isnan() != want.isnan()).flatten()).flatten().tolist()
        where = ", ".join(_text(_index(k, got.shape)) for k in wrong)
        raise AssertionError(f"{what}: NaN in the wrong places (entries [{where}]).{hint}")
    wild = ~got.isfinite() & want.isfinite()
    if bool(wild.any()):
        where = _index(int(wild.flatten().nonzero()[0]), got.shape)
        raise AssertionError(f"{what}: the result holds NaN or inf (the first at index {_text(where)}).{hint}")
    diff = (got - want).abs()
    inf = float("inf")
    excess = (diff - (atol + rtol * want.abs())).nan_to_num(nan=inf, posinf=inf)  # NaN: as far off as it gets
    where = _index(int(excess.argmax()), got.shape)
    entry = f"the entry at index {_text(where)} is" if where else "you return"
    raise AssertionError(
        f"{what}: {entry} {got[where]:.6g}, expected {want[where]:.6g} "
        f"(largest error {diff.nan_to_num(nan=inf, posinf=inf).max():.2e}).{hint}"
    )


def agrees(got: Any, want: torch.Tensor, *, atol: float = 1e-4, rtol: float = 1e-5) -> bool:
    """Whether ``compare(got, want, ...)`` would pass (a tensor of ``want``'s shape with the same values, NaN
    never equal): the question a check asks to recognise a known mistake and name it."""
    try:
        compare(got, want, "", atol=atol, rtol=rtol)
    except AssertionError:
        return False
    return True
