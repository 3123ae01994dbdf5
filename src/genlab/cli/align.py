"""The alignment command of the ``genlab`` CLI: ``align`` (registered in :mod:`genlab.cli`;
``reproduce align`` is made in :mod:`genlab.cli.reproduce`)."""

from __future__ import annotations

import click

from genlab.align.config import AlignConfig, AlignTargetConfig
from genlab.cli.options import build_config, options_from


@click.command("align")
@options_from(AlignTargetConfig)
@options_from(AlignConfig)
def align_command(**values) -> None:
    """Align a diffusion model to a differentiable reward (VADER), or with DDPO as the baseline.

    VADER samples a batch with the full sampler (--sampling-steps, stochasticity --eta), scores it
    with the reward and back-propagates −reward through only the last --k sampler steps into LoRA
    adapters (--lora-rank on the --lora-targets linear layers; 0 trains all weights). Video models
    can score a subset of frames (--score-frames random | every-N) to save memory; mixed precision
    (--mixed-precision bf16) and gradient checkpointing save more. --method ddpo instead runs PPO on the
    sampler's per-step Gaussian log-probabilities. Every sample scored counts as one reward query.
    The run folder gets log.jsonl (reward, queries, seconds per update), reward.png, checkpoints
    (--resume continues; Ctrl-C or SIGTERM finishes the update, saves a checkpoint and exits with
    status 130) and adapter/ with the trained weights: a peft adapter folder
    (PeftModel.from_pretrained), plus diffusers' LoRA file for Stable Diffusion
    (pipe.load_lora_weights). Runs data-parallel under `accelerate launch --multi_gpu
    --num_processes N -m genlab.cli align ...` (CPU processes too; --batch-size is then split).
    """
    from genlab.align.rewards import build_reward
    from genlab.align.targets import load_target
    from genlab.align.trainer import AlignmentRun
    from genlab.core.train import make_accelerator

    what = build_config(AlignTargetConfig, values)
    config = build_config(AlignConfig, values)  # also validates (bounds, --prompts file, --run-dir)
    accelerator = make_accelerator()
    target = load_target(what.model, what.guidance_scale, what.frames, device=accelerator.device)
    reward = build_reward(what.reward, what.reward_path, what.reward_revision)
    run_info = {"model": what.model, "reward_path": what.reward_path, "reward_revision": what.reward_revision}
    result = AlignmentRun(target, reward, config, run_info, accelerator).fit()
    if accelerator.is_main_process:
        click.echo(f"{config.method}: {result.steps} updates, {result.queries} reward queries, last mean reward "
                   f"{result.last_reward:.4f}; curve in {result.run_dir / 'reward.png'}")
        click.echo(result.adapter_note)
