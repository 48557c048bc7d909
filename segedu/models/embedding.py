"""A proposal-free instance segmenter: a U-Net with an embedding head and a semantic head (lesson 12).

De Brabandere, Neven & Van Gool, "Semantic instance segmentation with a discriminative loss function", CVPR
Workshops 2017: an off-the-shelf segmentation network with two outputs per pixel,

* a **semantic head**: class logits ``[B, K, H, W]`` (which pixels are things, and of which class), trained
  with cross entropy;
* an **embedding head**: a D-dimensional embedding ``[B, D, H, W]`` per pixel, trained with the discriminative
  loss (``segedu.losses.discriminative``) so that the embeddings of one object cluster together.

At test time the foreground pixels (semantic class != background) are clustered into instances
(``segedu.clustering``), each instance takes the class most of its pixels are given, and its score is the
mean probability of that class over its pixels. No box appears anywhere: two objects sharing one box are no
special case, unlike in Mask R-CNN (``segedu.models.maskrcnn``).

The body is the course's U-Net (``segedu.models.unet``, lesson 06): its encoder, its decoder and its 1x1
classifier, which here gives the embeddings. The semantic head reads the same encoder through a **decoder of its
own** (the same widths and skips as the U-Net's) and a 1x1 convolution. One decoder for both heads trains
badly at the course's budget: measured at 600 steps of 8 scenes (quick profile), the push term's large early
gradients take over the shared decoder and the semantic head's foreground IoU stays at 0.5 or below; with a
decoder of its own it reaches 0.69 (a U-Net trained on the classes alone: 0.84, so the shared encoder still
costs something). Pixel coordinates as two extra input channels ("CoordConv") made both heads worse there.

Like torchvision's detection models, ``model(images, targets)`` returns the losses (a dict, which
``segedu.train.fit(model, data, loss_fn=None, ...)`` sums) and ``model(images)`` the two outputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segedu import validate
from segedu.clustering import cluster_embeddings
from segedu.data.tasks import instance_ids, semantic_from_instances
from segedu.losses.discriminative import discriminative_terms
from segedu.models.backbones import pad_to_multiple
from segedu.models.common import check_num_classes, upsample_to
from segedu.models.unet import DoubleConv, UNet

__all__ = ["EmbeddingUNet", "dense_targets", "detections_from_instances", "segment_instances"]


def dense_targets(targets: list[dict], size: tuple[int, int], device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Detection targets (``labels [N]``, ``masks [N, H, W]`` per image) as ``(semantic, instances)`` maps,
    int64 ``[B, H, W]`` each: the class of every pixel (0 = background) and the instance id (``1 .. N``, 0 =
    background; ``segedu.data.tasks``)."""
    if not isinstance(targets, (list, tuple)) or not all(isinstance(t, dict) for t in targets):
        raise TypeError(f"targets must be a list of dicts with 'labels' and 'masks', got {type(targets).__name__}")
    semantic, instances = [], []
    for i, t in enumerate(targets):
        if "labels" not in t or "masks" not in t:
            raise ValueError(f"targets[{i}] must hold 'labels' and 'masks', got keys {sorted(t)}")
        masks = t["masks"]
        if tuple(masks.shape[-2:]) != tuple(size):
            raise ValueError(f"targets[{i}]['masks'] must be [N, {size[0]}, {size[1]}] like the images, "
                             f"got shape {tuple(masks.shape)}")
        semantic.append(semantic_from_instances(t["labels"], masks))
        instances.append(instance_ids(masks))
    semantic, instances = torch.stack(semantic), torch.stack(instances)
    return (semantic, instances) if device is None else (semantic.to(device), instances.to(device))


