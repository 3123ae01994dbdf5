"""The model-growth command of the ``genlab`` CLI: ``grow`` (registered in :mod:`genlab.cli`;
``reproduce growth`` is made in :mod:`genlab.cli.reproduce`)."""

from __future__ import annotations

from pathlib import Path

import click

from genlab.cli.options import build_config, options_from
from genlab.core.paths import existing_dir, output_dir
from genlab.errors import GenlabError
from genlab.growth.config import GrowConfig


@click.command()
@options_from(GrowConfig)
def grow(**values) -> None:
    """Grow a Hugging Face causal LM with one of the four operators of "Stacking Your
    Transformers" (Du et al. 2024) and save it as an ordinary model of the same class.

    Example: genlab grow --model small/ --operator stack --direction depth --factor 4 --out big/

    G_stack (stack, depth) is the paper's recommendation: train a small model for d tokens
    (see genlab.growth.timing.recommended_growth_tokens), stack it 4x, keep training. zero and
    direct-width preserve the model's function exactly (give width splitting --split-noise 0.1,
    or its copies stay identical in training); random saves its blending masks beside
    the model (load with genlab.growth.Grown.from_pretrained to train on with the ramp).
    """
    from genlab.growth import grow as grow_model
    from genlab.growth.checkpoints import load_causal_lm, operator_training_batches, read_text_file
    from genlab.growth.operators import check_growth

    config = build_config(GrowConfig, values)
    existing_dir(config.model, "--model", "model folder")
    check_grow_out(Path(config.out), Path(config.model), config.overwrite)
    check_growth(config.operator, config.direction, config.factor)
    if config.learn_data is not None:
        read_text_file(config.learn_data, "--learn-data")
    source = load_causal_lm(config.model)
    batches = None
    if config.operator == "learn":
        batches = operator_training_batches(config.model, source.config.vocab_size, config.learn_data,
                                            config.learn_steps, batch_size=8, seq_len=128, seed=config.seed)
    factor = int(config.factor) if config.factor == int(config.factor) else config.factor
    grown = grow_model(source, config.operator, config.direction, factor, order=config.order,
                       ramp_steps=config.ramp_steps, seed=config.seed, split_noise=config.split_noise,
                       learn_batches=batches, learn_steps=config.learn_steps)
    grown.save_pretrained(config.out)
    before = sum(p.numel() for p in source.parameters())
    after = sum(p.numel() for p in grown.model.parameters())
    click.echo(f"grew {type(source).__name__} {before / 1e6:.2f}M -> {after / 1e6:.2f}M parameters "
               f"({config.operator}, {config.direction} x{config.factor:g}); saved to {config.out}")


def check_grow_out(out: Path, model_dir: Path, overwrite: bool) -> None:
    """``genlab grow --out`` must not replace the source model, nor another folder's files without --overwrite."""
    if model_dir.resolve().is_relative_to(out.resolve()):
        raise GenlabError(f"--out {out} would replace the model being grown (--model {model_dir}); choose another folder")
    output_dir(out)
    if any(out.iterdir()) and not overwrite:
        raise GenlabError(f"--out {out} is not empty; pass --overwrite to replace what it holds, or choose another folder")
