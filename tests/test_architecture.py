"""segedu.viz.architecture: the diagram is drawn from the model, and what it draws is what the model computes.

For every family the shapes written in the figure's boxes are compared with the shapes the test's own hooks
see in an independent forward pass - once through each box's submodule path, and once through a mapping
written here from the model's attributes (``model.encoder[i]``, ``model.ppm.reduce[j]``, ...), so a layout
that points at the wrong module fails too. The counts of skips and branches follow the model's settings.
"""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from segedu import viz  # noqa: E402
from segedu.models.backbones import ResNetBackbone  # noqa: E402
from segedu.models.deeplab import DeepLabV1, DeepLabV2, DeepLabV3, DeepLabV3Plus  # noqa: E402
from segedu.models.fcn import small_fcn  # noqa: E402
from segedu.models.fpn import FPN  # noqa: E402
from segedu.models.maskrcnn import mask_rcnn  # noqa: E402
from segedu.models.plain import DilatedFCN  # noqa: E402
from segedu.models.pspnet import PSPNet  # noqa: E402
from segedu.models.unet import MirrorContext, UNet  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def drawn(fig) -> dict[str, str]:
    """Block name -> the shape written under it, read from the figure's text."""
    found = {}
    for text in fig.axes[0].texts:
        gid = text.get_gid() or ""
        if gid.startswith("block:"):
            name, shape = text.get_text().split("\n")
            assert gid == f"block:{name}"
            found[name] = shape
    return found


def arrows(fig, kind: str) -> list[str]:
    return [t.get_gid() for t in fig.axes[0].texts if (t.get_gid() or "").startswith(f"arrow:{kind}:")]


def shape_text(tensor: torch.Tensor, batched: bool = True) -> str:
    return "×".join(str(n) for n in (tensor.shape[1:] if batched else tensor.shape))


def _select(value, select):
    for key in select:
        value = value[key] if isinstance(key, int) or isinstance(value, Mapping) else getattr(value, key)
    return value


def run(model, images, detector=False):
    model.eval()
    with torch.no_grad():
        return model(list(images)) if detector else model(images)


def hooked(model, images, taps: dict, detector=False) -> dict[str, str]:
    """The test's own forward pass: ``taps`` maps a block name to ``(module, port, select, batched)``."""
    shapes, handles = {}, []
    for name, (module, port, select, batched) in taps.items():
        def keep(value, name=name, select=select, batched=batched):
            shapes.setdefault(name, shape_text(_select(value, select), batched))
        if port == "output":
            handles.append(module.register_forward_hook(lambda m, a, out, keep=keep: keep(out)))
        else:
            handles.append(module.register_forward_pre_hook(lambda m, a, keep=keep: keep(a[0])))
    try:
        output = run(model, images, detector)
    finally:
        for handle in handles:
            handle.remove()
    return shapes, output


def check_every_block(model, input_size, detector=False):
    """Draw the model; every drawn shape equals the test's hook on the block's submodule. Returns
    ``(figure, diagram, drawn shapes, images)``."""
    diagram = viz.trace_architecture(model, input_size)
    fig = viz.draw_diagram(diagram)
    shapes = drawn(fig)
    assert list(shapes) == [b.name for b in diagram.blocks]
    images = viz.example_input(diagram.input_shape)
    taps = {b.name: (model.get_submodule(b.path), b.port, b.select, b.batched) for b in diagram.blocks}
    seen, _ = hooked(model, images, taps, detector)
    assert shapes == seen
    return fig, diagram, shapes, images


def out(module, *select, batched=True):
    return (module, "output", select, batched)


def inp(module):
    return (module, "input", (), True)


# --------------------------------------------------------------------------- U-Net


@pytest.mark.parametrize("depth, skips, size", [(3, True, (3, 32, 32)), (2, False, (40, 48)), (4, True, (3, 48, 64))])
def test_unet_levels_skips_and_shapes(depth, skips, size):
    model = UNet(3, base=4, depth=depth, skips=skips)
    fig, diagram, shapes, images = check_every_block(model, size)
    taps = {f"enc{i}": out(model.encoder[i]) for i in range(depth)}
    taps["bottleneck"] = out(model.encoder[depth])
    for j, level in enumerate(range(depth - 1, -1, -1)):
        taps[f"dec{level}"], taps[f"up{level}"] = out(model.decoder[j]), out(model.ups[j])
    taps["classifier"] = out(model.classifier)
    seen, logits = hooked(model, images, taps)
    assert {name: shapes[name] for name in seen} == seen
    assert shapes["output"] == shape_text(logits) and shapes["input"] == "×".join(map(str, diagram.input_shape))
    assert len(arrows(fig, "skip")) == (depth if skips else 0)  # one concatenation per level
    assert sorted(e.target for e in diagram.edges_of("skip")) == sorted(f"dec{i}" for i in range(depth) if skips)


