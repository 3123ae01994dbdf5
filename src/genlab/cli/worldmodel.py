"""The world-model commands of the ``genlab`` CLI: ``train tokenizer``, ``train worldmodel`` and ``play``
(registered on the groups in :mod:`genlab.cli`; ``reproduce worldmodel`` is made in
:mod:`genlab.cli.reproduce`)."""

from __future__ import annotations

import sys

import click

from genlab.cli.options import RenamedOption, number, options_from, run_training
from genlab.core.config import MAX_SEED
from genlab.core.paths import VIDEO_SUFFIXES, existing_dir, existing_file, output_file
from genlab.errors import GenlabError
from genlab.worldmodel.config import TokenizerConfig, TransformerConfig


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
@click.option("--model", "model_dir", required=True, help="world model folder (tokenizer/ + transformer/)")
@click.option("--seed", default=0, show_default=True, type=number(int, min=0, max=MAX_SEED),
              help="PushBlock reset seed: the first frame")
@click.option("--actions", "actions_file", default=None, help="action file (.npy, or text: 'dx dy' per line); "
              "without it, keys typed in the terminal drive the rollout")
@click.option("--rollout-steps", default=30, show_default=True, type=number(int, min=1), cls=RenamedOption,
              renamed_from="--steps", help="most environment steps to play")
@click.option("--compare/--no-compare", default=True, show_default=True,
              help="step the real environment with the same actions and show it beside the imagined frames")
@click.option("--top-k", default=16, show_default=True, type=number(int, min=1), help="sample each token among the k most likely (1 = greedy)")
@click.option("--sample-seed", default=0, show_default=True, type=number(int, min=0, max=MAX_SEED), help="seed of the token sampling")
@click.option("--out", default="runs/play/rollout.mp4", show_default=True, help="video to write (.mp4 or .gif)")
def play_command(model_dir: str, seed: int, actions_file: str | None, rollout_steps: int, compare: bool, top_k: int,
                 sample_seed: int, out: str) -> None:
    """Roll a world model out interactively: type w/a/s/d (+ Enter) to move the agent, q to stop,
    and watch the imagined frames in the terminal; or replay an action file. The rollout (beside
    the real environment with --compare) is saved as a video, and may run longer than the
    model's training sequences (the context slides).
    """
    from itertools import islice

    from genlab.core.images import save_video
    from genlab.worldmodel.model import WorldModel
    from genlab.worldmodel.play import HELP, ansi_frame, keyboard_actions, play, read_actions

    output_file(out, VIDEO_SUFFIXES)
    if actions_file is not None:
        existing_file(actions_file, "--actions")
    world_model = WorldModel.from_pretrained(existing_dir(model_dir, "--model"), top_k=top_k, seed=sample_seed)
    show = None
    if actions_file is not None:
        actions = read_actions(actions_file, max(world_model.action_dim, 2))
    else:
        click.echo(HELP)
        actions = keyboard_actions(sys.stdin, echo=click.echo)
        if sys.stdout.isatty():
            def show(frame, reward):
                click.echo(ansi_frame(frame))
                click.echo(f"predicted reward {reward:+.3f}")
    video, rewards = play(world_model, seed, islice(actions, rollout_steps), compare=compare, show=show)
    if len(rewards) == 0:
        raise GenlabError("no actions were given, so there is nothing to play")
    save_video(video, out, fps=5, scale=3)
    click.echo(f"{len(rewards)} steps, predicted return {sum(rewards):+.3f}; video in {out}"
               + (" (left: real environment, right: world model)" if compare else ""))
