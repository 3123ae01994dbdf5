"""Settings of ``genlab train disco`` and ``genlab sample disco`` and their checks, importable without
torch (``genlab --help`` reads them)."""

from __future__ import annotations

from dataclasses import dataclass

from genlab.base.config import ImageModelConfig
from genlab.core.config import MAX_SEED, MODEL_SIZES, LoopConfig, SamplingConfig, option
from genlab.errors import GenlabError


def check_latent_shape(num_latents: int, num_codes: int) -> None:
    """m latents of k codes each need ``m >= 1`` and ``k >= 2`` (one code carries no information)."""
    if num_latents < 1 or num_codes < 2:
        raise GenlabError(f"DisCo-Diff needs at least 1 latent and 2 codes per latent, got m={num_latents}, "
                          f"k={num_codes}")


@dataclass
class DisCoConfig(ImageModelConfig):
    """Everything ``genlab train disco`` needs (loop settings apply to stage 1)."""

    data: str = option("shapes", "data set", choices=("digits", "shapes"))
    num_latents: int = option(4, "m: discrete latents per image", min=1)
    num_codes: int = option(8, "k: codes per latent", min=2)
    temperature: float = option(1.0, "Gumbel-softmax temperature τ in stage 1", above=0)
    straight_through: bool = option(False, "straight-through Gumbel codes (one-hot forward)")
    latent_dropout: float = option(0.1, "probability of replacing an image's latents by the null latents", min=0, max=1)
    encoder_batch_norm: bool = option(True, "batch-normalise the encoder head's features (without it the codes "
                                             "collapse to one per latent in our runs)")
    latent_groups: int = option(1, "grouped latents: split the m latents into G groups feeding different "
                                   "resolutions (U-Net levels / DiT block runs; group 0 = coarsest)")
    prior_steps: int = option(1500, "stage-2 steps of the autoregressive prior", min=1)
    prior_batch_size: int = option(256, "stage-2 batch size", min=1)
    prior_lr: float = option(1e-3, "stage-2 learning rate", above=0)
    run_dir: str = option("runs/disco/default", "run folder: stage1/, prior/ and the exported model/")

    def validate(self) -> None:
        super().validate()
        check_latent_shape(self.num_latents, self.num_codes)
        backbone = MODEL_SIZES[self.arch][self.size]
        places = len(backbone["attention_levels"]) if self.arch == "unet" else backbone["depth"]
        if not 1 <= self.latent_groups <= min(self.num_latents, places):
            raise GenlabError(f"--latent-groups must be in [1, {min(self.num_latents, places)}] (m = {self.num_latents} "
                              f"latents; the {self.size} {self.arch} cross-attends in {places} places), "
                              f"got {self.latent_groups}")

    def prior_loop(self) -> LoopConfig:
        """Loop settings of stage 2."""
        return LoopConfig(steps=self.prior_steps, batch_size=self.prior_batch_size, lr=self.prior_lr,
                          warmup_steps=min(100, self.prior_steps), checkpoint_every=self.prior_steps,
                          log_every=min(50, self.prior_steps), seed=self.seed, progress=self.progress,
                          # a resumed run whose prior had no checkpoint yet restarts that stage afresh
                          overwrite=self.overwrite or self.resume)


@dataclass
class DisCoSampleConfig(SamplingConfig):
    """Settings of ``genlab sample disco``: the shared sampling settings plus the latent prior's."""

    model: str = option("runs/disco/default", "DisCo-Diff model: a run folder of `genlab train disco` or its "
                        "model/ folder", renamed_from="--run")
    seed: int = option(0, "seed of the prior's draws and of the noise", min=0, max=MAX_SEED)
    out: str | None = option(None, "PNG to write (default: <model>/samples.png)", type=str)
    num: int = option(100, "number of images", min=1)
    class_label: int | None = option(None, "draw only this class (default: every class in turn)", type=int, min=0)
    prior_temperature: float = option(1.0, "temperature of the latent prior (1 = as learned, lower = likelier codes)",
                                      above=0)
    latent_scale: float = option(1.0, "classifier-free guidance on the latents, w (1 = none)")
