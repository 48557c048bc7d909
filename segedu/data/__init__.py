"""Data: synthetic scenes, the PASCAL VOC layout, and real sample images.

The names live in the submodules (import them from there; importing the package
stays cheap): ``shapes`` (the synthetic scenes, drawn by ``render``), ``voc`` (the
PASCAL VOC layout; ``voc_mini`` the shipped sample), ``transforms`` (joint image + mask augmentation), ``tasks``
(semantic / instance / panoptic outputs) and ``samples`` (matplotlib's pictures).
"""

__all__ = ["render", "samples", "shapes", "tasks", "transforms", "voc", "voc_mini"]
