"""The alignment loop: VADER (reward gradients through the last K sampler steps) and DDPO (PPO).

Both methods share everything but the update: sampling conditions, the sampler, decoding, frame
subsampling, scoring, the reward-query counter (one query = one sample scored), logging,
checkpoint/resume and the final adapter. A run folder holds::

    config.json   checkpoints/   log.jsonl (one record per update)   reward.png   adapter/

``adapter/`` has ``weights.safetensors`` (LoRA adapters, or all weights) and ``align.json``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import Tensor
from tqdm.auto import tqdm

from genlab.align.checkpointing import enable_block_checkpointing
from genlab.align.config import AlignConfig, frame_mode, label_list, prompt_list
from genlab.align.lora import add_lora, load_trainable_state, trainable_parameters, trainable_state
from genlab.align.rewards.base import Reward
from genlab.align.sampling import sample_for_reward, step_log_prob
from genlab.align.targets import AlignTarget
from genlab.core.checkpoint import (
    flatten_optimizer_state,
    latest_checkpoint,
    save_checkpoint,
    unflatten_optimizer_state,
)
from genlab.core.runlog import append_log, plot_curve
from genlab.core.train import open_run_dir
from genlab.errors import GenlabError

ADAPTER_DIR = "adapter"
ADAPTER_INFO = "align.json"
RESUMABLE_FIELDS = ("steps", "resume", "checkpoint_every", "keep_checkpoints", "progress", "run_dir")


@dataclass
class AlignResult:
    """The end of a run: updates done, reward queries used, the last batch's mean reward, the folder."""

    steps: int
    queries: int
    last_reward: float
    run_dir: Path


class ConditionSampler:
    """Draws the conditions of each micro-batch: labels or prompts, uniformly from the training set.

    The reward and the model must agree: a reward that needs text cannot score a class-conditional
    model's samples, and one that needs labels cannot score a text model's (clear errors).
    """

    def __init__(self, target: AlignTarget, reward: Reward, config: AlignConfig) -> None:
        self.labels = label_list(config.labels)
        self.prompts = prompt_list(config.prompts)
        needed = {target.condition, reward.needs} - {None}
        if len(needed) > 1:
            model_takes = "class labels" if target.condition == "labels" else "text prompts"
            raise GenlabError(f"the {reward.name!r} reward needs {reward.needs} but the model is conditioned on "
                              f"{model_takes}; choose a reward that scores {target.condition} "
                              f"(e.g. a class reward for labels, an image-text reward for prompts)")
        self.kind = needed.pop() if needed else None
        if self.kind != "labels" and config.labels:
            uses = "text prompts" if self.kind == "prompts" else "no conditions"
            raise GenlabError(f"--labels was given but this run uses {uses} (neither the model nor the reward takes "
                              "class labels)")
        if self.kind != "prompts" and config.prompts:
            uses = "class labels" if self.kind == "labels" else "no conditions"
            raise GenlabError(f"--prompts was given but this run uses {uses} (neither the model nor the reward "
                              "takes text)")
        if self.kind == "labels" and self.labels is None:
            classes = getattr(target, "num_classes", 0)
            if not classes:
                raise GenlabError(f"the {reward.name!r} reward needs class labels: give --labels")
            self.labels = list(range(classes))
        if self.kind == "prompts" and self.prompts is None:
            raise GenlabError("this run needs text prompts: give --prompts (a file, or prompts separated by '|')")
        self.to_model = target.condition is not None
        self.to_reward = reward.needs is not None

    def draw(self, batch_size: int, generator: torch.Generator) -> tuple[list[str] | None, Tensor | None]:
        """``(prompts, labels)`` for one micro-batch (each None when unused)."""
        if self.kind is None:
            return None, None
        pool = self.labels if self.kind == "labels" else self.prompts
        picks = torch.randint(len(pool), (batch_size,), generator=generator).tolist()
        if self.kind == "labels":
            return None, torch.tensor([pool[i] for i in picks], dtype=torch.long)
        return [pool[i] for i in picks], None


def choose_frames(num_frames: int, mode: str, generator: torch.Generator) -> Tensor | None:
    """Frame indices the reward sees (``--score-frames``); None = all frames."""
    kind, every = frame_mode(mode)
    if kind == "all":
        return None
    if kind == "random":
        return torch.randint(num_frames, (1,), generator=generator)
    return torch.arange(0, num_frames, every)


def score_samples(reward: Reward, samples: Tensor, prompts: Sequence[str] | None, labels: Tensor | None) -> Tensor:
    """Rewards ``[B]`` of images or videos; an image reward scores video frames and averages them."""
    if samples.ndim == 4 and reward.modality == "video":
        raise GenlabError(f"the {reward.name!r} reward scores videos, but this model makes images")
    if samples.ndim == 5 and reward.modality == "image":
        batch, frames = samples.shape[:2]
        frame_prompts = None if prompts is None else [p for p in prompts for _ in range(frames)]
        frame_labels = None if labels is None else labels.repeat_interleave(frames)
        return reward(samples.flatten(0, 1), frame_prompts, frame_labels).view(batch, frames).mean(1)
    return reward(samples, prompts, labels)


