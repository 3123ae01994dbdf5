"""Image backbones ``F(x, noise_labels, class_labels)`` used inside EDM preconditioning."""

from genlab.core.nets.dit import ImageDiT
from genlab.core.nets.unet import ImageUNet

__all__ = ["ImageDiT", "ImageUNet"]
