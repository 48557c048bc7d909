"""Data: synthetic scenes, the PASCAL VOC layout, real sample images, and real datasets on request.

The names live in the submodules (import them from there; importing the package
stays cheap): ``shapes`` (the synthetic scenes, drawn by ``render``), ``voc`` (the
PASCAL VOC layout; ``voc_mini`` the shipped sample), ``pets`` (Oxford-IIIT Pet), ``transforms`` (joint image +
mask augmentation), ``tasks`` (semantic / instance / panoptic outputs), ``samples`` (matplotlib's pictures),
``coast`` (a land / water task on matplotlib's elevation map) and ``download`` (opt-in downloads of datasets and
weights, from the table in ``resources``).
"""

__all__ = ["coast", "download", "pets", "render", "resources", "samples", "shapes", "tasks", "transforms", "voc",
           "voc_mini"]