def test_valid_unet_in_mirror_context_shows_the_mirrored_input():
    model = MirrorContext(UNet(2, base=4, depth=2, padding="valid"))
    fig, _, shapes, images = check_every_block(model, (3, 32, 32))
    need = model.unet.input_size_for(32)
    assert shapes["mirror pad"] == f"3×{need}×{need}" and shapes["output"] == "2×32×32"
    seen, _ = hooked(model, images, {"enc0": out(model.unet.encoder[0])})
    assert shapes["enc0"] == seen["enc0"] == f"4×{need - 4}×{need - 4}"  # two unpadded 3x3 convs
    assert len(arrows(fig, "skip")) == 2


def test_segnet_unpools_with_the_encoders_indices():
    segnet = pytest.importorskip("segedu.models.segnet")
    model = segnet.SegNet(3, width=4, convs=(1, 1, 1, 1, 1))
    fig, diagram, shapes, images = check_every_block(model, (3, 64, 64))
    with torch.no_grad():
        maps = model.eval().features(images)
    for k in range(1, 6):  # the unpooled map has the size of the encoder map whose pooling indices it used
        assert shapes[f"enc{k}"] == shape_text(maps[f"enc{k}"]) and shapes[f"unpool{k}"] == shape_text(maps[f"unpool{k}"])
        assert shapes[f"dec{k}"] == shape_text(maps[f"dec{k}"])
    assert shapes["output"] == shape_text(maps["logits"])
    assert sorted((e.source, e.target) for e in diagram.edges_of("skip")) == [(f"enc{k}", f"unpool{k}") for k in range(1, 6)]
    assert len(arrows(fig, "skip")) == 5


# --------------------------------------------------------------------------- FCN


@pytest.mark.parametrize("variant, skips", [("32s", []), ("16s", ["pool4"]), ("8s", ["pool4", "pool3"])])
def test_fcn_score_skips_and_fusions(variant, skips):
    model = small_fcn(3, variant, width=4)
    fig, diagram, shapes, images = check_every_block(model, (3, 64, 64))
    taps = {f"pool{k}": out(model.backbone, f"pool{k}") for k in range(1, 6)}
    taps.update({"fc6–fc7": out(model.head), "score": out(model.score_pool5)})
    receivers = {"32s": [], "16s": ["upsample"], "8s": ["up_pool4", "upsample"]}[variant]
    for tap, receiver in zip(skips, receivers):
        taps[f"score {tap}"] = out(getattr(model, f"score_{tap}"))
        taps[f"+ {tap}"] = inp(getattr(model, receiver))  # what the forward pass adds up is what the next module receives
    seen, logits = hooked(model, images, taps)
    assert {name: shapes[name] for name in seen} == seen
    assert shapes["output"] == shape_text(logits) == "3×64×64"
    assert sorted(b.name for b in diagram.blocks if b.name.startswith("score ")) == sorted(f"score {t}" for t in skips)
    assert len(arrows(fig, "skip")) == 2 * len(skips)  # tap -> score layer -> sum
    if skips:  # each sum has the resolution of its tap: stride 16, then stride 8
        assert [shapes[f"+ {t}"] for t in skips] == [f"3×{64 // s}×{64 // s}" for s in (16, 8)[: len(skips)]]


# --------------------------------------------------------------------------- DeepLab


@pytest.mark.parametrize("rates", [(2, 4, 6), (3,), None])
def test_aspp_branches_follow_the_rates(rates):
    model = DeepLabV3(3, "small", output_stride=16, width=4, aspp_channels=8, rates=rates)
    fig, diagram, shapes, images = check_every_block(model, (3, 64, 64))
    aspp = model.classifier[0]
    branches = [b for b in diagram.blocks if b.kind == "branch"]
    assert len(branches) == len(model.rates) + 2  # 1x1, one per rate, image pooling
    assert [b.name for b in branches[1:-1]] == [f"3×3 rate {r}" for r in model.rates]
    taps = {b.name: out(aspp.convs[j]) for j, b in enumerate(branches)}
    taps.update({"ASPP concat": inp(aspp.project), "ASPP project": out(aspp.project),
                 "layer4": out(model.backbone.layer4)})
    seen, logits = hooked(model, images, taps)
    assert {name: shapes[name] for name in seen} == seen
    assert shapes["ASPP concat"] == f"{8 * (len(model.rates) + 2)}×4×4" and shapes["output"] == shape_text(logits)
    assert len(arrows(fig, "branch")) == 2 * len(branches)


