"""segedu.ops.roi against torchvision.ops: RoIAlign, RoIPool, box IoU and NMS (lesson 09), including half
precision, autocast, non-finite and huge boxes, and the memory nms and roi_align hold."""

import itertools

import pytest
import torch
import torchvision.ops as tvo

from segedu import runtime
from segedu.ops import boxes as box_ops
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


def test_boxes_module_is_reexported_by_roi():
    assert roi.box_iou is box_ops.box_iou and roi.nms is box_ops.nms and roi.batched_nms is box_ops.batched_nms


# --------------------------------------------------------------------------- half precision


def _large_boxes(n, gen, dtype):
    """``[n, 4]`` boxes of 200 to 1000 px in a 2000 px image, rounded to ``dtype`` (float16 holds integers
    up to 2048 exactly; bfloat16 rounds them to 8 significant bits)."""
    xy = torch.rand(n, 2, generator=gen) * 1000
    boxes = torch.cat([xy, xy + 200 + torch.rand(n, 2, generator=gen) * 800], 1).round()
    return boxes.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_box_iou_in_half_precision_is_torchvisions(dtype):
    # Areas of boxes above ~256 x 256 px overflow float16 (65504): the old version returned NaN here.
    gen = torch.Generator().manual_seed(11)
    a, b = _large_boxes(20, gen, dtype), _large_boxes(7, gen, dtype)
    ours = roi.box_iou(a, b)
    assert ours.dtype == tvo.box_iou(a, b).dtype == torch.float32  # torchvision returns float32 for half boxes
    assert torch.isfinite(ours).all() and (ours > 0).any()
    torch.testing.assert_close(ours, tvo.box_iou(a.float(), b.float()))  # the same values in float32
    torch.testing.assert_close(ours, tvo.box_iou(a, b), atol=1e-2, rtol=0)  # torchvision subtracts in `dtype`
    three = torch.tensor([[0.0, 0, 300, 300], [10, 10, 310, 310]], dtype=dtype)
    assert roi.box_iou(three, three)[0, 1].item() == pytest.approx(290**2 / (2 * 300**2 - 290**2))


def _per_class_nms(boxes, scores, labels, threshold):
    """torchvision.ops.nms class by class, merged by decreasing score (ties: lower index first)."""
    kept = torch.cat([torch.nonzero(labels == c).squeeze(1)[tvo.nms(boxes[labels == c], scores[labels == c], threshold)]
                      for c in labels.unique()]).sort().values
    return kept[torch.sort(scores[kept], descending=True, stable=True).indices]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_nms_in_half_precision_keeps_the_float32_boxes(dtype):
    # The case: three large overlapping boxes. float32 keeps [1]; the old float16 version kept [1, 0, 2]
    # because every area was inf and every IoU 0.
    boxes = torch.tensor([[0.0, 0, 400, 400], [10, 10, 410, 410], [20, 20, 420, 420]])
    scores = torch.tensor([0.8, 0.9, 0.7])
    assert roi.nms(boxes.to(dtype), scores.to(dtype), 0.5).tolist() == [1] == tvo.nms(boxes, scores, 0.5).tolist()
    gen = torch.Generator().manual_seed(12)
    boxes = _large_boxes(300, gen, dtype)
    scores = torch.rand(300, generator=gen).to(dtype)
    labels = torch.randint(0, 50, (300,), generator=gen)
    for threshold in (0.3, 0.5, 0.7):
        want = tvo.nms(boxes.float(), scores.float(), threshold)
        assert torch.equal(roi.nms(boxes, scores, threshold), want)
        assert torch.equal(roi.nms(boxes.float(), scores.float(), threshold), want)
        # 50 classes x 2000 px: torchvision's coordinate trick would shift float16 boxes past 65504.
        assert torch.equal(roi.batched_nms(boxes, scores, labels, threshold),
                           _per_class_nms(boxes.float(), scores.float(), labels, threshold))


