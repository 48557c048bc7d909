"""Interactive demos for the lessons (ipywidgets), each a thin view over tested functions.

Every demo is a ``FigureDemo``: a row of controls (sliders, dropdowns) above a picture. Moving a control calls
the demo's ``draw(fig, **values)`` function, which only arranges results of tested package functions on a
matplotlib figure; the figure is rendered to PNG into an ``ipywidgets.Image``. So the demos work in any
Jupyter front-end without extra extensions, and ``demo.update(**values)`` can be called from tests.
"""

from __future__ import annotations

from typing import Callable

import ipywidgets as W
import torch
from matplotlib.figure import Figure

from segedu import viz

# --- the common frame --------------------------------------------------------------------------------------


class FigureDemo(W.VBox):
    """Controls above a matplotlib picture.

    ``draw(fig, **values)`` draws on a cleared figure; what it returns is kept in ``self.result`` (a number or
    a dict the tests and the lesson can read). ``update(**values)`` sets controls, redraws and returns the PNG.
    """

    def __init__(self, draw: Callable, controls: dict[str, W.ValueWidget], figsize=(8, 3.2), title: str | None = None):
        self.draw = draw
        self.controls = controls
        self.figure = Figure(figsize=figsize, dpi=90)
        self.image = W.Image(format="png", layout=W.Layout(max_width="100%"))
        self.result = None
        self._updating = False
        for control in controls.values():
            control.observe(self._on_change, names="value")
            style = getattr(control, "style", None)
            if style is not None and hasattr(style, "description_width") and not style.description_width:
                style.description_width = "initial"  # show the whole label ("bins per side", not "bins per s...")
        header = [W.HTML(f"<b>{title}</b>")] if title else []
        row = W.HBox(list(controls.values()), layout=W.Layout(flex_flow="row wrap"))  # wrap, never squeeze
        super().__init__(header + [row, self.image])
        self.update()

    def values(self) -> dict:
        return {name: control.value for name, control in self.controls.items()}

    def _on_change(self, _change) -> None:
        if not self._updating:
            self.update()

    def update(self, **values) -> bytes:
        """Set the named controls (no value: keep the current ones), redraw, and return the PNG bytes."""
        unknown = set(values) - set(self.controls)
        if unknown:
            raise ValueError(f"unknown control(s) {sorted(unknown)}; this demo has {sorted(self.controls)}")
        self._updating = True  # one redraw for several changed controls
        try:
            for name, value in values.items():
                self.controls[name].value = value
        finally:
            self._updating = False
        self.figure.clear()
        self.result = self.draw(self.figure, **self.values())
        png = viz.figure_to_png(self.figure)
        self.image.value = png
        return png


# --- lesson 00: the segmentation task ----------------------------------------------------------------------


def draw_scene_view(fig: Figure, dataset, index: int, view: str) -> dict:
    """The scene ``index`` of an instance-variant ``ShapesDataset`` next to its ``view``:
    "semantic" (class per pixel), "instance" (a colour per object) or "panoptic" (class and instance)."""
    from segedu.data.tasks import panoptic_from_instances, semantic_from_instances

    image, target = dataset[index]
    labels, masks = target["labels"], target["masks"]
    if view == "semantic":
        picture = viz.colorize(semantic_from_instances(labels, masks))
    elif view == "instance":
        numbers = torch.arange(1, len(labels) + 1, device=masks.device)  # masks do not overlap: a sum paints them
        ids = (masks.long() * numbers[:, None, None]).sum(0)
        picture = viz.colorize_instances(ids)
    elif view == "panoptic":
        picture = viz.colorize_panoptic(panoptic_from_instances(labels, masks))
    else:
        raise ValueError(f"view must be 'semantic', 'instance' or 'panoptic', got {view!r}")
    axes = fig.subplots(1, 2)
    axes[0].imshow(viz.to_numpy_image(image))
    axes[0].set_title(f"scene {index}")
    axes[1].imshow(picture, interpolation="nearest")
    names = ", ".join(dataset.classes[int(c)] for c in labels)
    axes[1].set_title(f"{view}: {len(labels)} object{'' if len(labels) == 1 else 's'}")
    for ax in axes:
        ax.axis("off")
    if view != "instance":
        present = [0] + sorted(set(labels.tolist()))
        fig.legend(handles=viz.legend_handles(dataset.classes, present), loc="center right", fontsize=9, frameon=False)
        fig.subplots_adjust(right=0.72)
    fig.suptitle(names, fontsize=9)
    return {"objects": len(labels), "view": view}


def scene_browser(dataset) -> FigureDemo:
    """Lesson 00: browse scenes and switch between semantic, instance and panoptic views."""
    controls = {
        "index": W.IntSlider(value=0, min=0, max=len(dataset) - 1, description="scene"),
        "view": W.Dropdown(options=["semantic", "instance", "panoptic"], value="semantic", description="view"),
    }
    return FigureDemo(lambda fig, **v: draw_scene_view(fig, dataset, **v), controls, title="One scene, three tasks")


# --- lessons 05-06: FCN and U-Net -------------------------------------------------------------------------


class PredictionSnapshots:
    """A ``fit(callback=...)`` that records the model's predicted labels on fixed images every ``every`` steps.

    ``images`` ``[N, 3, H, W]``; after training, ``self.steps`` lists the recorded steps and
    ``self.labels`` the int64 ``[N, H, W]`` predictions (on the CPU) at each. ``every`` should divide the
    number of training steps so that the last snapshot is the trained model.
    """

    def __init__(self, images: torch.Tensor, every: int):
        if not isinstance(every, int) or isinstance(every, bool) or every < 1:
            raise ValueError(f"every must be an int >= 1, got {every!r}")
        self.images, self.every = images, every
        self.steps: list[int] = []
        self.labels: list[torch.Tensor] = []

    @torch.no_grad()
    def __call__(self, step: int, model, history=None) -> None:
        if step % self.every:
            return
        model.eval()  # fit switches back to train mode after the callback
        device = next(model.parameters()).device
        logits = model(self.images.to(device))
        self.steps.append(step)
        self.labels.append(logits.argmax(1).cpu())


