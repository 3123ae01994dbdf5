"""genlab: 2024 image/video generation methods on one shared EDM diffusion core."""

__version__ = "0.1.0"
