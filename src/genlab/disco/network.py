"""The DisCo-Diff denoiser network: an image backbone that cross-attends to embedded discrete latents."""

from __future__ import annotations

from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import Tensor

from genlab.core.nets import ImageDiT, ImageUNet
from genlab.disco.encoder import LatentConditioner

BACKBONES = {"unet": ImageUNet, "dit": ImageDiT}


class DisCoNet(ModelMixin, ConfigMixin):
    """``F(x, noise_labels, class_labels, codes, keep)`` for EDM preconditioning.

    ``x [B, C, H, W]``, ``noise_labels [B]``, ``class_labels [B] | None``; ``codes`` are relaxed
    one-hot ``[B, m, k]`` or ids ``[B, m]`` in ``[0, k]`` (``k`` = null) or ``None`` (all null);
    ``keep [B]`` drops whole rows to the null latents (see :class:`LatentConditioner`).

    The backbone (``arch`` ``"unet"`` or ``"dit"``) is built from ``backbone_config`` plus
    ``cross_attention_dim = latent_dim`` and ``context_groups = latent_groups``. The backbone's
    ``time_embed`` is exposed so time-step guidance (TSG) can find it.
    """

    @register_to_config
    def __init__(self, arch: str = "unet", backbone_config: dict | None = None, num_latents: int = 4,
                 num_codes: int = 16, latent_dim: int = 128, latent_depth: int = 2, latent_groups: int = 1) -> None:
        super().__init__()
        self.conditioner = LatentConditioner(num_latents, num_codes, latent_dim, latent_depth)
        self.backbone = BACKBONES[arch](**(backbone_config or {}), cross_attention_dim=latent_dim,
                                            context_groups=latent_groups)

    @property
    def time_embed(self):
        """The backbone's time-embedding module (what TSG perturbs)."""
        return self.backbone.time_embed

    def forward(self, x: Tensor, noise_labels: Tensor, class_labels: Tensor | None = None,
                codes: Tensor | None = None, keep: Tensor | None = None) -> Tensor:
        """-> ``[B, C, H, W]`` (the backbone's output)."""
        context = self.conditioner(codes, x.shape[0], keep)
        return self.backbone(x, noise_labels, class_labels, context=context)
