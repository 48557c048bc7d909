"""Lesson 08's experiment: a plain dilated FCN, DeepLab v3 and PSPNet on the context scenes, where one and the
same vehicle is a *car* in a town and a *boat* in a harbour, and only a region far from it tells which.

The three models share one short encoder (``short_encoder``: stem, layer1 and layer2 of the small ResNet,
output stride 8, a theoretical field of 51 px) and differ only in the head (``CONTEXT_MODELS``):

* ``"plain dilated FCN"`` - a 3x3 convolution and the classifier (torchvision's ``fcn_resnet50`` design): local;
* ``"DeepLab v3"`` - ASPP with rates 1/4, 1/2 and 3/4 of the feature map's side and image pooling (Chen et al.,
  arXiv 2017);
* ``"PSPNet"`` - pyramid pooling over 1, 2, 3 and 6 bins (Zhao et al., CVPR 2017).

The same data, data order, steps (``profile.train_steps``), batch, one-cycle learning-rate schedule and loss;
``seed`` sets the initial weights and the batch order. The claim lesson 08 asserts (``COMPARISONS``; DESIGN.md):
both context models beat the plain one on the mean IoU of car and boat by a wide margin.
``train_context_models`` returns the trained models (the lesson probes and draws them); ``context_models`` is
the same as one row of numbers for ``bench/seeds.py``.

The lesson's other measurements live here too: ``object_statistics`` (cars and boats look alike),
``region_distances`` (how far the deciding region is), ``stage_fields`` (receptive fields by stage),
``context_probe`` (how much surroundings each model needs) and ``decoder_costs`` (FPN's decoder against U-Net's).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from segedu import runtime, validate
from segedu.data.shapes import CONTEXT_CLASSES, ShapesDataset
from segedu.evaluation import evaluate, predict
from segedu.experiments.common import Comparison, resolve_profile
from segedu.metrics import confusion_rate
from segedu.models.backbones import ResNetBackbone
from segedu.models.deeplab import DeepLabV3
from segedu.models.fpn import stage_prefixes
from segedu.models.plain import DilatedFCN
from segedu.models.pspnet import PSPNet
from segedu.ops.dilation import effective_receptive_field, erf_extent, erf_support
from segedu.ops.distance import edt
from segedu.train import fit

__all__ = ["CONTEXT_MODELS", "context_size", "context_data", "short_encoder", "build_context_model", "context_loss",
           "one_cycle", "train_context_models", "context_models", "object_statistics", "region_distances",
           "stage_fields", "keep_near", "context_probe", "decoder_costs", "COMPARISONS"]

CONTEXT_MODELS = ("plain dilated FCN", "DeepLab v3", "PSPNet")


def context_size(profile=None) -> int:
    """The side of the context scenes: 1.5x ``profile.image_size``, so that the deciding region lies far."""
    return 3 * resolve_profile(profile).image_size // 2


def context_data(profile=None) -> tuple[ShapesDataset, ShapesDataset]:
    """``(train, val)``: ``profile.train_images`` context scenes (seed 0) and ``profile.val_images`` (seed 1)."""
    p = resolve_profile(profile)
    size = context_size(p)
    return (ShapesDataset(p.train_images, size=size, seed=0, variant="context"),
            ShapesDataset(p.val_images, size=size, seed=1, variant="context"))


def short_encoder(width: int) -> ResNetBackbone:
    """Stem, layer1 and layer2 of the small ResNet (one block each), output stride 8: a field of 51 px."""
    return ResNetBackbone(width=validate.positive_int(width, "width"), blocks=(1, 1, 1, 1), output_stride=8, stages=2)


def build_context_model(name: str, profile=None) -> nn.Module:
    """A fresh model ``name`` (one of ``CONTEXT_MODELS``) on ``short_encoder(profile.width)``; DeepLab's ASPP
    rates are 1/4, 1/2 and 3/4 of the feature map's side (``context_size / 8``)."""
    validate.choice(name, "name", CONTEXT_MODELS)
    p = resolve_profile(profile)
    classes, w, side = len(CONTEXT_CLASSES), p.width, context_size(p) // 8
    if name == "plain dilated FCN":
        return DilatedFCN(classes, short_encoder(w), channels=2 * w)
    if name == "DeepLab v3":
        return DeepLabV3(classes, short_encoder(w), output_stride=8, aspp_channels=2 * w,
                         rates=(side // 4, side // 2, 3 * side // 4), dropout=0.1)
    return PSPNet(classes, short_encoder(w), channels=2 * w)


def context_loss(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the context classes, VOC's void label 255 ignored."""
    return F.cross_entropy(logits, masks, ignore_index=255)


def one_cycle(optimizer: torch.optim.Optimizer, max_lr: float, steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """One cycle (Smith & Topin 2019): warm up, then anneal, so that no model is left behind by an unlucky start."""
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=steps)


def train_context_models(seed: int = 0, profile=None, names=CONTEXT_MODELS, *, progress: bool = True,
                         device=None) -> tuple[dict, dict]:
    """Train every model of ``names`` on the context scenes: ``profile.train_steps`` Adam steps (lr
    ``profile.lr``, one cycle), batch ``profile.batch_size``, batches drawn with ``seed``; each model built right
    after ``runtime.seed_everything(seed)``.

    Returns ``(models, results)``: ``{name: trained model, eval mode, on the CPU}`` and ``{name: {"params",
    "car", "boat" (IoU), "vehicle" (their mean), "miou", "swap" (``confusion_rate`` of car and boat),
    "seconds"}}`` on the validation scenes."""
    seed = validate.integer(seed, "seed")
    p = resolve_profile(profile)
    names = tuple(validate.choice(name, "names", CONTEXT_MODELS) for name in names)
    train, val = context_data(p)
    images, masks = val.batch(range(len(val)))
    models, results = {}, {}
    for name in names:
        runtime.seed_everything(seed)
        model = build_context_model(name, p)
        history = fit(model, train, context_loss, p.train_steps, lr=p.lr, batch_size=p.batch_size,
                      device=device or runtime.device(), seed=seed, progress=progress,
                      scheduler=functools.partial(one_cycle, max_lr=p.lr, steps=p.train_steps))
        metrics = evaluate(model, val, val.num_classes)
        models[name] = model.cpu().eval()
        car, boat = float(metrics["iou"][1]), float(metrics["iou"][2])
        results[name] = {"params": float(sum(q.numel() for q in model.parameters())), "car": car, "boat": boat,
                         "vehicle": (car + boat) / 2, "miou": float(metrics["miou"]),
                         "swap": confusion_rate(predict(models[name], images), masks, (1, 2)),
                         "seconds": float(history.seconds)}
    return models, results


@functools.lru_cache(maxsize=4)
def _scores(seed: int, profile: runtime.Profile) -> tuple:
    _, results = train_context_models(seed, profile, progress=False)
    return tuple((f"{key}_{name}", value) for name, r in results.items() for key, value in r.items()
                 if key in ("vehicle", "swap", "miou"))


def context_models(seed: int = 0, profile=None) -> dict[str, float]:
    """Car/boat IoU (``"vehicle_<model>"``), swap rate and mIoU of the three models trained with ``seed`` (one
    training per seed and profile in a process: the registered comparisons share it)."""
    return dict(_scores(validate.integer(seed, "seed"), resolve_profile(profile)))


def object_statistics(scenes: int = 2048, size: int = 32, seed: int = 2) -> dict[str, dict]:
    """Cars and boats compared over ``scenes`` context scenes (rendered small: colours and relative sizes do
    not depend on the size): ``{"car": {"colour" [3], "spread" [3], "area"}, "boat": {...}}`` - the mean and
    standard deviation of the colour of their pixels and their mean share of the scene."""
    dataset = ShapesDataset(validate.positive_int(scenes, "scenes"), size=size, seed=seed, variant="context")
    images, masks = dataset.batch(range(scenes))
    stats = {}
    for c, name in ((1, "car"), (2, "boat")):
        pixels = masks == c
        colour = images.permute(1, 0, 2, 3)[:, pixels]                    # [3, N] colours of every such pixel
        present = pixels.flatten(1).any(1)
        area = pixels.flatten(1).sum(1)[present].float() / size**2      # share of the scene, per scene
        stats[name] = dict(colour=colour.mean(1), spread=colour.std(1), area=float(area.mean()))
    return stats


def region_distances(dataset: ShapesDataset) -> torch.Tensor:
    """float ``[B]``: per scene of a context ``dataset``, the distance (``edt``, pixels) from its closest vehicle
    pixel to the nearest pixel of the deciding region (water or land)."""
    _, masks = dataset.batch(range(len(dataset)))
    is_vehicle = (masks == 1) | (masks == 2)
    to_region = edt(dataset.regions(range(len(dataset))) > 0)
    return to_region.masked_fill(~is_vehicle, float("inf")).flatten(1).amin(1)


def stage_fields(model: nn.Module, size: int, samples: int = 2) -> dict[str, dict]:
    """Receptive fields of ``model`` cut after each stage of its ``backbone`` and whole (``"output"``), on random
    ``size x size`` inputs: ``{stage: {"erf" [size, size], "support" (theoretical field, px), "e50", "e90"
    (sides of the centred squares holding 50 % and 90 % of the gradient)}}``."""
    fields = {}
    for name, module in {**stage_prefixes(model.backbone), "output": model}.items():
        erf = effective_receptive_field(module, size, samples=samples)
        fields[name] = dict(erf=erf, support=erf_support(erf)[0], e50=erf_extent(erf, 0.5), e90=erf_extent(erf, 0.9))
    return fields


def keep_near(images: torch.Tensor, masks: torch.Tensor, radius: float) -> torch.Tensor:
    """``images [B, 3, H, W]`` with everything farther than ``radius`` pixels from a vehicle (car or boat in
    ``masks``) painted with the scene's mean colour: the context a model is left with."""
    distance = edt((masks == 1) | (masks == 2))
    return torch.where((distance <= radius)[:, None], images, images.mean((2, 3), keepdim=True))


def context_probe(models: dict, images: torch.Tensor, masks: torch.Tensor, radii) -> dict[str, list[float]]:
    """How much surroundings each model needs: ``{name: [swap rate of car and boat on keep_near(images, masks,
    r) for r in radii]}``."""
    swaps = {name: [] for name in models}
    for r in radii:
        kept = keep_near(images, masks, r)
        for name, model in models.items():
            swaps[name].append(confusion_rate(predict(model, kept), masks, (1, 2)))
    return swaps


def _gflops_by_part(model: nn.Module, size: int, parts) -> tuple[float, dict]:
    """GFLOPs of one forward pass on a meta tensor (shapes only), total and split by the submodules ``parts``
    (the shallowest names under each: a ModuleList is reported by its items)."""
    was_training = model.training
    model.eval()  # batch norm in eval mode: a 1x1 map of one image is fine (the count is the same)
    try:
        with FlopCounterMode(display=False) as counter:
            model(torch.empty(1, 3, size, size, device="meta"))
    finally:
        model.train(was_training)
    counts = {k: sum(v.values()) / 1e9 for k, v in counter.get_flop_counts().items()}
    root, split = type(model).__name__, {}
    for part in parts:
        names = [k for k in counts if k == f"{root}.{part}" or k.startswith(f"{root}.{part}.")]
        depth = min(k.count(".") for k in names)
        split[part] = sum(counts[k] for k in names if k.count(".") == depth)
    return counts[root], split


def decoder_costs(fpn: nn.Module, unet: nn.Module, size: int) -> dict[str, float]:
    """The cost of climbing back to full resolution, FPN (adds) against U-Net (concatenates), built on the meta
    device: ``{"fpn", "unet"}`` GFLOPs of a ``size x size`` forward pass and ``{"fpn_decoder", "unet_decoder"}``
    those of the decoders alone (FPN's neck and head; U-Net's up-sampling and decoder blocks)."""
    f_total, f_parts = _gflops_by_part(fpn, size, ["backbone", "neck", "head"])
    u_total, u_parts = _gflops_by_part(unet, size, ["encoder", "ups", "decoder"])
    return {"fpn": f_total, "unet": u_total, "fpn_decoder": f_parts["neck"] + f_parts["head"],
            "unet_decoder": u_parts["ups"] + u_parts["decoder"]}


# The margin lesson 08 asserts: each context model over the plain one, on the mean IoU of car and boat.
COMPARISONS = {
    "deeplab_vs_plain": Comparison(function=context_models, better="vehicle_DeepLab v3",
                                   worse="vehicle_plain dilated FCN", margin=0.25),
    "pspnet_vs_plain": Comparison(function=context_models, better="vehicle_PSPNet", worse="vehicle_plain dilated FCN",
                                  margin=0.25),
}
