"""Interactive demos for the lessons: thin ipywidgets views over tested functions.

Every demo is a ``FigureDemo`` (``segedu.widgets.frame``): a row of controls (sliders, dropdowns) above a
picture. Moving a control calls the demo's ``draw(fig, **values)`` function, which only arranges results of
tested package functions on a matplotlib figure; the figure is rendered to PNG into an ``ipywidgets.Image``. So
the demos work in any Jupyter front-end without extra extensions, and ``demo.update(**values)`` can be called
from tests. Nothing here computes what a lesson teaches: that lives in ``segedu.ops``, ``segedu.models``,
``segedu.crf``, ``segedu.metrics``, ... where it is tested.

One module per lesson (``lesson00`` ... ``lesson12``) holds that lesson's demos; every public name is
re-exported here, so ``from segedu.widgets import scene_browser`` works.
"""

from __future__ import annotations

from segedu.widgets.frame import FigureDemo, draw_image, draw_matrices, show_matrices
from segedu.widgets.predict import Prediction, closeness, predict
from segedu.widgets.lesson00 import (boundary_f1_explorer, draw_boundary_match, draw_boundary_shift,
                                      draw_scene_view, draw_sliding_window, scene_browser, shift_labels)
from segedu.widgets.lesson01 import bottleneck_explorer, denoising_viewer, draw_bottleneck, draw_denoising
from segedu.widgets.lesson02 import (draw_sample_positions, draw_upsampling, sample_positions_figure,
                                     upsampling_viewer)
from segedu.widgets.lesson03 import checkerboard_viewer, draw_overlaps, draw_probe_patterns, probe_patterns_figure
from segedu.widgets.lesson04 import dilation_viewer, draw_dilation
from segedu.widgets.lesson05 import PredictionSnapshots, draw_fcn_snapshots, fcn_training_browser
from segedu.widgets.lesson06 import draw_unet_features, unet_feature_browser
from segedu.widgets.lesson07 import (crf_explorer, draw_crf, draw_lattice, draw_pairwise_kernel, kernel_viewer,
                                      lattice_viewer)
from segedu.widgets.lesson08 import draw_erf, draw_pyramid_bins, erf_viewer, pyramid_bins_viewer
from segedu.widgets.lesson09 import (detection_explorer, draw_anchors, draw_boxes, draw_detection_view, draw_instances,
                                      draw_proposals, draw_shared_box, plot_bin_positions, plot_nms_tradeoff)
from segedu.widgets.lesson10 import LOSS_SWEEP, draw_loss_curves, loss_explorer
from segedu.widgets.lesson11 import draw_model_comparison, model_comparison
from segedu.widgets.lesson12 import COLOUR_BY, draw_embedding_view, embedding_explorer

__all__ = [
    # the frame and the shared drawing helpers
    "FigureDemo",
    "draw_image",
    "draw_matrices",
    "show_matrices",
    # predict, then measure (every lesson)
    "Prediction",
    "predict",
    "closeness",
    # lesson 00: the segmentation task
    "draw_scene_view",
    "scene_browser",
    "draw_boundary_match",
    "shift_labels",
    "draw_boundary_shift",
    "boundary_f1_explorer",
    "draw_sliding_window",
    # lesson 01: autoencoders
    "draw_bottleneck",
    "bottleneck_explorer",
    "draw_denoising",
    "denoising_viewer",
    # lesson 02: upsampling
    "draw_upsampling",
    "upsampling_viewer",
    "draw_sample_positions",
    "sample_positions_figure",
    # lesson 03: transposed convolution
    "draw_overlaps",
    "checkerboard_viewer",
    "draw_probe_patterns",
    "probe_patterns_figure",
    # lesson 04: dilated convolution
    "draw_dilation",
    "dilation_viewer",
    # lesson 05: FCN
    "PredictionSnapshots",
    "draw_fcn_snapshots",
    "fcn_training_browser",
    # lesson 06: U-Net
    "draw_unet_features",
    "unet_feature_browser",
    # lesson 07: DeepLab and the dense CRF
    "draw_crf",
    "crf_explorer",
    "draw_pairwise_kernel",
    "kernel_viewer",
    "draw_lattice",
    "lattice_viewer",
    # lesson 08: PSPNet and context
    "draw_pyramid_bins",
    "pyramid_bins_viewer",
    "draw_erf",
    "erf_viewer",
    # lesson 09: Mask R-CNN
    "draw_boxes",
    "draw_instances",
    "draw_anchors",
    "draw_proposals",
    "plot_bin_positions",
    "plot_nms_tradeoff",
    "draw_shared_box",
    "draw_detection_view",
    "detection_explorer",
    # lesson 10: losses
    "LOSS_SWEEP",
    "draw_loss_curves",
    "loss_explorer",
    # lesson 11: the capstone
    "draw_model_comparison",
    "model_comparison",
    # lesson 12: instance segmentation without boxes
    "COLOUR_BY",
    "draw_embedding_view",
    "embedding_explorer",
]
