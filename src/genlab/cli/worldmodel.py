"""The world-model commands of the ``genlab`` CLI: ``train tokenizer``, ``train worldmodel`` and ``play``
(registered on the groups in :mod:`genlab.cli`; ``reproduce worldmodel`` is made in
:mod:`genlab.cli.reproduce`)."""

from __future__ import annotations

import sys

import click

from genlab.cli.options import build_config, options_from, run_training
from genlab.core.paths import VIDEO_SUFFIXES, existing_dir, existing_file, output_file
from genlab.errors import GenlabError
from genlab.worldmodel.config import PlayConfig, TokenizerConfig, TransformerConfig


@click.command("tokenizer")
@options_from(TokenizerConfig)
def train_tokenizer_command(**values) -> None:
    """Train an iVideoGPT video tokenizer on PushBlock shards (make them with `genlab reproduce
    worldmodel`, or genlab.worldmodel.dataset.write_shards).

    --compressive (default): the context frame gets --context-grid² tokens, each future frame only
    --future-grid² tokens, read relative to the context. --no-compressive: the per-frame baseline.
    Trains the perceptual feature net first (<run-dir>/state_net); the EMA tokenizer goes to
    <run-dir>/model.
    """
    from genlab.worldmodel.training import train_tokenizer

    run_training(train_tokenizer, TokenizerConfig, values, "tokenizer")


@click.command("worldmodel")
@options_from(TransformerConfig)
def train_worldmodel_command(**values) -> None:
    """Train iVideoGPT's transformer (a transformers LlamaForCausalLM) on a trained tokenizer's tokens.

    Sequences are [context tokens, (slot, future tokens) × --future-frames]; the action leading to
    each frame is added to its slot token through a zero-initialised projection (--no-actions: the
    action-free model) and a reward head reads each frame's last token. <run-dir>/model becomes a
    whole world model for `genlab play` and WorldModel.from_pretrained.
    """
    from genlab.worldmodel.training import train_transformer

    run_training(train_transformer, TransformerConfig, values, "world model")


@click.command()
@options_from(PlayConfig)
def play_command(**values) -> None:
    """Roll a world model out interactively: type w/a/s/d (+ Enter) to move the agent, q to stop,
    and watch the imagined frames in the terminal; or replay an action file. The rollout (beside
    the real environment with --compare) is saved as a video, and may run longer than the
    model's training sequences (the context slides).
    """
    from itertools import islice

    from genlab.core.images import save_video
    from genlab.worldmodel.model import WorldModel
    from genlab.worldmodel.play import HELP, ansi_frame, keyboard_actions, play, read_actions

    config = build_config(PlayConfig, values)
    output_file(config.out, VIDEO_SUFFIXES)
    if config.actions is not None:
        existing_file(config.actions, "--actions")
    world_model = WorldModel.from_pretrained(existing_dir(config.model, "--model"), top_k=config.top_k,
                                             seed=config.sample_seed)
    show = None
    if config.actions is not None:
        actions = read_actions(config.actions, max(world_model.action_dim, 2))
    else:
        click.echo(HELP)
        actions = keyboard_actions(sys.stdin, echo=click.echo)
        if sys.stdout.isatty():
            def show(frame, reward):
                click.echo(ansi_frame(frame))
                click.echo(f"predicted reward {reward:+.3f}")
    video, rewards = play(world_model, config.seed, islice(actions, config.rollout_steps), compare=config.compare,
                          show=show)
    if len(rewards) == 0:
        raise GenlabError("no actions were given, so there is nothing to play")
    save_video(video, config.out, fps=5, scale=3)
    click.echo(f"{len(rewards)} steps, predicted return {sum(rewards):+.3f}; video in {config.out}"
               + (" (left: real environment, right: world model)" if config.compare else ""))
