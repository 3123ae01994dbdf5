"""Training-free guidance in the ``genlab`` CLI: the guidance flags of ``genlab sample image`` and
``genlab evaluate`` (:class:`GuidedSamplingConfig`); ``genlab reproduce guidance`` is made in
:mod:`genlab.cli.reproduce`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import click

from genlab.core.config import SamplingConfig, option
from genlab.errors import GenlabError
from genlab.guidance import GUIDANCE_CHOICES

if TYPE_CHECKING:
    from genlab.base.info import ImageModelInfo


@dataclass
class GuidedSamplingConfig(SamplingConfig):
    """The shared sampling settings plus CFG / ICG / TSG guidance."""

    guidance: str = option("none", "training-free or classifier-free guidance", choices=GUIDANCE_CHOICES)
    guidance_scale: float = option(1.5, "guidance scale w (1 = no guidance; icg+tsg uses it for both)",
                                   renamed_from="--scale")
    tsg_noise: float = option(2.0, "TSG: noise added to the time embedding, in units of its std (s)", min=0)
    tsg_alpha: float = option(1.0, "TSG: noise grows as t^alpha (0 = constant)", min=0)
    guidance_t_min: float = option(0.0, "guidance only for diffusion time t >= this (t in [0, 1], 1 = noise)",
                                   min=0, max=1)
    guidance_t_max: float = option(1.0, "guidance only for diffusion time t <= this", min=0, max=1)

    def validate(self) -> None:
        if self.guidance_t_min > self.guidance_t_max:
            raise GenlabError(f"--guidance-t-min {self.guidance_t_min} is above --guidance-t-max "
                              f"{self.guidance_t_max}: guidance would never act")

    def guided(self, denoiser, info: ImageModelInfo):
        """The guided wrapper of ``denoiser`` these settings ask for (None for no guidance)."""
        from genlab.guidance import cfg_warning, guide_class_model, parse_guidance

        terms = parse_guidance(self.guidance, self.guidance_scale, self.tsg_noise, self.tsg_alpha,
                               (self.guidance_t_min, self.guidance_t_max))
        warning = cfg_warning(self.guidance, info)
        if warning:
            click.echo(warning, err=True)
        return guide_class_model(denoiser, info.num_classes, terms, seed=self.seed) if terms else None
