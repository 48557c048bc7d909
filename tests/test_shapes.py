"""segedu.data.shapes: determinism, formats, class coverage, occlusion, context layout, errors."""

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import masks_to_boxes

from segedu.data.shapes import CLASSES, CONTEXT_CLASSES, MIN_VISIBLE_PIXELS, VEHICLE_MARGIN, ShapesDataset
from segedu.ops.distance import edt

VARIANTS = ["semantic", "instance", "context"]
N = 300  # scenes for the statistical checks (about 0.1 s to render)


@pytest.fixture(scope="module")
def instance_scenes():
    """N instance scenes at 64x64 with the default options, and the semantic scenes of the same indices."""
    images, targets = ShapesDataset(N, seed=7, variant="instance").batch(range(N))
    _, masks = ShapesDataset(N, seed=7, variant="semantic").batch(range(N))
    return images, targets, masks


@pytest.fixture(scope="module")
def single_objects():
    """N instance scenes holding exactly one object each: no occlusion."""
    ds = ShapesDataset(N, seed=3, variant="instance", min_objects=1, max_objects=1)
    return ds.batch(range(N))


@pytest.fixture(scope="module")
def context_scenes():
    ds = ShapesDataset(N, seed=5, variant="context")
    images, masks = ds.batch(range(N))
    return images, masks, ds.regions(range(N))


