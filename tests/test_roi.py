"""segedu.ops.roi against torchvision.ops: RoIAlign, RoIPool, box IoU and NMS (lesson 09)."""

import itertools

import pytest
import torch
import torchvision.ops as tvo

from segedu import runtime
from segedu.ops import roi


def _rois(k: int, scale: float, gen: torch.Generator, batch: int = 2) -> torch.Tensor:
    """``[k, 5]`` float64 RoIs in image coordinates (feature map ~ 11 x 13 cells at ``scale``): random boxes
    plus the awkward ones - empty, sub-cell, inverted, far outside, partly outside, larger than the map,
    and on exact half-cell edges (where rounding and clamping decide)."""
    s = 1 / scale
    xy = (torch.rand(k, 2, generator=gen, dtype=torch.float64) * 20 - 4) * s
    wh = torch.rand(k, 2, generator=gen, dtype=torch.float64) * 12 * s
    boxes = torch.cat([xy, xy + wh], 1)
    special = torch.tensor(
        [
            [3.3, 3.3, 3.3, 3.3],  # zero size
            [5.2, 4.1, 5.7, 4.4],  # smaller than a cell
            [8.0, 6.0, 4.0, 2.0],  # inverted (x2 < x1)
            [-30.0, -30.0, -20.0, -20.0],  # far outside
            [-0.9, -0.6, 2.5, 3.5],  # just outside at the top-left, half-cell edges
            [10.5, 9.5, 14.0, 12.7],  # over the bottom-right border
            [-2.0, -3.0, 40.0, 30.0],  # larger than the map
            [0.0, 0.0, 12.99, 10.99],  # the whole map
        ],
        dtype=torch.float64,
    ) * s
    boxes[: len(special)] = special
    index = torch.randint(0, batch, (k, 1), generator=gen).to(torch.float64)
    return torch.cat([index, boxes], 1)


GRID = list(itertools.product([False, True], [-1, 0, 1, 2], [1.0, 0.5, 1 / 16]))


@pytest.mark.parametrize("aligned, sampling_ratio, spatial_scale", GRID)
def test_roi_align_equals_torchvision(aligned, sampling_ratio, spatial_scale):
    gen = torch.Generator().manual_seed(int(1000 * spatial_scale) + 7 * sampling_ratio + aligned)
    x = torch.randn(2, 3, 11, 13, generator=gen, dtype=torch.float64)
    rois = _rois(40, spatial_scale, gen)
    for size in [(5, 4), 3, (1, 1)]:
        ours = roi.roi_align(x, rois, size, spatial_scale, sampling_ratio, aligned)
        ref = tvo.roi_align(x, rois, size, spatial_scale, sampling_ratio, aligned)
        assert ours.shape == ref.shape
        torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)
    # The special boxes really exercise the edge cases: some outputs are exactly 0 (empty or far-out boxes).
    assert (ours[:4] == 0).any() and (ours != 0).any()


@pytest.mark.parametrize("spatial_scale", [1.0, 0.5, 1 / 16])
def test_roi_pool_equals_torchvision(spatial_scale):
    gen = torch.Generator().manual_seed(int(100 * spatial_scale))
    x = torch.randn(2, 3, 11, 13, generator=gen, dtype=torch.float64)
    rois = _rois(40, spatial_scale, gen)
    for size in [(5, 4), 3, (2, 7)]:
        ours = roi.roi_pool(x, rois, size, spatial_scale)
        ref = tvo.roi_pool(x, rois, size, spatial_scale)
        torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)
    assert (ours == 0).all(dim=(1, 2, 3)).any(), "the far-outside box must give empty (zero) bins"


def test_roi_pool_rounds_halves_away_from_zero():
    # x1 * scale = 2.5 -> C's round gives 3 (torch.round would give 2): the crop starts one cell later.
    x = torch.arange(1 * 1 * 1 * 8, dtype=torch.float64).view(1, 1, 1, 8)
    rois = torch.tensor([[0, 2.5, 0, 5.5, 0]], dtype=torch.float64)
    out = roi.roi_pool(x, rois, (1, 4))
    assert out.flatten().tolist() == tvo.roi_pool(x, rois, (1, 4)).flatten().tolist() == [3.0, 4.0, 5.0, 6.0]


