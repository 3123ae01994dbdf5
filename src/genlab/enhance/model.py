"""The two enhancers compared by ``genlab reproduce enhance``, and their save/load.

* :class:`ControlNetEnhancer` (VEnhancer): a frozen base video denoiser steered by an
  :class:`~genlab.enhance.controlnet.EnhanceControlNet`; a denoiser
  ``(x, sigma, hint, key_frames, space, augment_sigma) -> x0_hat`` sampled from an SDEdit start.
* :class:`RegressionEnhancer`: the baseline, a video DiT of about the same size trained with L2
  to map the trilinear up-sampling (plus the key-frame mask and ``space``) to the clip, no
  diffusion.

Both work on clips of the base's ``frames x resolution x resolution``; :mod:`genlab.enhance.inference`
runs them over longer and larger videos.
"""

from __future__ import annotations

import json
from pathlib import Path

from torch import Tensor, nn

from genlab.base.video_model import MODEL_INFO_FILE, load_video_model, read_model_info, save_video_model
from genlab.core.checkpoint import json_field
from genlab.core.denoiser import EDMDenoiser
from genlab.core.loading import load_pretrained
from genlab.core.nets import VideoDiT
from genlab.core.nets.control import FrozenBase, VideoDiTTaps, residual_control
from genlab.enhance.config import VARIANTS
from genlab.enhance.controlnet import EnhanceControlNet, space_label
from genlab.errors import GenlabError


def check_base(base: EDMDenoiser) -> VideoDiT:
    """The base's network, if it is an unconditional genlab VideoDiT (else a clear error)."""
    net = getattr(base, "net", None)
    if type(net).__name__ != "VideoDiT":
        raise GenlabError(f"the enhancer needs a genlab video model as its base, not {type(net).__name__}")
    if net.config.condition_channels or net.config.num_classes:
        raise GenlabError("the enhancer's base must be an unconditional video model; train one with "
                          "`genlab train video --no-first-frame`")
    return net


class ControlNetEnhancer(FrozenBase):
    """VEnhancer: ``base`` (frozen: ``requires_grad`` off, always in eval mode) plus a trainable branch.

    ``forward(x [B, T, 3, R, R], sigma [B], hint [B, T, 3, R, R], key_frames [B, T] bool, space [B],
    augment_sigma [B]) -> x0_hat [B, T, 3, R, R]``.
    """

    variant = "controlnet"

    def __init__(self, base: EDMDenoiser, controlnet: EnhanceControlNet) -> None:
        super().__init__()
        self.net_config = check_base(base).config
        self.base, self.controlnet = base, controlnet
        self.schedule, self.sigma_min, self.sigma_max = base.schedule, base.sigma_min, base.sigma_max
        self.taps = VideoDiTTaps(base.net)
        base.requires_grad_(False)

    def forward(self, x: Tensor, sigma: Tensor, hint: Tensor, key_frames: Tensor, space: Tensor,
                augment_sigma: Tensor) -> Tensor:
        def branch(tokens: Tensor, emb: Tensor) -> list[Tensor]:
            return self.controlnet(tokens, emb, hint, key_frames, space, augment_sigma)

        with residual_control(self.taps, branch, len(self.controlnet.blocks)):
            return self.base(x, sigma)


class RegressionEnhancer(nn.Module):
    """L2 baseline: ``forward(trilinear [B, T, 3, R, R], key_frames [B, T], space [B]) -> clip [B, T, 3, R, R]``,
    the trilinear up-sampling plus a correction predicted by ``net`` (a VideoDiT with one
    condition channel, the key-frame mask; ``ln space`` goes where a denoiser's noise label goes)."""

    variant = "regression"

    def __init__(self, net: VideoDiT) -> None:
        super().__init__()
        self.net, self.net_config = net, net.config

    @classmethod
    def from_base(cls, base: EDMDenoiser, extra_depth: int) -> RegressionEnhancer:
        """A fresh regression net shaped like ``base``'s with ``extra_depth`` more blocks (to match the
        enhancer's base + branch size); its zero final layer makes it start as trilinear up-sampling."""
        config = dict(check_base(base).config)
        config.update(depth=config["depth"] + extra_depth, condition_channels=1)
        return cls(VideoDiT(**config))

    def forward(self, trilinear: Tensor, key_frames: Tensor, space: Tensor) -> Tensor:
        mask = key_frames.to(trilinear.dtype)[:, :, None, None, None].expand(-1, -1, 1, *trilinear.shape[-2:])
        return trilinear + self.net(trilinear, space_label(space).to(trilinear.device), condition=mask)


def save_enhancer(model: nn.Module, folder: Path | str) -> None:
    """Write a :class:`ControlNetEnhancer` or :class:`RegressionEnhancer` to ``folder``."""
    folder = Path(folder)
    if isinstance(model, ControlNetEnhancer):
        save_video_model(model.base, folder / "base")
        model.controlnet.save_pretrained(folder / "controlnet")
    else:
        model.net.save_pretrained(folder / "net")
    (folder / MODEL_INFO_FILE).write_text(json.dumps({"method": "enhance", "variant": model.variant}, indent=2))


def load_enhancer(path: Path | str) -> nn.Module:
    """Load a model written by :func:`save_enhancer` (a run folder or its ``model/``), in eval mode."""
    folder, info = read_model_info(path, "enhance", "train one with `genlab train enhance`")
    variant = json_field(info, "variant", str, folder / MODEL_INFO_FILE)
    if variant not in VARIANTS:
        raise GenlabError(f"{path}: unknown enhancer variant {variant!r}")
    if variant == "regression":
        return RegressionEnhancer(load_pretrained(VideoDiT, folder / "net", "regression enhancer")).eval()
    controlnet = load_pretrained(EnhanceControlNet, folder / "controlnet", "enhancer branch")
    return ControlNetEnhancer(load_video_model(folder / "base"), controlnet).eval()
