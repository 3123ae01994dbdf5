"""Backbones ``F(x, noise_labels, class_labels, ...)`` used inside EDM preconditioning: image U-Net and
DiT, and the video DiT."""

from genlab.core.nets.dit import ImageDiT
from genlab.core.nets.unet import ImageUNet
from genlab.core.nets.video_dit import VideoDiT

__all__ = ["ImageDiT", "ImageUNet", "VideoDiT"]
