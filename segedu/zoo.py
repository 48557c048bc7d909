"""The semantic models of the course by name: ``build_model("unet", num_classes)``.

One table, ``MODEL_NAMES``, of the architectures lessons 05-08 build by hand, each at the CPU-trainable
size the lessons use (base width ``profile.width``, a small encoder trained from scratch):

* ``fcn8s``: ``small_fcn(C, "8s")``, FCN-8s (Long et al., CVPR 2015), lesson 05;
* ``unet``: ``UNet(C, base=width)``, "same" padding (Ronneberger et al., MICCAI 2015), lesson 06;
* ``deeplabv3``: ``DeepLabV3(C, "small")``, ASPP + image pooling (Chen et al., arXiv 2017), lesson 07;
* ``deeplabv3plus``: ``DeepLabV3Plus(C, "small")``, + a stride-4 decoder (Chen et al., ECCV 2018), lesson 07;
* ``pspnet``: ``PSPNet(C, "small")``, pyramid pooling 1, 2, 3, 6 (Zhao et al., CVPR 2017), lesson 08;
* ``fpn``: ``FPN(C, "small")``, top-down pathway + lateral sums (Lin et al., CVPR 2017), lesson 08.

Every model maps images ``[B, 3, H, W]`` to logits ``[B, C, H, W]``. Keyword arguments override the
defaults and go straight to the constructor, so the same name builds a paper-sized network too:
``build_model("deeplabv3", 21, backbone="resnet50", output_stride=8)``.

``pretrained("deeplabv3_resnet50")`` is the one model with trained weights: torchvision's DeepLab v3
(ResNet-50, output stride 8) trained on COCO with the 21 VOC labels, loaded into the course's ``DeepLabV3``.
The weights come from the data folder (``python -m segedu download deeplabv3_resnet50``); nothing is fetched
unless asked for (``download=True``).

``model_spec`` returns the resolved constructor arguments as plain values; ``segedu.distributed`` stores
them in its checkpoints so that ``load_model(path)`` rebuilds the network without knowing how it was made.
Modules are imported when a model is built (lazily): importing the zoo costs nothing.

To compare models (lesson 11): ``count_parameters``, ``forward_flops`` (``torch.utils.flop_counter``),
``conv2d_flops`` (the same count for one convolution, by its formula), ``forward_calls`` (the torch calls of a
forward pass: the per-call overhead a batch shares) and ``latency`` (best-of-N seconds). The counts are what a
test can check on a busy machine; the latency is for showing.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from torch import nn

from segedu import runtime, validate

__all__ = ["MODEL_NAMES", "PRETRAINED", "SMALL_ASPP_RATES", "model_spec", "build_model", "describe", "load_model",
           "pretrained",
           "count_parameters", "conv2d_flops", "forward_flops", "forward_calls", "latency"]

# ASPP rates for the small encoder at output stride 16: a 64-256 px scene leaves a 4-16 px feature map, on
# which the paper's rates (6, 12, 18 for ~33 px maps) would mostly sample padding (lesson 07, section 2).
SMALL_ASPP_RATES = (1, 2, 3)

# name -> (module, class or function, one-line description). Import paths are strings: nothing is imported
# until a model is built, and a model whose module is missing fails only when it is asked for.
_REGISTRY: dict[str, tuple[str, str, str]] = {
    "fcn8s": ("segedu.models.fcn", "small_fcn", "FCN-8s: VGG-style encoder, score maps fused at strides 32, 16, 8"),
    "unet": ("segedu.models.unet", "UNet", "U-Net: symmetric encoder-decoder, skips concatenated at every level"),
    "deeplabv3": ("segedu.models.deeplab", "DeepLabV3", "DeepLab v3: dilated ResNet, ASPP with image pooling"),
    "deeplabv3plus": ("segedu.models.deeplab", "DeepLabV3Plus", "DeepLab v3+: v3 encoder + stride-4 decoder"),
    "pspnet": ("segedu.models.pspnet", "PSPNet", "PSPNet: dilated ResNet, pyramid pooling (bins 1, 2, 3, 6)"),
    "fpn": ("segedu.models.fpn", "FPN", "FPN: ResNet, top-down pathway with lateral additions"),
}
MODEL_NAMES: tuple[str, ...] = tuple(_REGISTRY)
PRETRAINED: tuple[str, ...] = ("deeplabv3_resnet50", "deeplabv3_resnet101")
"""The names ``pretrained`` accepts: torchvision's DeepLab v3 weights trained on COCO with the VOC labels."""


