"""Lesson 08's demos redraw when a control moves and report what they show."""

import torch

from segedu import widgets
from segedu.data.shapes import ShapesDataset
from segedu.models.fpn import stage_prefixes
from segedu.models.plain import DilatedFCN
from segedu.models.pspnet import PSPNet


def test_pyramid_bins_viewer_redraws_per_level():
    image, _ = ShapesDataset(1, size=48, variant="context")[0]
    demo = widgets.pyramid_bins_viewer(image)
    assert demo.result["bins"] == 1 and demo.result["cells"] == 1
    assert demo.result["spread"] < 1e-6  # one bin: the same vector everywhere
    pictures = {demo.update(bins=b) for b in (1, 2, 3, 6)}
    assert len(pictures) == 4
    spreads = []
    for b in (2, 6, 8):
        demo.update(bins=b)
        spreads.append(demo.result["spread"])
    assert 0 < spreads[0] < spreads[1] < spreads[2]  # finer bins keep more of the image's layout


def test_erf_viewer_follows_model_and_layer():
    torch.manual_seed(0)
    models = {"plain": DilatedFCN(5, "small", width=4), "PSPNet": PSPNet(5, "small", width=4)}
    layers = {name: {**stage_prefixes(m.backbone), "output": m} for name, m in models.items()}
    inputs = torch.randn(2, 3, 48, 48)
    demo = widgets.erf_viewer(layers, inputs)
    assert set(demo.result) == {"extent50", "extent90", "support"}
    deep = demo.update(layer="layer4")
    deep_extent = demo.result["extent90"]
    shallow = demo.update(layer="stem")
    # the stem (7x7 stride 2 conv, 3x3 stride 2 pool) reaches 11 pixels; layer4 far more
    assert demo.result["support"] == 11 and demo.result["extent90"] < deep_extent
    assert shallow != deep
    assert demo.update(log=True) != shallow
    psp = demo.update(model="PSPNet", layer="output", log=False)
    assert demo.result["support"] == 48  # global pooling: every pixel reaches the centre
    assert demo.update(model="plain") != psp
