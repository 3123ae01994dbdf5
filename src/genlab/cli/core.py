"""The core commands of the ``genlab`` CLI: ``train image``, ``sample image`` and ``evaluate``
(registered in :mod:`genlab.cli`)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from genlab.base.config import ImageModelConfig
from genlab.cli.guidance import GuidedSamplingConfig
from genlab.cli.options import build_config, options_from, run_training
from genlab.core.config import option
from genlab.core.paths import IMAGE_SUFFIXES, existing_dir, output_file
from genlab.errors import GenlabError

if TYPE_CHECKING:
    import torch


@dataclass
class SampleConfig(GuidedSamplingConfig):
    """Settings of ``genlab sample image``."""

    out: str | None = option(None, "PNG to write (default: <model>/samples.png)", type=str)
    num: int = option(100, "number of images", min=1)
    churn: float = option(0.0, "EDM stochastic churn S_churn (0 = deterministic)", min=0)
    class_label: int | None = option(None, "draw only this class (default: every class in turn)", type=int, min=0)
    adapter: str | None = option(None, "sample with the weights of a `genlab align` run of this model (its run "
                                 "folder or adapter/ folder)", type=str)


@dataclass
class EvaluateConfig(GuidedSamplingConfig):
    """Settings of ``genlab evaluate``."""

    out: str | None = option(None, "JSON to write (default: <model>/results.json)", type=str)
    num: int = option(1000, "number of generated images to score (at least 2 for a distance)", min=2)


@click.command("image")
@options_from(ImageModelConfig)
def train_image(**values) -> None:
    """Train an EDM image diffusion model (U-Net or DiT) on a built-in data set.

    Writes <run-dir>/config.json, checkpoints/, log.jsonl, loss.png and the EMA model in
    <run-dir>/model. Ctrl-C saves a checkpoint; --resume continues exactly where it stopped.
    Runs on several processes with `accelerate launch --multi_gpu --num_processes N -m
    genlab.cli train image ...` (on a CPU-only machine too; --batch-size is then the global batch).
    """
    from genlab.base.image_model import train_image_model

    run_training(train_image_model, ImageModelConfig, values, "model")


def class_labels(class_label: int | None, num: int, num_classes: int) -> torch.Tensor | None:
    """Labels for a sample grid: every class in turn, or one class (checked against the model)."""
    import torch

    from genlab.base.image_model import balanced_labels

    if class_label is None:
        return balanced_labels(num, num_classes) if num_classes else None
    if not 0 <= class_label < num_classes:
        raise GenlabError(f"--class-label must be in [0, {num_classes - 1}] for this model, got {class_label}"
                          if num_classes else "--class-label needs a class-conditional model")
    return torch.full((num,), class_label)


def samples_out(out: str | None, model: str) -> Path:
    """The PNG ``genlab sample`` writes: ``--out``, or samples.png in the ``--model`` folder (checked)."""
    return output_file(out or Path(existing_dir(model, "--model")) / "samples.png", IMAGE_SUFFIXES)


@click.command("image")
@options_from(SampleConfig)
def sample_image(**values) -> None:
    """Sample an image model into a PNG grid (one column per class for conditional models)."""
    from genlab.base.image_model import generate_images, load_image_model
    from genlab.core.images import save_image_grid

    config = build_config(SampleConfig, values)
    out = samples_out(config.out, config.model)
    denoiser, info = load_image_model(config.model)
    if config.adapter:
        from genlab.align.export import load_adapter

        load_adapter(denoiser.net, config.adapter)
    num_classes = info.num_classes
    labels = class_labels(config.class_label, config.num, num_classes)
    images = generate_images(denoiser, config.num, labels, config.sampling_steps, config.sampler, config.churn,
                             config.seed, progress=True, wrapped=config.guided(denoiser, info))
    columns = num_classes if (num_classes and config.class_label is None) else None
    save_image_grid(images, out, columns=columns)
    click.echo(f"wrote {config.num} samples to {out}")


@click.command()
@options_from(EvaluateConfig)
def evaluate(**values) -> None:
    """Score a trained model: FD, precision, recall and class accuracy against held-out data.

    Features come from genlab's own feature network for the data set (not Inception), so the
    distance is called FD, not FID; compare numbers only within genlab.
    """
    from genlab.base.image_model import evaluate_image_model, load_image_model

    config = build_config(EvaluateConfig, values)
    out = output_file(config.out or Path(existing_dir(config.model, "--model")) / "results.json", (".json",))
    denoiser, info = load_image_model(config.model)
    results = evaluate_image_model(denoiser, info, config.num, config.sampling_steps, config.sampler, config.seed,
                                   progress=True, wrapped=config.guided(denoiser, info))
    results["guidance"] = (config.guidance if config.guidance == "none"
                           else f"{config.guidance} w={config.guidance_scale}")
    click.echo(format_metrics_table(results))
    out.write_text(json.dumps({**results, "config": asdict(config)}, indent=2))
    click.echo(f"wrote {out}")


def format_metrics_table(results: dict) -> str:
    """A two-column text table of the numeric entries of ``results``."""
    rows = [(k, f"{v:.4f}" if isinstance(v, float) else str(v)) for k, v in results.items()
            if isinstance(v, (int, float, str))]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
