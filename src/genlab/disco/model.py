"""The whole DisCo-Diff image model: encoder, latent-conditioned EDM denoiser and autoregressive prior.

Stage 1 trains encoder and denoiser end to end on the plain EDM loss (``model(images, labels)``
returns it); stage 2 fits :attr:`DisCoDiff.prior` to the encoder's codes. Sampling draws codes
from the prior, then runs genlab's EDM sampler on the denoiser conditioned on them, optionally
with classifier-free guidance on the latents (codes vs the null latents).

One folder holds all three parts (``save_pretrained`` / ``from_pretrained``)::

    encoder/  denoiser/  prior/  genlab.json
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from transformers import LlamaForCausalLM

from genlab.base.image_model import generate_images
from genlab.base.info import MODEL_INFO_FILE, is_number
from genlab.core.cfg import CFGDenoiser, null_class
from genlab.core.checkpoint import json_field, read_json
from genlab.core.denoiser import EDMDenoiser
from genlab.core.edm import edm_loss
from genlab.core.loading import from_pretrained_checked, load_pretrained, pretrained_folder, read_schedule
from genlab.disco.codes import code_usage, gumbel_softmax_codes
from genlab.disco.encoder import LatentEncoder
from genlab.disco.network import DisCoNet
from genlab.disco.prior import LatentPrior
from genlab.errors import GenlabError

METHOD = "disco"
#: The JSON types of the facts ``genlab.json`` keeps beside the settings (:class:`DisCoInfo`).
INFO_KINDS = {"data": str, "num_classes": int, "channels": int, "resolution": int, "code_usage": list}


@dataclass(frozen=True)
class DisCoInfo:
    """The facts a DisCo-Diff model's ``genlab.json`` keeps beside its settings (:attr:`DisCoDiff.info`).

    The data set, its classes (0: unconditional), channels and resolution, and after stage 1 the share
    of its codes each latent uses. None: not recorded (and then left out of the file).
    """

    data: str | None = None
    num_classes: int | None = None
    channels: int | None = None
    resolution: int | None = None
    code_usage: tuple[float, ...] | None = None

    @classmethod
    def from_json(cls, info: Mapping, source: Path | str) -> DisCoInfo:
        """The facts in a DisCo-Diff ``genlab.json`` object ``info`` read from ``source``; GenlabError naming
        ``source`` for a mistyped one."""
        kept = {key: json_field(info, key, kind, source) for key, kind in INFO_KINDS.items() if key in info}
        if "code_usage" in kept:
            if not all(is_number(share) for share in kept["code_usage"]):
                raise GenlabError(f"{source} is corrupt: 'code_usage' should be a list of numbers, "
                                  f"got {kept['code_usage']!r}")
            kept["code_usage"] = tuple(kept["code_usage"])
        return cls(**kept)

    def to_json(self) -> dict[str, Any]:
        """The recorded facts, in the order and form ``genlab.json`` keeps them."""
        facts = {key: getattr(self, key) for key in INFO_KINDS}
        return {key: list(value) if isinstance(value, tuple) else value for key, value in facts.items()
                if value is not None}


class DisCoDiff(nn.Module):
    """Encoder + denoiser (+ prior once stage 2 has run).

    Args:
        encoder: images ``[B, C, H, W]`` -> logits ``[B, m, k]``.
        denoiser: an :class:`EDMDenoiser` around a :class:`DisCoNet`.
        prior: the stage-2 :class:`LatentPrior`, or None before stage 2.
        temperature: Gumbel-softmax τ in stage 1.
        straight_through: exact one-hot codes forward, soft gradients backward.
        latent_dropout: probability that a training image's latents are replaced by the null latents.
        info: the data set and shape facts saved with the model (:class:`DisCoInfo`).
    """

    def __init__(self, encoder: LatentEncoder, denoiser: EDMDenoiser, prior: LatentPrior | None = None, *,
                 temperature: float = 1.0, straight_through: bool = False, latent_dropout: float = 0.1,
                 info: DisCoInfo | None = None):
        super().__init__()
        if not 0 <= latent_dropout <= 1:
            raise GenlabError(f"latent dropout must be in [0, 1], got {latent_dropout}")
        if not temperature > 0:
            raise GenlabError(f"Gumbel-softmax temperature must be > 0, got {temperature}")
        self.encoder, self.denoiser, self.prior = encoder, denoiser, prior
        self.temperature, self.straight_through, self.latent_dropout = temperature, straight_through, latent_dropout
        self.info = info or DisCoInfo()

    @property
    def num_latents(self) -> int:
        return self.encoder.config.num_latents

    @property
    def num_codes(self) -> int:
        return self.encoder.config.num_codes

    # -- stage 1 ----------------------------------------------------------------------------------
    def forward(self, images: Tensor, class_labels: Tensor | None = None) -> Tensor:
        """Stage-1 loss (scalar): EDM loss with relaxed codes from the encoder, some rows dropped to null."""
        codes = gumbel_softmax_codes(self.encoder(images), self.temperature, self.straight_through)
        keep = (torch.rand(images.shape[0], device=images.device) >= self.latent_dropout).to(codes.dtype)
        cond = {} if class_labels is None else {"class_labels": class_labels}
        return edm_loss(self.denoiser, images, codes=codes, keep=keep, **cond).mean()

    @torch.no_grad()
    def encode(self, images: Tensor, stochastic: bool = False, generator: torch.Generator | None = None,
               batch_size: int = 500) -> Tensor:
        """Code ids ``[N, m]`` of clean images ``[N, C, H, W]``.

        Deterministic: the most likely code (the oracle latents). Stochastic: a draw from the
        encoder's categorical distribution, the τ → 0 limit of Gumbel-softmax sampling (what the
        prior is trained on).
        """
        device = next(self.encoder.parameters()).device
        was_training = self.encoder.training
        self.encoder.eval()  # batch statistics of the head: the running averages, not this batch's
        chunks = []
        for start in range(0, images.shape[0], batch_size):
            logits = self.encoder(images[start : start + batch_size].to(device)).float().cpu()
            if stochastic:
                probs = logits.softmax(-1).flatten(0, 1)
                chunks.append(torch.multinomial(probs, 1, generator=generator).view(logits.shape[:2]))
            else:
                chunks.append(logits.argmax(-1))
        self.encoder.train(was_training)
        return torch.cat(chunks)

    @torch.no_grad()
    def calibrate_encoder(self, images: Tensor, batch_size: int = 500) -> None:
        """Recompute the encoder head's batch-norm statistics exactly over ``images [N, C, H, W]``.

        During training the running averages lag behind the weights, and the head divides by the
        features' small spread across images, so inference codes drift from the training codes;
        after calibration ``encode`` gives the codes the weights were trained with.
        """
        norm = self.encoder.batch_norm
        if norm is None:
            return
        device = next(self.encoder.parameters()).device
        was_training, momentum = self.encoder.training, norm.momentum
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over the batches below
        self.encoder.train()
        for start in range(0, images.shape[0], batch_size):
            self.encoder(images[start : start + batch_size].to(device))
        norm.momentum = momentum
        self.encoder.train(was_training)

    def code_usage(self, images: Tensor) -> Tensor:
        """Share of the k codes each latent uses on ``images`` (most-likely codes): ``[m]``."""
        return code_usage(self.encode(images), self.num_codes)

    # -- sampling ---------------------------------------------------------------------------------
    def sample_codes(self, num: int, class_labels: Tensor | None = None, temperature: float = 1.0,
                     generator: torch.Generator | None = None) -> Tensor:
        """Codes ``[num, m]`` from the prior (GenlabError if stage 2 has not run)."""
        if self.prior is None:
            raise GenlabError("this DisCo-Diff model has no prior (stage 2 did not run): train it with "
                              "`genlab train disco --resume` or pass codes (e.g. from encode())")
        return self.prior.sample(num, class_labels, temperature, generator)

    def latent_guided(self, scale: float) -> CFGDenoiser | None:
        """CFG on the latents: ``D_null + w (D_codes − D_null)``; None when ``scale == 1`` (no guidance)."""
        if scale == 1:
            return None
        return CFGDenoiser(self.denoiser, scale, "codes", null_class(self.num_codes))

    @torch.no_grad()
    def generate(self, num: int, class_labels: Tensor | None = None, codes: Tensor | None = None,
                 steps: int = 18, sampler: str = "heun", seed: int = 0, prior_temperature: float = 1.0,
                 latent_scale: float = 1.0, progress: bool = False) -> tuple[Tensor, Tensor]:
        """Sample ``num`` images ``[N, C, H, W]`` in ``[-1, 1]``; returns ``(images, codes [N, m])``.

        Codes come from the prior unless given. ``class_labels [N]`` is required for
        class-conditional models. The prior draws with a generator seeded by ``seed``, the
        sampler's noise with one seeded by ``seed + 1``.
        """
        if self.info.num_classes and class_labels is None:
            raise GenlabError("this DisCo-Diff model is class-conditional: pass class_labels")
        generator = torch.Generator().manual_seed(seed)
        if codes is None:
            codes = self.sample_codes(num, class_labels, prior_temperature, generator)
        elif tuple(codes.shape) != (num, self.num_latents):
            raise GenlabError(f"codes must have shape [{num}, {self.num_latents}], got {list(codes.shape)}")
        images = generate_images(self.denoiser, num, class_labels, steps, sampler, seed=seed + 1,
                                 progress=progress, wrapped=self.latent_guided(latent_scale),
                                 extra={"codes": codes})
        return images, codes

    # -- files ------------------------------------------------------------------------------------
    def save_pretrained(self, folder: Path | str) -> None:
        """Write ``encoder/``, ``denoiser/``, ``prior/`` (if trained) and ``genlab.json`` to ``folder``."""
        folder = Path(folder)
        self.encoder.save_pretrained(folder / "encoder")
        self.denoiser.net.save_pretrained(folder / "denoiser")
        if self.prior is not None:
            self.prior.lm.save_pretrained(folder / "prior")
        info = {**self.info.to_json(), "method": METHOD, "temperature": self.temperature,
                "straight_through": self.straight_through, "latent_dropout": self.latent_dropout,
                "has_prior": self.prior is not None, **asdict(self.denoiser.schedule)}
        (folder / MODEL_INFO_FILE).write_text(json.dumps(info, indent=2))

    @classmethod
    def from_pretrained(cls, path: Path | str) -> DisCoDiff:
        """Load a model from a run folder or its ``model/`` folder (eval mode)."""
        folder = Path(path)
        hint = "train one with `genlab train disco`"
        if not folder.is_dir():
            state = "is a file, not a model folder or run folder" if folder.exists() else "does not exist"
            raise GenlabError(f"{path} holds no genlab model: it {state}; {hint}")
        if (folder / "model" / MODEL_INFO_FILE).is_file():
            folder = folder / "model"
        source = folder / MODEL_INFO_FILE
        saved = read_json(source, f"{path} holds no genlab model (no {MODEL_INFO_FILE}); {hint}")
        if saved.get("method") != METHOD:
            raise GenlabError(f"{path} holds a plain image model, not DisCo-Diff; use `genlab sample image`")
        settings = {"temperature": json_field(saved, "temperature", (int, float), source),
                    "straight_through": json_field(saved, "straight_through", bool, source),
                    "latent_dropout": json_field(saved, "latent_dropout", (int, float), source)}
        info = DisCoInfo.from_json(saved, source)
        schedule = read_schedule(saved, source)
        has_prior = json_field(saved, "has_prior", bool, source) if "has_prior" in saved else False
        encoder = load_pretrained(LatentEncoder, folder / "encoder", "DisCo-Diff encoder")
        net = load_pretrained(DisCoNet, folder / "denoiser", "DisCo-Diff denoiser")
        prior = None
        if has_prior:
            prior_folder, _ = pretrained_folder(folder / "prior", "DisCo-Diff prior", weights="model")
            lm = from_pretrained_checked(LlamaForCausalLM.from_pretrained, prior_folder, "DisCo-Diff prior",
                                         ignore_mismatched_sizes=True)
            shape = getattr(lm.config, "genlab_prior", None)
            if not isinstance(shape, dict):
                raise GenlabError(f"{prior_folder} holds no genlab DisCo-Diff prior (its config has no genlab_prior)")
            for key in ("num_latents", "num_codes", "num_classes"):
                json_field(shape, key, int, f"{prior_folder / 'config.json'} (genlab_prior)")
            prior = LatentPrior(lm).eval()
        return cls(encoder, EDMDenoiser(net, schedule), prior, **settings, info=info).eval()
