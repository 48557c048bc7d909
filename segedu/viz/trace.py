"""What an architecture diagram shows, traced from the model itself (no matplotlib here).

A diagram is a list of ``Block`` boxes and ``Edge`` arrows. A family layout (``segedu.viz.layouts``,
``segedu.viz.detection``) says which submodule each box stands for - by its dotted path, the name
``model.get_submodule`` takes - and where it sits on a grid; ``run_trace`` then runs **one forward pass**
with a hook on each of those submodules and writes the shape each one really produced into its box. A box
never holds a shape typed by hand: change the model and the picture changes with it, and a block the forward
pass no longer runs is an error instead of a stale box.

A box shows a submodule's ``"output"``, or its ``"input"`` (the first positional argument of its forward):
what a forward pass builds between two modules - U-Net's concatenation, FCN's sum of score maps, FPN's
top-down addition - is exactly the input of the module that comes next, so it is traced the same way.
``select`` picks one tensor from a structured value (a backbone's ``{"out": ...}`` dict, a tuple), and
``batched=False`` keeps the first dimension where it counts regions of interest rather than images.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from segedu import validate

__all__ = [
    "PORTS",
    "BLOCK_KINDS",
    "EDGE_KINDS",
    "Block",
    "Edge",
    "Diagram",
    "DiagramBuilder",
    "format_shape",
    "check_input_size",
    "example_input",
    "run_trace",
]

PORTS = ("output", "input")
BLOCK_KINDS = ("io", "block", "branch", "merge", "head")  # the fill colour of a box
EDGE_KINDS = ("flow", "skip", "branch")  # main data path; skips and laterals; parallel branches


@dataclass(frozen=True)
class Block:
    """One box: the tensor a submodule produced (or received) in the traced forward pass.

    ``name`` is the box's label, unique in its diagram; ``path`` the submodule (``""``: the model itself);
    ``port`` ``"output"`` or ``"input"``; ``select`` the keys / indices / attribute names leading from that
    value to one tensor; ``batched``: the first dimension is the image batch and is left out of ``shape``
    (``False`` for per-RoI tensors, whose first dimension is the number of regions). ``shape`` is the traced
    shape - ``(C, H, W)`` for an image map - and ``None`` until traced. ``x``, ``y``: grid position (columns
    to the right, rows down); ``kind``: one of ``BLOCK_KINDS``.
    """

    name: str
    path: str
    port: str = "output"
    select: tuple = ()
    batched: bool = True
    x: float = 0.0
    y: float = 0.0
    kind: str = "block"
    shape: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Edge:
    """One arrow from block ``source`` to block ``target`` (their names); ``kind`` one of ``EDGE_KINDS``."""

    source: str
    target: str
    kind: str = "flow"
    label: str = ""


@dataclass(frozen=True)
class Diagram:
    """A traced architecture: ``title``, the ``family`` layout that drew it, the ``input_shape``
    ``(C, H, W)``, its ``blocks`` (each with its traced ``shape``) and ``edges``."""

    title: str
    family: str
    input_shape: tuple[int, int, int]
    blocks: tuple[Block, ...]
    edges: tuple[Edge, ...]

    def block(self, name: str) -> Block:
        """The block called ``name`` (``KeyError`` naming the blocks there are)."""
        for block in self.blocks:
            if block.name == name:
                return block
        raise KeyError(f"no block {name!r} in the diagram; blocks: {[b.name for b in self.blocks]}")

    def edges_of(self, kind: str) -> list[Edge]:
        """The edges of one kind (``"skip"``: U-Net's concatenations, FCN's score skips, FPN's laterals)."""
        return [edge for edge in self.edges if edge.kind == kind]


@dataclass
class DiagramBuilder:
    """Collects a layout's blocks and edges. ``call(model, images)`` runs the forward pass (images
    ``[1, C, H, W]``; a detector takes a list), ``overrides`` are ``(object, attribute, value)`` set only
    for the traced pass (restored after it)."""

    blocks: list[Block] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    call: Callable | None = None  # None: ``model(images)``
    overrides: list[tuple] = field(default_factory=list)

    def block(self, name: str, path: str, x: float, y: float, *, port: str = "output", select=(),
              batched: bool = True, kind: str = "block") -> str:
        """Add a box; returns its name (for ``edge``)."""
        if any(b.name == name for b in self.blocks):
            raise ValueError(f"a diagram's block names must be unique, {name!r} is there twice")
        validate.choice(port, "port", PORTS)
        validate.choice(kind, "kind", BLOCK_KINDS)
        select = tuple(select) if isinstance(select, (tuple, list)) else (select,)
        self.blocks.append(Block(name, path, port, select, batched, float(x), float(y), kind))
        return name

    def edge(self, source: str, target: str, kind: str = "flow", label: str = "") -> None:
        validate.choice(kind, "kind", EDGE_KINDS)
        names = {b.name for b in self.blocks}
        for end in (source, target):
            if end not in names:
                raise ValueError(f"edge {source!r} -> {target!r}: no block {end!r} (add the block first)")
        self.edges.append(Edge(source, target, kind, label))

    def chain(self, names: Sequence[str], kind: str = "flow", label: str = "") -> None:
        """Edges ``names[0] -> names[1] -> ...``."""
        for source, target in zip(names, names[1:]):
            self.edge(source, target, kind, label)


def format_shape(shape: Sequence[int]) -> str:
    """``(64, 32, 32)`` -> ``"64×32×32"`` (the label under a block's name)."""
    return "×".join(str(int(n)) for n in shape)


def check_input_size(input_size, channels: int) -> tuple[int, int, int]:
    """``(C, H, W)``, ``(H, W)`` (C = ``channels``, the model's) or one int (a square) -> ``(C, H, W)``."""
    if isinstance(input_size, (tuple, list, torch.Size)):
        if len(input_size) not in (2, 3):
            raise ValueError(f"input_size must be (C, H, W), (H, W) or an int, got {tuple(input_size)!r}")
        sizes = [validate.integer(n, "input_size", minimum=1) for n in input_size]
        return tuple(sizes) if len(sizes) == 3 else (channels, *sizes)
    if isinstance(input_size, bool) or not isinstance(input_size, int):
        raise TypeError(f"input_size must be a tuple (C, H, W) or (H, W), or an int, got "
                        f"{type(input_size).__name__} {input_size!r}")
    side = validate.positive_int(input_size, "input_size")
    return (channels, side, side)


def example_input(input_shape: Sequence[int], device=None, dtype=torch.float32) -> torch.Tensor:
    """The image batch every trace runs on: ``[1, C, H, W]`` uniform in [0, 1] from a fixed seed (the same
    tensor every time; the global random state is left alone)."""
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(1, *input_shape, generator=generator, dtype=dtype)
    return images if device is None else images.to(device)


def _pick(value, select: tuple, where: str) -> torch.Tensor:
    for key in select:
        if isinstance(key, int) or isinstance(value, Mapping):
            value = value[key]
        else:  # an attribute, e.g. the ``tensors`` of torchvision's ImageList
            value = getattr(value, key)
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{where} is a {type(value).__name__}, not a tensor: the layout must select one")
    return value


def run_trace(model: nn.Module, builder: DiagramBuilder, images: torch.Tensor) -> list[Block]:
    """Run ``builder.call(model, images)`` once under ``torch.no_grad`` in eval mode, with a hook on every
    block's submodule, and return the blocks with their traced ``shape``.

    Eval mode: BatchNorm uses its running statistics (a 1x1 pyramid bin of one image would fail in training
    mode) and nothing in the model changes; every module's own mode, the ``overrides`` and the hooks are
    restored afterwards. A submodule called more than once shows its first call. A block whose submodule the
    forward pass never ran raises ``RuntimeError``: the layout no longer matches the model.
    """
    by_hook: dict[tuple[str, str], list[int]] = {}
    for index, block in enumerate(builder.blocks):
        by_hook.setdefault((block.path, block.port), []).append(index)
    shapes: dict[int, tuple[int, ...]] = {}

    def record(key, value):
        for index in by_hook[key]:
            if index in shapes:
                continue  # a module called twice: the first call is the one drawn
            block = builder.blocks[index]
            tensor = _pick(value, block.select, f"block {block.name!r} ({block.path or 'model'} {block.port})")
            shapes[index] = tuple(tensor.shape[1:] if block.batched else tensor.shape)

    handles = []
    modes = {module: module.training for module in model.modules()}
    saved = [(obj, name, getattr(obj, name)) for obj, name, _ in builder.overrides]
    try:
        for path, port in by_hook:
            module = model.get_submodule(path)
            if port == "output":
                hook = (lambda key: lambda mod, args, output: record(key, output))((path, port))
                handles.append(module.register_forward_hook(hook))
            else:
                hook = (lambda key: lambda mod, args: record(key, args[0]))((path, port))
                handles.append(module.register_forward_pre_hook(hook))
        for obj, name, value in builder.overrides:
            setattr(obj, name, value)
        model.eval()
        with torch.no_grad():
            (builder.call or (lambda m, x: m(x)))(model, images)
    finally:
        for handle in handles:
            handle.remove()
        for obj, name, value in saved:
            setattr(obj, name, value)
        for module, mode in modes.items():
            module.training = mode
    missing = [b.name for i, b in enumerate(builder.blocks) if i not in shapes]
    if missing:
        raise RuntimeError(f"the forward pass never ran the submodules of blocks {missing}: the diagram's layout "
                           f"no longer matches {type(model).__name__}")
    return [dataclasses.replace(b, shape=shapes[i]) for i, b in enumerate(builder.blocks)]
