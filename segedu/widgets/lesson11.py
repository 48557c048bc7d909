"""Lesson 11 (the capstone): every trained model on the same image, with and without the dense CRF.

``model_comparison`` views ``segedu.crf.dense_crf``, ``segedu.metrics.mean_iou`` and ``boundary_f1``.
"""

from __future__ import annotations

import ipywidgets as W
import torch
from matplotlib.figure import Figure

from segedu import viz
from segedu.widgets.frame import FigureDemo

__all__ = ["draw_model_comparison", "model_comparison"]


def draw_model_comparison(fig: Figure, images: torch.Tensor, masks: torch.Tensor, probs: dict, class_names,
                          index: int, view: str = "prediction", crf: bool = False, crf_params: dict | None = None) -> dict:
    """Image ``index``, its ground truth and every model's prediction side by side.

    ``images`` ``[N, 3, H, W]`` in [0, 1], ``masks`` int64 ``[N, H, W]``, ``probs`` ``{model name: [N, C, H, W]
    softmax probabilities}``. ``view``: ``"prediction"`` (labels) or ``"errors"`` (wrong pixels in red over the
    image). ``crf``: refine each prediction with ``segedu.crf.dense_crf(**crf_params)`` first. Each panel's
    title gives that image's IoU of the objects and boundary F1; returns ``{name: {"miou", "boundary_f1"}}``.
    """
    import numpy as np

    from segedu.crf import dense_crf
    from segedu.metrics import boundary_f1, mean_iou

    if view not in ("prediction", "errors"):
        raise ValueError(f"view must be 'prediction' or 'errors', got {view!r}")
    image, truth = images[index], masks[index]
    u8 = (image * 255).round().clamp(0, 255).to(torch.uint8)
    axes = fig.subplots(1, 2 + len(probs))
    axes[0].imshow(viz.to_numpy_image(image))
    axes[0].set_title(f"image {index}", fontsize=9)
    axes[1].imshow(viz.colorize(truth), interpolation="nearest")
    axes[1].set_title("ground truth", fontsize=9)
    result = {}
    for ax, (name, p) in zip(axes[2:], probs.items()):
        q = dense_crf(p[index], u8, **(crf_params or {})) if crf else p[index]
        labels = q.argmax(0)
        scores = {"miou": mean_iou(labels[None], truth[None], len(class_names)),
                  "boundary_f1": boundary_f1(labels[None], truth[None], num_classes=len(class_names))}
        result[name] = scores
        if view == "prediction":
            ax.imshow(viz.colorize(labels), interpolation="nearest")
        else:
            picture = viz.to_numpy_image(image).astype(float) * 0.5
            wrong = ((labels != truth) & (truth != 255)).cpu().numpy()
            picture[wrong] = (1.0, 0.1, 0.1)
            ax.imshow(np.clip(picture, 0, 1), interpolation="nearest")
        ax.set_title(f"{name}{' + CRF' if crf else ''}\nmIoU {scores['miou']:.2f} · BF {scores['boundary_f1']:.2f}",
                     fontsize=9)
    for ax in axes:
        ax.axis("off")
    handles = viz.legend_handles(class_names)
    if view == "errors":
        from matplotlib.patches import Patch

        handles = handles + [Patch(color=(1.0, 0.1, 0.1), label="wrong pixel")]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.8, bottom=0.1, wspace=0.05)
    return result


def model_comparison(images: torch.Tensor, masks: torch.Tensor, probs: dict, class_names,
                     crf_params: dict | None = None) -> FigureDemo:
    """Lesson 11: every trained model on the same image. Controls: the image (slider), the view (predicted
    labels or the wrong pixels) and the dense CRF on/off (with ``crf_params``, e.g. the tuned ones)."""
    if not probs:
        raise ValueError("probs must map model names to probabilities [N, C, H, W]")
    for name, p in probs.items():
        if not isinstance(p, torch.Tensor) or p.dim() != 4 or p.shape[0] != len(images) or p.shape[-2:] != masks.shape[-2:]:
            got = tuple(p.shape) if isinstance(p, torch.Tensor) else type(p).__name__
            raise ValueError(f"probs[{name!r}] must be [{len(images)}, C, {masks.shape[-2]}, {masks.shape[-1]}], got {got}")
    controls = {
        "index": W.IntSlider(value=0, min=0, max=len(images) - 1, description="image"),
        "view": W.Dropdown(options=["prediction", "errors"], value="prediction", description="show"),
        "crf": W.Checkbox(value=False, description="dense CRF"),
    }

    def draw(fig, **values):
        return draw_model_comparison(fig, images, masks, probs, class_names, crf_params=crf_params, **values)

    return FigureDemo(draw, controls, figsize=(1.7 * (2 + len(probs)), 2.7), title="Every model on the same image")
