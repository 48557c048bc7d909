"""Predict, then measure: a question the student answers *before* the cell that measures the answer.

Committing to a guess first is what makes a measurement teach something (the surprise is the lesson). A lesson
asks with ``predict``, measures, then calls ``reveal``::

    guess = predict("How many times more convolutions does the sliding window run?",
                    choices=["about 1x", "about 10x", "about 100x", "about 1000x"])
    ...                                   # cells that measure `ratio`
    guess.reveal(ratio, answer="about 100x")

or, for a number, ``predict("Bilinear's PSNR after 4x down and up?", unit="dB")`` and ``guess.reveal(psnr)``.
The answer is recorded in a widget (a dropdown or a number box) or in code with ``value=...``. ``reveal``
compares and prints the verdict; it never raises, because a wrong prediction is not an error - and in CI, where
nobody answers, it prints the measurement with a note that no prediction was recorded. The widget locks once
revealed, so a guess cannot be changed after the answer is known.
"""

from __future__ import annotations

import math
from typing import Sequence

import ipywidgets as W

from segedu import validate

__all__ = ["Prediction", "predict", "closeness"]

# A numeric guess within this factor of the measurement counts as "close": for orders of magnitude (speed-ups,
# parameter counts) a factor of 2 is a good intuition; for values near 0 the absolute tolerance below applies.
CLOSE_FACTOR = 2.0


class Prediction(W.VBox):
    """A recorded prediction: the question, a control for the answer, and (after ``reveal``) the verdict.

    ``choices``: the options of a multiple-choice question (a dropdown, nothing chosen at first); without
    them the answer is a number (``unit`` is printed after it). ``value``: a prediction written in code
    (one of ``choices``, or a number). ``value`` (property): the prediction so far, ``None`` when none.
    """

    def __init__(self, question: str, *, choices: Sequence[str] | None = None, unit: str = "", value=None):
        if not isinstance(question, str) or not question.strip():
            raise ValueError(f"question must be a non-empty string, got {question!r}")
        if not isinstance(unit, str):
            raise TypeError(f"unit must be a str, got {type(unit).__name__}")
        self.question, self.unit = question, unit
        self.choices = None if choices is None else [str(c) for c in choices]
        if self.choices is not None and len(set(self.choices)) < 2:
            raise ValueError(f"choices must hold at least two different options, got {list(choices)}")
        if self.choices is not None:
            if value is not None and value not in self.choices:
                raise ValueError(f"value must be one of choices {self.choices}, got {value!r}")
            self.control = W.Dropdown(options=[("(choose)", None)] + [(c, c) for c in self.choices], value=value,
                                      description="Your prediction:", style={"description_width": "initial"})
        else:
            if value is not None:
                value = validate.number(value, "value")
            # A Text box, not a FloatText: FloatText shows 0.0 before anyone answers, and 0 is a real guess.
            self.control = W.Text(value="" if value is None else repr(value), placeholder="a number",
                                  description=f"Your prediction{f' ({unit})' if unit else ''}:",
                                  style={"description_width": "initial"})
        self.verdict = W.HTML("")
        self.revealed = None  # the text reveal() printed
        super().__init__([W.HTML(f"<b>Predict:</b> {question}"), self.control, self.verdict])

    @property
    def value(self):
        """The prediction: one of ``choices``, a float, or ``None`` when nothing (readable) was recorded."""
        raw = self.control.value
        if self.choices is not None:
            return raw
        try:
            number = float(str(raw).strip())
        except ValueError:
            return None
        return number if math.isfinite(number) else None

    def judge(self, measured, answer: str | None = None) -> str:
        """The verdict for a measurement, as text (``reveal`` prints it): the prediction against ``measured``
        (a number or text) and, for a multiple-choice question, against ``answer`` (the right choice)."""
        if self.choices is not None:
            if answer not in self.choices:
                raise ValueError(f"answer must be one of choices {self.choices}, got {answer!r}")
        shown = f"{measured:.4g}" if isinstance(measured, float) else str(measured)
        shown = f"{shown} {self.unit}".strip()
        guess = self.value
        if guess is None:
            tail = f" (the answer: {answer})" if answer is not None else ""
            return f"Measured: {shown}{tail}. No prediction was recorded - next time, commit to a guess first."
        if self.choices is not None:
            if guess == answer:
                return f"You predicted {guess!r}; measured {shown}: right."
            return f"You predicted {guess!r}; measured {shown}, so the answer is {answer!r}. What did you miss?"
        measured = validate.number(measured, "measured")
        return f"You predicted {guess:.4g}; measured {shown}: {closeness(guess, measured)}."

    def reveal(self, measured, answer: str | None = None) -> None:
        """Print the verdict (see ``judge``; kept in ``self.revealed``) and lock the control. Never raises on a
        wrong guess: predictions are for learning, not for grading. Returns ``None``, so that a cell ending in
        ``reveal(...)`` shows the verdict once."""
        text = self.judge(measured, answer)
        self.control.disabled = True
        self.verdict.value = f"<i>{text}</i>"
        self.revealed = text
        print(text)


def closeness(guess: float, measured: float) -> str:
    """How far a numeric guess is from a measurement, in words: the ratio for same-sign values, else the
    difference (``CLOSE_FACTOR`` decides "close")."""
    if guess == measured:
        return "exactly right"
    if guess * measured > 0:
        ratio = max(guess / measured, measured / guess)
        direction = "high" if abs(guess) > abs(measured) else "low"
        verdict = "close" if ratio <= CLOSE_FACTOR else "off"
        return f"{verdict} - {ratio:.3g}x too {direction}"
    return f"off by {guess - measured:+.4g} (the sign or zero was the surprise)"


def predict(question: str, *, choices: Sequence[str] | None = None, unit: str = "", value=None) -> Prediction:
    """Ask for a prediction before a measurement; see ``Prediction``. Put it last in a cell to show it."""
    return Prediction(question, choices=choices, unit=unit, value=value)