@pytest.mark.parametrize("device_type, dtype", [("cpu", torch.bfloat16), ("cuda", torch.float16)])
def test_roi_align_under_autocast_is_as_accurate_as_torchvision(device_type, dtype):
    """Features from a layer under autocast are half precision; the boxes stay float32. Near y = 700 a float16
    coordinate steps by 0.5 cell and a bfloat16 one by 4 cells, so coordinates must not be cast to the
    features' dtype (the old version had 0.018 error here on smooth features, torchvision 0.00024)."""
    if device_type == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    gen = torch.Generator().manual_seed(13)
    x = torch.randn(2, 4, 760, 40, generator=gen).to(device_type)
    y = 690 + torch.rand(30, 1, generator=gen) * 30
    boxes = torch.cat([torch.randint(0, 2, (30, 1), generator=gen).float(), torch.rand(30, 1, generator=gen) * 20, y,
                       20 + torch.rand(30, 1, generator=gen) * 20, y + 2 + torch.rand(30, 1, generator=gen) * 20], 1)
    boxes = boxes.to(device_type)
    conv = torch.nn.Conv2d(4, 4, 1).to(device_type)
    for aligned, ratio in ((True, 2), (False, -1)):
        with torch.autocast(device_type, dtype=dtype):
            features = conv(x)
            ours = roi.roi_align(features, boxes, 7, 1.0, ratio, aligned)
            ref = tvo.roi_align(features, boxes, 7, 1.0, ratio, aligned)
        assert features.dtype == ours.dtype == ref.dtype == dtype
        exact = tvo.roi_align(features.double(), boxes.double(), 7, 1.0, ratio, aligned)
        ours_error = (ours.double() - exact).abs().max().item()
        ref_error = (ref.double() - exact).abs().max().item()
        assert ours_error <= 2 * ref_error, (ours_error, ref_error)  # both: the output's rounding to `dtype`
        torch.testing.assert_close(ours.float(), ref.float(), atol=1e-3, rtol=2**-7)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_roi_align_on_half_inputs_computes_in_float32(dtype):
    # float16 or bfloat16 features and boxes given directly: the result is torchvision's float32 result (what
    # its autocast wrapper computes) rounded to `dtype`. torchvision's own float16 CPU kernel computes the
    # coordinates in float16 and is off by whole values here; it has no bfloat16 CPU kernel.
    gen = torch.Generator().manual_seed(14)
    x = torch.randn(1, 3, 760, 30, generator=gen).to(dtype)
    y = 690 + torch.rand(20, 1, generator=gen) * 30
    boxes = torch.cat([torch.zeros(20, 1), torch.rand(20, 1, generator=gen) * 10, y,
                       12 + torch.rand(20, 1, generator=gen) * 10, y + 3 + torch.rand(20, 1, generator=gen) * 10], 1)
    boxes = boxes.to(dtype)
    ours = roi.roi_align(x, boxes, (5, 4), 1.0, -1, True)
    want = tvo.roi_align(x.float(), boxes.float(), (5, 4), 1.0, -1, True)
    assert ours.dtype == dtype
    torch.testing.assert_close(ours.float(), want, atol=1e-3, rtol=2**-7)
    pooled = roi.roi_pool(x, boxes, 3)
    assert pooled.dtype == dtype
    torch.testing.assert_close(pooled.float(), tvo.roi_pool(x.float(), boxes.float(), 3), atol=0, rtol=0)


# --------------------------------------------------------------------------- non-finite boxes


NON_FINITE = torch.tensor([[0.0, 0, 10, 10], [float("nan"), 0, 10, 10], [0, 0, float("inf"), 10],
                           [1, 1, 11, 11], [-float("inf"), 2, 9, 9], [2, 2, 12, 12]])


