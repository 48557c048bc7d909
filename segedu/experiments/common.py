"""What the lessons' experiment modules share: ``Comparison`` (what every comparison registry holds) and
``resolve_profile`` (the ``profile`` argument every experiment function takes)."""

from __future__ import annotations

from typing import Callable, NamedTuple

from segedu import runtime

__all__ = ["Comparison", "resolve_profile"]


def resolve_profile(profile) -> runtime.Profile:
    """``None`` (``runtime.profile()``), a profile name or a ``Profile`` -> a ``Profile``."""
    if profile is None or isinstance(profile, str):
        return runtime.profile(profile)
    if isinstance(profile, runtime.Profile):
        return profile
    raise TypeError(f"profile must be None, a profile name or a segedu.runtime.Profile, got {type(profile).__name__}")


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