def _check_name(name: Any) -> str:
    if not isinstance(name, str):
        raise TypeError(f"model name must be a str, one of {', '.join(MODEL_NAMES)}; got {type(name).__name__}")
    if name.lower() not in _REGISTRY:
        raise ValueError(f"model name must be one of {', '.join(MODEL_NAMES)}; got {name!r}")
    return name.lower()


def _profile_width(profile: Any) -> int:
    if profile is None:
        return runtime.profile().width
    if isinstance(profile, str):
        return runtime.profile(profile).width
    if isinstance(profile, runtime.Profile):
        return profile.width
    raise TypeError(f"profile must be None, a profile name or a segedu.runtime.Profile, got {type(profile).__name__}")


def _defaults(name: str, width: int, kw: dict) -> dict:
    """The lessons' CPU-sized settings for ``name`` at base ``width`` (``kw`` then overrides them)."""
    if name == "fcn8s":
        return {"variant": "8s", "width": width}
    if name == "unet":
        return {"base": width, "depth": 4}
    if kw.get("backbone", "small") != "small":
        return {}  # a paper backbone (resnet50, ...): the paper's rates and widths, the constructors' defaults
    if name in ("deeplabv3", "deeplabv3plus"):
        spec = {"backbone": "small", "output_stride": 16, "width": width, "aspp_channels": 2 * width,
                "rates": SMALL_ASPP_RATES}
        if name == "deeplabv3plus":
            spec["decoder_channels"] = 2 * width
        return spec
    if name == "fpn":  # the pyramid at 2 x width (as DeepLab's ASPP), the semantic branch at width
        return {"backbone": "small", "width": width, "channels": 2 * width, "head_channels": width}
    return {"backbone": "small", "width": width}  # pspnet: its head is 2 x width by default (C5 / 4)


def model_spec(name: str, num_classes: int, profile: Any = None, *, width: int | None = None, **kw: Any) -> dict:
    """The full recipe of a model: ``{"name", "num_classes", "kwargs"}`` (plain values only).

    Args:
        name: one of ``MODEL_NAMES`` (case-insensitive).
        num_classes: C, the logits' channels.
        profile: where the default ``width`` comes from: ``None`` (``runtime.profile()``), a profile name
            (``"quick"``, ``"full"``) or a ``Profile``.
        width: base channel width (U-Net's ``base``, the small encoders' ``width``; DeepLab's ASPP and
            decoder get ``2 * width``); default ``profile.width``.
        **kw: constructor arguments that replace the defaults (e.g. ``depth=3``, ``backbone="resnet50"``).
    """
    name = _check_name(name)
    num_classes = validate.positive_int(num_classes, "num_classes")
    width = _profile_width(profile) if width is None else validate.positive_int(width, "width")
    kwargs = {**_defaults(name, width, kw), **kw}
    if isinstance(kwargs.get("rates"), tuple):
        kwargs["rates"] = list(kwargs["rates"])  # plain list: checkpoints hold it with weights_only=True
    return {"name": name, "num_classes": num_classes, "kwargs": kwargs}


