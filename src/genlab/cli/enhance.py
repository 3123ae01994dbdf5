"""The video-enhancement commands of the ``genlab`` CLI: ``enhance`` and ``train enhance`` (registered in
:mod:`genlab.cli`; ``reproduce enhance`` is made in :mod:`genlab.cli.reproduce`)."""

from __future__ import annotations

import click

from genlab.cli.options import build_config, options_from, run_training
from genlab.core.paths import VIDEO_SUFFIXES, existing_dir, existing_file, output_file
from genlab.enhance.config import EnhanceConfig, EnhanceSettings, EnhanceVideoConfig


@click.command("enhance")
@options_from(EnhanceConfig)
def train_enhance_command(**values) -> None:
    """Train a video enhancer (VEnhancer) on top of a trained unconditional video model.

    Each training clip is degraded by a random spatial factor (--space-factors) and temporal factor
    (--time-factors) with a random key-frame phase. --variant controlnet trains a copy of the base's
    first --branch-depth blocks that reads the up-sampled key frames (the hint, noised by
    σ ~ U(0, --max-augment-sigma)) and the key-frame mask and feeds the frozen base through
    zero-initialised projections (EDM loss); --variant regression trains the L2 baseline. The base
    comes from `genlab train video --no-first-frame --data mixed`. The model goes to <run-dir>/model.
    """
    from genlab.enhance.training import train_enhancer

    run_training(train_enhancer, EnhanceConfig, values, "enhancer")


@click.command("enhance")
@click.argument("input_path", metavar="INPUT")
@options_from(EnhanceVideoConfig)
@options_from(EnhanceSettings)
def enhance_command(input_path: str, **values) -> None:
    """Enhance a low-resolution, low-frame-rate video (VEnhancer): space-time super-resolution.

    The ControlNet enhancer samples from an SDEdit start (the trilinear up-sampling noised to
    --start-sigma) in --sampling-steps Heun steps, conditioned on the input frames at the key frames. Videos
    longer than the model's clip and frames larger than its resolution run in overlapping chunks and
    tiles blended at every step; --memory-budget bounds how many run at once. s·h and s·w must be
    multiples of the model's patch size.
    """
    from genlab.core.images import load_video, save_video, video_grid
    from genlab.enhance.inference import enhance_video
    from genlab.enhance.model import load_enhancer

    video = build_config(EnhanceVideoConfig, values)
    settings = build_config(EnhanceSettings, values)
    output_file(video.out, VIDEO_SUFFIXES)
    low, input_fps = load_video(existing_file(input_path, "INPUT"))
    model = load_enhancer(existing_dir(video.model, "--model"))
    enhanced = enhance_video(model, low[None], video.space, video.time, settings, progress=True)
    rate = video.fps or (input_fps or 8.0) * video.time
    save_video(video_grid(enhanced, columns=1, padding=0), video.out, fps=rate)
    click.echo(f"{low.shape[0]} frames of {low.shape[-2]}×{low.shape[-1]} -> {enhanced.shape[1]} frames of "
               f"{enhanced.shape[-2]}×{enhanced.shape[-1]} ({model.variant} enhancer) in {video.out}")
