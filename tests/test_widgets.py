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


def test_the_package_re_exports_every_lesson_module():
    """``segedu.widgets`` re-exports the public names of its frame and of each lesson's module, and nothing else."""
    import importlib
    import pkgutil

    names = []
    lessons = sorted(info.name for info in pkgutil.iter_modules(widgets.__path__) if info.name.startswith("lesson"))
    for module in ["frame", "predict"] + lessons:
        module = importlib.import_module(f"segedu.widgets.{module}")
        assert module.__doc__ and module.__all__, module.__name__
        for name in module.__all__:
            assert getattr(widgets, name) is getattr(module, name), (module.__name__, name)
        names += module.__all__
    assert sorted(widgets.__all__) == sorted(names) and len(set(names)) == len(names)
