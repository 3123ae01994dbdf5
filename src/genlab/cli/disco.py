"""The DisCo-Diff commands of the ``genlab`` CLI: ``train disco`` and ``sample disco`` (registered in
:mod:`genlab.cli`; ``reproduce disco`` is made in :mod:`genlab.cli.reproduce`)."""

from __future__ import annotations

import click

from genlab.cli.options import build_config, echo_once, options_from
from genlab.disco.config import DisCoConfig, DisCoSampleConfig


@click.command("disco")
@options_from(DisCoConfig)
def train_disco(**values) -> None:
    """Train DisCo-Diff (Xu et al. 2024): discrete latents + EDM denoiser, then their prior.

    Stage 1 trains a ViT encoder (m latents of k codes, Gumbel-softmax) and the latent-conditioned
    U-Net/DiT end to end with the plain EDM loss (--steps, --lr, … apply here); stage 2 fits an
    autoregressive prior (a tiny LLaMA) to the encoder's codes (--prior-steps). Writes
    <run-dir>/stage1/, <run-dir>/prior/ and the whole model in <run-dir>/model; prints code usage
    and warns on codebook collapse. Ctrl-C saves a checkpoint; --resume continues either stage.
    """
    from genlab.disco.training import train_disco as train_disco_model

    config = build_config(DisCoConfig, values)
    model = train_disco_model(config)
    usage = ", ".join(f"{u:.0%}" for u in model.info.code_usage or ())
    echo_once(f"trained DisCo-Diff; code usage per latent: {usage}; model in {config.run_dir}/model")


@click.command("disco")
@options_from(DisCoSampleConfig)
def sample_disco(**values) -> None:
    """Sample DisCo-Diff: codes from its prior, then the EDM sampler conditioned on them.

    --latent-scale > 1 guides towards the codes (CFG against the null latents);
    --prior-temperature < 1 draws likelier codes. Writes a PNG grid (one column per class).
    """
    from genlab.cli.core import class_labels, samples_out
    from genlab.core.images import save_image_grid
    from genlab.disco.model import DisCoDiff

    config = build_config(DisCoSampleConfig, values)
    out = samples_out(config.out, config.model)
    model = DisCoDiff.from_pretrained(config.model)
    num_classes = model.info.num_classes or 0
    labels = class_labels(config.class_label, config.num, num_classes)
    images, _ = model.generate(config.num, labels, steps=config.sampling_steps, sampler=config.sampler,
                               seed=config.seed, prior_temperature=config.prior_temperature,
                               latent_scale=config.latent_scale, progress=True)
    save_image_grid(images, out, columns=num_classes if (num_classes and config.class_label is None) else None)
    click.echo(f"wrote {config.num} samples to {out}")
