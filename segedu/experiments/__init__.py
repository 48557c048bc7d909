"""The lessons' comparisons of trained models, as functions: ``segedu.experiments.lessonNN``.

When a lesson claims that one trained model beats another ("U-Net beats FCN-8s on boundary F1"), the training
and scoring live here, in one function per claim that takes a ``seed``: the lesson calls it, and
``bench/seeds.py`` calls it over several seeds to measure how much the claim's margin moves with the seed
(``bench/results/seeds.json``). Each module lists its claims in ``COMPARISONS`` (``common.Comparison``).
"""

__all__ = []