def test_box_iou_and_nms_treat_non_finite_boxes_as_torchvision():
    """IEEE arithmetic, as torchvision: a NaN IoU is never above the threshold, so a NaN box never suppresses
    and is never suppressed; an infinite box has IoU 0 or NaN with the others."""
    torch.testing.assert_close(roi.box_iou(NON_FINITE, NON_FINITE), tvo.box_iou(NON_FINITE, NON_FINITE),
                               equal_nan=True)
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    for threshold in (0.3, 0.5):
        assert torch.equal(roi.nms(NON_FINITE, scores, threshold), tvo.nms(NON_FINITE, scores, threshold))
    with_nan_score = torch.tensor([0.5, 0.8, float("nan"), 0.6, 0.5, 0.9])
    assert torch.equal(roi.nms(NON_FINITE, with_nan_score, 0.3), tvo.nms(NON_FINITE, with_nan_score, 0.3))
    # batched_nms: one NaN box does not stop the other boxes of any class from being suppressed (torchvision's
    # coordinate trick turns every offset into NaN and keeps everything); the result is per-class torchvision.
    labels = torch.tensor([0, 0, 1, 0, 1, 0])
    want = [i for i in tvo.nms(NON_FINITE, scores, 0.3).tolist() if labels[i] == 0] + [2, 4]
    got = roi.batched_nms(NON_FINITE, scores, labels, 0.3).tolist()
    assert sorted(got) == sorted(want) and 3 not in got and 5 not in got


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_roi_ops_refuse_non_finite_boxes(bad):
    # torchvision's kernels cast NaN and inf to integers (undefined behaviour: zeros, garbage or a crash).
    x = torch.randn(2, 3, 8, 8)
    rois = torch.tensor([[0, 1.0, 1, 4, 4], [1, 0.0, 0, 5, 5], [1, 2.0, 2, 3, 3]])
    rois[1, 3] = bad
    for op in (lambda b: roi.roi_align(x, b, 2), lambda b: roi.roi_align(x, b, 2, 1.0, 2, True),
               lambda b: roi.roi_pool(x, b, 2)):
        with pytest.raises(ValueError, match=r"boxes must hold finite coordinates, got NaN or inf in row\(s\) \[1\]"):
            op(rois)
        with pytest.raises(ValueError, match="boxes must hold finite coordinates"):
            op([rois[:1, 1:], rois[1:, 1:]])
    # Finite, but beyond float32's range once scaled.
    with pytest.raises(ValueError, match=r"boxes \* spatial_scale must have finite corners"):
        roi.roi_align(x, torch.tensor([[0, 0.0, 0, 3e38, 4]]), 2, spatial_scale=4.0)


# --------------------------------------------------------------------------- huge boxes


@pytest.mark.parametrize("aligned", [False, True])
def test_roi_align_on_huge_boxes_equals_torchvision(aligned):
    """Adaptive sampling gives ceil(size / P) samples per bin and axis: 500000 for a 10^6 px side at P = 2.
    Only the samples near the map read anything; the result is still torchvision's (which visits them all)."""
    gen = torch.Generator().manual_seed(15)
    x = torch.randn(2, 2, 16, 24, generator=gen, dtype=torch.float64)
    wide = torch.tensor([[0, -4e5, 3.0, 6e5, 4.5], [1, -1e6, 6.2, 30.0, 7.0], [0, 20.0, 1.0, 1.02e6, 1.8]],
                        dtype=torch.float64)
    tall = wide[:, [0, 2, 1, 4, 3]]
    for rois, size in ((wide, (1, 2)), (tall, (2, 1))):
        torch.testing.assert_close(roi.roi_align(x, rois, size, 1.0, -1, aligned),
                                   tvo.roi_align(x, rois, size, 1.0, -1, aligned), atol=1e-9, rtol=0)
    # Large on both axes, the map at the box's corner, middle or edge: 143^2 samples per bin at P = 7.
    both = torch.tensor([[0, -980.0, -990, 20, 10], [1, -500, -490, 503, 510], [0, 10, -900, 1010, 20]],
                        dtype=torch.float64)
    torch.testing.assert_close(roi.roi_align(x, both, 7, 1.0, -1, aligned),
                               tvo.roi_align(x, both, 7, 1.0, -1, aligned), atol=1e-9, rtol=0)
    torch.testing.assert_close(roi.roi_align(x.float(), both.float(), 7, 1.0, -1, aligned),
                               tvo.roi_align(x.float(), both.float(), 7, 1.0, -1, aligned), atol=1e-5, rtol=1e-4)
    # Absurd boxes still give finite numbers (torchvision's integer sample counts overflow here).
    absurd = torch.tensor([[0, -1e30, -1e30, 1e30, 1e30], [1, -1e6, -1e6, 1e6, 1e6]])
    assert torch.isfinite(roi.roi_align(x.float(), absurd, 7, 1.0, -1, aligned)).all()


