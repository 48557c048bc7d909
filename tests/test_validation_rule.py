"""One error rule across the package (DESIGN.md, Conventions; segedu.validate).

Every public constructor and function that takes a count or a size is called with ``True`` and ``2.5``
(a wrong type: ``TypeError``) and with ``-1`` (a wrong value: ``ValueError``); each message names the
argument. Before segedu.validate, a bool raised ``TypeError`` in some modules and ``ValueError`` in others.
"""

from __future__ import annotations

import pytest
import torch

from segedu import crf, metrics, viz
from segedu.data import samples, shapes, tasks, transforms, voc
from segedu.models import autoencoder, backbones, common, deeplab, fcn, fpn, maskrcnn, plain, pspnet, unet
from segedu.ops import checkerboard, dilation, roi, upsample
from segedu import loss_probe, losses, runtime, train, zoo

IMAGES = torch.rand(1, 3, 16, 16)
LABELS = torch.zeros(1, 16, 16, dtype=torch.long)
LOGITS = torch.zeros(1, 2, 16, 16)


def _fit(**kw):
    model = torch.nn.Conv2d(3, 2, 1)
    data = (IMAGES, LABELS)
    return train.fit(model, data, torch.nn.functional.cross_entropy, **{"steps": 1, "batch_size": 1, "progress": False, **kw})