def _constructor(name: str):
    module_name, attr, _ = _REGISTRY[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name != module_name:
            raise  # a missing dependency inside the module: show the real error
        raise ModuleNotFoundError(f"model {name!r} needs {module_name}, which this checkout does not have") from error
    return getattr(module, attr)


def build_model(name: str, num_classes: int, profile: Any = None, **kw: Any) -> nn.Module:
    """Build model ``name`` with ``num_classes`` outputs: ``[B, 3, H, W] -> logits [B, num_classes, H, W]``.

    Default sizes are the lessons' (``profile.width`` channels, small encoders, random initialisation;
    nothing is downloaded); ``kw`` replaces them (see ``model_spec``). Unknown names raise ``ValueError``
    listing ``MODEL_NAMES``. Seed first (``runtime.seed_everything``) for a repeatable initialisation.
    """
    spec = model_spec(name, num_classes, profile, **kw)
    return _constructor(spec["name"])(spec["num_classes"], **spec["kwargs"])  # DeepLab takes rates as any sequence


def describe(name: str) -> str:
    """One line on what model ``name`` is."""
    return _REGISTRY[_check_name(name)][2]


def load_model(path: str | os.PathLike, map_location: str = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild and load a model from a checkpoint written by ``python -m segedu train``.

    The checkpoint's metadata holds the ``model_spec`` under ``"spec"``; returns ``(model in eval mode,
    metadata)``. Reads with ``torch.load(..., weights_only=True)``.
    """
    from segedu.checkpoint import read_checkpoint

    state = read_checkpoint(path, map_location)  # read once: the spec and the weights are in the same file
    extra = state["extra"]
    spec = extra.get("spec") if isinstance(extra, dict) else None
    if not isinstance(spec, dict) or not {"name", "num_classes", "kwargs"} <= set(spec):
        raise ValueError(f"{path} has no model spec (write it with `python -m segedu train`)")
    model = build_model(spec["name"], spec["num_classes"], **spec["kwargs"])
    model.load_state_dict(state["model"])
    return model.eval(), extra


def pretrained(name: str = "deeplabv3_resnet50", *, root: str | os.PathLike | None = None, download: bool = False,
               mirror: str | None = None, progress: bool = True) -> nn.Module:
    """The course's ``DeepLabV3`` with torchvision's pretrained weights, in eval mode.

    ``name``: one of ``PRETRAINED``. torchvision's ``DeepLabV3_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1``
    (ResNet-101: ``DeepLabV3_ResNet101_...``) were trained on the COCO images that hold the 20 VOC object
    categories, labelled with them (torchvision reports mIoU 66.4 / 67.4 on COCO val2017 with those labels).
    They are loaded into ``DeepLabV3(21, "resnet50", output_stride=8)`` by
    ``segedu.models.deeplab.load_torchvision_deeplabv3``; torchvision's auxiliary FCN head (a training aid on
    layer3) is dropped. ``model.classes`` is ``segedu.data.voc.VOC_CLASSES`` ("person" is 15).

    The model expects images normalised with ImageNet's statistics: wrap it with
    ``segedu.pretrained.with_imagenet_normalization`` for ``fit`` / ``evaluate`` on [0, 1] images, or use
    ``segedu.pretrained.person_probability`` / ``class_probabilities``. ``[B, 3, H, W] -> [B, 21, H, W]``.

    The weights are read from the data folder ``root`` (``segedu.data.download``); when absent they are
    fetched only with ``download=True`` (``mirror``, ``progress`` as there), else ``FileNotFoundError`` says how
    to get them.
    """
    from segedu.data.download import load_weights
    from segedu.data.voc import VOC_CLASSES
    from segedu.models.deeplab import DeepLabV3, load_torchvision_deeplabv3

    name = validate.choice(name, "name", PRETRAINED)
    state = load_weights(name, root, download=validate.flag(download, "download"), mirror=mirror, progress=progress)
    state = {k: v for k, v in state.items() if not k.startswith("aux_classifier.")}
    model = DeepLabV3(len(VOC_CLASSES), backbone=name.removeprefix("deeplabv3_"), output_stride=8)
    model.classes = VOC_CLASSES
    return load_torchvision_deeplabv3(model, state).eval()


# --------------------------------------------------------------------------- measuring a model (lesson 11)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (what the optimizer updates and the checkpoint mostly stores)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def conv2d_flops(conv: nn.Conv2d, input_shape: tuple[int, int, int, int]) -> int:
    """FLOPs of ``conv`` on an input ``[B, C_in, H, W]``, counted as ``torch.utils.flop_counter`` counts them.

    Every output value of a convolution is a dot product of ``C_in / groups * kh * kw`` inputs with the kernel:
    that many multiply-adds (MACs), 2 FLOPs each (bias ignored). There are ``B * C_out * H_out * W_out`` output
    values, ``H_out = floor((H + 2 p - d (k - 1) - 1) / s) + 1`` (and the same for W). Papers often quote MACs:
    half this number.
    """
    if not isinstance(conv, nn.Conv2d):
        raise TypeError(f"conv must be an nn.Conv2d, got {type(conv).__name__}")
    if isinstance(conv.padding, str):
        raise ValueError("conv has string padding ('same'/'valid'): give it explicit padding")
    if not isinstance(input_shape, (tuple, list)):  # torch.Size is a tuple
        raise TypeError(f"input_shape must be a tuple (B, C_in, H, W), got {type(input_shape).__name__}")
    if len(input_shape) != 4:
        raise ValueError(f"input_shape must be (B, C_in, H, W), got {tuple(input_shape)}")
    b, _, h, w = (validate.integer(n, "input_shape", minimum=0) for n in input_shape)
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = conv.kernel_size, conv.stride, conv.padding, conv.dilation
    h_out = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    w_out = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    macs_per_output = conv.in_channels // conv.groups * kh * kw
    return 2 * b * conv.out_channels * h_out * w_out * macs_per_output


def forward_flops(model: nn.Module, x: "torch.Tensor") -> int:
    """FLOPs of one forward pass of ``x`` ``[B, 3, H, W]`` (eval mode, no gradients), counted by
    ``torch.utils.flop_counter.FlopCounterMode``: convolutions (also transposed) and matrix products, 2 per
    multiply-add; element-wise work (BN, ReLU, interpolation, pooling) is not counted. The model's mode is
    restored afterwards."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def forward_calls(model: nn.Module, x: "torch.Tensor") -> int:
    """The number of torch calls (functions, tensor methods and attributes, as ``torch.overrides.TorchFunctionMode``
    sees them) in one forward pass of ``x`` ``[B, 3, H, W]`` (eval mode, no gradients, on the model's device;
    the mode is restored afterwards).

    Each call pays a fixed overhead whatever the size of its tensors (Python, dispatch, allocating the output,
    on a GPU a kernel launch). A convnet makes the same calls for any batch size B, so a batch pays that
    overhead once for B images - what ``latency`` per image shows, counted so that it can be checked on a busy
    machine (lesson 11)."""
    import torch
    from torch.overrides import TorchFunctionMode

    class Counter(TorchFunctionMode):
        calls = 0

        def __torch_function__(self, func, types, args=(), kwargs=None):
            self.calls += 1
            return func(*args, **(kwargs or {}))

    x = x.to(next(model.parameters()).device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), Counter() as counter:
            model(x)
    finally:
        model.train(was_training)
    return counter.calls


def latency(model: nn.Module, x: "torch.Tensor", repeats: int = 5, warmup: int = 1) -> float:
    """Seconds of a forward pass of ``x`` (eval mode, no gradients, on the model's device): the best of
    ``repeats`` runs after ``warmup`` untimed ones; CUDA is synchronised around each run. The best, not the
    mean or median: other programs only ever slow a run down, so the fastest is the least disturbed estimate
    (the advice of Python's ``timeit`` documentation). Still a clock: on a loaded machine every run can be
    slow, so show it, and check counts (``forward_flops``, ``forward_calls``) instead."""
    import time

    import torch

    repeats = validate.positive_int(repeats, "repeats")
    warmup = validate.integer(warmup, "warmup", minimum=0)
    device = next(model.parameters()).device
    x = x.to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    was_training = model.training
    model.eval()
    times = []
    try:
        with torch.no_grad():
            for i in range(warmup + repeats):
                sync()
                start = time.perf_counter()
                model(x)
                sync()
                if i >= warmup:
                    times.append(time.perf_counter() - start)
    finally:
        model.train(was_training)
    return min(times)