def test_deeplab_v3plus_decoder_and_low_level_skip():
    model = DeepLabV3Plus(3, "small", output_stride=16, width=4, aspp_channels=8, decoder_channels=8,
                          low_level_reduced=6)
    fig, diagram, shapes, images = check_every_block(model, (3, 64, 64))
    seen, _ = hooked(model, images, {"reduce 1×1": out(model.reduce), "decoder concat": inp(model.decoder),
                                     "layer1": out(model.backbone.layer1), "ASPP project": out(model.aspp)})
    assert {name: shapes[name] for name in seen} == seen
    assert shapes["reduce 1×1"] == "6×16×16" and shapes["decoder concat"] == "14×16×16"  # 8 ASPP + 6 low-level
    assert [(e.source, e.target) for e in diagram.edges_of("skip")][0] == ("layer1", "reduce 1×1")
    assert sum(b.kind == "branch" for b in diagram.blocks) == len(model.rates) + 2


def test_deeplab_v1_and_v2():
    v1 = DeepLabV1(3, "small", width=4)
    _, diagram, shapes, images = check_every_block(v1, (3, 64, 64))
    assert [b.name for b in diagram.blocks if b.path.startswith("head.")] == ["fc6", "fc7", "fc8"]
    seen, logits = hooked(v1, images, {"fc8": out(v1.head[-1])})
    assert shapes["fc8"] == seen["fc8"] == "3×8×8" and shapes["output"] == shape_text(logits)  # output stride 8
    v2 = DeepLabV2(3, "small", width=4, rates=(1, 2, 3))
    _, diagram, shapes, _ = check_every_block(v2, (3, 32, 32))
    assert [b.name for b in diagram.blocks if b.kind == "branch"] == ["3×3 rate 1 #0", "3×3 rate 2 #1", "3×3 rate 3 #2"]


# --------------------------------------------------------------------------- PSPNet, dilated FCN, FPN


@pytest.mark.parametrize("bins", [(1, 2, 3, 6), (1, 3)])
def test_psp_bins_are_the_models(bins):
    model = PSPNet(3, "small", bins=bins, width=4, channels=8)
    fig, diagram, shapes, images = check_every_block(model, (3, 64, 64))
    assert [b.name for b in diagram.blocks if b.kind == "branch"] == [f"bin {b}×{b}" for b in model.bins]
    taps = {f"bin {b}×{b}": out(model.ppm.reduce[j]) for j, b in enumerate(model.bins)}
    taps["concat"] = out(model.ppm)
    seen, logits = hooked(model, images, taps)
    assert {name: shapes[name] for name in seen} == seen
    channels = model.ppm.reduce[0][0].out_channels
    assert [shapes[f"bin {b}×{b}"] for b in bins] == [f"{channels}×{b}×{b}" for b in bins]  # a b x b pooled grid
    assert shapes["output"] == shape_text(logits)
    assert len(arrows(fig, "branch")) == 2 * len(bins) + 1  # in and out of every bin, the features' own path


def test_psp_on_a_short_encoder_and_the_dilated_fcn():
    short = ResNetBackbone(4, blocks=(1, 1, 1, 1), stages=2, output_stride=8)
    _, diagram, _, _ = check_every_block(PSPNet(3, short, channels=8), (3, 32, 32))
    assert [b.name for b in diagram.blocks[:3]] == ["stem", "layer1", "layer2"]  # no layer3/4 (nn.Identity)
    model = DilatedFCN(3, "small", width=4)
    _, _, shapes, images = check_every_block(model, (3, 32, 40))
    seen, logits = hooked(model, images, {"layer4": out(model.backbone.layer4)})
    assert shapes["layer4"] == seen["layer4"] == "32×4×5" and shapes["output"] == shape_text(logits)


def test_fpn_top_down_path_and_pyramid():
    model = FPN(3, "small", width=4, channels=8, head_channels=4)
    fig, diagram, shapes, images = check_every_block(model, (3, 64, 64))
    with torch.no_grad():
        pyramid = model.eval().pyramid(images)
    assert [shapes[f"P{k + 2}"] for k in range(4)] == [shape_text(p) for p in pyramid]
    laterals = diagram.edges_of("skip")
    assert sorted((e.source, e.target) for e in laterals) == [(f"C{k}", f"M{k}") for k in range(2, 6)]
    top_down = [(e.source, e.target) for e in diagram.edges if e.source.startswith("M") and e.target.startswith("M")]
    assert top_down == [("M5", "M4"), ("M4", "M3"), ("M3", "M2")]
    seen, _ = hooked(model, images, {f"M{k + 2}": inp(model.neck.smooth[k]) for k in range(4)})
    assert {name: shapes[name] for name in seen} == seen
    assert len(arrows(fig, "skip")) == 4