# --------------------------------------------------------------------------- memory


def _peak_allocated(fn) -> int:
    """Bytes: the most CPU memory torch held at once for tensors allocated while ``fn()`` ran.

    From ``torch.profiler``'s memory events (``tracemalloc`` does not see torch's allocations; the process's
    resident size would also count other libraries and pages the system evicts). Each top-level event carries
    the bytes allocated minus freed during it; their running sum in time order is the memory held.
    """
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    held = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        if event.cpu_parent is None:
            held += event.cpu_memory_usage
            peak = max(peak, held)
    return peak


def test_peak_allocated_sees_a_temporary():
    assert 4 * 10**6 <= _peak_allocated(lambda: torch.ones(10**6).sum()) < 5 * 10**6


def test_nms_holds_one_boolean_matrix_at_6000_boxes():
    """One N x N boolean matrix is 36 MB at N = 6000, one float32 matrix 144 MB. The old version held several
    [N, N, 2] float tensors at once: 1.27 GB measured this way; now 55 MB."""
    n = 6000
    gen = torch.Generator().manual_seed(0)
    xy = torch.rand(n, 2, generator=gen) * 1000
    boxes = torch.cat([xy, xy + 10 + torch.rand(n, 2, generator=gen) * 100], 1)
    scores = torch.rand(n, generator=gen)
    kept = []
    peak = _peak_allocated(lambda: kept.append(roi.nms(boxes, scores, 0.5)))
    assert torch.equal(kept[0], tvo.nms(boxes, scores, 0.5))
    assert n * n <= peak < 4 * n * n, f"{peak / 2**20:.0f} MiB"  # the boolean matrix, less than a float32 one