class EmbeddingUNet(nn.Module):
    """U-Net + embedding head + semantic head with its own decoder (see the module text).

    Args:
        num_classes: semantic classes **including background** (class 0), 6 for ``ShapesDataset``.
        embedding_dim: D, the size of the embedding space (the paper: 8 on Cityscapes).
        base, depth: the U-Net's width and number of poolings (``segedu.models.unet.UNet``).
        delta_v, delta_d, alpha, beta, gamma: the discriminative loss's margins and weights (the paper's by
            default: ``segedu.losses.discriminative.DISCRIMINATIVE_DEFAULTS``).
        semantic_weight: weight of the semantic cross entropy in the training loss.
        background_weight: the weight of class 0 in that cross entropy (the others weigh 1). The background
            covers about 88 % of the pixels of the shape scenes: with weight 1, a network trained for a few
            hundred steps predicts background everywhere (the class imbalance of lesson 10).
        semantic_stride: the semantic decoder stops at the level of this stride (1, 2, 4, .., below
            ``2**depth``) and its class scores are resized bilinearly to the input, as FCN and DeepLab do: class
            scores are smooth, the full-resolution level is the costliest one, and the instances' outlines come
            from the embeddings anyway (2: one level less, about a tenth less training time at depth 3).

    ``forward(images, targets=None)``: images float ``[B, 3, H, W]`` (or a list of ``[3, H, W]``), any size.
    Without targets: ``{"embedding": [B, D, H, W], "semantic": [B, K, H, W]}``. With targets (a list of dicts
    with ``labels`` and ``masks``, as ``ShapesDataset(variant="instance")`` gives them): the losses ``{"pull",
    "push", "reg", "semantic"}``, the first three already weighted by alpha, beta, gamma and averaged over the
    images that hold an instance.
    """

    def __init__(self, num_classes: int, embedding_dim: int = 8, base: int = 16, depth: int = 3,
                 delta_v: float = 0.5, delta_d: float = 1.5, alpha: float = 1.0, beta: float = 1.0,
                 gamma: float = 0.001, semantic_weight: float = 1.0, background_weight: float = 0.2,
                 semantic_stride: int = 2):
        super().__init__()
        self.num_classes = check_num_classes(num_classes)
        self.embedding_dim = validate.positive_int(embedding_dim, "embedding_dim")
        self.delta_v = validate.positive_number(delta_v, "delta_v")
        self.delta_d = validate.positive_number(delta_d, "delta_d")
        self.weights = {name: validate.number(w, name, minimum=0)
                        for name, w in (("pull", alpha), ("push", beta), ("reg", gamma), ("semantic", semantic_weight))}
        self.background_weight = validate.number(background_weight, "background_weight", minimum=0)
        self.unet = UNet(self.embedding_dim, base=base, depth=depth)
        widths, depth = self.unet.widths, self.unet.depth
        # The semantic decoder: the U-Net's decoder again (up-convolution, skip, double conv per level), down to
        # the level of semantic_stride.
        self.semantic_stride = validate.positive_int(semantic_stride, "semantic_stride")
        strides = [2**i for i in range(depth)]
        if self.semantic_stride not in strides:
            raise ValueError(f"semantic_stride must be one of {strides} (a level of the U-Net of depth {depth}), "
                             f"got {semantic_stride}")
        self.semantic_level = strides.index(self.semantic_stride)
        levels = range(depth - 1, self.semantic_level - 1, -1)
        self.semantic_ups = nn.ModuleList([nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in levels])
        self.semantic_decoder = nn.ModuleList([DoubleConv(2 * widths[i], widths[i]) for i in levels])
        self.semantic_head = nn.Conv2d(widths[self.semantic_level], self.num_classes, kernel_size=1)

    def forward(self, images, targets: list[dict] | None = None) -> dict[str, torch.Tensor]:
        if isinstance(images, (list, tuple)):
            images = torch.stack(list(images))
        x = validate.images(images, "images", channels=3)
        height, width = x.shape[-2:]
        unet = self.unet
        x = pad_to_multiple(x, 2**unet.depth)  # every pool then halves an even map
        padded = x.shape[-2:]
        encoded = []
        for level, block in enumerate(unet.encoder):  # the shared encoder
            x = block(x if level == 0 else unet.pool(x))
            encoded.append(x)
        decoded = {}
        for name, ups, blocks in (("embedding", unet.ups, unet.decoder),
                                  ("semantic", self.semantic_ups, self.semantic_decoder)):
            y = encoded[-1]
            for level, up, block in zip(range(unet.depth - 1, -1, -1), ups, blocks):  # zip: as deep as blocks go
                y = block(torch.cat([encoded[level], up(y)], dim=1))
            decoded[name] = y
        semantic = self.semantic_head(decoded["semantic"])
        if self.semantic_stride > 1:
            semantic = upsample_to(semantic, padded)  # bilinear, to the padded input's size
        out = {"embedding": unet.classifier(decoded["embedding"])[..., :height, :width],
               "semantic": semantic[..., :height, :width]}
        if targets is None:
            return out
        semantic, instances = dense_targets(targets, (height, width), x.device)
        terms = discriminative_terms(out["embedding"], instances, self.delta_v, self.delta_d)
        present = (terms["instances"] > 0).sum().clamp_min(1)  # images with an instance: the paper's mean
        losses = {name: self.weights[name] * terms[name].sum() / present for name in ("pull", "push", "reg")}
        class_weights = torch.ones(self.num_classes, device=x.device)
        class_weights[0] = self.background_weight
        losses["semantic"] = self.weights["semantic"] * F.cross_entropy(out["semantic"], semantic, weight=class_weights)
        return losses