def test_box_formats_agree():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(3, 2, 9, 9, generator=gen, dtype=torch.float64)
    boxes = [torch.tensor([[1.0, 1.0, 6.0, 5.0]], dtype=torch.float64),
             torch.zeros(0, 4, dtype=torch.float64),
             torch.tensor([[0.5, 2.0, 8.0, 8.5], [2.0, 2.0, 3.0, 3.0]], dtype=torch.float64)]
    rois = torch.tensor([[0, 1.0, 1.0, 6.0, 5.0], [2, 0.5, 2.0, 8.0, 8.5], [2, 2.0, 2.0, 3.0, 3.0]], dtype=torch.float64)
    for fn in (lambda b: roi.roi_align(x, b, 3, aligned=True), lambda b: roi.roi_pool(x, b, 3)):
        torch.testing.assert_close(fn(boxes), fn(rois), atol=0, rtol=0)
    torch.testing.assert_close(roi.roi_align(x, boxes, 3), tvo.roi_align(x, boxes, 3), atol=1e-12, rtol=0)
    assert roi.roi_align(x, [], 3).shape == (0, 2, 3, 3)


@pytest.mark.parametrize("aligned", [False, True])
def test_roi_align_gradcheck(aligned):
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 2, 6, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0, 0.3, 0.7, 4.9, 5.2], [1, -0.8, 1.1, 3.3, 6.6], [1, 2.2, 2.2, 2.6, 3.1]],
                        dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: roi.roi_align(t, rois, (3, 2), 1.0, -1, aligned), (x,))
    # ... and the gradient is torchvision's.
    weight = torch.randn(3, 2, 3, 2, generator=gen, dtype=torch.float64)
    ours, = torch.autograd.grad((roi.roi_align(x, rois, (3, 2), 1.0, 2, aligned) * weight).sum(), x)
    ref, = torch.autograd.grad((tvo.roi_align(x, rois, (3, 2), 1.0, 2, aligned) * weight).sum(), x)
    torch.testing.assert_close(ours, ref, atol=1e-10, rtol=0)


def test_roi_pool_gradient_equals_torchvision():
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(1, 2, 8, 8, generator=gen, dtype=torch.float64, requires_grad=True)  # no ties
    rois = torch.tensor([[0, 0.0, 0.0, 7.0, 7.0], [0, 2.4, 1.6, 5.5, 6.5]], dtype=torch.float64)
    weight = torch.randn(2, 2, 3, 3, generator=gen, dtype=torch.float64)
    ours, = torch.autograd.grad((roi.roi_pool(x, rois, 3) * weight).sum(), x)
    ref, = torch.autograd.grad((tvo.roi_pool(x, rois, 3) * weight).sum(), x)
    torch.testing.assert_close(ours, ref, atol=1e-12, rtol=0)


