"""segedu: image segmentation with deep learning, taught in JupyterLab.

The package holds every piece of real code the lessons use. Importing
``segedu`` is cheap on purpose: submodules (``segedu.data.shapes``,
``segedu.metrics``, ...) are imported where they are needed.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