def test_roi_align_memory_does_not_grow_with_a_huge_box():
    """One 10^6 px box among 200 small ones: 142858 samples per bin and axis. The old version padded every
    box's sample grid to the largest one (1.7 GB for a 200 px box; 819 GB asked for a 10^6 px box); now the
    same few MB as without the huge box, forward and backward."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 16, 64, 64, generator=gen, requires_grad=True)
    xy = torch.rand(200, 2, generator=gen) * 50
    boxes = torch.cat([torch.randint(0, 2, (200, 1), generator=gen).float(), xy,
                       xy + 2 + torch.rand(200, 2, generator=gen) * 12], 1)
    normal = _peak_allocated(lambda: roi.roi_align(x, boxes, 7, 1.0, -1, True).sum().backward())
    boxes[0, 1:] = torch.tensor([-5e5, -5e5, 5e5, 5e5])
    out = []
    huge = _peak_allocated(lambda: out.append(roi.roi_align(x, boxes, 7, 1.0, -1, True)) or out[0].sum().backward())
    assert huge < 2 * normal < 64 * 2**20, (huge, normal)
    assert torch.isfinite(out[0]).all()
    torch.testing.assert_close(out[0][1:], tvo.roi_align(x, boxes[1:], 7, 1.0, -1, True), atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------- mask targets (lesson 09)


def _instance_scenes():
    from segedu.data.shapes import ShapesDataset

    return ShapesDataset(6, size=64, seed=5, variant="instance").batch(range(6))


def test_match_proposals_is_torchvisions_matcher():
    from torchvision.models.detection._utils import Matcher

    gen = torch.Generator().manual_seed(3)
    _, targets = _instance_scenes()
    matcher = Matcher(0.5, 0.5, allow_low_quality_matches=False)  # Mask R-CNN's box head: fg = bg = 0.5
    for target in targets:
        gt = target["boxes"]
        proposals = torch.cat([gt.repeat(8, 1) + torch.randn(8 * len(gt), 4, generator=gen) * 6, gt])
        matched, positive = roi.match_proposals(proposals, gt)
        theirs = matcher(tvo.box_iou(gt, proposals))  # -1 below 0.5
        assert torch.equal(positive, theirs >= 0)
        assert torch.equal(matched[positive], theirs[positive])
        assert 0 < int(positive.sum()) < len(proposals)
    matched, positive = roi.match_proposals(torch.rand(3, 4), torch.zeros(0, 4))
    assert matched.tolist() == [0, 0, 0] and not positive.any()


def test_mask_targets_equal_torchvisions_project_masks_on_boxes():
    from torchvision.models.detection.roi_heads import project_masks_on_boxes

    gen = torch.Generator().manual_seed(4)
    _, targets = _instance_scenes()
    for size in (28, 14):
        for target in targets:
            gt, masks = target["boxes"], target["masks"]
            proposals = torch.cat([gt.repeat(6, 1) + torch.randn(6 * len(gt), 4, generator=gen) * 5, gt])
            ours, keep = roi.mask_targets(proposals, gt, masks, size)
            matched, positive = roi.match_proposals(proposals, gt)
            assert torch.equal(keep, torch.nonzero(positive).flatten())
            theirs = project_masks_on_boxes(masks, proposals[keep], matched[keep], size)
            assert ours.shape == (len(keep), size, size) and ours.dtype == torch.float32
            torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)  # float32 sums of bilinear weights
            # Averages of bilinear weights on a 0/1 mask: in [0, 1] up to float32 rounding.
            assert 0 <= float(ours.min()) and float(ours.max()) <= 1 + 1e-6


def test_mask_targets_show_the_mask_inside_the_proposal():
    masks = torch.zeros(1, 20, 20, dtype=torch.uint8)
    masks[0, 0:10, 0:10] = 1
    gt = torch.tensor([[0.0, 0, 10, 10]])
    # The proposal covers the object and as much again on the right (IoU exactly 0.5: positive).
    targets, keep = roi.mask_targets(torch.tensor([[0.0, 0, 20, 10], [0.0, 0, 10, 30]]), gt, masks, 10)
    assert keep.tolist() == [0]
    # Left half object, right half not. The last row and the boundary column are soft: aligned=False reads
    # pixel i's value at i (not i + 0.5), so samples at 9.5 average the object's last row and the row below.
    assert targets[0, :9, :4].min() == 1 and targets[0, :, 5:].max() == 0
    assert targets[0, 9, 0] == 0.5 and targets[0, 0, 4] == 0.75


def test_mask_targets_without_objects_and_errors():
    targets, keep = roi.mask_targets(torch.rand(4, 4) * 10, torch.zeros(0, 4), torch.zeros(0, 8, 8), 7)
    assert targets.shape == (0, 7, 7) and keep.shape == (0,) and keep.dtype == torch.int64
    with pytest.raises(ValueError, match="gt_masks"):
        roi.mask_targets(torch.rand(4, 4), torch.rand(2, 4), torch.zeros(3, 8, 8), 7)
    with pytest.raises(TypeError, match="proposals"):
        roi.mask_targets(torch.zeros(4, 4, dtype=torch.long), torch.rand(2, 4), torch.zeros(2, 8, 8), 7)
    with pytest.raises(ValueError, match="size"):
        roi.mask_targets(torch.rand(4, 4), torch.rand(2, 4), torch.zeros(2, 8, 8), 0)
