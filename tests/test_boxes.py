"""The box encoding by hand (segedu.ops.boxes.encode_boxes / decode_boxes, lesson 09) against torchvision's
BoxCoder, and the anchors the lesson draws (segedu.models.maskrcnn.anchors_by_level) against AnchorGenerator."""

import math

import pytest
import torch
from torchvision.models.detection._utils import BoxCoder

from segedu.models import maskrcnn
from segedu.ops import boxes as box_ops

WEIGHTS = [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0), (2.0, 0.5, 3.0, 1.5)]


def _boxes(n: int, gen: torch.Generator, dtype=torch.float64) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=gen, dtype=dtype) * 100 - 20
    return torch.cat([xy, xy + 0.5 + torch.rand(n, 2, generator=gen, dtype=dtype) * 60], 1)


@pytest.mark.parametrize("weights", WEIGHTS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_encode_and_decode_equal_torchvision(weights, dtype):
    gen = torch.Generator().manual_seed(0)
    reference, proposals = _boxes(200, gen, dtype), _boxes(200, gen, dtype)
    coder = BoxCoder(weights)
    ours = box_ops.encode_boxes(reference, proposals, weights)
    assert ours.dtype == dtype
    torch.testing.assert_close(ours, coder.encode_single(reference, proposals), rtol=0, atol=0)
    deltas = torch.randn(200, 12, generator=gen, dtype=dtype) * 2  # three classes' boxes per row
    torch.testing.assert_close(box_ops.decode_boxes(deltas, proposals, weights), coder.decode_single(deltas, proposals),
                               rtol=0, atol=0)


def test_the_worked_example_and_the_round_trip():
    anchor, target = torch.tensor([[0.0, 0, 10, 20]]), torch.tensor([[2.0, 4, 22, 24]])
    deltas = box_ops.encode_boxes(target, anchor)
    torch.testing.assert_close(deltas, torch.tensor([[0.7, 0.2, math.log(2), 0.0]]))
    gen = torch.Generator().manual_seed(1)
    for weights in WEIGHTS:
        reference, proposals = _boxes(50, gen), _boxes(50, gen)
        back = box_ops.decode_boxes(box_ops.encode_boxes(reference, proposals, weights), proposals, weights)
        torch.testing.assert_close(back, reference, rtol=0, atol=1e-9)


def test_decode_clamps_the_size_change_as_torchvision():
    boxes = torch.tensor([[0.0, 0, 16, 16]])
    wild = torch.tensor([[0.0, 0.0, 50.0, -50.0]])  # exp(50) would be 5e21
    decoded = box_ops.decode_boxes(wild, boxes)
    assert decoded[0, 2] - decoded[0, 0] == pytest.approx(1000.0)  # 16 * exp(log(1000 / 16))
    assert torch.isfinite(decoded).all()
    assert box_ops.BBOX_XFORM_CLIP == BoxCoder((1.0, 1.0, 1.0, 1.0)).bbox_xform_clip


def test_encoding_follows_the_box_not_the_scale():
    # Same relative error at two scales -> same deltas (the point of dividing by the proposal's size).
    small = box_ops.encode_boxes(torch.tensor([[1.0, 1, 11, 11]]), torch.tensor([[0.0, 0, 10, 10]]))
    large = box_ops.encode_boxes(torch.tensor([[10.0, 10, 110, 110]]), torch.tensor([[0.0, 0, 100, 100]]))
    torch.testing.assert_close(small, large)


def test_errors_name_the_argument():
    good = torch.tensor([[0.0, 0, 4, 4]])
    with pytest.raises(ValueError, match="reference and proposals"):
        box_ops.encode_boxes(good, good.repeat(2, 1))
    with pytest.raises(TypeError, match="reference"):
        box_ops.encode_boxes([0, 0, 4, 4], good)
    with pytest.raises(TypeError, match="weights"):
        box_ops.encode_boxes(good, good, weights=(1.0, 1.0))
    with pytest.raises(ValueError, match=r"weights\[2\]"):
        box_ops.encode_boxes(good, good, weights=(1.0, 1.0, -1.0, 1.0))
    with pytest.raises(ValueError, match="deltas"):
        box_ops.decode_boxes(torch.zeros(1, 5), good)
    with pytest.raises(TypeError, match="deltas"):
        box_ops.decode_boxes(torch.zeros(1, 4, dtype=torch.long), good)


def test_anchors_by_level_is_torchvisions_anchor_generator():
    torch.manual_seed(0)
    model = maskrcnn.mask_rcnn(6, image_size=64, width=4).eval()
    image = torch.rand(3, 64, 64)
    levels = maskrcnn.anchors_by_level(model, image)
    assert list(levels) == ["0", "1", "2", "pool"]
    with torch.no_grad():
        batch, _ = model.transform([image])
        features = list(model.backbone(batch.tensors).values())
        theirs = model.rpn.anchor_generator(batch, features)[0]
    torch.testing.assert_close(torch.cat([a.reshape(-1, 4) for a in levels.values()]), theirs)
    # The layout the lesson draws: anchor [i, j, a] centred on cell (i, j), one size per level, 3 ratios.
    for (name, anchors), size in zip(levels.items(), (8, 16, 32, 64)):
        h, w, a, _ = anchors.shape
        stride = 64 // h
        centres = (anchors[..., :2] + anchors[..., 2:]) / 2
        torch.testing.assert_close(centres[3 % h, 1 % w, 0], torch.tensor([1 % w * stride, 3 % h * stride]).float())
        sides = anchors[..., 2:] - anchors[..., :2]
        torch.testing.assert_close((sides[..., 0] * sides[..., 1]).sqrt(), torch.full((h, w, a), float(size)),
                                   atol=1.0, rtol=0)  # torchvision rounds the anchor corners to whole pixels
        ratios = sides[0, 0, :, 1] / sides[0, 0, :, 0]
        assert ratios[0] < 1 and ratios[1] == 1 and ratios[2] > 1  # aspect ratios h / w = 0.5, 1, 2
