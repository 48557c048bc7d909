"""Pictures (matplotlib): images and masks (``pictures``) and architecture diagrams drawn from the model
object itself (``diagram``).

* ``pictures`` - palettes, colourised masks, overlays and grids;
* ``diagram`` - ``architecture(model, input_size)``: a model's blocks, their shapes from one forward pass and
  the skips or branches between them, drawn from the model, so a picture cannot drift from the code;
* ``layouts`` / ``detection`` - where each family's boxes go, read from the model's attributes;
  ``trace`` - the blocks, edges and the hooked forward pass behind a diagram (no matplotlib).

Every public name is re-exported: lessons and widgets write ``viz.show_grid(...)``,
``viz.architecture(model, input_size)``, ``viz.trace_blocks(model, input_size)``.
"""

from segedu.viz import diagram, layouts, pictures, trace

__all__ = [
    *pictures.__all__,
    "architecture",
    "draw_diagram",
    "trace_architecture",
    "trace_blocks",
    "FAMILIES",
    "Block",
    "Edge",
    "Diagram",
    "example_input",
    "format_shape",
]

from segedu.viz.diagram import architecture, draw_diagram  # noqa: E402
from segedu.viz.layouts import FAMILIES, trace_architecture, trace_blocks  # noqa: E402
from segedu.viz.pictures import *  # noqa: E402, F403
from segedu.viz.trace import Block, Diagram, Edge, example_input, format_shape  # noqa: E402