def _same(a, b):
    """Exact equality of two items (tensors or detection targets)."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    return torch.equal(a, b)


# ---------------------------------------------------------------- classes and formats
def test_class_names():
    assert CLASSES[0] == CONTEXT_CLASSES[0] == "background"
    assert {"disk", "square", "triangle", "bar", "ring"} <= set(CLASSES)
    assert {"car", "boat"} <= set(CONTEXT_CLASSES)
    for variant, classes in [("semantic", CLASSES), ("instance", CLASSES), ("context", CONTEXT_CLASSES)]:
        ds = ShapesDataset(3, variant=variant)
        assert ds.classes == classes and ds.num_classes == len(classes) and len(ds) == 3


@pytest.mark.parametrize("variant", ["semantic", "context"])
@pytest.mark.parametrize("size", [64, 37])
def test_semantic_format(variant, size):
    ds = ShapesDataset(20, size=size, variant=variant)
    images, masks = ds.batch(range(20))
    assert images.shape == (20, 3, size, size) and images.dtype == torch.float32
    assert masks.shape == (20, size, size) and masks.dtype == torch.int64
    assert images.min() >= 0 and images.max() <= 1
    assert masks.min() >= 0 and masks.max() < ds.num_classes
    image, mask = ds[4]
    assert image.shape == (3, size, size) and mask.shape == (size, size)
    # Textured, noisy images: no scene is flat, and pixel values use the whole range.
    assert images.flatten(1).std(1).min() > 0.03
    assert images.min() < 0.05 and images.max() > 0.95


def test_instance_format(instance_scenes):
    images, targets, _ = instance_scenes
    assert images.shape == (N, 3, 64, 64) and len(targets) == N
    for t in targets:
        n = len(t["labels"])
        assert set(t) == {"boxes", "labels", "masks"}
        assert t["boxes"].shape == (n, 4) and t["boxes"].dtype == torch.float32
        assert t["labels"].dtype == torch.int64 and (t["labels"] >= 1).all() and (t["labels"] < len(CLASSES)).all()
        assert t["masks"].shape == (n, 64, 64) and t["masks"].dtype == torch.uint8
    assert all(len(t["labels"]) >= 1 for t in targets)  # the top-most object is never hidden


def test_empty_batch():
    for variant in VARIANTS:
        images, masks = ShapesDataset(5, variant=variant).batch([])
        assert images.shape == (0, 3, 64, 64)
        if variant == "instance":
            assert masks == []
        else:
            assert masks.shape == (0, 64, 64)


def test_repr():
    text = repr(ShapesDataset(12, size=32, seed=4, variant="context"))
    assert text.startswith("ShapesDataset(") and "length=12" in text and "size=32" in text
    assert "seed=4" in text and "'context'" in text


# ---------------------------------------------------------------- determinism
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("size", [64, 37])  # 37: rows that do not fill SIMD lanes evenly
def test_item_is_a_pure_function_of_seed_and_index(variant, size):
    ds = ShapesDataset(500, size=size, seed=11, variant=variant)
    idx = [3, 499, 0, 250, 17, 3, 123]
    images, targets = ds.batch(idx)
    for j, i in enumerate(idx):
        image, target = ds[i]
        assert torch.equal(image, images[j]) and _same(target, targets[j])
    again = ShapesDataset(500, size=size, seed=11, variant=variant)[250]  # a fresh object, same scene
    assert torch.equal(again[0], images[3]) and _same(again[1], targets[3])
    # Order and company do not matter: reversed, and inside a larger batch (several chunks).
    rev_images, rev_targets = ds.batch(idx[::-1])
    assert torch.equal(rev_images, images.flip(0))
    big_images, big_targets = ds.batch(list(range(200)) + idx)
    assert torch.equal(big_images[200:], images)
    assert all(_same(a, b) for a, b in zip(big_targets[200:], targets))


def test_negative_indices_and_index_types():
    ds = ShapesDataset(10, seed=2)
    assert _same(ds[-1][1], ds[9][1]) and _same(ds[-10][0], ds[0][0])
    a, _ = ds.batch(torch.tensor([1, -2]))
    b, _ = ds.batch([1, 8])
    assert torch.equal(a, b)
    assert torch.equal(ds[torch.tensor(4)][0], ds[4][0])


def test_seeds_and_indices_give_different_scenes():
    a, ma = ShapesDataset(8, seed=0).batch(range(8))
    b, mb = ShapesDataset(8, seed=1).batch(range(8))
    assert all(not torch.equal(a[i], b[i]) and not torch.equal(ma[i], mb[i]) for i in range(8))
    assert all(not torch.equal(ma[i], ma[j]) for i in range(8) for j in range(i))


def test_renders_on_the_requested_device():
    ds = ShapesDataset(4, device=torch.device("cpu"), variant="instance")
    images, targets = ds.batch([0, 1])
    assert images.device == ds.device and targets[0]["masks"].device == ds.device


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("variant", VARIANTS)
def test_cuda_matches_cpu(variant):
    cpu_images, cpu_masks = ShapesDataset(64, variant=variant).batch(range(64))
    cuda_images, cuda_masks = ShapesDataset(64, variant=variant, device="cuda").batch(range(64))
    torch.testing.assert_close(cuda_images.cpu(), cpu_images, atol=1e-5, rtol=0)
    if variant == "instance":
        cpu_masks = [t["masks"] for t in cpu_masks]
        cuda_masks = [t["masks"] for t in cuda_masks]
        assert sum(int((a.cpu() != b).sum()) for a, b in zip(cuda_masks, cpu_masks)) <= 5
    else:
        assert int((cuda_masks.cpu() != cpu_masks).sum()) <= 5  # float rounding may flip an edge pixel


# ---------------------------------------------------------------- content
def test_every_class_appears():
    _, masks = ShapesDataset(N, seed=1).batch(range(N))
    counts = torch.bincount(masks.flatten(), minlength=len(CLASSES))
    assert (counts > 0).all()
    per_scene = F.one_hot(masks, len(CLASSES)).flatten(1, 2).any(1).float().mean(0)
    assert (per_scene[1:] > 0.25).all(), per_scene  # each shape class is in a good share of the scenes


def test_bars_are_thin_and_long(single_objects):
    _, targets = single_objects
    bars = [t for t in targets if t["labels"][0] == CLASSES.index("bar")]
    others = [t for t in targets if t["labels"][0] in (CLASSES.index("disk"), CLASSES.index("square"))]
    assert len(bars) > 20 and len(others) > 20

    def survives_erosion(t):  # does a 7x7 block of pixels fit inside the object?
        m = t["masks"].float()[:, None]
        return bool((-F.max_pool2d(-m, 7, stride=1, padding=3) > 0).any())

    assert not any(survives_erosion(t) for t in bars)  # at most ~4 px wide
    assert sum(survives_erosion(t) for t in others) > 0.5 * len(others)
    box = torch.cat([t["boxes"] for t in bars])
    extent = torch.maximum(box[:, 2] - box[:, 0], box[:, 3] - box[:, 1])
    assert extent.min() >= 12  # long: at least 3x the largest width


def test_rings_have_a_hole(single_objects):
    images, targets = single_objects
    found = {"ring": 0, "disk": 0}
    for t in targets:
        name = CLASSES[int(t["labels"][0])]
        if name not in found:
            continue
        x1, y1, x2, y2 = t["boxes"][0].long().tolist()
        cx, cy = (x1 + x2 - 1) // 2, (y1 + y2 - 1) // 2
        centre_is_object = bool(t["masks"][0, cy, cx])
        assert centre_is_object == (name == "disk"), (name, t["boxes"][0])  # a ring's centre is background
        found[name] += 1
    assert found["ring"] > 20 and found["disk"] > 20


def test_scale_range_and_rotation(single_objects):
    _, targets = single_objects
    area = {name: [] for name in CLASSES[1:]}
    fill = []
    for t in targets:
        name = CLASSES[int(t["labels"][0])]
        area[name].append(int(t["masks"].sum()))
        if name == "square":
            x1, y1, x2, y2 = t["boxes"][0].tolist()
            fill.append(area[name][-1] / ((x2 - x1) * (y2 - y1)))
    side = torch.tensor(area["disk"], dtype=torch.float64).sqrt()
    assert side.max() / side.min() >= 3.5  # object sizes span (nearly) the 4x scale range
    # Axis-aligned squares fill their box, squares at 45 degrees fill about half of it.
    assert min(fill) < 0.65 and max(fill) > 0.85


def test_colour_is_independent_of_class(instance_scenes):
    images, targets, _ = instance_scenes
    colours = {c: [] for c in range(1, len(CLASSES))}
    for image, t in zip(images, targets):
        m = t["masks"].float()
        mean = (image[None] * m[:, None]).sum((2, 3)) / m.sum((1, 2))[:, None]  # [N, 3] mean colour
        for label, c in zip(t["labels"].tolist(), mean):
            colours[label].append(c)
    overall = torch.stack([c for v in colours.values() for c in v]).mean(0)
    for label, cs in colours.items():
        cs = torch.stack(cs)
        assert len(cs) > 40, CLASSES[label]
        assert (cs.std(0) > 0.2).all(), (CLASSES[label], cs.std(0))  # many colours per class ...
        assert ((cs.mean(0) - overall).abs() < 0.1).all(), (CLASSES[label], cs.mean(0))  # ... the same ones


def test_objects_stand_out_from_the_background(instance_scenes):
    # Colour is random, but an object never vanishes into what is behind it: the
    # mean colour inside differs from the mean colour of a ring of pixels around it.
    images, targets, _ = instance_scenes
    gaps = []
    for image, t in zip(images, targets):
        for m in t["masks"].float():
            around = F.max_pool2d(m[None, None], 5, stride=1, padding=2)[0, 0] - m
            outside = around * (1 - t["masks"].amax(0).float())  # background pixels next to it
            if outside.sum() < 10:
                continue
            mean_in = (image * m).sum((1, 2)) / m.sum()
            mean_out = (image * outside).sum((1, 2)) / outside.sum()
            gaps.append(float((mean_in - mean_out).abs().max()))
    gaps = torch.tensor(gaps)
    assert len(gaps) > 200 and (gaps > 0.1).float().mean() > 0.95


# ---------------------------------------------------------------- instance targets
def test_instance_targets_match_the_semantic_scene(instance_scenes):
    images, targets, semantic_masks = instance_scenes
    sem_images, _ = ShapesDataset(N, seed=7, variant="semantic").batch(range(8))
    assert torch.equal(sem_images, images[:8])  # the same scene, pixel for pixel
    for t, mask in zip(targets, semantic_masks):
        masks = t["masks"]
        assert masks.sum(0).max() <= 1  # no pixel belongs to two objects
        assert (masks.sum((1, 2)) >= MIN_VISIBLE_PIXELS).all()  # hidden objects were dropped
        painted = (masks.long() * t["labels"].view(-1, 1, 1)).sum(0)
        assert torch.equal(painted, mask)
        expected = masks_to_boxes(masks) + torch.tensor([0.0, 0.0, 1.0, 1.0])  # x2, y2 exclusive
        assert torch.equal(t["boxes"], expected)
        assert ((t["boxes"][:, 2:] - t["boxes"][:, :2]) >= 1).all()  # valid for torchvision's detectors


def test_occlusion_is_resolved_painter_style():
    # With many objects some must overlap; the later one wins, so instance
    # masks stay disjoint while the scene still holds several objects.
    ds = ShapesDataset(50, seed=9, variant="instance", min_objects=8, max_objects=8, scale=(0.3, 0.5))
    _, targets = ds.batch(range(50))
    sizes = [len(t["labels"]) for t in targets]
    assert max(sizes) <= 8 and min(sizes) >= 1
    assert sum(sizes) < 8 * 50  # some objects were hidden completely (or nearly) and dropped
    assert all(int(t["masks"].sum(0).max()) <= 1 for t in targets)


# ---------------------------------------------------------------- context variant
def test_context_labels_follow_the_scene(context_scenes):
    images, masks, regions = context_scenes
    car, boat = CONTEXT_CLASSES.index("car"), CONTEXT_CLASSES.index("boat")
    assert regions.dtype == torch.int64 and regions.shape == masks.shape
    assert set(regions.unique().tolist()) == {0, 1, 2}  # ground, land, water
    has_car = (masks == car).flatten(1).any(1)
    has_boat = (masks == boat).flatten(1).any(1)
    has_land = (regions == 1).flatten(1).any(1)
    has_water = (regions == 2).flatten(1).any(1)
    # Every scene has a vehicle and one region; its vehicles are boats in a harbour, cars in a town.
    assert (has_car | has_boat).all() and not (has_car & has_boat).any()
    assert (has_land ^ has_water).all()
    assert torch.equal(has_boat, has_water) and torch.equal(has_car, has_land)
    assert 0.4 < has_boat.float().mean() < 0.6
    # The vehicles stand on the ground, at least VEHICLE_MARGIN of the side away from the region.
    vehicle = (masks == car) | (masks == boat)
    distance = edt(regions > 0)  # pixels to the nearest region pixel
    assert distance[vehicle].min() >= VEHICLE_MARGIN * 64 - 0.5
    assert (regions[vehicle] == 0).all()
    assert 0.2 < (regions > 0).float().mean() < 0.5  # the region is a part of the scene, the ground the rest


def test_context_vehicles_are_large_and_alike(context_scenes):
    images, masks, _ = context_scenes
    car, boat = CONTEXT_CLASSES.index("car"), CONTEXT_CLASSES.index("boat")
    stats = {}
    for label in (car, boat):
        m = (masks == label).float()
        present = m.flatten(1).sum(1) > 0
        m = m[present]
        area = m.flatten(1).sum(1)
        colour = (images[present] * m[:, None]).sum((2, 3)) / area[:, None]
        # Large: no 5x5 window can tell a vehicle's centre from its surroundings.
        inner = -F.max_pool2d(-m[:, None], 11, stride=1, padding=5)
        assert (inner.flatten(1).amax(1) > 0).float().mean() > 0.9
        stats[label] = (area.mean(), colour.mean(0), colour.std(0))
    # Cars and boats: same sizes and the same colour distribution.
    assert abs(stats[car][0] - stats[boat][0]) < 0.15 * stats[car][0]
    assert ((stats[car][1] - stats[boat][1]).abs() < 0.1).all()
    assert (stats[car][2] > 0.15).all() and (stats[boat][2] > 0.15).all()


def test_context_regions_differ_in_texture(context_scenes):
    # Land is grainy, water waves smoothly, the ground is flat. Colour-free measures per scene (the
    # colours are random): the mean |horizontal difference| (grain) and the spread of the values (waves).
    images, masks, regions = context_scenes
    diff = (images[..., 1:] - images[..., :-1]).abs().mean(1)  # [B, H, W-1]
    pair_bg = (masks[..., 1:] == 0) & (masks[..., :-1] == 0) & (regions[..., 1:] == regions[..., :-1])

    def per_scene(values, where):
        n = where.flatten(1).sum(1)
        return (values * where).flatten(1).sum(1) / n.clamp(min=1), n > 100

    rough = {k: per_scene(diff, pair_bg & (regions[..., 1:] == k)) for k in (1, 2)}
    land, land_ok = rough[1]
    water, water_ok = rough[2]
    assert land_ok.sum() > 100 and water_ok.sum() > 100
    assert land[land_ok].quantile(0.05) > 1.2 * water[water_ok].quantile(0.95)

    def spread(where):  # standard deviation of the grey values over a part of each scene
        grey = images.mean(1)
        n = where.flatten(1).sum(1).clamp(min=1)
        mean = (grey * where).flatten(1).sum(1) / n
        return (((grey - mean[:, None, None]) ** 2 * where).flatten(1).sum(1) / n).sqrt()

    background = masks == 0
    waves, ground = spread(background & (regions == 2)), spread(background & (regions == 0))
    ok = water_ok & (ground > 0)
    assert (waves[ok] > 1.3 * ground[ok]).float().mean() > 0.9  # waves are not flat ground


# ---------------------------------------------------------------- bad arguments
@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(length=-1), ValueError, "length"),
        (dict(length=2.5), TypeError, "length"),
        (dict(length=4, size=0), ValueError, "size"),
        (dict(length=4, size=-8), ValueError, "size"),
        (dict(length=4, size=64.0), TypeError, "size"),
        (dict(length=4, size="64"), TypeError, "size"),
        (dict(length=4, seed=1.5), TypeError, "seed"),
        (dict(length=True), TypeError, "length"),
        (dict(length=4, size=True), TypeError, "size"),
        (dict(length=4, size=2.5), TypeError, "size"),
        (dict(length=4, size=-1), ValueError, "size"),
        (dict(length=4, seed=True), TypeError, "seed"),
        (dict(length=4, min_objects=True), TypeError, "min_objects"),
        (dict(length=4, min_objects=2.5), TypeError, "min_objects"),
        (dict(length=4, max_objects=True), TypeError, "max_objects"),
        (dict(length=4, max_objects=2.5), TypeError, "max_objects"),
        (dict(length=4, max_objects=-1), ValueError, "max_objects"),
        (dict(length=4, variant="panoptic"), ValueError, "variant"),
        (dict(length=4, variant=None), TypeError, "variant"),
        (dict(length=4, min_objects=5, max_objects=4), ValueError, "min_objects"),
        (dict(length=4, min_objects=-1), ValueError, "min_objects"),
        (dict(length=4, max_objects=0), ValueError, "max_objects"),
        (dict(length=4, max_objects=1000), ValueError, "max_objects"),
        (dict(length=4, scale=(0.5, 0.1)), ValueError, "scale"),
        (dict(length=4, scale=(0.0, 0.5)), ValueError, "scale"),
        (dict(length=4, scale=(0.1, 1.5)), ValueError, "scale"),
        (dict(length=4, scale=0.3), TypeError, "scale"),
        (dict(length=4, scale=(0.1, 0.2, 0.3)), ValueError, "scale"),
        (dict(length=4, scale=(0.1, True)), TypeError, "scale"),
        (dict(length=4, scale=("0.1", 0.5)), TypeError, "scale"),
        (dict(length=4, noise=-0.1), ValueError, "noise"),
        (dict(length=4, noise="loud"), TypeError, "noise"),
        (dict(length=4, noise=True), TypeError, "noise"),
        (dict(length=4, noise=float("nan")), ValueError, "noise"),
        (dict(length=4, device="gpu0"), ValueError, "device"),
        (dict(length=4, device=0.5), TypeError, "device"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        ShapesDataset(**kwargs)


def test_bad_indices():
    ds = ShapesDataset(10)
    for bad in (10, -11, 10**12):
        with pytest.raises(IndexError, match="out of range"):
            ds[bad]
    with pytest.raises(IndexError, match="10"):
        ds.batch([0, 3, 10])
    with pytest.raises(IndexError):
        ds.batch(torch.tensor([-11]))
    with pytest.raises(TypeError, match="index"):
        ds[1.5]
    with pytest.raises(TypeError, match="index"):
        ds[True]
    with pytest.raises(TypeError, match="indices"):
        ds.batch([0, 0.5])
    with pytest.raises(TypeError, match="indices"):
        ds.batch(torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="1-D"):
        ds.batch(torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="context"):
        ds.regions([0])
    assert list(ds.batch(range(0))[0].shape) == [0, 3, 64, 64]