def detections_from_instances(instances: torch.Tensor, probabilities: torch.Tensor) -> list[dict]:
    """Instance id maps as detections in the format of torchvision's Mask R-CNN (what ``mask_ap`` reads).

    ``instances`` int64 ``[B, H, W]`` (0 = no instance), ``probabilities`` float ``[B, K, H, W]`` (softmax of
    the semantic head). Per image and instance id: ``masks`` float ``[N, 1, H, W]`` (0/1), ``labels`` int64
    ``[N]`` (the class with the largest summed probability over the instance's pixels, background excluded),
    ``scores`` ``[N]`` (that class's mean probability over the pixels) and ``boxes`` float ``[N, 4]`` (x1, y1,
    x2, y2 with x2, y2 exclusive, as ``ShapesDataset``).
    """
    validate.tensor(instances, "instances", 3, dtype="integer", layout="[B, H, W]")
    validate.tensor(probabilities, "probabilities", 4, dtype="floating", layout="[B, K, H, W]")
    if probabilities.shape[:1] + probabilities.shape[2:] != instances.shape:
        raise ValueError(f"probabilities must be [B, K, H, W] with B, H, W of instances {tuple(instances.shape)}, "
                         f"got shape {tuple(probabilities.shape)}")
    out = []
    for ids, probs in zip(instances, probabilities):
        numbers = [int(v) for v in torch.unique(ids) if int(v) > 0]
        masks = ids[None] == torch.tensor(numbers, dtype=ids.dtype, device=ids.device).view(-1, 1, 1)  # [N, H, W]
        area = masks.flatten(1).sum(1).clamp_min(1)
        summed = torch.einsum("nhw,khw->nk", masks.to(probs.dtype), probs)  # [N, K] class mass per instance
        labels = summed[:, 1:].argmax(1) + 1 if len(numbers) else torch.zeros(0, dtype=torch.int64, device=ids.device)
        scores = summed.gather(1, labels[:, None])[:, 0] / area
        rows, cols = masks.any(2), masks.any(1)  # [N, H], [N, W]
        first = lambda m: m.float().argmax(1)  # noqa: E731 - the first True along each row
        boxes = torch.stack([first(cols), first(rows), cols.shape[1] - first(cols.flip(1)),
                             rows.shape[1] - first(rows.flip(1))], dim=1).float()
        out.append({"masks": masks[:, None].float(), "labels": labels, "scores": scores, "boxes": boxes})
    return out


@torch.no_grad()
def segment_instances(model: EmbeddingUNet, images: torch.Tensor, bandwidth: float | None = None,
                      min_pixels: int = 8, merge: float | None = None, batch_size: int = 32) -> dict:
    """Run a trained ``EmbeddingUNet`` and cluster its embeddings: the whole proposal-free pipeline.

    ``images`` float ``[B, 3, H, W]`` (moved to the model's device, in batches of ``batch_size``);
    ``bandwidth`` defaults to the model's ``delta_v`` (the paper), ``merge`` to its ``delta_d``: the loss puts
    the centres of two instances ``2 delta_d`` apart, so a seed cluster whose centre lies within half that of
    a larger one belongs to it (``segedu.clustering.seed_and_threshold``). Returns CPU tensors: ``"embedding"``
    ``[B, D, H, W]``, ``"probabilities"`` ``[B, K, H, W]``, ``"semantic"`` int64 ``[B, H, W]`` (argmax),
    ``"instances"`` int64 ``[B, H, W]`` (``segedu.clustering.cluster_embeddings`` on the pixels whose class is
    not background) and ``"detections"`` (``detections_from_instances``: one dict per image).
    """
    if not isinstance(model, EmbeddingUNet):
        raise TypeError(f"model must be an EmbeddingUNet, got {type(model).__name__}")
    validate.images(images, "images", channels=3)
    batch_size = validate.positive_int(batch_size, "batch_size")
    bandwidth = model.delta_v if bandwidth is None else validate.positive_number(bandwidth, "bandwidth")
    merge = model.delta_d if merge is None else validate.number(merge, "merge", minimum=0)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    embedding, probabilities = [], []
    for start in range(0, len(images), batch_size):
        out = model(images[start:start + batch_size].to(device))
        embedding.append(out["embedding"].float().cpu())
        probabilities.append(out["semantic"].float().softmax(1).cpu())
    model.train(was_training)
    embedding, probabilities = torch.cat(embedding), torch.cat(probabilities)
    semantic = probabilities.argmax(1)
    instances = cluster_embeddings(embedding, semantic > 0, bandwidth, min_pixels, merge)
    return {"embedding": embedding, "probabilities": probabilities, "semantic": semantic, "instances": instances,
            "detections": detections_from_instances(instances, probabilities)}