# --------------------------------------------------------------------------- Mask R-CNN


@pytest.mark.parametrize("fpn", [True, False])
def test_mask_rcnn_stages(fpn):
    model = mask_rcnn(3, fpn=fpn, image_size=64, width=4)
    heads = model.roi_heads
    threshold = heads.score_thresh
    heads.score_thresh = 0.0  # what the trace does for its one pass, so that the mask head gets boxes
    try:
        _, diagram, shapes, images = check_every_block(model, (3, 64, 64), detector=True)
        taps = {"box RoIAlign": out(heads.box_roi_pool, batched=False),
                "mask RoIAlign": out(heads.mask_roi_pool, batched=False),
                "mask logits": out(heads.mask_predictor, batched=False),
                "class scores": out(heads.box_predictor, 0, batched=False)}
        seen, detections = hooked(model, images, taps, detector=True)
    finally:
        heads.score_thresh = threshold
    assert {name: shapes[name] for name in seen} == seen
    assert shapes["masks"] == shape_text(detections[0]["masks"], batched=False)
    assert shapes["box RoIAlign"].endswith("×7×7") and shapes["mask RoIAlign"].endswith("×14×14")
    assert shapes["class scores"].endswith("×3")
    assert heads.score_thresh == threshold  # the trace put it back
    levels = [b.name for b in diagram.blocks if b.name.startswith("level ")]
    assert levels == (["level 0", "level 1", "level 2", "level pool"] if fpn else [])


# --------------------------------------------------------------------------- any model, errors


def test_a_sequential_model_is_its_chain_of_children():
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 2, 1))
    fig, diagram, shapes, _ = check_every_block(model, (20, 20))  # (H, W): the first conv's channels
    assert diagram.input_shape == (1, 20, 20) and shapes["3: Conv2d"] == "2×10×10"
    assert len(arrows(fig, "flow")) == 4


def test_the_picture_follows_the_model():
    model = UNet(2, base=4, depth=2)
    before = drawn(viz.architecture(model, (3, 32, 32)))
    model.classifier = nn.Conv2d(4, 7, 1)  # a new head: the drawing must change with it
    after = drawn(viz.architecture(model, (3, 32, 32)))
    assert before["classifier"] == "2×32×32" and after["classifier"] == "7×32×32"
    assert len(drawn(viz.architecture(UNet(2, base=4, depth=3), (32, 32)))) > len(before)


def test_tracing_leaves_the_model_alone():
    model = PSPNet(3, "small", width=4, channels=8).train()
    model.head.eval()  # a mixed state must come back as it was
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    viz.architecture(model, (3, 32, 32))
    assert model.training and not model.head.training and model.backbone.training
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())  # BN running stats too
    assert torch.equal(torch.get_rng_state(), rng)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_errors_name_the_argument():
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got str"):
        viz.architecture("unet", (3, 32, 32))
    model = UNet(2, base=4, depth=2)
    for bad in ("32x32", 32.0, None, True):
        with pytest.raises(TypeError, match="input_size"):
            viz.architecture(model, bad)
    for bad in ((32,), (3, 32, 32, 1), (3, 0, 32), (-1, 32)):
        with pytest.raises(ValueError, match="input_size"):
            viz.architecture(model, bad)
    with pytest.raises(ValueError, match=r"U-Net, SegNet, FCN, DeepLab v1.*nn.Sequential; got Conv2d"):
        viz.architecture(nn.Conv2d(3, 2, 1), (3, 32, 32))
    with pytest.raises(ValueError, match="does not fit a valid U-Net"):  # the model's own message
        viz.architecture(UNet(2, base=4, depth=2, padding="valid"), (3, 33, 33))
    with pytest.raises(TypeError, match="diagram must be"):
        viz.draw_diagram(model)


def test_an_aspp_branch_at_rate_1_is_not_confused_with_the_head():
    from segedu.models.deeplab import DeepLabV3

    model = DeepLabV3(2, "small", width=16, aspp_channels=32, rates=(1, 2, 3))
    names = [block.name for block in viz.trace_blocks(model, (3, 64, 64))]
    assert "3×3 rate 1" in names and "3×3 conv" in names and len(names) == len(set(names))
