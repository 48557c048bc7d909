"""Segmentation models, one file per architecture.

Nothing is imported here (importing ``segedu.models`` costs nothing); import the module you need:
``autoencoder`` (lesson 01), ``backbones`` (the encoders), ``common`` (what the models share: upsampling,
``conv_bn_relu``, argument checks), ``vgg_table`` and ``fcn`` (lesson 05), ``unet`` and ``segnet`` (lesson 06),
``deeplab`` and ``multiscale`` (lesson 07), ``plain``, ``pspnet`` and ``fpn`` (lesson 08), ``maskrcnn`` (lesson 09).
"""

__all__ = ["autoencoder", "backbones", "common", "deeplab", "fcn", "fpn", "maskrcnn", "multiscale", "plain", "pspnet",
           "segnet", "unet", "vgg_table"]