def test_ops_on_the_default_device_in_float32():
    """On CUDA (or MPS) this compares with torchvision's GPU kernels; on a CPU-only machine with its CPU ones."""
    device = runtime.device()
    gen = torch.Generator().manual_seed(8)
    x = torch.randn(2, 4, 16, 16, generator=gen).to(device)
    rois = _rois(30, 0.5, gen).float().to(device)
    for aligned in (False, True):
        torch.testing.assert_close(roi.roi_align(x, rois, 7, 0.5, 2, aligned),
                                   tvo.roi_align(x, rois, 7, 0.5, 2, aligned), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(roi.roi_pool(x, rois, 7, 0.5), tvo.roi_pool(x, rois, 7, 0.5), atol=1e-6, rtol=0)
    boxes = rois[:, 1:].clone()
    boxes[:, 2:] = torch.maximum(boxes[:, 2:], boxes[:, :2])
    scores = torch.rand(30, generator=gen).to(device)
    assert torch.equal(roi.nms(boxes, scores, 0.3), tvo.nms(boxes, scores, 0.3))


def _random_boxes(n, gen, ties=False):
    xy = torch.rand(n, 2, generator=gen) * 50
    boxes = torch.cat([xy, xy + torch.rand(n, 2, generator=gen) * 25], 1)
    scores = torch.rand(n, generator=gen)
    if ties:
        scores = (scores * 4).round() / 4  # many equal scores: order by index, as torchvision
    return boxes, scores


@pytest.mark.parametrize("n", [0, 1, 2, 30, 400])
@pytest.mark.parametrize("ties", [False, True])
def test_nms_keeps_torchvisions_indices(n, ties):
    gen = torch.Generator().manual_seed(n + ties)
    boxes, scores = _random_boxes(n, gen, ties)
    if n >= 30:
        boxes[1] = boxes[0]  # identical boxes: IoU exactly 1
        boxes[3] = torch.tensor([0.0, 0.0, 0.0, 5.0])  # zero area: IoU 0/0 = NaN never suppresses
        boxes[4] = boxes[3]
    for threshold in (0.0, 0.3, 0.5, 0.7, 1.0):
        keep = roi.nms(boxes, scores, threshold)
        assert keep.dtype == torch.int64
        assert torch.equal(keep, tvo.nms(boxes, scores, threshold)), threshold
    labels = torch.randint(0, 3, (n,), generator=gen)
    assert torch.equal(roi.batched_nms(boxes, scores, labels, 0.5), tvo.batched_nms(boxes, scores, labels, 0.5))


def test_nms_is_greedy_not_fast_nms():
    # A chain: A suppresses B, B would suppress C, but B is gone, so C stays (Fast NMS would drop it).
    boxes = torch.tensor([[0.0, 0, 10, 10], [3.0, 0, 13, 10], [6.0, 0, 16, 10]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    iou = roi.box_iou(boxes, boxes)
    assert iou[0, 1] > 0.5 and iou[1, 2] > 0.5 and iou[0, 2] < 0.5
    assert roi.nms(boxes, scores, 0.5).tolist() == [0, 2] == tvo.nms(boxes, scores, 0.5).tolist()


def test_box_iou_equals_torchvision():
    gen = torch.Generator().manual_seed(9)
    a, _ = _random_boxes(17, gen)
    b, _ = _random_boxes(5, gen)
    torch.testing.assert_close(roi.box_iou(a, b), tvo.box_iou(a, b))
    assert roi.box_iou(torch.tensor([[0, 0, 2, 2]]), torch.tensor([[1, 1, 3, 3]])).item() == pytest.approx(1 / 7)
    assert roi.box_iou(a, b[:0]).shape == (17, 0)


def test_bad_arguments_are_named():
    x = torch.randn(2, 3, 8, 8)
    rois = torch.tensor([[0, 1.0, 1, 4, 4]])
    with pytest.raises(ValueError, match="input must be 4-D"):
        roi.roi_align(x[0], rois, 2)
    with pytest.raises(ValueError, match=r"boxes must be a Tensor\[K, 5\]"):
        roi.roi_align(x, rois[:, 1:], 2)
    with pytest.raises(ValueError, match=r"boxes\[1\] must be a Tensor\[L, 4\]"):
        roi.roi_pool(x, [rois[:, 1:], rois], 2)
    with pytest.raises(ValueError, match=r"image indices in \[0, 2\)"):
        roi.roi_align(x, torch.tensor([[2, 1.0, 1, 4, 4]]), 2)
    with pytest.raises(TypeError, match="output_size"):
        roi.roi_pool(x, rois, 2.5)
    with pytest.raises(ValueError, match="spatial_scale"):
        roi.roi_align(x, rois, 2, spatial_scale=0)
    with pytest.raises(TypeError, match="sampling_ratio"):
        roi.roi_align(x, rois, 2, sampling_ratio=1.5)
    with pytest.raises(ValueError, match=r"scores must be a tensor \[N\] with N = 1"):
        roi.nms(rois[:, 1:], torch.ones(2), 0.5)
    with pytest.raises(ValueError, match=r"boxes2 must be \[N, 4\]"):
        roi.box_iou(rois[:, 1:], rois)