def draw_fcn_snapshots(fig: Figure, images, masks, snapshots: dict, class_names, snapshot: int, index: int) -> dict:
    """Image ``index``, its ground truth and every model's prediction at snapshot number ``snapshot``.
    ``snapshots`` maps a model name to its ``PredictionSnapshots``."""
    names = list(snapshots)
    first = snapshots[names[0]]
    snapshot = min(snapshot, len(first.steps) - 1)
    axes = fig.subplots(1, 2 + len(names))
    axes[0].imshow(viz.to_numpy_image(images[index]))
    axes[0].set_title("image")
    axes[1].imshow(viz.colorize(masks[index]), interpolation="nearest")
    axes[1].set_title("ground truth")
    present = set(masks[index].unique().tolist())
    for ax, name in zip(axes[2:], names):
        labels = snapshots[name].labels[snapshot][index]
        present |= set(labels.unique().tolist())
        ax.imshow(viz.colorize(labels), interpolation="nearest")
        ax.set_title(name)
    for ax in axes:
        ax.axis("off")
    fig.suptitle(f"after {first.steps[snapshot]} training steps", fontsize=10)
    fig.legend(handles=viz.legend_handles(class_names, sorted(present - {255})), loc="center right", fontsize=8,
               frameon=False)
    fig.subplots_adjust(right=0.86, wspace=0.05)
    return {"step": first.steps[snapshot], "index": index}


def fcn_training_browser(images, masks, snapshots: dict, class_names) -> FigureDemo:
    """Lesson 05: step through the training of several models (FCN-32s/16s/8s) side by side.

    ``images`` ``[N, 3, H, W]`` and ``masks`` ``[N, H, W]`` are the images the ``PredictionSnapshots`` in
    ``snapshots`` (name -> recorder, all with the same steps) were recorded on.
    """
    if not snapshots or any(len(s.steps) == 0 for s in snapshots.values()):
        raise ValueError("snapshots must map model names to PredictionSnapshots with at least one recorded step")
    count = len(next(iter(snapshots.values())).steps)
    controls = {
        "snapshot": W.IntSlider(value=count - 1, min=0, max=count - 1, description="snapshot"),
        "index": W.IntSlider(value=0, min=0, max=len(images) - 1, description="image"),
    }
    return FigureDemo(
        lambda fig, **v: draw_fcn_snapshots(fig, images, masks, snapshots, class_names, **v),
        controls, figsize=(2.1 * (2 + len(snapshots)) + 1.2, 2.6), title="Training FCN-32s, 16s and 8s",
    )


def draw_unet_features(fig: Figure, models: dict, images, level: str, channel: int, index: int,
                       class_names=None) -> dict:
    """One channel of the ``level`` feature map of each U-Net in ``models`` (name -> ``UNet``) on image
    ``index``, next to the image and each model's prediction. ``channel`` wraps around the level's width."""
    image = images[index : index + 1]
    axes = fig.subplots(len(models), 3, squeeze=False, gridspec_kw={"wspace": 0.45, "hspace": 0.3})
    result, present = {}, set()
    for row, (name, model) in enumerate(models.items()):
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        with torch.no_grad():
            maps = model.features(image.to(device))
        model.train(was_training)
        fmap = maps[level][0].float().cpu()
        c = channel % fmap.shape[0]
        labels = maps["logits"][0].argmax(0).cpu()
        present |= set(labels.unique().tolist())
        axes[row, 0].imshow(viz.to_numpy_image(image[0]))
        axes[row, 0].set_title(f"{name}: input", fontsize=9)
        shown = axes[row, 1].imshow(fmap[c].numpy(), cmap="viridis")
        size = f"{fmap.shape[1]}x{fmap.shape[2]}"
        axes[row, 1].set_title(f"{level}: channel {c} of {fmap.shape[0]}, {size}", fontsize=9)
        fig.colorbar(shown, ax=axes[row, 1], fraction=0.046, pad=0.03).set_label("activation", fontsize=8)
        axes[row, 2].imshow(viz.colorize(labels), interpolation="nearest")
        axes[row, 2].set_title(f"{name}: prediction", fontsize=9)
        result[name] = tuple(fmap.shape)
    for ax in axes.flat:
        ax.axis("off")
    if class_names is not None:
        fig.legend(handles=viz.legend_handles(class_names, sorted(present)), loc="center right", fontsize=8,
                   frameon=False)
        fig.subplots_adjust(right=0.85)
    return result


def unet_feature_browser(models: dict, images, class_names=None) -> FigureDemo:
    """Lesson 06: browse the feature maps of U-Nets (e.g. with and without skips) level by level.

    ``models`` maps a name to a ``segedu.models.unet.UNet`` (same depth); ``images`` ``[N, 3, H, W]``;
    ``class_names`` (optional) adds a legend for the predictions.
    """
    if not models:
        raise ValueError("models must map names to UNet models")
    first = next(iter(models.values()))
    depth = first.depth
    levels = [f"enc{i}" for i in range(depth)] + ["bottleneck"] + [f"dec{i}" for i in range(depth - 1, -1, -1)]
    controls = {
        "level": W.Dropdown(options=levels, value="enc0", description="level"),
        "channel": W.IntSlider(value=0, min=0, max=max(first.widths) - 1, description="channel"),
        "index": W.IntSlider(value=0, min=0, max=len(images) - 1, description="image"),
    }
    return FigureDemo(lambda fig, **v: draw_unet_features(fig, models, images, class_names=class_names, **v),
                      controls, figsize=(9.5, 2.7 * len(models)), title="U-Net feature maps, level by level")


# --- lessons 01-04: autoencoders, upsampling, transposed and dilated convolution ----------------------------


