"""Where the boxes of each model family go, read from the model's own attributes (lessons 05-09).

A layout walks the model object - ``unet.encoder``, ``fcn.backbone.channels``, ``aspp.convs``,
``pspnet.ppm.bins``, ``fpn.neck.lateral`` - and places one ``Block`` per piece on a grid, with the arrows
between them; ``segedu.viz.trace.run_trace`` then fills in the shapes from one forward pass. Nothing here
types a shape or a count: a U-Net of depth 3 gets three skips, an ASPP with four rates six branches, a
PSPNet with bins (1, 3) two pooled maps.

Families (``FAMILIES``): U-Net (Ronneberger et al., MICCAI 2015) and its overlap-tile wrapper
``MirrorContext``; SegNet (Badrinarayanan et al., TPAMI 2017); FCN-32s/16s/8s (Long et al., CVPR 2015); DeepLab v1, v2, v3, v3+ (Chen et al. 2015-2018);
PSPNet (Zhao et al., CVPR 2017); FPN with Panoptic FPN's semantic head (Lin et al., CVPR 2017; Kirillov et
al., CVPR 2019); the plain dilated FCN; torchvision's Mask R-CNN (He et al., ICCV 2017,
``segedu.viz.detection``); and any ``nn.Sequential``, drawn as the chain of its children (a sequential
model has no other data flow). Any other model is a ``ValueError`` naming these.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from segedu.models.deeplab import ASPP, ASPPPooling, DeepLabV1, DeepLabV2, DeepLabV3, DeepLabV3Plus
from segedu.models.fcn import FCN
from segedu.models.fpn import FPN
from segedu.models.plain import DilatedFCN
from segedu.models.pspnet import PSPNet
from segedu.models.unet import MirrorContext, UNet
from segedu.viz.trace import Block, Diagram, DiagramBuilder, check_input_size, example_input, format_shape, run_trace

__all__ = ["FAMILIES", "STAGES", "backbone_column", "trace_architecture", "trace_blocks"]

STAGES = ("stem", "layer1", "layer2", "layer3", "layer4")  # a ResNet encoder (segedu.models.backbones)


def backbone_column(b: DiagramBuilder, backbone: nn.Module, path: str, x: float = 0, y0: float = 1,
                    key: str = "out") -> list[str]:
    """One box per stage of an encoder, top to bottom from row ``y0``; returns their names (deepest last).

    A ResNet encoder (``stem``, ``layer1..4``; stages a short encoder replaced by ``nn.Identity`` are left
    out) shows each stage's output; an encoder that only describes its taps in a ``channels`` dict (the VGG
    encoders: ``pool1 .. pool5``) shows each tap; anything else one box, its output ``key``.
    """
    if all(hasattr(backbone, name) for name in STAGES):
        names = [n for n in STAGES if not isinstance(getattr(backbone, n), nn.Identity)]
        return [b.block(n, f"{path}.{n}", x, y0 + i) for i, n in enumerate(names)]
    taps = getattr(backbone, "channels", None)
    if isinstance(taps, dict) and taps and key not in taps:
        return [b.block(tap, path, x, y0 + i, select=tap) for i, tap in enumerate(taps)]
    return [b.block("backbone", path, x, y0, select=key)]


def _column(count: int, centre: float, avoid_centre: bool = False) -> list[float]:
    """Rows of ``count`` parallel branches around ``centre`` (off the centre row itself if asked, where
    an arrow passes straight through)."""
    rows = [centre - (count - 1) / 2 + k for k in range(count)]
    if avoid_centre and centre in rows:
        rows = [r + 0.5 for r in rows]
    return rows


# --------------------------------------------------------------------------- U-Net


def _unet(b: DiagramBuilder, model: nn.Module) -> str:
    wrapped = isinstance(model, MirrorContext)
    unet, p = (model.unet, "unet.") if wrapped else (model, "")
    d = unet.depth
    start = b.block("input", "", 0, 0, port="input", kind="io")
    if wrapped:  # the mirrored context around the image: the input the valid U-Net really gets
        b.edge(start, b.block("mirror pad", "unet", 1, 0, port="input", kind="merge"), label="mirror")
        start = "mirror pad"
    enc = [b.block(f"enc{i}", f"{p}encoder.{i}", i, i + 1) for i in range(d)]
    bottom = b.block("bottleneck", f"{p}encoder.{d}", d, d + 1)
    b.edge(start, enc[0])
    b.chain(enc + [bottom], label="max-pool 2×2")
    previous = bottom
    for j, level in enumerate(range(d - 1, -1, -1)):  # ups[j] and decoder[j] work at level depth-1-j
        up = b.block(f"up{level}", f"{p}ups.{j}", 2 * d - level, level + 2, kind="merge")
        dec = b.block(f"dec{level}", f"{p}decoder.{j}", 2 * d - level, level + 1)
        b.edge(previous, up, label="up 2×2" if isinstance(unet.ups[j], nn.ConvTranspose2d) else "bilinear + 1×1")
        b.edge(up, dec)
        if unet.skips:
            b.edge(enc[level], dec, "skip", "crop + concat" if unet.padding == "valid" else "concat")
        previous = dec
    b.chain([previous, b.block("classifier", f"{p}classifier", 2 * d, 0, kind="head")], label="1×1")
    b.edge("classifier", b.block("output", "", 2 * d + 1, 0, kind="io"), label="crop")
    skips = "skips concatenated" if unet.skips else "no skips"
    return f"U-Net{' in MirrorContext' if wrapped else ''}: depth {d}, {unet.padding} convolutions, {skips}"


def _segnet(b: DiagramBuilder, model: nn.Module) -> str:
    """SegNet (Badrinarayanan et al., TPAMI 2017): encoder stages along the top row, below each the decoder's
    unpooled map (the input of its decoder stage: the unpooling is a function, not a module) and the stage."""
    stages = len(model.encoder)
    b.block("input", "", 0, 0, port="input", kind="io")
    enc = [b.block(f"enc{k}", f"encoder.{k - 1}", k, 0) for k in range(1, stages + 1)]
    b.edge("input", enc[0])
    b.chain(enc, label="max-pool")
    previous = None
    for j, k in enumerate(range(stages, 0, -1)):  # decoder[j] works at stage k
        column = k + 1 if k == stages else k  # the deepest unpooling reads enc{k} pooled: one column further
        unpool = b.block(f"unpool{k}", f"decoder.{j}", column, 1, port="input", kind="merge")
        b.edge(enc[k - 1], unpool, "skip", "pool → unpool" if k == stages else "indices")
        if previous is not None:
            b.edge(previous, unpool)
        previous = b.block(f"dec{k}", f"decoder.{j}", column, 2)
        b.edge(unpool, previous)
    b.chain([previous, b.block("classifier", "classifier", 0, 2, kind="head")], label="1×1")
    b.edge("classifier", b.block("output", "", 0, 1, kind="io"), label="crop")
    return f"SegNet: {stages} stages, the decoder unpools with the encoder's max-pooling indices"


# --------------------------------------------------------------------------- FCN


def _fcn(b: DiagramBuilder, model: FCN) -> str:
    taps = list(model.backbone.channels)
    row0 = [b.block("input", "", 0, 0, port="input", kind="io")]
    row0 += [b.block(tap, "backbone", i + 1, 0, select=tap) for i, tap in enumerate(taps)]
    row0 += [b.block("fc6–fc7", "head", len(taps) + 1, 0), b.block("score", "score_pool5", len(taps) + 2, 0, kind="head")]
    b.chain(row0)
    x, row, score = len(taps) + 2, 0, "score"
    # (upsampling module, skip tap, its score layer, the module that receives the sum) in forward order
    skips = {"16s": [("up_pool5", "pool4", "score_pool4", "upsample")],
             "8s": [("up_pool5", "pool4", "score_pool4", "up_pool4"), ("up_pool4", "pool3", "score_pool3", "upsample")]}
    for up, tap, layer, receiver in skips.get(model.variant, []):
        b.edge(score, b.block(f"{up} ×2", up, x, row + 1, kind="merge"), label="×2")
        fine = b.block(f"score {tap}", layer, taps.index(tap) + 1, row + 2, kind="head")
        b.edge(tap, fine, "skip", "1×1")
        total = b.block(f"+ {tap}", receiver, x, row + 2, port="input", kind="merge")
        b.edge(f"{up} ×2", total)
        b.edge(fine, total, "skip", "add")
        score, row = total, row + 2
    b.edge(score, b.block(f"upsample ×{model.upsample.factor}", "upsample", x, row + 1, kind="merge"))
    b.edge(f"upsample ×{model.upsample.factor}", b.block("output", "", x + 1, row + 1, kind="io"), label="crop")
    added = [tap for _, tap, _, _ in skips.get(model.variant, [])]
    return f"FCN-{model.variant}: " + (f"scores of {' and '.join(added)} added" if added else "no skips")


# --------------------------------------------------------------------------- DeepLab, PSPNet, dilated FCN


def _encoder(b: DiagramBuilder, model: nn.Module) -> tuple[list[str], float]:
    """Input box and backbone column (x = 0); returns the backbone's names and the deepest one's row."""
    names = backbone_column(b, model.backbone, "backbone")
    b.chain([b.block("input", "", 0, 0, port="input", kind="io")] + names)
    return names, _row(b, names[-1])


def _row(b: DiagramBuilder, name: str) -> float:
    return next(block.y for block in b.blocks if block.name == name)


def _branch_name(branch: nn.Module) -> str:
    if isinstance(branch, ASPPPooling):
        return "image pooling"
    conv = next(m for m in branch.modules() if isinstance(m, nn.Conv2d))
    k, rate = conv.kernel_size[0], conv.dilation[0]
    # A 3x3 branch keeps its rate in the name even at rate 1: the head after ASPP is "3×3 conv" too.
    return f"{k}×{k} conv" if k == 1 else f"{k}×{k} rate {rate}"


def _aspp(b: DiagramBuilder, aspp: ASPP, path: str, source: str, x: float, centre: float) -> str:
    """ASPP's parallel branches (``aspp.convs``, column ``x + 0.5``), their concatenation (``x + 2``) and the
    1x1 projection (``x + 3``); returns the projection's name. (1.5 columns between a fan and its ends keep
    the slanted arrows clear of the neighbouring branches.)"""
    concat = "ASPP concat"
    rows = _column(len(aspp.convs), centre)
    names = []
    for j, (branch, row) in enumerate(zip(aspp.convs, rows)):
        name = _branch_name(branch)
        name = name if name not in names else f"{name} #{j}"
        names.append(b.block(name, f"{path}.convs.{j}", x + 0.5, row, kind="branch"))
        b.edge(source, name, "branch")
    b.block(concat, f"{path}.project", x + 2, centre, port="input", kind="merge")
    for name in names:
        b.edge(name, concat, "branch")
    b.edge(concat, b.block("ASPP project", f"{path}.project", x + 3, centre), label="1×1")
    return "ASPP project"


def _finish(b: DiagramBuilder, names: list[str], x: float, row: float) -> None:
    """Boxes ``names`` (already added) chained left to right, then the output box."""
    b.chain(names)
    b.edge(names[-1], b.block("output", "", x, row, kind="io"), label="bilinear")


def _deeplab_v3(b: DiagramBuilder, model: DeepLabV3) -> str:
    stages, r = _encoder(b, model)
    head = len(model.classifier)
    project = _aspp(b, model.classifier[0], "classifier.0", stages[-1], 1, r)
    conv = b.block("3×3 conv", f"classifier.{head - 2}", 5, r)
    _finish(b, [project, conv, b.block("classifier", f"classifier.{head - 1}", 6, r, kind="head")], 7, r)
    return f"DeepLab v3: output stride {model.output_stride}, ASPP rates {model.rates} + 1×1 + image pooling"


def _deeplab_v3plus(b: DiagramBuilder, model: DeepLabV3Plus) -> str:
    stages, r = _encoder(b, model)
    low = "layer1" if "layer1" in stages else b.block("low-level", "backbone", 0, r + 1, select="low_level")
    top = _row(b, low)
    # the branches stay below the low-level row, which the skip to the decoder crosses
    project = _aspp(b, model.aspp, "aspp", stages[-1], 1, max(r, top + 1 + (len(model.aspp.convs) - 1) / 2))
    reduce = b.block("reduce 1×1", "reduce", 4, top)
    b.edge(low, reduce, "skip", "low-level")
    concat = b.block("decoder concat", "decoder", 5, top, port="input", kind="merge")
    b.edge(project, concat, label=f"bilinear ×{model.output_stride // 4}")
    b.edge(reduce, concat, "skip", "concat")
    decoder = b.block("decoder 3×3 ×2", "decoder", 6, top)
    _finish(b, [concat, decoder, b.block("classifier", "classifier", 7, top, kind="head")], 8, top)
    return f"DeepLab v3+: output stride {model.output_stride}, ASPP rates {model.rates}, decoder at stride 4"


def _deeplab_v2(b: DiagramBuilder, model: DeepLabV2) -> str:
    stages, r = _encoder(b, model)
    rates = []
    for j, (branch, row) in enumerate(zip(model.classifier.branches, _column(len(model.classifier.branches), r))):
        rates.append(branch.dilation[0])
        b.edge(stages[-1], b.block(f"3×3 rate {branch.dilation[0]} #{j}", f"classifier.branches.{j}", 1.5, row,
                                   kind="branch"), "branch")
    b.block("sum of scores", "classifier", 3, r, kind="merge")
    for block in [x for x in b.blocks if x.kind == "branch"]:
        b.edge(block.name, "sum of scores", "branch")
    b.edge("sum of scores", b.block("output", "", 4, r, kind="io"), label="bilinear")
    return f"DeepLab v2: ASPP of summed score maps, rates {tuple(rates)}"


def _deeplab_v1(b: DiagramBuilder, model: DeepLabV1) -> str:
    stages, r = _encoder(b, model)
    convs = [str(i) for i, m in enumerate(model.head) if isinstance(m, nn.Conv2d)]
    names = [f"fc{6 + k}" for k in range(len(convs))] if len(convs) == 3 else [f"conv{k}" for k in range(len(convs))]
    boxes = [b.block(n, f"head.{i}", k + 1, r, kind="head" if k == len(convs) - 1 else "block")
             for k, (n, i) in enumerate(zip(names, convs))]
    b.edge(stages[-1], boxes[0])
    _finish(b, boxes, len(boxes) + 1, r)
    return f"DeepLab v1 LargeFOV: output stride {model.output_stride}, dilated fc6"


def _pspnet(b: DiagramBuilder, model: PSPNet) -> str:
    stages, r = _encoder(b, model)
    concat = "concat"
    bins = []
    for j, (size, row) in enumerate(zip(model.ppm.bins, _column(len(model.ppm.bins), r, avoid_centre=True))):
        name = f"bin {size}×{size}" if f"bin {size}×{size}" not in bins else f"bin {size}×{size} #{j}"
        bins.append(b.block(name, f"ppm.reduce.{j}", 1.5, row, kind="branch"))
        b.edge(stages[-1], name, "branch")
    b.block(concat, "ppm", 3, r, kind="merge")
    b.edge(stages[-1], concat, "branch", "features")
    for name in bins:
        b.edge(name, concat, "branch")
    conv = b.block("3×3 conv", "head.0", 4, r)
    b.edge(concat, conv)
    _finish(b, [conv, b.block("classifier", f"head.{len(model.head) - 1}", 5, r, kind="head")], 6, r)
    aux = "; the auxiliary head (training loss only) is not drawn" if model.aux_head is not None else ""
    return f"PSPNet: pyramid pooling, bins {model.ppm.bins}{aux}"


def _dilated_fcn(b: DiagramBuilder, model: DilatedFCN) -> str:
    stages, r = _encoder(b, model)
    conv = b.block("3×3 conv", "classifier.2", 1, r)  # conv, BN, ReLU: the ReLU's output
    b.edge(stages[-1], conv)
    _finish(b, [conv, b.block("classifier", f"classifier.{len(model.classifier) - 1}", 2, r, kind="head")], 3, r)
    return f"dilated FCN: output stride {model.output_stride}, no context module"


# --------------------------------------------------------------------------- FPN


def _fpn(b: DiagramBuilder, model: FPN) -> str:
    levels = len(model.neck.lateral)
    bottom = levels + 2  # rows: top level at 1, stem below the finest, input at the bottom
    b.block("input", "", 0, bottom, port="input", kind="io")
    b.chain(["input", b.block("stem", "backbone.stem", 0, bottom - 1)])
    previous = "stem"
    c_names, m_names = [], []
    for k in range(levels):  # fine to coarse: C2 .. C5 going up
        c_names.append(b.block(f"C{k + 2}", f"backbone.layer{k + 1}", 0, bottom - 2 - k))
        b.edge(previous, c_names[-1])
        previous = c_names[-1]
    for k in range(levels - 1, -1, -1):  # the top-down pathway: coarse to fine
        m = b.block(f"M{k + 2}", f"neck.smooth.{k}", 1, bottom - 2 - k, port="input", kind="merge")
        b.edge(c_names[k], m, "skip", "1×1")
        if m_names:
            b.edge(m_names[-1], m, label="2× up, +")
        m_names.append(m)
    centre = bottom - 2 - (levels - 1) / 2
    b.block("sum", "head.classifier", 4.5, centre, port="input", kind="merge")
    for k in range(levels):
        p = b.block(f"P{k + 2}", f"neck.smooth.{k}", 2, bottom - 2 - k)
        b.edge(f"M{k + 2}", p, label="3×3")
        ups = model.head.upsamplings[k]
        h = b.block(f"P{k + 2} head", f"head.branches.{k}", 3, bottom - 2 - k, kind="branch")
        b.edge(p, h, "branch", f"up ×{2 ** ups}" if ups else "")  # ups stages of 3x3 conv + 2x upsampling
        b.edge(h, "sum", "branch")
    _finish(b, ["sum", b.block("classifier", "head.classifier", 5.5, centre, kind="head")], 6.5, centre)
    return f"FPN: {levels} levels of {model.neck.channels} channels, semantic head at stride {model.strides[0]}"


# --------------------------------------------------------------------------- nn.Sequential, the registry


def _sequential(b: DiagramBuilder, model: nn.Sequential) -> str:
    names = [b.block("input", "", 0, 0, port="input", kind="io")]
    for i, (name, child) in enumerate(model.named_children(), start=1):
        row, column = divmod(i, 6)  # rows of six, snaking, so that every arrow is short
        names.append(b.block(f"{name}: {type(child).__name__}", name, 5 - column if row % 2 else column, row))
    b.chain(names)
    return f"nn.Sequential of {len(names) - 1} modules"


def _mask_rcnn(b: DiagramBuilder, model: nn.Module) -> str:
    from segedu.viz.detection import mask_rcnn_layout  # torchvision's detection models: only when drawn

    return mask_rcnn_layout(b, model)


def _is_mask_rcnn(model: nn.Module) -> bool:
    if not type(model).__module__.startswith("torchvision"):
        return False
    from torchvision.models.detection import MaskRCNN

    return isinstance(model, MaskRCNN)


# Checked in order: the first family whose test accepts the model draws it.
_REGISTRY: list[tuple[str, Callable, Callable]] = [
    ("U-Net", lambda m: isinstance(m, (UNet, MirrorContext)), _unet),
    ("SegNet", lambda m: type(m).__module__ == "segedu.models.segnet" and type(m).__name__ == "SegNet", _segnet),
    ("FCN", lambda m: isinstance(m, FCN), _fcn),
    ("DeepLab v1", lambda m: isinstance(m, DeepLabV1), _deeplab_v1),
    ("DeepLab v2", lambda m: isinstance(m, DeepLabV2), _deeplab_v2),
    ("DeepLab v3", lambda m: isinstance(m, DeepLabV3), _deeplab_v3),
    ("DeepLab v3+", lambda m: isinstance(m, DeepLabV3Plus), _deeplab_v3plus),
    ("PSPNet", lambda m: isinstance(m, PSPNet), _pspnet),
    ("FPN", lambda m: isinstance(m, FPN), _fpn),
    ("dilated FCN", lambda m: isinstance(m, DilatedFCN), _dilated_fcn),
    ("Mask R-CNN (torchvision)", _is_mask_rcnn, _mask_rcnn),
    ("nn.Sequential", lambda m: isinstance(m, nn.Sequential), _sequential),
]
FAMILIES = tuple(name for name, _, _ in _REGISTRY)  # what trace_architecture draws, in the order it checks


def _in_channels(model: nn.Module) -> int:
    """The image channels the model takes (for an ``input_size`` of ``(H, W)``)."""
    for owner in (model, getattr(model, "unet", None), getattr(model, "backbone", None)):
        channels = getattr(owner, "in_channels", None)
        if isinstance(channels, int):
            return channels
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    return conv.in_channels if conv is not None else 3


def trace_architecture(model: nn.Module, input_size=(3, 64, 64)) -> Diagram:
    """The diagram of ``model``: its blocks, their shapes from one forward pass of an image of
    ``input_size`` (``(C, H, W)``, ``(H, W)`` or a side; one image, ``example_input``), and the arrows.

    Raises ``TypeError`` for a ``model`` that is not an ``nn.Module`` or an ``input_size`` of the wrong type,
    ``ValueError`` for a bad ``input_size``, a size the model refuses, or a model of no known family
    (the message lists ``FAMILIES``). The model is left as it was (mode, parameters, buffers).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    family = next(((name, layout) for name, accepts, layout in _REGISTRY if accepts(model)), None)
    if family is None:
        raise ValueError(f"model must be one of the families segedu.viz draws: {', '.join(FAMILIES)}; "
                         f"got {type(model).__name__}")
    input_shape = check_input_size(input_size, _in_channels(model))
    parameter = next(iter(model.parameters()), None)
    device, dtype = (parameter.device, parameter.dtype) if parameter is not None else (None, torch.float32)
    builder = DiagramBuilder()
    title = family[1](builder, model)
    blocks = run_trace(model, builder, example_input(input_shape, device, dtype))
    return Diagram(f"{title} — input {format_shape(input_shape)}", family[0], input_shape, tuple(blocks),
                   tuple(builder.edges))


def trace_blocks(model: nn.Module, input_size=(3, 64, 64)) -> list[Block]:
    """The blocks of ``trace_architecture(model, input_size)``: name, submodule path, traced shape."""
    return list(trace_architecture(model, input_size).blocks)
