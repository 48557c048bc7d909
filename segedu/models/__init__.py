"""Segmentation models, one file per architecture."""