def _gray_or_rgb(ax, image: torch.Tensor, title: str) -> None:
    """Show a ``[1, H, W]`` or ``[3, H, W]`` image in [0, 1] (grey scale with a fixed range for one channel)."""
    image = image.detach().float().cpu()
    if image.shape[0] == 1:
        ax.imshow(image[0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(viz.to_numpy_image(image), interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def draw_bottleneck(fig: Figure, images, fit_on, models: dict, errors: dict, k: int, index: int) -> dict:
    """Lesson 01: image ``index`` next to its PCA reconstruction with ``k`` components (fitted on ``fit_on``) and
    the reconstruction by ``models[k]``, an autoencoder with a ``k``-unit code; right: ``errors`` (from
    ``bottleneck_explorer``) against k with the chosen k marked."""
    from segedu.models.autoencoder import pca_reconstruction

    model = models[k]
    device = next(model.parameters()).device
    x = images[index : index + 1]
    pca = pca_reconstruction(x, k, fit_on=fit_on)
    with torch.no_grad():
        ae = model(x.to(device)).cpu().clamp(0, 1)
    grid = fig.add_gridspec(1, 4, width_ratios=[1, 1, 1, 1.6], wspace=0.7)  # room for the plot's tick labels
    pictures = [(x[0], "input"), (pca[0].clamp(0, 1), f"PCA, k={k}\nMSE {float((pca - x).pow(2).mean()):.4f}"),
                (ae[0], f"autoencoder, k={k}\nMSE {float((ae - x).pow(2).mean()):.4f}")]
    for column, (picture, title) in enumerate(pictures):
        _gray_or_rgb(fig.add_subplot(grid[0, column]), picture, title)
    ax = fig.add_subplot(grid[0, 3])
    ks = sorted(errors["pca"])
    ax.plot(ks, [errors["pca"][q] for q in ks], "o-", label="PCA")
    ax.plot(ks, [errors["ae"][q] for q in ks], "s-", label="autoencoder")
    ax.axvline(k, color="gray", linestyle=":")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("bottleneck size k")
    ax.set_ylabel("MSE")
    ax.set_title("mean squared error (all images)", fontsize=9)
    ax.legend(fontsize=8)
    return {"k": k, "pca_mse": float((pca - x).pow(2).mean()), "ae_mse": float((ae - x).pow(2).mean())}


def bottleneck_explorer(images, fit_on, models: dict) -> FigureDemo:
    """Lesson 01: slide the bottleneck size k; compare PCA and a trained autoencoder at each k.

    ``images`` float ``[N, C, h, w]`` to show, ``fit_on`` the training set PCA is fitted on, ``models`` maps k to
    an autoencoder with a k-unit code (``MLPAutoencoder``).
    """
    from segedu.models.autoencoder import pca_reconstruction

    if not models:
        raise ValueError("models must map bottleneck sizes k to trained autoencoders")
    errors = {"pca": {}, "ae": {}}
    for k, model in models.items():  # the curve is computed once, not at every redraw
        device = next(model.parameters()).device
        with torch.no_grad():
            errors["ae"][k] = float((model(images.to(device)).cpu().clamp(0, 1) - images).pow(2).mean())
        errors["pca"][k] = float((pca_reconstruction(images, k, fit_on=fit_on) - images).pow(2).mean())
    ks = sorted(models)
    controls = {
        "k": W.SelectionSlider(options=ks, value=ks[-1], description="k"),
        "index": W.IntSlider(value=0, min=0, max=len(images) - 1, description="image"),
    }
    return FigureDemo(lambda fig, **v: draw_bottleneck(fig, images, fit_on, models, errors, **v), controls,
                      figsize=(10, 2.8), title="How much survives a k-number bottleneck?")


def draw_denoising(fig: Figure, model, images, sigma: float, index: int) -> dict:
    """Lesson 01: clean image ``index``, a noisy copy (Gaussian noise of std ``sigma``, clipped to [0, 1], fixed per
    image) and the denoising autoencoder's output, with the PSNR of each against the clean image."""
    from segedu.models.autoencoder import psnr

    clean = images[index : index + 1].float().cpu()
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(index))
    noisy = (clean + sigma * noise).clamp(0, 1)
    device = next(model.parameters()).device
    with torch.no_grad():
        denoised = model(noisy.to(device)).cpu().clamp(0, 1)
    scores = {"noisy": float(psnr(noisy, clean)[0]), "denoised": float(psnr(denoised, clean)[0])}
    axes = fig.subplots(1, 4)
    _gray_or_rgb(axes[0], clean[0], "clean")
    _gray_or_rgb(axes[1], noisy[0], f"noisy, sigma={sigma:.2f}\nPSNR {scores['noisy']:.1f} dB")
    _gray_or_rgb(axes[2], denoised[0], f"denoised\nPSNR {scores['denoised']:.1f} dB")
    shown = axes[3].imshow((denoised - clean)[0].abs().mean(0).numpy(), cmap="magma", vmin=0, vmax=0.5)
    axes[3].set_title("|denoised - clean|", fontsize=9)
    axes[3].axis("off")
    fig.colorbar(shown, ax=axes[3], fraction=0.046, label="error")
    return scores


def denoising_viewer(model, images) -> FigureDemo:
    """Lesson 01: move the noise level and the image; see what a denoising autoencoder recovers."""
    controls = {
        "sigma": W.FloatSlider(value=0.3, min=0.0, max=0.6, step=0.05, description="noise std"),
        "index": W.IntSlider(value=0, min=0, max=len(images) - 1, description="image"),
    }
    return FigureDemo(lambda fig, **v: draw_denoising(fig, model, images, **v), controls, figsize=(9, 2.6),
                      title="A denoising autoencoder at work")

def draw_matrices(fig: Figure, matrices, titles=None, cmap: str = "Blues", decimals: int | None = None) -> None:
    """Small matrices side by side as heatmaps with their values written in the cells (the lectures' worked
    examples). ``matrices``: 2-D tensors (or ``[1, 1, H, W]``); values are printed when a matrix has at most
    12 x 12 entries, as integers when they all are, else with ``decimals`` (default 2)."""
    matrices = [torch.as_tensor(m).detach().cpu().double().reshape(torch.as_tensor(m).shape[-2:]) for m in matrices]
    titles = titles or [""] * len(matrices)
    axes = fig.subplots(1, len(matrices), squeeze=False)[0]
    for ax, m, title in zip(axes, matrices, titles):
        ax.imshow(m.numpy(), cmap=cmap, vmin=min(0.0, float(m.min())), vmax=max(1e-9, float(m.max())))
        if m.shape[0] <= 12 and m.shape[1] <= 12:
            integral = bool(torch.all(m == m.round())) and decimals is None
            high = float(m.max())
            fontsize = 9 if max(m.shape) <= 6 else 7
            for (i, j), value in zip(torch.cartesian_prod(torch.arange(m.shape[0]), torch.arange(m.shape[1])).tolist(),
                                     m.flatten().tolist()):
                text = f"{value:.0f}" if integral else f"{value:.{2 if decimals is None else decimals}f}"
                ax.text(j, i, text, ha="center", va="center", fontsize=fontsize,
                        color="white" if high > 0 and value > 0.6 * high else "black")
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_title(f"{title}\n{m.shape[0]}x{m.shape[1]}" if title else f"{m.shape[0]}x{m.shape[1]}", fontsize=9)


def show_matrices(matrices, titles=None, cmap: str = "Blues", decimals: int | None = None, size: float = 2.2):
    """``draw_matrices`` on a new pyplot figure (for a notebook cell); returns the figure."""
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(size * len(matrices), size + 0.4))
    draw_matrices(fig, matrices, titles, cmap, decimals)
    return fig


UPSAMPLING_METHODS = ("nearest", "bed of nails", "max unpooling", "bilinear", "bilinear, align_corners",
                      "transposed conv, bilinear kernel")


def upsample_with(method: str, image: torch.Tensor, factor: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Lesson 02: shrink ``image`` float ``[B, C, H, W]`` by ``factor`` and grow it back with ``method`` (one of
    ``UPSAMPLING_METHODS``). Returns ``(small, upsampled)``; the size is cropped to a multiple of ``factor``.
    Max unpooling shrinks by max pooling (it needs the positions of the maxima), the others by averaging."""
    from segedu.ops import upsample as U

    h, w = image.shape[-2] // factor * factor, image.shape[-1] // factor * factor
    image = image[..., :h, :w]
    if method == "max unpooling":
        small, indices = torch.nn.functional.max_pool2d(image, factor, return_indices=True)
        return small, U.max_unpool(small, indices, (h, w))
    small = torch.nn.functional.avg_pool2d(image, factor)
    if method == "nearest":
        return small, U.nearest_upsample(small, factor)
    if method == "bed of nails":
        return small, U.bed_of_nails(small, factor)
    if method == "bilinear":
        return small, U.bilinear_upsample(small, scale_factor=factor)
    if method == "bilinear, align_corners":
        return small, U.bilinear_upsample(small, size=(h, w), align_corners=True)
    if method == "transposed conv, bilinear kernel":
        kernel = U.bilinear_kernel(small.shape[1], small.shape[1], 2 * factor - factor % 2)
        return small, U.transposed_conv2d(small, kernel, stride=factor, padding=factor // 2)
    raise ValueError(f"method must be one of {UPSAMPLING_METHODS}, got {method!r}")


def draw_upsampling(fig: Figure, image: torch.Tensor, method: str, factor: int) -> dict:
    """Lesson 02: the image, its ``factor``-times smaller copy, and that copy upsampled by ``method``, with the PSNR
    of the result against the original."""
    from segedu.models.autoencoder import psnr

    image = image[None] if image.dim() == 3 else image
    small, up = upsample_with(method, image.float(), factor)
    original = image[..., : up.shape[-2], : up.shape[-1]].float()
    score = float(psnr(up.clamp(0, 1), original)[0])
    axes = fig.subplots(1, 3)
    _gray_or_rgb(axes[0], original[0], f"original {original.shape[-2]}x{original.shape[-1]}")
    _gray_or_rgb(axes[1], small[0].clamp(0, 1), f"{factor}x smaller: {small.shape[-2]}x{small.shape[-1]}")
    _gray_or_rgb(axes[2], up[0].clamp(0, 1), f"{method}\nPSNR {score:.1f} dB")
    return {"psnr": score, "shape": tuple(up.shape)}


def upsampling_viewer(image: torch.Tensor) -> FigureDemo:
    """Lesson 02: pick an upsampling method and a factor; see what comes back from the smaller image."""
    controls = {
        "method": W.Dropdown(options=list(UPSAMPLING_METHODS), value="nearest", description="method"),
        "factor": W.IntSlider(value=4, min=2, max=8, description="factor"),
    }
    return FigureDemo(lambda fig, **v: draw_upsampling(fig, image, **v), controls, figsize=(9, 3.4),
                      title="Shrink, then upsample back")


def draw_overlaps(fig: Figure, kernel: int, stride: int, inputs: int = 5) -> dict:
    """Lesson 03: how many taps of a ``kernel x kernel`` transposed convolution with ``stride`` land on each output
    pixel (``segedu.ops.upsample.overlap_count`` over an ``inputs x inputs`` input), and the middle row as a profile."""
    from segedu.ops.upsample import overlap_count

    count = overlap_count(kernel, stride, inputs)
    inner = count[kernel:-kernel, kernel:-kernel] if count.shape[0] > 2 * kernel else count
    uniform = bool(inner.max() == inner.min())
    axes = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.3], "wspace": 0.4})
    shown = axes[0].imshow(count.numpy(), cmap="viridis", vmin=0, interpolation="nearest")
    fig.colorbar(shown, ax=axes[0], fraction=0.046, label="taps")
    axes[0].set_title(f"{inputs}x{inputs} input -> {count.shape[0]}x{count.shape[1]} output", fontsize=9)
    axes[0].set_xticks([]), axes[0].set_yticks([])
    row = count[count.shape[0] // 2]
    axes[1].bar(range(len(row)), row.numpy(), color="tab:purple")
    axes[1].set_xlabel("output column (middle row)")
    axes[1].set_ylabel("taps per output pixel")
    verdict = "even inside: no checkerboard" if uniform else "uneven: checkerboard"
    axes[1].set_title(f"kernel {kernel}, stride {stride}: {kernel} % {stride} = {kernel % stride}, {verdict}", fontsize=9)
    return {"uniform": uniform, "min": int(inner.min()), "max": int(inner.max())}


def checkerboard_viewer() -> FigureDemo:
    """Lesson 03: move kernel size and stride; see where a transposed convolution's kernels overlap unevenly."""
    controls = {
        "kernel": W.IntSlider(value=3, min=1, max=7, description="kernel"),
        "stride": W.IntSlider(value=2, min=1, max=4, description="stride"),
    }
    return FigureDemo(lambda fig, **v: draw_overlaps(fig, **v), controls, figsize=(9, 3.3),
                      title="Where do the kernels of a transposed convolution overlap?")


def draw_dilation(fig: Figure, rate1: int, rate2: int, rate3: int) -> dict:
    """Lesson 04: a stack of three 3x3 convolutions with dilation rates ``rate1, rate2, rate3``: the taps of the last
    layer (``segedu.ops.dilation.dilate_kernel``) and the footprint of one output in the input
    (``segedu.ops.dilation.footprint``: paths per input pixel; white squares inside the field are never seen)."""
    from segedu.ops.dilation import dilate_kernel, footprint, receptive_field

    rates = (rate1, rate2, rate3)
    paths = footprint(rates)
    field = receptive_field([(3, 1, r) for r in rates])
    seen = float((paths > 0).float().mean())
    axes = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.5], "wspace": 0.35})
    taps = dilate_kernel(torch.ones(1, 1, 3, 3), rate3)[0, 0]
    axes[0].imshow(taps.numpy(), cmap="Greys", vmin=0, vmax=1.5)
    axes[0].set_title(f"layer 3: 3x3 taps at rate {rate3}\n({taps.shape[0]}x{taps.shape[1]}, 9 weights)", fontsize=9)
    shown = axes[1].imshow(paths.float().masked_fill(paths == 0, float("nan")).numpy(), cmap="viridis")
    fig.colorbar(shown, ax=axes[1], fraction=0.046, label="paths to the output")
    axes[1].set_title(f"rates {rates}: receptive field {field.size}x{field.size}, {seen:.0%} of it seen", fontsize=9)
    for ax in axes:
        ax.set_xticks([]), ax.set_yticks([])
    return {"size": field.size, "seen": seen}


