"""Lessons 05-06 widgets: training snapshots of the FCNs, U-Net feature maps; every control redraws."""

import pytest
import torch

from segedu import widgets
from segedu.data.shapes import CLASSES, ShapesDataset
from segedu.models.fcn import small_fcn
from segedu.models.unet import UNet


@pytest.fixture(scope="module")
def scenes():
    return ShapesDataset(3, size=32, seed=1).batch(range(3))


def test_prediction_snapshots_record_every_k_steps(scenes):
    images, _ = scenes
    recorder = widgets.PredictionSnapshots(images, every=2)
    model = small_fcn(len(CLASSES), "8s", width=4).train()
    for step in range(1, 6):
        recorder(step, model)
    assert recorder.steps == [2, 4]
    assert [tuple(t.shape) for t in recorder.labels] == [(3, 32, 32)] * 2
    assert recorder.labels[0].dtype == torch.int64
    with pytest.raises(ValueError, match="every"):
        widgets.PredictionSnapshots(images, every=0)


def test_fcn_training_browser_redraws_for_each_snapshot_and_image(scenes):
    images, masks = scenes
    snapshots = {}
    for name in ("FCN-32s", "FCN-8s"):
        recorder = widgets.PredictionSnapshots(images, every=1)
        recorder.steps = [10, 20, 30]
        # Distinct fake predictions per step, so that moving the slider must change the picture.
        recorder.labels = [torch.full((3, 32, 32), k + 1) for k in range(3)]
        recorder.labels[2] = masks.clone()
        snapshots[name] = recorder
    demo = widgets.fcn_training_browser(images, masks, snapshots, CLASSES)
    assert demo.result == {"step": 30, "index": 0}  # starts at the trained model
    pictures = {demo.update(snapshot=k) for k in range(3)}
    assert len(pictures) == 3
    assert demo.result["step"] == 30
    assert demo.update(index=1) != demo.update(index=2)
    before = demo.image.value
    demo.controls["snapshot"].value = 0
    assert demo.image.value != before and demo.result["step"] == 10
    with pytest.raises(ValueError, match="snapshots"):
        widgets.fcn_training_browser(images, masks, {}, CLASSES)


def test_unet_feature_browser_moves_through_levels_and_channels(scenes):
    images, _ = scenes
    torch.manual_seed(0)
    models = {"U-Net": UNet(len(CLASSES), base=4, depth=2),
              "no skips": UNet(len(CLASSES), base=4, depth=2, skips=False)}
    demo = widgets.unet_feature_browser(models, images, CLASSES)
    assert demo.controls["level"].options == ("enc0", "enc1", "bottleneck", "dec1", "dec0")
    levels = {level: demo.update(level=level) for level in ("enc0", "dec0", "bottleneck")}
    assert len(set(levels.values())) == 3
    assert demo.result["no skips"] == (16, 8, 8)  # the bottleneck: 4 * 2**2 channels at 1/4 of the size
    assert len({levels["bottleneck"], demo.update(channel=5)}) == 2
    assert demo.update(index=2) != demo.update(level="dec0")
    assert demo.result["U-Net"] == (4, 32, 32)  # dec0: base channels at full size
    assert all(m.training for m in models.values())  # the widget leaves the models in the mode it found
    with pytest.raises(ValueError, match="models"):
        widgets.unet_feature_browser({}, images)
