"""The sliding-window baseline: label every pixel by classifying the patch around it (lesson 00).

Before fully convolutional networks, a classifier was turned into a segmenter by running it once per pixel
on the ``p x p`` patch centred there (Ciresan et al., "Deep neural networks segment neuronal membranes in
electron microscopy images", NIPS 2012, used 65 x 65 windows; Farabet et al., PAMI 2013, multi-scale ones).
Neighbouring patches overlap in all but one row or column, so almost all of that work is done again and again.
Long, Shelhamer & Darrell ("Fully convolutional networks for semantic segmentation", CVPR 2015) pointed out
that a convolutional classifier whose fully connected head is rewritten as a convolution computes *every*
window's answer in one pass over the image, sharing the overlapping work.

* ``PatchClassifier``: ``depth`` valid (unpadded) 3x3 convolutions with ReLU, then one ``nn.Linear`` on the
  flattened ``width x r x r`` feature map (``r = patch - 2 depth``): ``[N, C_in, p, p] -> [N, num_classes]``,
  the class of the centre pixel.
* ``fully_convolutional(model)``: the same parameters run as a fully convolutional network
  ``[B, C_in, H, W] -> [B, num_classes, H, W]``: the image is zero-padded by ``p // 2`` (as the patches are),
  the convolutions run once over it, and the linear head becomes an ``r x r`` convolution whose kernel is a
  *view* of the linear weight (``[num_classes, width * r * r] -> [num_classes, width, r, r]``). The two share
  their parameters: training one trains the other.
* ``extract_patches`` (``F.unfold``) and ``sliding_window_predict``: the baseline itself, patch by patch, in
  chunks. On the same model it returns what one fully convolutional pass returns (up to float rounding).
* ``layer_costs``, ``patch_macs``, ``sliding_window_macs``, ``dense_macs``: the multiply-adds of both, by
  formula. A valid 3x3 convolution whose output inside one patch is ``o x o`` runs ``o^2`` times per window,
  so the sliding window costs ``H W sum_l o_l^2 m_l`` (``m_l`` = multiply-adds per output position of layer l), the dense pass
  ``sum_l (H + o_l - 1)(W + o_l - 1) m_l``: each feature is computed once instead of once per window that
  contains it. ``segedu.zoo.forward_flops`` (PyTorch's FLOP counter) counts the same numbers, times 2
  (``tests/test_sliding_window.py``).

Everything stays on the inputs' device; there is no stride and no pooling, so the dense output has the
image's full resolution (a real classifier downsamples: then the dense output is coarse, which lessons 02-05
upsample and lesson 04 avoids with dilation).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segedu import validate

__all__ = [
    "PatchClassifier",
    "FullyConvolutional",
    "fully_convolutional",
    "extract_patches",
    "sliding_window_predict",
    "layer_costs",
    "patch_macs",
    "sliding_window_macs",
    "dense_macs",
]


class PatchClassifier(nn.Module):
    """A small CNN that classifies the centre pixel of a patch: ``[N, in_channels, p, p] -> [N, num_classes]``.

    Args:
        num_classes: C, the classes of the centre pixel.
        patch: p, the odd side of the window (the centre pixel is at ``p // 2``).
        in_channels: image channels (3).
        width: channels of every convolution.
        depth: number of valid 3x3 convolutions (ReLU after each); the map they leave is ``r = p - 2 depth``
            pixels wide and must be at least 1.

    The head is one ``nn.Linear(width * r * r, num_classes)`` on the flattened map (channel-first, as
    ``torch.flatten`` orders a ``[N, width, r, r]`` map): an ordinary image classifier, with a fixed input size.
    """

    def __init__(self, num_classes: int, patch: int = 15, in_channels: int = 3, width: int = 16, depth: int = 3):
        super().__init__()
        self.num_classes = validate.positive_int(num_classes, "num_classes")
        self.patch = validate.positive_int(patch, "patch")
        if self.patch % 2 == 0:
            raise ValueError(f"patch must be odd (a window centred on its pixel), got {patch}")
        self.in_channels = validate.positive_int(in_channels, "in_channels")
        self.width = validate.positive_int(width, "width")
        self.depth = validate.integer(depth, "depth", minimum=0)
        self.side = self.patch - 2 * self.depth  # r: what the valid convolutions leave of the patch
        if self.side < 1:
            raise ValueError(f"depth must leave a map: patch - 2 * depth >= 1, got patch={patch}, depth={depth}")
        layers, channels = [], self.in_channels
        for _ in range(self.depth):
            layers += [nn.Conv2d(channels, self.width, 3), nn.ReLU(inplace=True)]
            channels = self.width
        self.features = nn.Sequential(*layers)
        self.feature_channels = channels
        self.head = nn.Linear(channels * self.side * self.side, self.num_classes)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        validate.images(patches, "patches", channels=self.in_channels)
        if tuple(patches.shape[-2:]) != (self.patch, self.patch):
            raise ValueError(
                f"patches must be [N, {self.in_channels}, {self.patch}, {self.patch}] (the model's patch), "
                f"got shape {tuple(patches.shape)}"
            )
        return self.head(self.features(patches).flatten(1))


class FullyConvolutional(nn.Module):
    """``classifier`` (a ``PatchClassifier``) run on a whole image: ``[B, C_in, H, W] -> [B, num_classes, H, W]``.

    Output pixel (i, j) equals ``classifier`` on the ``p x p`` patch of the zero-padded image centred at (i, j).
    No parameter is copied: the head's ``r x r`` kernel is a view of ``classifier.head.weight``, so the two
    modules are one set of weights (``parameters()`` yields the classifier's).
    """

    def __init__(self, classifier: PatchClassifier):
        super().__init__()
        if not isinstance(classifier, PatchClassifier):
            raise TypeError(f"classifier must be a PatchClassifier, got {type(classifier).__name__}")
        self.classifier = classifier

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        model = self.classifier
        validate.images(images, "images", channels=model.in_channels)
        half = model.patch // 2
        features = model.features(F.pad(images, (half, half, half, half)))  # the zeros every border patch sees
        # Linear on a flattened [width, r, r] map = an r x r convolution with the same numbers (channel-first).
        kernel = model.head.weight.view(model.num_classes, model.feature_channels, model.side, model.side)
        return F.conv2d(features, kernel, model.head.bias)


def fully_convolutional(model: PatchClassifier) -> FullyConvolutional:
    """The patch classifier as a fully convolutional network that shares its parameters (see
    ``FullyConvolutional``): one pass over ``[B, C_in, H, W]`` gives every pixel's logits ``[B, C, H, W]``."""
    return FullyConvolutional(model)


def extract_patches(images: torch.Tensor, patch: int) -> torch.Tensor:
    """Every ``patch x patch`` window of ``images`` ``[B, C, H, W]``, centred on each pixel of the image
    zero-padded by ``patch // 2``: ``[B * H * W, C, patch, patch]``, image by image, row by row (``F.unfold``).

    Patch ``b * H * W + i * W + j`` is centred on pixel (i, j) of image b. The result is ``patch^2`` times the
    size of the input: unfold a few images at a time.
    """
    validate.images(images, "images")
    patch = validate.positive_int(patch, "patch")
    if patch % 2 == 0:
        raise ValueError(f"patch must be odd (a window centred on its pixel), got {patch}")
    b, c, h, w = images.shape
    columns = F.unfold(images, patch, padding=patch // 2)  # [B, C * p * p, H * W], channel-first per column
    return columns.transpose(1, 2).reshape(b * h * w, c, patch, patch)


@torch.no_grad()
def sliding_window_predict(model: PatchClassifier, images: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """The sliding-window baseline: ``model`` on the patch around every pixel, ``[B, C_in, H, W] -> logits
    [B, num_classes, H, W]``.

    The patches of one image at a time are classified in batches of ``chunk`` windows (memory: ``chunk``
    patches of ``C_in x p x p``). No gradients; the model's mode is left as it is (``model.eval()`` first for
    layers that behave differently in training).
    """
    if not isinstance(model, PatchClassifier):
        raise TypeError(f"model must be a PatchClassifier, got {type(model).__name__}")
    validate.images(images, "images", channels=model.in_channels)
    chunk = validate.positive_int(chunk, "chunk")
    b, _, h, w = images.shape
    out = []
    for image in images:  # one image's patches at a time: p^2 times the image in memory, not the batch
        patches = extract_patches(image[None], model.patch)  # [H * W, C_in, p, p]
        logits = torch.cat([model(patches[i : i + chunk]) for i in range(0, len(patches), chunk)])
        out.append(logits.T.reshape(model.num_classes, h, w))
    return torch.stack(out) if out else images.new_zeros(0, model.num_classes, h, w)


# --------------------------------------------------------------------------- cost by formula


def layer_costs(model: PatchClassifier) -> list[tuple[str, int, int]]:
    """``(name, o, m)`` per layer of ``model``: its output side ``o`` inside one window and its multiply-adds
    ``m`` per output position (``C_out * C_in * kh * kw``; biases not counted, as FLOP counters do). The head
    is the last row, with ``o = 1``: one answer per window. A layer costs ``o^2 m`` per window and about
    ``m`` per pixel in the dense pass, which computes each of its outputs once."""
    if not isinstance(model, PatchClassifier):
        raise TypeError(f"model must be a PatchClassifier, got {type(model).__name__}")
    rows, side = [], model.patch
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    for number, conv in enumerate(convs, start=1):
        kh, kw = conv.kernel_size
        side -= kh - 1  # valid convolution, stride 1
        rows.append((f"conv{number}", side, conv.out_channels * conv.in_channels // conv.groups * kh * kw))
    rows.append(("head", 1, model.head.in_features * model.head.out_features))
    return rows


def patch_macs(model: PatchClassifier) -> int:
    """Multiply-adds of classifying one window: ``sum_l o_l^2 m_l`` (biases not counted, as FLOP counters do)."""
    return sum(o * o * m for _, o, m in layer_costs(model))


def sliding_window_macs(model: PatchClassifier, height: int, width: int) -> int:
    """Multiply-adds of ``sliding_window_predict`` on one ``height x width`` image: one window per pixel."""
    height, width = validate.positive_int(height, "height"), validate.positive_int(width, "width")
    return height * width * patch_macs(model)


def dense_macs(model: PatchClassifier, height: int, width: int) -> int:
    """Multiply-adds of one ``fully_convolutional(model)`` pass over a ``height x width`` image.

    Layer l, whose output is ``o_l x o_l`` inside a window, outputs ``(H + o_l - 1) x (W + o_l - 1)`` over the
    padded image (the final answer, ``o = 1``, is ``H x W``): ``sum_l (H + o_l - 1)(W + o_l - 1) m_l``.
    """
    height, width = validate.positive_int(height, "height"), validate.positive_int(width, "width")
    return sum((height + o - 1) * (width + o - 1) * m for _, o, m in layer_costs(model))