def dilation_viewer() -> FigureDemo:
    """Lesson 04: choose the dilation rates of three stacked 3x3 convolutions; see the receptive field and its holes."""
    controls = {f"rate{i}": W.IntSlider(value=v, min=1, max=5, description=f"rate {i}") for i, v in ((1, 1), (2, 2), (3, 4))}
    return FigureDemo(lambda fig, **v: draw_dilation(fig, **v), controls, figsize=(8.5, 3.6),
                      title="Stacked dilated convolutions: receptive field and gridding")


# (end of the lessons 01-04 widgets)


# --- lesson 10: losses -------------------------------------------------------------------------------------

# Probabilities of the probed pixel: evenly spaced in logit, so both ends (confidently right, confidently
# wrong) get as many points as the middle.
LOSS_SWEEP = torch.sigmoid(torch.linspace(-6.0, 6.0, 61, dtype=torch.float64))
_LOG_FLOOR = 1e-4  # log axes: smaller values (a focal loss's easy pixel, ~1e-7) are drawn at the floor


def draw_loss_curves(fig: Figure, names, ratio: float = 0.05, probability: float | None = None,
                     params: dict | None = None, title: str | None = None) -> dict:
    """One pixel's cost and gradient against its foreground probability p, for the losses ``names``.

    A view of ``segedu.loss_probe.sweep`` (one pixel of a 32 x 32 scene whose foreground covers ``ratio``).
    Left: the cost ``N (L(p) - L(right))``; right: ``|N dL/dz|``; log axes. Colour = loss (the first one
    drawn wide and pale, as the reference); solid = a positive pixel (right at p = 1), dashed = a negative
    pixel (right at p = 0). ``params`` maps a loss name
    to its keyword arguments (default: the function's defaults). With ``probability`` a vertical line marks
    p and the result holds, per loss, ``{"positive": (cost, gradient), "negative": (cost, gradient)}`` at p
    (gradient signed); without it the result is ``{}``.
    """
    from matplotlib.lines import Line2D

    from segedu.loss_probe import PIXELS, sweep

    names = [names] if isinstance(names, str) else list(names)
    params = params or {}
    p = LOSS_SWEEP
    if probability is not None:
        p = torch.cat([p, torch.tensor([probability], dtype=torch.float64)])  # the last entry: the marker
    order = torch.argsort(p)
    ax_cost, ax_grad = fig.subplots(1, 2)
    result = {}
    for i, name in enumerate(names):
        # The first loss is the reference (binary cross-entropy in the lesson): wide and pale, so a loss
        # that coincides with it stays visible on top.
        style = {"color": f"C{i % 10}", "lw": 3.5 if i == 0 else 1.6, "alpha": 0.45 if i == 0 else 1.0}
        for pixel, ls in zip(PIXELS, ("-", "--")):
            cost, gradient = sweep(name, p, pixel, ratio=ratio, **params.get(name, {}))
            ax_cost.plot(p[order], cost[order].clamp_min(_LOG_FLOOR), ls=ls, **style)
            ax_grad.plot(p[order], gradient[order].abs().clamp_min(_LOG_FLOOR), ls=ls, **style)
            if probability is not None:
                result.setdefault(name, {})[pixel] = (float(cost[-1]), float(gradient[-1]))
    labels = (("cost of the pixel  N (L(p) - L(right))", ax_cost), ("|gradient on its logit|  N |dL/dz|", ax_grad))
    for ylabel, ax in labels:
        ax.set_yscale("log")
        ax.set_xlim(0, 1)
        ax.set_xlabel("foreground probability p of the pixel")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        if probability is not None:
            ax.axvline(probability, color="k", lw=0.8, alpha=0.6)
    ax_cost.set_title("loss", fontsize=10)
    ax_grad.set_title("gradient", fontsize=10)
    handles = [Line2D([], [], color=f"C{i % 10}", lw=3.5 if i == 0 else 1.6, alpha=0.45 if i == 0 else 1.0,
                      label=name) for i, name in enumerate(names)]
    handles += [Line2D([], [], color="k", ls="-", label="positive pixel"),
                Line2D([], [], color="k", ls="--", label="negative pixel")]
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    fig.suptitle(title or f"one pixel of a scene with {ratio:.1%} foreground", fontsize=10)
    fig.tight_layout()
    return result


