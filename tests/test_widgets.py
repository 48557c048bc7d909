"""Each demo's update function changes the picture when a control moves."""

import pytest

from segedu import widgets
from segedu.data.shapes import ShapesDataset


def test_scene_browser_redraws_for_each_scene_and_view():
    demo = widgets.scene_browser(ShapesDataset(6, size=32, variant="instance"))
    pictures = {demo.update(index=i) for i in range(3)}
    assert len(pictures) == 3, "moving the scene slider must change the picture"
    assert demo.image.value == demo.update(index=2)  # the widget shows what update returned
    views = {view: demo.update(view=view) for view in ("semantic", "instance", "panoptic")}
    assert len(set(views.values())) == 3
    assert demo.result["view"] == "panoptic" and demo.result["objects"] >= 1
    # moving the control itself (as a browser does) redraws too
    before = demo.image.value
    demo.controls["index"].value = 4
    assert demo.image.value != before
    with pytest.raises(ValueError, match="unknown control"):
        demo.update(colour="red")
