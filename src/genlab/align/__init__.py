"""VADER: align image and video diffusion models to differentiable rewards (and the DDPO baseline)."""