def loss_explorer(loss: str = "dice_loss", ratio: float = 0.05, probability: float = 0.1) -> FigureDemo:
    """Lesson 10: a loss's cost and gradient for one pixel against its probability p and the foreground
    fraction (sliders), next to binary cross-entropy (the reference)."""
    import math

    from segedu.losses import LOSSES

    controls = {
        "loss": W.Dropdown(options=list(LOSSES), value=loss, description="loss"),
        "ratio": W.FloatLogSlider(value=ratio, base=10, min=-3, max=math.log10(0.5), step=0.1,
                                  description="foreground", readout_format=".3f"),
        "probability": W.FloatSlider(value=probability, min=0.01, max=0.99, step=0.01, description="p"),
    }

    def draw(fig, loss, ratio, probability):
        names = list(dict.fromkeys(["binary_cross_entropy", loss]))  # BCE first, once
        values = draw_loss_curves(fig, names, ratio, probability)
        (pos_cost, pos_grad), (neg_cost, neg_grad) = values[loss]["positive"], values[loss]["negative"]
        fig.suptitle(
            f"{loss} at p = {probability:.2f}, foreground {ratio:.1%}: positive pixel cost {pos_cost:.3g}, "
            f"gradient {pos_grad:+.3g}; negative pixel cost {neg_cost:.3g}, gradient {neg_grad:+.3g}",
            fontsize=9,
        )
        return values

    return FigureDemo(draw, controls, figsize=(9, 3.4), title="One pixel under each loss")


