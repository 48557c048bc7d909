"""Data: synthetic scenes, the PASCAL VOC layout, and real sample images."""
