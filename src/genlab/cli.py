"""The ``genlab`` command line.

User mistakes (a :class:`~genlab.errors.GenlabError`) print one line and exit with status 2;
an interrupted training run exits with 130 after saving a checkpoint.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from genlab.base.config import ImageModelConfig
from genlab.cli_lazy import LazyGroup
from genlab.cli_options import (
    build_config,
    echo_once,
    num_workers_option,
    number,
    options_from,
    out_folder_option,
    report_training,
)
from genlab.core.config import MAX_SEED, SAMPLERS, option
from genlab.core.paths import IMAGE_SUFFIXES, existing_dir, output_dir, output_file
from genlab.demo import PARTS as DEMO_PARTS
from genlab.disco.config import DisCoConfig
from genlab.errors import GenlabError
from genlab.guidance import GUIDANCE_CHOICES

if TYPE_CHECKING:
    import torch


@click.group(cls=LazyGroup, lazy_commands={"align": "genlab.cli_align:align_command",
                                           "enhance": "genlab.cli_enhance:enhance_command",
                                           "play": "genlab.cli_worldmodel:play_command"},
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="genlab")
def cli() -> None:
    """genlab: 2024 image/video generation methods on one EDM diffusion core.

    Start with `genlab demo` (trains tiny models on the CPU in a few minutes and writes
    runs/demo/report.html). Then `genlab train image|disco`, `genlab sample image|disco` and
    `genlab evaluate` work on your own runs. Every command explains its options with --help.
    """


@dataclass
class SamplingConfig:
    """Settings shared by ``genlab sample`` and ``genlab evaluate``."""

    model: str = option("runs/train/default", "image model: a run folder of `genlab train image` or its model/ "
                        "folder", renamed_from="--run")
    sampling_steps: int = option(18, "noise levels of the sampler (Heun uses 2*steps-1 network calls)",
                                 renamed_from="--steps", min=1)
    sampler: str = option("heun", "ODE solver", choices=SAMPLERS)
    seed: int = option(0, "noise seed", min=0, max=MAX_SEED)
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

    def guided(self, denoiser, info: dict):
        """The guided wrapper of ``denoiser`` these settings ask for (None for no guidance)."""
        from genlab.guidance import cfg_warning, guide_class_model, parse_guidance

        terms = parse_guidance(self.guidance, self.guidance_scale, self.tsg_noise, self.tsg_alpha,
                               (self.guidance_t_min, self.guidance_t_max))
        warning = cfg_warning(self.guidance, info)
        if warning:
            click.echo(warning, err=True)
        return guide_class_model(denoiser, info["num_classes"], terms, seed=self.seed) if terms else None


@dataclass
class SampleConfig(SamplingConfig):
    """Settings of ``genlab sample``."""

    out: str | None = option(None, "PNG to write (default: <model>/samples.png)", type=str)
    num: int = option(100, "number of images", min=1)
    churn: float = option(0.0, "EDM stochastic churn S_churn (0 = deterministic)", min=0)
    class_label: int | None = option(None, "draw only this class (default: every class in turn)", type=int, min=0)
    adapter: str | None = option(None, "sample with the weights of a `genlab align` run of this model (its run "
                                 "folder or adapter/ folder)", type=str)


@dataclass
class DisCoSampleConfig:
    """Settings of ``genlab sample disco``."""

    model: str = option("runs/disco/default", "DisCo-Diff model: a run folder of `genlab train disco` or its "
                        "model/ folder", renamed_from="--run")
    out: str | None = option(None, "PNG to write (default: <model>/samples.png)", type=str)
    num: int = option(100, "number of images", min=1)
    sampling_steps: int = option(18, "noise levels of the sampler (Heun uses 2*steps-1 network calls)",
                                 renamed_from="--steps", min=1)
    sampler: str = option("heun", "ODE solver", choices=SAMPLERS)
    seed: int = option(0, "seed of the prior's draws and of the noise", min=0, max=MAX_SEED)
    class_label: int | None = option(None, "draw only this class (default: every class in turn)", type=int, min=0)
    prior_temperature: float = option(1.0, "temperature of the latent prior (1 = as learned, lower = likelier codes)",
                                      above=0)
    latent_scale: float = option(1.0, "classifier-free guidance on the latents, w (1 = none)")


@dataclass
class EvaluateConfig(SamplingConfig):
    """Settings of ``genlab evaluate``."""

    out: str | None = option(None, "JSON to write (default: <model>/results.json)", type=str)
    num: int = option(1000, "number of generated images to score (at least 2 for a distance)", min=2)


@cli.group(cls=LazyGroup, lazy_commands={"camera": "genlab.cli_camera:train_camera_command",
                                         "enhance": "genlab.cli_enhance:train_enhance_command",
                                         "tokenizer": "genlab.cli_worldmodel:train_tokenizer_command",
                                         "video": "genlab.cli_camera:train_video_command",
                                         "worldmodel": "genlab.cli_worldmodel:train_worldmodel_command"})
def train() -> None:
    """Train a model: `genlab train image|disco|tokenizer|worldmodel …` (see each one's --help)."""


@train.command("image")
@options_from(ImageModelConfig)
def train_image(**values) -> None:
    """Train an EDM image diffusion model (U-Net or DiT) on a built-in data set.

    Writes <run-dir>/config.json, checkpoints/, log.jsonl, loss.png and the EMA model in
    <run-dir>/model. Ctrl-C saves a checkpoint; --resume continues exactly where it stopped.
    Runs on several processes with `accelerate launch --multi_gpu --num_processes N -m
    genlab.cli train image ...` (on a CPU-only machine too; --batch-size is then the global batch).
    """
    from genlab.base.image_model import train_image_model

    config = build_config(ImageModelConfig, values)
    result = train_image_model(config)
    report_training(result, "model", config.run_dir)


@train.command("disco")
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
    usage = ", ".join(f"{u:.0%}" for u in model.info["code_usage"])
    echo_once(f"trained DisCo-Diff; code usage per latent: {usage}; model in {config.run_dir}/model")


@cli.group(cls=LazyGroup, lazy_commands={"camera": "genlab.cli_camera:sample_camera_command"})
def sample() -> None:
    """Sample a trained model into a PNG grid: `genlab sample image …` or `genlab sample disco …`."""


def _class_labels(class_label: int | None, num: int, num_classes: int) -> torch.Tensor | None:
    """Labels for a sample grid: every class in turn, or one class (checked against the model)."""
    import torch

    from genlab.base.image_model import balanced_labels

    if class_label is None:
        return balanced_labels(num, num_classes) if num_classes else None
    if not 0 <= class_label < num_classes:
        raise GenlabError(f"--class-label must be in [0, {num_classes - 1}] for this model, got {class_label}"
                          if num_classes else "--class-label needs a class-conditional model")
    return torch.full((num,), class_label)


@sample.command("image")
@options_from(SampleConfig)
def sample_image(**values) -> None:
    """Sample an image model into a PNG grid (one column per class for conditional models)."""
    from genlab.base.image_model import generate_images, load_image_model
    from genlab.core.images import save_image_grid

    config = build_config(SampleConfig, values)
    out = output_file(config.out or Path(existing_dir(config.model, "--model")) / "samples.png", IMAGE_SUFFIXES)
    denoiser, info = load_image_model(config.model)
    if config.adapter:
        from genlab.align.export import load_adapter

        load_adapter(denoiser.net, config.adapter)
    num_classes = info["num_classes"]
    labels = _class_labels(config.class_label, config.num, num_classes)
    images = generate_images(denoiser, config.num, labels, config.sampling_steps, config.sampler, config.churn,
                             config.seed, progress=True, wrapped=config.guided(denoiser, info))
    columns = num_classes if (num_classes and config.class_label is None) else None
    save_image_grid(images, out, columns=columns)
    click.echo(f"wrote {config.num} samples to {out}")


@sample.command("disco")
@options_from(DisCoSampleConfig)
def sample_disco(**values) -> None:
    """Sample DisCo-Diff: codes from its prior, then the EDM sampler conditioned on them.

    --latent-scale > 1 guides towards the codes (CFG against the null latents);
    --prior-temperature < 1 draws likelier codes. Writes a PNG grid (one column per class).
    """
    from genlab.core.images import save_image_grid
    from genlab.disco.model import DisCoDiff

    config = build_config(DisCoSampleConfig, values)
    out = output_file(config.out or Path(existing_dir(config.model, "--model")) / "samples.png", IMAGE_SUFFIXES)
    model = DisCoDiff.from_pretrained(config.model)
    num_classes = model.info.get("num_classes", 0)
    labels = _class_labels(config.class_label, config.num, num_classes)
    images, _ = model.generate(config.num, labels, steps=config.sampling_steps, sampler=config.sampler,
                               seed=config.seed, prior_temperature=config.prior_temperature,
                               latent_scale=config.latent_scale, progress=True)
    save_image_grid(images, out, columns=num_classes if (num_classes and config.class_label is None) else None)
    click.echo(f"wrote {config.num} samples to {out}")


@cli.command()
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


@cli.group(cls=LazyGroup, lazy_commands={"align": "genlab.cli_align:reproduce_align_command",
                                         "camera": "genlab.cli_camera:reproduce_camera_command",
                                         "enhance": "genlab.cli_enhance:reproduce_enhance_command",
                                         "worldmodel": "genlab.cli_worldmodel:reproduce_worldmodel_command"})
def reproduce() -> None:
    """Small-scale reproductions of each paper's key claim (our numbers beside the paper's).

    Each writes results.json, report.md and figures to --out; --quick is a ~3-minute CPU run.
    """


@reproduce.command("guidance")
@click.option("--quick", is_flag=True, help="one seed, short training, fewer samples (about 3 minutes on 2 cores)")
@out_folder_option("runs/reproduce/guidance")
def reproduce_guidance(quick: bool, out: str) -> None:
    """ICG and TSG vs CFG (Sadat et al. 2025) on digits: models trained with/without label dropping
    and unconditionally, sampled alike, scored by FD, precision, recall and class accuracy; plus
    an FD-vs-scale sweep. Reuses models already trained with the same settings in --out.
    """
    from genlab.experiments import guidance

    guidance.run(Path(out), guidance.PRESETS["quick" if quick else "full"])
    click.echo((Path(out) / "report.md").read_text())
    click.echo(f"results, figures and sample grids in {out}")


@reproduce.command("disco")
@click.option("--quick", is_flag=True, help="one seed, short training, fewer samples (about 5 minutes on 2 cores)")
@out_folder_option("runs/reproduce/disco")
def reproduce_disco(quick: bool, out: str) -> None:
    """DisCo-Diff (Xu et al. 2024): the 2-D toy (W2 and path straightness with and without a
    discrete latent) and shapes images (FD vs NFE for EDM vs DisCo-Diff with prior and oracle
    latents, latent CFG sweep, code usage and mutual information with shape/colour/position).
    Reuses models already trained with the same settings in --out.
    """
    from genlab.experiments import disco

    disco.run(Path(out), disco.PRESETS["quick" if quick else "full"])
    click.echo((Path(out) / "report.md").read_text())
    click.echo(f"results, figures and sample grids in {out}")


@cli.command()
@click.option("--model", "model_dir", required=True, help="folder of a LlamaForCausalLM or GPT2LMHeadModel (save_pretrained)")
@click.option("--operator", default="stack", show_default=True,
              type=click.Choice(["stack", "direct", "learn", "zero", "random"]),
              help="stack = direct: G_stack / neuron splitting; learn: LiGO; zero: identity-initialised; "
                   "random: random new parts blended in by a ramp")
@click.option("--direction", default="depth", show_default=True, type=click.Choice(["depth", "width"]),
              help="more layers, or wider hidden size / heads / MLP")
@click.option("--factor", default=4.0, show_default=True, type=number(float, above=1),
              help="growth factor, > 1 (whole number for depth, stack and learn)")
@click.option("--order", default="repeat", show_default=True, type=click.Choice(["repeat", "interleave"]),
              help="stacking order: repeat = 1..L,1..L,…; interleave = 1,1,2,2,…")
@click.option("--ramp-steps", default=100, show_default=True, type=number(int, min=1),
              help="random: optimiser steps over which new parts blend in")
@click.option("--learn-steps", default=100, show_default=True, type=number(int, min=1),
              help="learn: Adam steps on the expansion operators")
@click.option("--learn-data", default=None, help="learn: text file to train them on (default: stdlib docstrings)")
@click.option("--split-noise", default=0.0, show_default=True, type=number(float, min=0),
              help="width, stack/learn: zero-sum noise that lets split copies train apart (function still exact)")
@click.option("--seed", default=0, show_default=True, type=number(int, min=0, max=MAX_SEED), help="seed of new random weights")
@click.option("--out", required=True, help="folder for the grown model (save_pretrained format)")
@click.option("--overwrite", is_flag=True, help="write into a non-empty --out (files of the same name are replaced; "
              "never allowed when --out holds --model)")
def grow(model_dir: str, operator: str, direction: str, factor: float, order: str, ramp_steps: int,
         learn_steps: int, learn_data: str | None, split_noise: float, seed: int, out: str, overwrite: bool) -> None:
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

    existing_dir(model_dir, "--model", "model folder")
    _check_grow_out(Path(out), Path(model_dir), overwrite)
    check_growth(operator, direction, factor)
    if learn_data is not None:
        read_text_file(learn_data, "--learn-data")
    source = load_causal_lm(model_dir)
    batches = None
    if operator == "learn":
        batches = operator_training_batches(model_dir, source.config.vocab_size, learn_data, learn_steps,
                                            batch_size=8, seq_len=128, seed=seed)
    grown = grow_model(source, operator, direction, int(factor) if factor == int(factor) else factor,
                       order=order, ramp_steps=ramp_steps, seed=seed, split_noise=split_noise, learn_batches=batches,
                       learn_steps=learn_steps)
    grown.save_pretrained(out)
    before = sum(p.numel() for p in source.parameters())
    after = sum(p.numel() for p in grown.model.parameters())
    click.echo(f"grew {type(source).__name__} {before / 1e6:.2f}M -> {after / 1e6:.2f}M parameters "
               f"({operator}, {direction} x{factor:g}); saved to {out}")


@reproduce.command("growth")
@click.option("--quick", is_flag=True, help="one seed, depth only, short training (about 1.5 minutes on 2 cores)")
@num_workers_option("training processes (one CPU thread each)")
@out_folder_option("runs/reproduce/growth")
def reproduce_growth(quick: bool, num_workers: int, out: str) -> None:
    """Stacking Your Transformers (Du et al. 2024) on a byte-level LLaMA and the standard
    library's docstrings: a large model trained from scratch vs a small one grown 4x in depth
    (2x in width) with each operator, loss vs tokens and FLOPs, tokens/FLOPs saved to reach the
    scratch model's final loss over 3 seeds, a sweep over growth timing d and factor g,
    and G_stack at a 3x longer budget (about 50 minutes with 2 workers).
    Finished runs in --out are reused.
    """
    from genlab.experiments import growth

    growth.run(Path(out), growth.PRESETS["quick" if quick else "full"], workers=num_workers)
    click.echo((Path(out) / "report.md").read_text())
    click.echo(f"results, curves and per-run logs in {out}")


@cli.command()
@click.option("--only", "only", type=click.Choice(list(DEMO_PARTS)), default=None, help="run only this part of the demo")
@out_folder_option("runs/demo", "folder for the report and runs")
def demo(only: str | None, out: str) -> None:
    """The main job: every method's small demo, then one HTML report (runs/demo/report.html).

    Parts: core (a tiny class-conditional digits model: train, sample, evaluate); guidance (ICG
    and TSG vs CFG on three tiny digits models); disco (DisCo-Diff's 2-D toy and a short shapes
    run); growth (a byte-level LLaMA grown 4x in depth with each growth operator vs scratch);
    worldmodel (iVideoGPT's quick run on the PushBlock world, with a rollout GIF).
    Each part takes about 2 minutes on 2 cores.
    """
    from genlab.demo import run_demo

    report = run_demo(Path(out), only)
    click.echo(f"report: {report}")


def format_metrics_table(results: dict) -> str:
    """A two-column text table of the numeric entries of ``results``."""
    rows = [(k, f"{v:.4f}" if isinstance(v, float) else str(v)) for k, v in results.items()
            if isinstance(v, (int, float, str))]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _check_grow_out(out: Path, model_dir: Path, overwrite: bool) -> None:
    """``genlab grow --out`` must not replace the source model, nor another folder's files without --overwrite."""
    if model_dir.resolve().is_relative_to(out.resolve()):
        raise GenlabError(f"--out {out} would replace the model being grown (--model {model_dir}); choose another folder")
    output_dir(out)
    if any(out.iterdir()) and not overwrite:
        raise GenlabError(f"--out {out} is not empty; pass --overwrite to replace what it holds, or choose another folder")


def _one_line(message: str) -> str:
    return " ".join(message.split())


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning user errors into one line and an exit status."""
    try:
        cli.main(args=argv, prog_name="genlab", standalone_mode=False)
    except GenlabError as error:
        click.echo(f"genlab: error: {_one_line(str(error))}", err=True)
        sys.exit(getattr(error, "exit_code", 2))
    except OSError as error:  # the file system refused: disk full, no permission, a path removed mid-run
        where = f"{error.filename}: " if error.filename else ""
        click.echo(f"genlab: error: {where}{_one_line(error.strerror or str(error))}", err=True)
        sys.exit(2)
    except click.UsageError as error:
        command = error.ctx.command_path if error.ctx else "genlab"
        click.echo(f"genlab: error: {error.format_message()} (see '{command} --help')", err=True)
        sys.exit(error.exit_code)
    except click.ClickException as error:
        click.echo(f"genlab: error: {error.format_message()}", err=True)
        sys.exit(error.exit_code)
    except (click.Abort, KeyboardInterrupt):
        click.echo("genlab: interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