# --- lesson 07: DeepLab and the dense CRF ------------------------------------------------------------------


def _boundaries(ax, labels: torch.Tensor, color: str = "yellow") -> None:
    """Draw the borders between the classes of ``labels [H, W]`` as lines over what the axes show."""
    import numpy as np

    labels = labels.detach().cpu().numpy()
    if labels.min() != labels.max():
        ax.contour(labels, levels=np.arange(labels.min(), labels.max()) + 0.5, colors=color, linewidths=1.2)


def draw_crf(fig: Figure, image: torch.Tensor, probs: torch.Tensor, class_names, iterations: int,
             w_bilateral: float, theta_alpha: float, theta_beta: float, w_gaussian: float, theta_gamma: float,
             show_class: int = 1) -> dict:
    """The dense CRF on one photo: the coarse labels (argmax of ``probs [C, H, W]``), the CRF's labels, and the
    CRF's probability of class ``show_class``; ``image`` uint8 ``[3, H, W]``.

    Returns ``{"changed": fraction of pixels relabelled, "contrast_before", "contrast_after"}`` (the mean image
    gradient on the boundary of ``show_class``, ``segedu.crf.boundary_contrast``).
    """
    from segedu.crf import boundary_contrast, dense_crf

    refined = dense_crf(probs, image, iterations=iterations, w_bilateral=w_bilateral, theta_alpha=theta_alpha,
                        theta_beta=theta_beta, w_gaussian=w_gaussian, theta_gamma=theta_gamma)
    before, after = probs.argmax(0), refined.argmax(0)
    result = {
        "changed": float((before != after).float().mean()),
        "contrast_before": boundary_contrast(before == show_class, image),
        "contrast_after": boundary_contrast(after == show_class, image),
    }
    axes = fig.subplots(1, 3)
    for ax, labels, title in (
        (axes[0], before, f"coarse labels (edge contrast {result['contrast_before']:.0f})"),
        (axes[1], after, f"after the CRF (edge contrast {result['contrast_after']:.0f})"),
    ):
        ax.imshow(viz.overlay(image, labels, alpha=0.35))
        _boundaries(ax, labels)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    shown = axes[2].imshow(refined[show_class].detach().cpu().numpy(), vmin=0, vmax=1, cmap="viridis")
    axes[2].set_title(f"CRF: P({class_names[show_class]})", fontsize=9)
    axes[2].axis("off")
    fig.colorbar(shown, ax=axes[2], fraction=0.046, pad=0.04)
    fig.legend(handles=viz.legend_handles(class_names), loc="lower center", ncol=len(class_names), fontsize=8,
               frameon=False)
    fig.suptitle(f"{iterations} mean-field iterations; {result['changed']:.1%} of the pixels relabelled", fontsize=10)
    return result


def crf_explorer(image: torch.Tensor, probs: torch.Tensor, class_names=("background", "person"),
                 iterations: int = 5, w_bilateral: float = 10.0, theta_alpha: float = 30.0, theta_beta: float = 13.0,
                 w_gaussian: float = 3.0, theta_gamma: float = 1.0) -> FigureDemo:
    """Lesson 07: sliders for the CRF's weights, thetas and iterations over a photo and its coarse ``probs``."""
    import math

    side = max(image.shape[-2:])
    controls = {
        "iterations": W.IntSlider(value=iterations, min=0, max=10, description="iterations"),
        "w_bilateral": W.FloatSlider(value=w_bilateral, min=0.0, max=20.0, step=0.5, description="w bilateral"),
        "theta_alpha": W.FloatLogSlider(value=theta_alpha, base=10, min=0, max=math.log10(side),
                                        step=0.05, description="θα (px)"),
        "theta_beta": W.FloatLogSlider(value=theta_beta, base=10, min=0, max=2, step=0.05, description="θβ (rgb)"),
        "w_gaussian": W.FloatSlider(value=w_gaussian, min=0.0, max=10.0, step=0.5, description="w gaussian"),
        "theta_gamma": W.FloatLogSlider(value=theta_gamma, base=10, min=-0.3, max=1, step=0.05,
                                        description="θγ (px)"),
    }

    def draw(fig, **values):
        return draw_crf(fig, image, probs, class_names, **values)

    return FigureDemo(draw, controls, figsize=(10, 3.8), title="Dense CRF: move the sliders")


def draw_pairwise_kernel(fig: Figure, image: torch.Tensor, row: int, col: int, theta_alpha: float,
                         theta_beta: float, theta_gamma: float) -> dict:
    """The two kernels of the dense CRF from pixel ``(row, col)`` of ``image`` uint8 ``[3, H, W]``: how much a
    label disagreement with every other pixel costs (weights 1). Returns the kernel mass of each map."""
    from segedu.crf import pairwise_kernel

    maps = pairwise_kernel(image, (row, col), w_bilateral=1.0, theta_alpha=theta_alpha, theta_beta=theta_beta,
                           w_gaussian=1.0, theta_gamma=theta_gamma)
    axes = fig.subplots(1, 3)
    axes[0].imshow(viz.to_numpy_image(image))
    axes[0].plot([col], [row], marker="+", color="red", markersize=14, mew=2)
    axes[0].set_title(f"pixel ({row}, {col})", fontsize=9)
    for ax, name, title in ((axes[1], "bilateral", f"appearance kernel (θα={theta_alpha:.0f}, θβ={theta_beta:.0f})"),
                            (axes[2], "gaussian", f"smoothness kernel (θγ={theta_gamma:.1f})")):
        shown = ax.imshow(maps[name].cpu().numpy(), vmin=0, vmax=1, cmap="magma")
        ax.set_title(title, fontsize=9)
        fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
    for ax in axes:
        ax.axis("off")
    return {name: float(maps[name].sum()) for name in ("bilateral", "gaussian")}


