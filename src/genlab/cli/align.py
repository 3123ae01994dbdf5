"""The alignment command of the ``genlab`` CLI: ``align`` (registered in :mod:`genlab.cli`;
``reproduce align`` is made in :mod:`genlab.cli.reproduce`)."""

from __future__ import annotations

import click

from genlab.align.config import AlignConfig
from genlab.cli.options import RenamedOption, build_config, number, options_from

REWARD_HELP = ("reward to maximise: class, brightness, colourfulness, motion-left/right/up/down, "
               "flow-left/right/up/down, temporal "
               "(ship with genlab); aesthetic, clip-score, pickscore, hps, videomae-action, vjepa-temporal, "
               "object-removal (pretrained; weights from --reward-path or the hub)")


@click.command("align")
@click.option("--model", "model_path", required=True,
              help="genlab image/video model folder, or a diffusers StableDiffusion / TextToVideoSD pipeline "
                   "(folder or hub id)")
@click.option("--reward", "reward_name", required=True, help=REWARD_HELP)
@click.option("--reward-path", default=None, help="where the reward's pretrained weights are (folder or hub id); "
              "for `class`, the data set (digits or shapes); for `aesthetic`, a CLIP ViT-L/14 folder that may "
              "also hold sac+logos+ava1-l14-linearMSE.pth (else that file is downloaded and SHA-256 checked)")
@click.option("--reward-revision", default=None,
              help="pretrained rewards: the hub revision (commit, tag or branch) of their weights (default: main)")
@click.option("--guidance-scale", default=None, type=number(float, min=0),
              help="diffusers pipelines only: classifier-free guidance scale")
@click.option("--frames", default=None, type=number(int, min=1), cls=RenamedOption, renamed_from="--num-frames",
              help="text-to-video pipelines only: frames per video")
@options_from(AlignConfig)
def align_command(model_path: str, reward_name: str, reward_path: str | None, reward_revision: str | None,
                  guidance_scale: float | None, frames: int | None, **values) -> None:
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

    config = build_config(AlignConfig, values)  # also validates (bounds, --prompts file, --run-dir)
    accelerator = make_accelerator()
    target = load_target(model_path, guidance_scale, frames, device=accelerator.device)
    reward = build_reward(reward_name, reward_path, reward_revision)
    run_info = {"model": model_path, "reward_path": reward_path, "reward_revision": reward_revision}
    result = AlignmentRun(target, reward, config, run_info, accelerator).fit()
    if accelerator.is_main_process:
        click.echo(f"{config.method}: {result.steps} updates, {result.queries} reward queries, last mean reward "
                   f"{result.last_reward:.4f}; curve in {result.run_dir / 'reward.png'}")
        click.echo(result.adapter_note)
