"""What every lesson's comparison registry holds: ``Comparison``."""

from __future__ import annotations

from typing import Callable, NamedTuple

__all__ = ["Comparison"]


class Comparison(NamedTuple):
    """A lesson's claim that one trained model beats another.

    ``function(seed=..., profile=...)`` trains and scores, returning ``{metric name: value}``; the claim is
    ``result[better] - result[worse] > margin``, the margin the lesson asserts. ``bench/seeds.py`` runs the
    function over several seeds and records the mean and the spread of ``better - worse``.
    """

    function: Callable
    better: str
    worse: str
    margin: float