# (argument name, a call that passes the value v as that argument and valid values for the rest)
CASES = {
    # ops
    "nearest_upsample.factor": ("factor", lambda v: upsample.nearest_upsample(IMAGES, v)),
    "bed_of_nails.factor": ("factor", lambda v: upsample.bed_of_nails(IMAGES, v)),
    "pixel_shuffle.factor": ("factor", lambda v: upsample.pixel_shuffle(torch.rand(1, 4, 4, 4), v)),
    "bilinear_kernel.kernel_size": ("kernel_size", lambda v: upsample.bilinear_kernel(1, 1, v)),
    "transposed_conv2d.stride": ("stride", lambda v: upsample.transposed_conv2d(IMAGES, torch.rand(3, 1, 2, 2), stride=v)),
    "upsample_with.factor": ("factor", lambda v: upsample.upsample_with("nearest", IMAGES, v)),
    "LearnedUpsample.factor": ("factor", lambda v: checkerboard.LearnedUpsample(3, 3, factor=v)),
    "checkerboard_strength.period": ("period", lambda v: checkerboard.checkerboard_strength(IMAGES, period=v)),
    "dilated_conv2d.dilation": ("dilation", lambda v: dilation.dilated_conv2d(IMAGES, torch.rand(1, 3, 3, 3), dilation=v)),
    "footprint.kernel_size": ("kernel_size", lambda v: dilation.footprint([1, 2], kernel_size=v)),
    "effective_receptive_field.samples": (
        "samples", lambda v: dilation.effective_receptive_field(torch.nn.Conv2d(3, 1, 3), (9, 9), samples=v)),
    "roi_align.output_size": ("output_size", lambda v: roi.roi_align(IMAGES, [torch.tensor([[0.0, 0, 8, 8]])], v)),
    "roi_pool.output_size": ("output_size", lambda v: roi.roi_pool(IMAGES, [torch.tensor([[0.0, 0, 8, 8]])], v)),
    # data
    "ShapesDataset.length": ("length", lambda v: shapes.ShapesDataset(v)),
    "ShapesDataset.size": ("size", lambda v: shapes.ShapesDataset(4, size=v)),
    "ShapesDataset.seed": ("seed", lambda v: shapes.ShapesDataset(4, seed=v)),
    "ShapesDataset.max_objects": ("max_objects", lambda v: shapes.ShapesDataset(4, max_objects=v)),
    "train_transforms.size": ("size", lambda v: transforms.train_transforms(v)),
    "eval_transforms.size": ("size", lambda v: transforms.eval_transforms(v)),
    "grace_hopper.size": ("size", lambda v: samples.grace_hopper(v)),
    "split_panoptic.label_divisor": ("label_divisor", lambda v: tasks.split_panoptic(LABELS, label_divisor=v)),
    "write_voc.quality": ("quality", lambda v: voc.write_voc("/nonexistent-segedu", [], quality=v)),
    # models
    "MLPAutoencoder.bottleneck": ("bottleneck", lambda v: autoencoder.MLPAutoencoder(16, bottleneck=v)),
    "ConvAutoencoder.in_channels": ("in_channels", lambda v: autoencoder.ConvAutoencoder(in_channels=v)),
    "pca_reconstruction.k": ("k", lambda v: autoencoder.pca_reconstruction(torch.rand(8, 4), v)),
    "VGGBackbone.width": ("width", lambda v: backbones.VGGBackbone(width=v)),
    "ResNetBackbone.width": ("width", lambda v: backbones.ResNetBackbone(width=v)),
    "ResNetBackbone.output_stride": ("output_stride", lambda v: backbones.ResNetBackbone(8, output_stride=v)),
    "pad_to_multiple.multiple": ("multiple", lambda v: backbones.pad_to_multiple(IMAGES, v)),
    "conv_bn_relu.out_channels": ("out_channels", lambda v: common.conv_bn_relu(3, v)),
    "DeepLabV3.num_classes": ("num_classes", lambda v: deeplab.DeepLabV3(v, backbone="resnet18", width=8)),
    "DeepLabV3Plus.width": ("width", lambda v: deeplab.DeepLabV3Plus(2, backbone="resnet18", width=v)),
    "aspp_rates.output_stride": ("output_stride", lambda v: deeplab.aspp_rates(v)),
    "FCN.num_classes": ("num_classes", lambda v: fcn.small_fcn(v, "8s")),
    "small_fcn.width": ("width", lambda v: fcn.small_fcn(2, "8s", width=v)),
    "Upsample.factor": ("factor", lambda v: fcn.Upsample(2, v)),
    "FPN.num_classes": ("num_classes", lambda v: fpn.FPN(v, width=8)),
    "PSPNet.num_classes": ("num_classes", lambda v: pspnet.PSPNet(v, width=8)),
    "PyramidPooling.bins": ("bins", lambda v: pspnet.PyramidPooling(8, bins=(1, v))),
    "DilatedFCN.num_classes": ("num_classes", lambda v: plain.DilatedFCN(v, width=8)),
    "UNet.num_classes": ("num_classes", lambda v: unet.UNet(v, base=4, depth=2)),
    "UNet.depth": ("depth", lambda v: unet.UNet(2, base=4, depth=v)),
    "unet_output_size.input_size": ("input_size", lambda v: unet.unet_output_size(v)),
    "mask_rcnn.num_classes": ("num_classes", lambda v: maskrcnn.mask_rcnn(v)),
    "filter_detections.max_detections": (
        "max_detections",
        lambda v: maskrcnn.filter_detections(
            {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long),
             "masks": torch.zeros(0, 1, 4, 4)}, max_detections=v)),
    "zoo.build_model.num_classes": ("num_classes", lambda v: zoo.build_model("unet", num_classes=v)),
    # metrics, crf, losses
    "ConfusionMatrix.num_classes": ("num_classes", lambda v: metrics.ConfusionMatrix(v)),
    "mean_iou.num_classes": ("num_classes", lambda v: metrics.mean_iou(LABELS, LABELS, v)),
    "mask_ap.max_detections": ("max_detections", lambda v: metrics.mask_ap([], [], max_detections=v)),
    "gaussian_features.height": ("height", lambda v: crf.gaussian_features(v, 4, 3.0)),
    "dense_crf.iterations": (
        "iterations", lambda v: crf.dense_crf(torch.full((2, 4, 4), 0.5), torch.zeros(3, 4, 4, dtype=torch.uint8), v)),
    "probe_scene.size": ("size", lambda v: loss_probe.probe_scene(0.1, size=v)),
    # train, runtime, viz
    "fit.steps": ("steps", lambda v: _fit(steps=v)),
    "fit.batch_size": ("batch_size", lambda v: _fit(batch_size=v)),
    "seed_everything.seed": ("seed", lambda v: runtime.seed_everything(v)),
    "palette.num_colors": ("num_colors", lambda v: viz.palette(v)),
    "colorize_panoptic.label_divisor": ("label_divisor", lambda v: viz.colorize_panoptic(LABELS[0], v)),
}
# seeds may be any int (negative seeds are valid seeds): they are held to the type half of the rule only
TYPE_ONLY = {"seed_everything.seed", "ShapesDataset.seed"}


@pytest.mark.parametrize("value", [True, 2.5], ids=["bool", "float"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_a_bool_or_float_count_is_a_type_error(case, value):
    name, call = CASES[case]
    with pytest.raises(TypeError, match=name):
        call(value)


@pytest.mark.parametrize("case", sorted(set(CASES) - TYPE_ONLY))
def test_a_negative_count_is_a_value_error(case):
    name, call = CASES[case]
    with pytest.raises(ValueError, match=name):
        call(-1)


@pytest.mark.parametrize("case", ["binary_cross_entropy", "dice_loss", "focal_loss"])
def test_ignore_index_follows_the_rule_in_losses_and_metrics(case):
    loss = getattr(losses, case)
    with pytest.raises(TypeError, match="ignore_index"):
        loss(LOGITS, LABELS, mode="multiclass", ignore_index=2.5)
    with pytest.raises(TypeError, match="ignore_index"):
        metrics.mean_iou(LABELS, LABELS, 2, ignore_index=2.5)