def kernel_viewer(image: torch.Tensor, row: int | None = None, col: int | None = None, theta_alpha: float = 30.0,
                  theta_beta: float = 13.0, theta_gamma: float = 3.0) -> FigureDemo:
    """Lesson 07: pick a pixel and the thetas; see which pixels the appearance and smoothness kernels tie to it
    (default pixel: 3/4 down, in the middle)."""
    import math

    height, width = image.shape[-2:]
    side = max(height, width)
    controls = {
        "row": W.IntSlider(value=3 * height // 4 if row is None else row, min=0, max=height - 1, description="row"),
        "col": W.IntSlider(value=width // 2 if col is None else col, min=0, max=width - 1, description="column"),
        "theta_alpha": W.FloatLogSlider(value=theta_alpha, base=10, min=0, max=math.log10(side), step=0.05,
                                        description="θα (px)"),
        "theta_beta": W.FloatLogSlider(value=theta_beta, base=10, min=0, max=2, step=0.05, description="θβ (rgb)"),
        "theta_gamma": W.FloatLogSlider(value=theta_gamma, base=10, min=-0.3, max=1.3, step=0.05,
                                        description="θγ (px)"),
    }

    def draw(fig, **values):
        return draw_pairwise_kernel(fig, image, **values)

    return FigureDemo(draw, controls, figsize=(10, 3.4), title="The two Gaussian kernels of the dense CRF")


# --- lesson 09: Mask R-CNN -----------------------------------------------------------------------------------


def draw_boxes(ax, boxes, labels=None, class_names=None, scores=None, color=None, linewidth: float = 1.5,
               linestyle: str = "-") -> None:
    """Rectangles ``boxes [N, 4]`` (x1, y1, x2, y2, pixels) on ``ax``, in the VOC colour of their label (or
    ``color``), tagged "name score" when ``class_names`` / ``scores`` are given."""
    from matplotlib.patches import Rectangle

    palette = viz.palette() / 255.0
    boxes = boxes.detach().cpu().tolist()
    labels = labels.detach().cpu().tolist() if labels is not None else [None] * len(boxes)
    scores = scores.detach().cpu().tolist() if scores is not None else [None] * len(boxes)
    for (x1, y1, x2, y2), label, score in zip(boxes, labels, scores):
        edge = color if color is not None else (palette[label] if label is not None else "white")
        # pixel i covers [i - 0.5, i + 0.5] in imshow's coordinates, box coordinates start at the pixel's edge
        ax.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, edgecolor=edge,
                               linewidth=linewidth, linestyle=linestyle))
        tag = [class_names[label] if class_names is not None and label is not None else None,
               f"{score:.2f}" if score is not None else None]
        tag = " ".join(t for t in tag if t)
        if tag:
            ax.text(x1 - 0.5, y1 - 1, tag, fontsize=7, color="white", va="bottom",
                    bbox=dict(facecolor=edge, edgecolor="none", pad=0.5, alpha=0.8))


def draw_instances(ax, image, instances: dict, class_names=None, title: str | None = None,
                   mask_threshold: float = 0.5, alpha: float = 0.45) -> None:
    """An image with instance masks (filled in their class colour, outlined) and boxes.

    ``instances`` is a target dict (``masks [N, H, W]`` uint8) or a prediction dict (``masks [N, 1, H, W]``
    probabilities, cut at ``mask_threshold``, and ``scores``); lower scores are painted first.
    """
    import numpy as np

    rgb = viz.to_numpy_image(image).copy()
    masks = instances["masks"].detach().cpu()
    if masks.dim() == 4:
        masks = masks[:, 0]
    masks = (masks > mask_threshold) if masks.is_floating_point() else masks.bool()
    labels = instances["labels"].detach().cpu()
    scores = instances.get("scores")
    order = scores.detach().cpu().argsort().tolist() if scores is not None else range(len(labels))
    palette = viz.palette() / 255.0
    for i in order:
        m = masks[i].numpy()
        rgb[m] = (1 - alpha) * rgb[m] + alpha * palette[int(labels[i])]
    ax.imshow(np.clip(rgb, 0, 1), interpolation="nearest")
    for i in order:
        if masks[i].any():
            ax.contour(masks[i].numpy().astype(float), levels=[0.5], colors=[palette[int(labels[i])]], linewidths=1)
    draw_boxes(ax, instances["boxes"], labels, class_names, scores)
    ax.set_xlim(-0.5, rgb.shape[1] - 0.5)
    ax.set_ylim(rgb.shape[0] - 0.5, -0.5)
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9)


def draw_detection_view(fig: Figure, images, raw: list, targets: list, class_names, index: int,
                        score_threshold: float, iou_threshold: float) -> dict:
    """Ground truth next to the detections that survive ``score_threshold`` and class-wise NMS at
    ``iou_threshold`` (``segedu.models.maskrcnn.filter_detections`` on the raw detections of scene ``index``).

    Returns ``{"kept", "above_score", "raw", "AP50"}``: detections kept, detections above the score threshold
    before NMS, raw detections, and the mask AP50 of this one scene (``segedu.metrics.mask_ap``).
    """
    from segedu.metrics import mask_ap
    from segedu.models.maskrcnn import filter_detections

    detections = raw[index]
    above = int((detections["scores"] > score_threshold).sum())
    kept = filter_detections(detections, score_threshold, iou_threshold)
    ap50 = mask_ap([kept], [targets[index]])["AP50"]
    axes = fig.subplots(1, 2)
    draw_instances(axes[0], images[index], targets[index], class_names,
                   f"ground truth: {len(targets[index]['labels'])} objects")
    draw_instances(axes[1], images[index], kept, class_names,
                   f"kept {len(kept['scores'])} of {above} boxes with score > {score_threshold:.2f}")
    present = sorted(set(targets[index]["labels"].tolist()) | set(kept["labels"].tolist()))
    fig.legend(handles=viz.legend_handles(class_names, present), loc="center right", fontsize=8, frameon=False)
    fig.subplots_adjust(right=0.8)
    fig.suptitle(f"scene {index}: NMS at IoU > {iou_threshold:.2f} suppresses; mask AP50 of this scene {ap50:.2f}",
                 fontsize=10)
    return {"kept": len(kept["scores"]), "above_score": above, "raw": len(detections["scores"]), "AP50": ap50}


def detection_explorer(images, raw: list, targets: list, class_names) -> FigureDemo:
    """Lesson 09: a scene slider, a score threshold and an NMS IoU threshold over a trained Mask R-CNN's raw
    detections (``segedu.models.maskrcnn.raw_detections``), next to the ground truth."""
    if not (len(images) == len(raw) == len(targets)) or len(raw) == 0:
        raise ValueError(f"images, raw and targets must list the same scenes, got {len(images)}, {len(raw)}, {len(targets)}")
    controls = {
        "index": W.IntSlider(value=0, min=0, max=len(raw) - 1, description="scene"),
        "score_threshold": W.FloatSlider(value=0.5, min=0.05, max=0.95, step=0.05, description="score >"),
        "iou_threshold": W.FloatSlider(value=0.5, min=0.05, max=1.0, step=0.05, description="NMS IoU >"),
    }

    def draw(fig, **values):
        return draw_detection_view(fig, images, raw, targets, class_names, **values)

    return FigureDemo(draw, controls, figsize=(8, 3.8), title="Score threshold and NMS: what the detector keeps")


