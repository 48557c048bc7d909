"""segedu.validate: the one error rule (wrong type -> TypeError, wrong value -> ValueError)."""

import math

import numpy as np
import pytest
import torch

from segedu import validate


@pytest.mark.parametrize("good", [3, np.int64(3), torch.tensor(3)])
def test_integer_accepts_python_numpy_and_0d_tensor_ints(good):
    out = validate.integer(good, "n", minimum=1)
    assert out == 3 and type(out) is int


@pytest.mark.parametrize("bad", [True, False, 2.5, 2.0, "3", None, [3], torch.tensor(2.5)])
def test_integer_wrong_type_is_type_error_naming_argument_and_value(bad):
    with pytest.raises(TypeError, match=r"num_classes must be an int.*got"):
        validate.integer(bad, "num_classes")


@pytest.mark.parametrize("bad", [-1, 0])
def test_positive_int_wrong_value_is_value_error(bad):
    with pytest.raises(ValueError, match=rf"width must be an int >= 1, got {bad}$"):
        validate.positive_int(bad, "width")


def test_integer_maximum():
    assert validate.integer(5, "k", 0, 5) == 5
    with pytest.raises(ValueError, match=r"k must be an int in \[0, 5\], got 6"):
        validate.integer(6, "k", 0, 5)


def test_pair():
    assert validate.pair(4, "size", 1) == (4, 4)
    assert validate.pair((2, 3), "size", 1) == (2, 3)
    assert validate.pair(torch.Size([2, 3]), "size", 1) == (2, 3)
    with pytest.raises(ValueError, match="size must be an int or a pair"):
        validate.pair((1, 2, 3), "size")
    with pytest.raises(TypeError, match="size must be an int"):
        validate.pair((1, 2.5), "size")
    with pytest.raises(ValueError, match="size must be an int >= 1, got 0"):
        validate.pair((0, 2), "size", 1)


def test_number():
    assert validate.number(3, "lr") == 3.0 and type(validate.number(3, "lr")) is float
    assert validate.number(np.float32(0.5), "p", 0, 1) == 0.5
    for bad in (True, "0.1", None, torch.tensor([0.1])):
        with pytest.raises(TypeError, match="lr must be a real number"):
            validate.number(bad, "lr")
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match="lr must be a finite number"):
            validate.number(bad, "lr")
    with pytest.raises(ValueError, match=r"p must be a finite number in \[0, 1\], got 1.5"):
        validate.probability(1.5, "p")
    with pytest.raises(ValueError, match=r"lr must be a finite number > 0, got 0.0"):
        validate.positive_number(0, "lr")
    assert validate.number(0, "x", minimum=0) == 0.0


def test_flag_and_choice():
    assert validate.flag(True, "amp") is True
    with pytest.raises(TypeError, match="amp must be True or False, got int 1"):
        validate.flag(1, "amp")
    assert validate.choice("mean", "reduction", ["mean", "sum"]) == "mean"
    with pytest.raises(ValueError, match=r"reduction must be one of \['mean', 'sum'\], got 'avg'"):
        validate.choice("avg", "reduction", ["mean", "sum"])
    with pytest.raises(TypeError, match=r"reduction must be one of \['mean', 'sum'\], got int 1"):
        validate.choice(1, "reduction", ["mean", "sum"])
    # mixed choices: "auto" or a bool; 1 == True but is not a bool
    assert validate.choice(True, "amp", ["auto", True, False]) is True
    with pytest.raises(TypeError):
        validate.choice(1, "amp", ["auto", True, False])
    with pytest.raises(ValueError):
        validate.choice("on", "amp", ["auto", True, False])


def test_ignore_index():
    assert validate.ignore_index(None) is None
    assert validate.ignore_index(255) == 255
    for bad in (True, 2.5, "255"):
        with pytest.raises(TypeError, match="ignore_index must be an int"):
            validate.ignore_index(bad)


def test_tensor_rank_and_dtype():
    x = torch.zeros(2, 3, 4, 5)
    assert validate.images(x) is x
    assert validate.images(x, channels=3) is x
    with pytest.raises(TypeError, match=r"x must be a torch.Tensor \[B, C, H, W\], got list"):
        validate.images([1, 2])
    with pytest.raises(ValueError, match=r"x must be 4-D \[B, C, H, W\], got shape \(3, 4, 5\)"):
        validate.images(x[0])
    with pytest.raises(TypeError, match="x must be a floating-point tensor .*got dtype torch.int64"):
        validate.images(x.long())
    with pytest.raises(ValueError, match=r"x must have 1 channels"):
        validate.images(x, channels=1)
    y = torch.zeros(2, 4, 5, dtype=torch.long)
    assert validate.label_map(y) is y
    with pytest.raises(TypeError, match="target must be an integer tensor"):
        validate.label_map(y.float())
    with pytest.raises(TypeError, match="target must be an integer tensor"):
        validate.label_map(y.bool())
    with pytest.raises(ValueError, match="must be 2-D or 3-D"):
        validate.tensor(y[0, 0], "target", {2, 3})
    with pytest.raises(TypeError, match="torch.uint8 or torch.float32"):
        validate.tensor(y, "image", dtype=[torch.uint8, torch.float32])


def test_torch_device():
    assert validate.torch_device("cpu") == torch.device("cpu")
    with pytest.raises(TypeError, match="device must be a str or torch.device, got int 0"):
        validate.torch_device(0)
    with pytest.raises(ValueError, match="device must name a torch device.*'bogus'"):
        validate.torch_device("bogus")