class AlignmentRun:
    """One VADER or DDPO run of ``target`` against ``reward`` (call :meth:`fit`)."""

    def __init__(self, target: AlignTarget, reward: Reward, config: AlignConfig, run_info: dict | None = None):
        config.validate()
        self.target, self.reward, self.config = target, reward.to(target.device), config
        self.conditions = ConditionSampler(target, reward, config)
        self.run_dir = Path(config.run_dir)
        self.run_config = {**asdict(config), "reward": reward.name, **(run_info or {})}
        self.lora_targets = config.lora_target_names(target.lora_targets)
        torch.manual_seed(config.seed)  # peft draws the adapters' A matrices from the global RNG
        if config.lora:
            add_lora(target.module, config.lora_rank, self.lora_targets, config.lora_alpha or None)
        else:
            target.module.requires_grad_(True)
        if config.gradient_checkpointing:
            enable_block_checkpointing(target.module)
        self.parameters = trainable_parameters(target.module)
        self.optimizer = torch.optim.AdamW(self.parameters, lr=config.lr, weight_decay=0.0)
        self.sigmas = target.sigmas(config.sampling_steps)
        self.queries = 0
        self.seconds = 0.0

    # -- pieces shared by both methods ------------------------------------------------------------
    def autocast(self):
        if self.config.precision == "bf16":
            return torch.autocast(self.target.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def _micro_batch(self, step: int, micro: int) -> tuple[torch.Generator, dict, list | None, Tensor | None, Tensor]:
        """Seeded conditions and noise of micro-batch ``micro`` of update ``step`` (reproducible on resume)."""
        generator = torch.Generator().manual_seed(self.config.seed * 1_000_003 + step * 1009 + micro)
        prompts, labels = self.conditions.draw(self.config.batch_size, generator)
        cond = self.target.encode_condition(prompts if self.conditions.to_model else None,
                                            labels if self.conditions.to_model else None)
        noise = torch.randn(self.target.state_shape(self.config.batch_size), generator=generator)
        return generator, cond, prompts, labels, noise.to(self.target.device)

    def _rewards(self, x0: Tensor, prompts, labels, generator: torch.Generator, step: int) -> Tensor:
        """Decode (only the scored frames of videos), score, count the queries, check finiteness."""
        frames = None
        if self.target.modality == "video":
            frames = choose_frames(self.target.state_shape(1)[1], self.config.score_frames, generator)
        samples = self.target.decode(x0, frames)
        labels = labels.to(samples.device) if labels is not None and self.conditions.to_reward else None
        scores = score_samples(self.reward, samples, prompts if self.conditions.to_reward else None, labels)
        self.queries += scores.shape[0]
        if not torch.isfinite(scores).all():
            kept = latest_checkpoint(self.run_dir / "checkpoints")
            where = f"the last good checkpoint stays in {kept}" if kept else "no checkpoint had been written yet"
            raise GenlabError(f"the {self.reward.name!r} reward returned non-finite values at update {step + 1}; "
                              f"stopped without saving ({where})")
        return scores

    def _denoise_fn(self, cond: dict):
        return partial(self.target.denoise, cond=cond)

    # -- the two updates ------------------------------------------------------------------------
    def vader_update(self, step: int) -> tuple[float, float]:
        """One VADER update: ``loss = −mean reward``, gradients through the last K steps only."""
        config, rewards = self.config, []
        for micro in range(config.accumulate):
            generator, cond, prompts, labels, noise = self._micro_batch(step, micro)
            k = int(torch.randint(1, config.k + 1, (1,), generator=generator)) if config.random_k else config.k
            x0, _ = sample_for_reward(self._denoise_fn(cond), noise, self.sigmas, config.eta, k, generator,
                                      autocast=self.autocast)
            scores = self._rewards(x0, prompts, labels, generator, step)
            (-scores.mean() / config.accumulate).backward()
            rewards.append(scores.detach())
        return self._apply_gradients(), float(torch.cat(rewards).mean())

    def ddpo_update(self, step: int) -> tuple[float, float]:
        """One DDPO update: sample trajectories without a graph, normalise rewards into advantages,
        then PPO-clip the probability ratio of every stochastic step (Black et al., 2023)."""
        config, batches = self.config, []
        with torch.no_grad():
            for micro in range(config.accumulate):
                generator, cond, prompts, labels, noise = self._micro_batch(step, micro)
                x0, trajectory = sample_for_reward(self._denoise_fn(cond), noise, self.sigmas, config.eta, 0,
                                                   generator, record_trajectory=True, autocast=self.autocast)
                batches.append((cond, trajectory, self._rewards(x0, prompts, labels, generator, step)))
        all_rewards = torch.cat([b[2] for b in batches])
        mean, std = all_rewards.mean(), all_rewards.std().clamp_min(1e-6) if len(all_rewards) > 1 else 1.0
        for _ in range(config.ddpo_epochs):
            for cond, trajectory, scores in batches:
                advantages = ((scores - mean) / std).to(self.target.device)
                count = len(trajectory.step_indices) * len(batches)
                for j, index in enumerate(trajectory.step_indices):
                    with self.autocast():
                        log_prob = step_log_prob(self._denoise_fn(cond), trajectory.states[j],
                                                 trajectory.next_states[j], self.sigmas.to(self.target.device),
                                                 index, config.eta)
                    ratio = (log_prob - trajectory.log_probs[j]).exp()
                    clipped = ratio.clamp(1 - config.ddpo_clip, 1 + config.ddpo_clip)
                    loss = torch.maximum(-advantages * ratio, -advantages * clipped).mean()
                    (loss / count).backward()
            grad_norm = self._apply_gradients()
        return grad_norm, float(all_rewards.mean())

    def _apply_gradients(self) -> float:
        grad_norm = float("nan")
        if self.config.grad_clip > 0:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.parameters, self.config.grad_clip))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return grad_norm

    # -- the loop -------------------------------------------------------------------------------
    def fit(self) -> AlignResult:
        """Run (or, with ``resume``, continue) to ``config.steps`` updates."""
        config = self.config
        start = self._prepare_run_dir()
        update = self.vader_update if config.method == "vader" else self.ddpo_update
        self.target.module.train()
        progress = tqdm(total=config.steps, initial=start, desc=f"{config.method} {self.reward.name}",
                        disable=not config.progress, dynamic_ncols=True)
        reward = float("nan")
        for step in range(start, config.steps):
            began = time.perf_counter()
            grad_norm, reward = update(step)
            self.seconds += time.perf_counter() - began
            record = {"step": step + 1, "reward": reward, "queries": self.queries, "seconds": round(self.seconds, 3)}
            if math.isfinite(grad_norm):
                record["grad_norm"] = grad_norm
            append_log(self.run_dir / "log.jsonl", record)
            progress.update(1)
            progress.set_postfix(reward=f"{reward:.4f}", queries=self.queries)
            if (step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps:
                self._save_checkpoint(step + 1)
        progress.close()
        self.target.module.eval()
        self.save_adapter()
        plot_curve(self.run_dir / "log.jsonl", self.run_dir / "reward.png", "queries", "reward",
                   f"{config.method}: {self.reward.name}", x_label="reward queries", y_label="mean reward")
        return AlignResult(max(start, config.steps), self.queries, reward, self.run_dir)

    def _prepare_run_dir(self) -> int:
        loaded = open_run_dir(self.run_dir, self.config.resume, self.run_config, RESUMABLE_FIELDS)
        if loaded is None:
            return 0
        tensors, state, _ = loaded
        load_trainable_state(self.target.module, tensors["weights"], self.config.lora)
        self.optimizer.load_state_dict(unflatten_optimizer_state(tensors.get("optimizer", {}), state["optimizer"]))
        self.queries, self.seconds = int(state["queries"]), float(state["seconds"])
        return int(state["step"])

    def _save_checkpoint(self, step: int) -> None:
        optimizer_tensors, optimizer_rest = flatten_optimizer_state(self.optimizer.state_dict())
        save_checkpoint(self.run_dir / "checkpoints", step,
                        {"weights": trainable_state(self.target.module, self.config.lora),
                         "optimizer": optimizer_tensors},
                        {"config": self.run_config, "optimizer": optimizer_rest, "queries": self.queries,
                         "seconds": self.seconds},
                        keep=self.config.keep_checkpoints)

    def save_adapter(self) -> Path:
        """Write the trained weights and how to re-apply them to ``<run_dir>/adapter``."""
        folder = self.run_dir / ADAPTER_DIR
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous().cpu() for k, v in trainable_state(self.target.module, self.config.lora).items()}
        save_file(state, str(folder / "weights.safetensors"))
        info = {"lora_rank": self.config.lora_rank, "lora_alpha": self.config.lora_alpha or self.config.lora_rank,
                "lora_targets": list(self.lora_targets), "reward": self.reward.name,
                "model": self.run_config.get("model")}
        (folder / ADAPTER_INFO).write_text(json.dumps(info, indent=2))
        return folder


def apply_adapter(target: AlignTarget, run_dir: Path | str) -> AlignTarget:
    """Load the weights of a finished run (``<run_dir>/adapter``) into ``target`` in place."""
    from safetensors.torch import load_file

    folder = Path(run_dir) / ADAPTER_DIR
    info_path = folder / ADAPTER_INFO
    if not info_path.is_file():
        raise GenlabError(f"{run_dir} holds no finished alignment run (no {ADAPTER_DIR}/{ADAPTER_INFO})")
    info = json.loads(info_path.read_text())
    lora = info["lora_rank"] > 0
    if lora:
        add_lora(target.module, info["lora_rank"], info["lora_targets"], info["lora_alpha"])
    load_trainable_state(target.module, load_file(str(folder / "weights.safetensors")), lora)
    target.module.eval().requires_grad_(False)
    return target