# --- lesson 08: PSPNet, context and the effective receptive field -------------------------------------------


def draw_pyramid_bins(fig: Figure, image: torch.Tensor, bins: int) -> dict:
    """What one level of PSPNet's pyramid hands every pixel: ``image [3, H, W]`` with the ``bins x bins`` grid of
    adaptive average pooling, the pooled map, and the map upsampled bilinearly back to ``H x W`` (computed with
    ``segedu.models.pspnet.pyramid_pool`` and identity reductions). Returns ``{"bins", "cells", "spread"}``:
    the number of pooled cells and the per-pixel standard deviation left in the upsampled map (0 at 1 bin)."""
    from torch import nn

    from segedu.models.pspnet import pyramid_pool

    height, width = image.shape[-2:]
    with torch.no_grad():
        pooled = torch.nn.functional.adaptive_avg_pool2d(image[None], bins)[0]
        spread_map = pyramid_pool(image[None].float(), (bins,), [nn.Identity()])[0, 3:]
    axes = fig.subplots(1, 3)
    axes[0].imshow(viz.to_numpy_image(image))
    for i in range(1, bins):  # adaptive pooling's bin edges: floor(i * H / bins)
        axes[0].axhline(i * height // bins - 0.5, color="white", lw=1)
        axes[0].axvline(i * width // bins - 0.5, color="white", lw=1)
    axes[0].set_title(f"image and the {bins}x{bins} bins", fontsize=9)
    axes[1].imshow(viz.to_numpy_image(pooled.clamp(0, 1)), interpolation="nearest")
    axes[1].set_title(f"average in each bin ({bins}x{bins})", fontsize=9)
    axes[2].imshow(viz.to_numpy_image(spread_map.clamp(0, 1)))
    axes[2].set_title("upsampled back: concatenated to every pixel", fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    spread = float(spread_map.std(dim=(1, 2)).mean())
    fig.suptitle(f"pyramid level {bins}: each pixel gets the summary of its {height // bins}x{width // bins}-pixel "
                 f"region (spatial spread {spread:.3f})", fontsize=10)
    return {"bins": bins, "cells": bins * bins, "spread": spread}


def pyramid_bins_viewer(image: torch.Tensor, bins: int = 1, max_bins: int = 8) -> FigureDemo:
    """Lesson 08: a slider over the pyramid level (bins per side) of PSPNet's pooling, on one image ``[3, H, W]``."""
    controls = {"bins": W.IntSlider(value=bins, min=1, max=max_bins, description="bins per side")}

    def draw(fig, **values):
        return draw_pyramid_bins(fig, image, **values)

    return FigureDemo(draw, controls, figsize=(9, 3.4), title="Pyramid pooling: what each bin size summarises")


def draw_erf(fig: Figure, layers: dict, model: str, layer: str, inputs: torch.Tensor, log: bool = False) -> dict:
    """The effective receptive field (``segedu.metrics.effective_receptive_field``) of ``layers[model][layer]``
    (a module mapping images to a feature or logit map) on ``inputs [B, 3, H, W]``, with colour bar and the
    centred squares holding 50 % and 90 % of it (``erf_extent``). Returns ``{"extent50", "extent90", "support"}``
    (``support``: the side of the pixels that reach the centre at all, ``erf_support``)."""
    import numpy as np
    from matplotlib.patches import Rectangle

    from segedu.metrics import effective_receptive_field, erf_extent, erf_support

    height, width = inputs.shape[-2:]
    erf = effective_receptive_field(layers[model][layer], (height, width), inputs=inputs)
    erf = erf / erf.max()
    result = {"extent50": erf_extent(erf, 0.5), "extent90": erf_extent(erf, 0.9), "support": max(erf_support(erf))}
    ax = fig.subplots(1, 1)
    shown = erf.cpu().numpy()
    if log:
        shown = np.log10(np.maximum(shown, 1e-4))
    picture = ax.imshow(shown, cmap="inferno", vmin=-4 if log else 0, vmax=0 if log else 1)
    cy, cx = height // 2, width // 2
    for side, colour, label in ((result["extent50"], "cyan", "50 %"), (result["extent90"], "lime", "90 %")):
        r = side // 2
        ax.add_patch(Rectangle(
            (cx - r - 0.5, cy - r - 0.5), side, side, fill=False, edgecolor=colour, lw=1.5,
            label=f"{label} of the ERF: {side}x{side} px"))
    ax.legend(loc="upper right", fontsize=7, framealpha=0.7)
    ax.set_xlabel("input column (px)")
    ax.set_ylabel("input row (px)")
    ax.set_title(f"{model}, {layer}: |d centre / d input| (support {result['support']} px)", fontsize=9)
    fig.colorbar(picture, ax=ax, fraction=0.046, pad=0.04,
                 label="log10 of the normalised gradient" if log else "normalised gradient")
    return result


def erf_viewer(layers: dict, inputs: torch.Tensor) -> FigureDemo:
    """Lesson 08: the effective receptive field by model and layer. ``layers``: ``{model name: {layer name:
    module}}`` (e.g. ``segedu.models.fpn.stage_prefixes(model.backbone)`` plus the whole model); ``inputs``
    ``[B, 3, H, W]`` the images the gradients are averaged over."""
    models = list(layers)
    controls = {
        "model": W.Dropdown(options=models, value=models[0], description="model"),
        "layer": W.Dropdown(options=list(layers[models[0]]), value=list(layers[models[0]])[-1], description="layer"),
        "log": W.Checkbox(value=False, description="log scale"),
    }

    def draw(fig, model, layer, log):
        if layer not in layers[model]:
            layer = list(layers[model])[-1]
        return draw_erf(fig, layers, model, layer, inputs, log)

    return FigureDemo(draw, controls, figsize=(5.2, 4.4), title="Effective receptive field by model and layer")


# --- lesson 11: the capstone --------------------------------------------------------------------------------


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
