"""segedu.widgets.predict: the predict-then-measure question every lesson asks."""

import pytest

from segedu.widgets import Prediction, closeness, predict


def test_choice_prediction_right_and_wrong(capsys):
    question = predict("How much more work?", choices=["1x", "10x", "100x"])
    assert isinstance(question, Prediction) and question.value is None
    question.control.value = "10x"                       # what a student does in the dropdown
    assert question.value == "10x"
    assert question.reveal(97.0, answer="100x") is None
    text = question.revealed
    assert "You predicted '10x'" in text and "'100x'" in text and "right" not in text
    assert question.control.disabled, "a revealed prediction must be locked"
    assert text in capsys.readouterr().out
    right = predict("Q?", choices=["a", "b"], value="b")
    right.reveal("b", answer="b")
    assert right.revealed.endswith("right.")


def test_numeric_prediction_and_no_prediction():
    question = predict("PSNR?", unit="dB")
    assert question.value is None                        # an empty box is no prediction, not 0
    question.reveal(31.2)
    assert "No prediction was recorded" in question.revealed
    question = predict("PSNR?", unit="dB", value=30)
    assert question.value == 30.0
    question.reveal(31.2)
    text = question.revealed
    assert "close" in text and "dB" in text
    question.control.value = "not a number"
    assert question.value is None


def test_closeness_words():
    assert closeness(100, 100) == "exactly right"
    assert closeness(10, 100).startswith("off - 10x too low")
    assert closeness(150, 100).startswith("close - 1.5x too high")
    assert "sign" in closeness(-1, 2)


@pytest.mark.parametrize(
    "kwargs, error",
    [
        (dict(question=""), ValueError),
        (dict(question="Q?", choices=["a"]), ValueError),
        (dict(question="Q?", choices=["a", "b"], value="c"), ValueError),
        (dict(question="Q?", value="ten"), TypeError),
        (dict(question="Q?", unit=3), TypeError),
    ],
)
def test_bad_arguments(kwargs, error):
    with pytest.raises(error):
        predict(**kwargs)


def test_reveal_needs_a_valid_answer_for_choices():
    question = predict("Q?", choices=["a", "b"], value="a")
    with pytest.raises(ValueError, match="answer"):
        question.reveal(1.0, answer="c")
