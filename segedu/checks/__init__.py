"""Exercise checks: one public function per exercise, taking the student's function.

A check such as ``checks.check_psnr(psnr)`` calls the student's function on the lecture's worked example (where
there is one) and on random cases, and compares the results with the reference in the package: type, shape,
dtype and values, often gradients too. It either prints one line ending in ``PASSED`` or raises
``AssertionError`` with a message that says what to look at - the first entry that differs and by how much, or
the name of a known mistake the answer reproduces. A function that returns ``None`` or garbage never passes; one
that still raises ``NotImplementedError`` (an exercise not attempted yet) is let through as it is. (Style after
the CS231n assignments: fixed inputs, ``rel_error``, messages for the student.)

One module per lesson (``lesson00`` ... ``lesson12``); what the checks share - ``rel_error`` and the one
comparison that writes the diagnostics - is in ``segedu.checks.common``. Every check is re-exported here, so a
lesson writes ``from segedu import checks`` and ``checks.check_<exercise>(fn)``. The package modules a check
compares with are imported inside the check, so importing ``segedu.checks`` stays light.
"""

from segedu.checks.common import rel_error
from segedu.checks.lesson00 import check_iou_from_confusion, check_window_macs
from segedu.checks.lesson01 import check_pca_reconstruction, check_psnr
from segedu.checks.lesson02 import check_bed_of_nails, check_bilinear_align_corners, check_max_unpool
from segedu.checks.lesson03 import check_transposed_conv_scatter, check_transposed_output_size
from segedu.checks.lesson04 import VGG16_FEATURES, check_dilate_kernel, check_receptive_field
from segedu.checks.lesson05 import check_fc_to_conv, check_fcn_forward, check_fuse_scores
from segedu.checks.lesson06 import check_center_crop, check_tiled_predict, check_valid_output_size
from segedu.checks.lesson07 import check_aspp_rates, check_mean_field_step
from segedu.checks.lesson08 import check_lateral_merge, check_pyramid_pooling
from segedu.checks.lesson09 import check_box_iou, check_encode_boxes, check_mask_targets, check_nms
from segedu.checks.lesson10 import check_dice_loss, check_exp_log_loss, check_focal_loss
from segedu.checks.lesson11 import check_conv2d_flops
from segedu.checks.lesson12 import check_pull_term

__all__ = [
    "rel_error",
    # lesson 00: the segmentation task
    "check_iou_from_confusion", "check_window_macs",
    # lesson 01: autoencoders
    "check_psnr", "check_pca_reconstruction",
    # lesson 02: upsampling
    "check_bed_of_nails", "check_max_unpool", "check_bilinear_align_corners",
    # lesson 03: transposed convolution
    "check_transposed_conv_scatter", "check_transposed_output_size",
    # lesson 04: dilated convolution
    "check_dilate_kernel", "check_receptive_field", "VGG16_FEATURES",
    # lesson 05: FCN
    "check_fc_to_conv", "check_fuse_scores", "check_fcn_forward",
    # lesson 06: U-Net
    "check_center_crop", "check_valid_output_size", "check_tiled_predict",
    # lesson 07: DeepLab and the dense CRF
    "check_mean_field_step", "check_aspp_rates",
    # lesson 08: PSPNet and FPN
    "check_pyramid_pooling", "check_lateral_merge",
    # lesson 09: Mask R-CNN
    "check_box_iou", "check_encode_boxes", "check_nms", "check_mask_targets",
    # lesson 10: losses
    "check_dice_loss", "check_focal_loss", "check_exp_log_loss",
    # lesson 11: the capstone
    "check_conv2d_flops",
    # lesson 12: instance segmentation without boxes
    "check_pull_term",
]
