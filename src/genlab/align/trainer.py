"""The alignment loop: VADER (reward gradients through the last K sampler steps) and DDPO (PPO).

Both methods share everything but the update: sampling conditions, the sampler, decoding, frame
subsampling, scoring, the reward-query counter (one query = one sample scored), logging,
checkpoint/resume and the final adapter. A run folder holds::

    config.json   checkpoints/   log.jsonl (one record per update)   reward.png   adapter/

``adapter/`` holds the trained weights in the formats of :mod:`genlab.align.export` (peft's adapter
folder, diffusers' LoRA file for Stable Diffusion, or all weights) and ``align.json``.

Multi-process: run ``genlab align`` under ``accelerate launch`` (GPUs, or CPU processes over gloo).
``--batch-size`` is then the micro-batch over all processes: every process draws the conditions and
noise of the whole micro-batch from the same seeded generator and samples its own contiguous rows;
gradients are averaged over the processes, rewards gathered (the logged reward and DDPO's advantages
use the whole micro-batch; every process's samples count as queries), and only the main process
writes the run folder. N processes with batch B therefore compute what one process with batch B
does, up to floating-point summation order.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import torch
from accelerate import Accelerator
from torch import Tensor
from tqdm.auto import tqdm

from genlab.align.checkpointing import enable_block_checkpointing
from genlab.align.config import AlignConfig, frame_mode, label_list, prompt_list
from genlab.align.export import ADAPTER_DIR, AdapterInfo, export_adapter, load_adapter
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
from genlab.core.paths import output_dir
from genlab.core.runlog import append_log, plot_curve
from genlab.core.train import StopFlag, TrainingInterrupted, make_accelerator, open_run_dir, run_contents
from genlab.errors import GenlabError

RESUMABLE_FIELDS = ("steps", "resume", "checkpoint_every", "keep_checkpoints", "progress", "run_dir", "overwrite")
# what a finished run leaves besides config.json, log.jsonl and checkpoints/ (replaced by a fresh --overwrite run)
RUN_OUTPUTS = (ADAPTER_DIR, "reward.png")
ADAMW_STATE = {"step", "exp_avg", "exp_avg_sq"}  # what AdamW keeps per parameter (amsgrad is not used)


def adamw_state_problem(entries: dict, shapes: list[torch.Size], step: int) -> str | None:
    """What is wrong with a checkpoint's AdamW ``entries`` (``{parameter index: {"step", "exp_avg",
    "exp_avg_sq"}}``) for parameters of ``shapes`` after ``step`` updates; None when nothing is.

    torch checks no shapes when loading an optimiser state, only at the next step, so this does."""
    incomplete = [index for index, entry in entries.items() if not ADAMW_STATE <= set(entry)]
    if incomplete or (step > 0 and shapes and not entries):
        where = f"parameter {incomplete[0]}" if incomplete else "every parameter"
        return f"the optimizer's tensors for {where} are missing"
    if any(index >= len(shapes) for index in entries):
        return f"its optimizer state covers {max(entries) + 1} parameters, this run trains {len(shapes)}"
    for index, entry in entries.items():
        for key in ("exp_avg", "exp_avg_sq"):
            found = getattr(entry[key], "shape", None)
            if found != shapes[index]:
                return (f"the optimizer's {key} of parameter {index} has shape "
                        f"{tuple(found) if found is not None else type(entry[key]).__name__}, "
                        f"the parameter {tuple(shapes[index])}")
    return None


@dataclass
class AlignResult:
    """The end of a run: updates done, reward queries used, the last batch's mean reward, the folder,
    and one line on the exported adapter and how to load it (empty on processes other than the main one)."""

    steps: int
    queries: int
    last_reward: float
    run_dir: Path
    adapter_note: str = ""


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
        classes = getattr(target, "num_classes", 0)
        if self.kind == "labels" and self.labels is None:
            if not classes:
                raise GenlabError(f"the {reward.name!r} reward needs class labels: give --labels")
            self.labels = list(range(classes))
        if self.labels is not None and target.condition == "labels" and max(self.labels) >= classes:
            wrong = sorted({label for label in self.labels if label >= classes})
            raise GenlabError(f"--labels {config.labels}: this model has {classes} classes (0..{classes - 1}), so "
                              f"{', '.join(map(str, wrong))} {'is' if len(wrong) == 1 else 'are'} not among them")
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
    """One VADER or DDPO run of ``target`` against ``reward`` (call :meth:`fit`).

    ``accelerator`` (default: :func:`make_accelerator`) says which share of each micro-batch this
    process samples; under ``accelerate launch``, load ``target`` onto ``accelerator.device``.
    """

    def __init__(self, target: AlignTarget, reward: Reward, config: AlignConfig, run_info: dict | None = None,
                 accelerator: Accelerator | None = None):
        config.validate()
        self.accelerator = accelerator or make_accelerator()
        world, rank = self.accelerator.num_processes, self.accelerator.process_index
        if config.batch_size % world:
            raise GenlabError(f"--batch-size {config.batch_size} must be divisible by the {world} processes "
                              "(it is the micro-batch over all of them)")
        share = config.batch_size // world
        self.rows = slice(rank * share, (rank + 1) * share)
        self.target, self.reward, self.config = target, reward.to(target.device), config
        self.conditions = ConditionSampler(target, reward, config)
        self.run_dir = Path(config.run_dir)
        self.run_config = {**asdict(config), "reward": reward.name, **(run_info or {})}
        self.lora_targets = config.lora_target_names(target.lora_targets)
        torch.manual_seed(config.seed)  # peft draws the adapters' A matrices from the global RNG
        self.peft_model = None
        if config.lora:
            self.peft_model = add_lora(target.module, config.lora_rank, self.lora_targets, config.lora_alpha or None)
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
        if self.config.mixed_precision == "bf16":
            return torch.autocast(self.target.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def _share(self, batch):
        """This process's rows of a global micro-batch (a tensor or a list; None stays None)."""
        return None if batch is None else batch[self.rows]

    def _micro_batch(self, step: int, micro: int) -> tuple[torch.Generator, dict, list | None, Tensor | None, Tensor]:
        """Seeded conditions and noise ``[b, ...]`` of this process's share of micro-batch ``micro`` of
        update ``step`` (reproducible on resume; the generator draws the whole micro-batch)."""
        generator = torch.Generator().manual_seed(self.config.seed * 1_000_003 + step * 1009 + micro)
        prompts, labels = self.conditions.draw(self.config.batch_size, generator)
        prompts, labels = self._share(prompts), self._share(labels)
        noise = self._share(torch.randn(self.target.state_shape(self.config.batch_size), generator=generator))
        cond = self.target.encode_condition(prompts if self.conditions.to_model else None,
                                            labels if self.conditions.to_model else None)
        return generator, cond, prompts, labels, noise.to(self.target.device)

    def _step_noise(self, generator: torch.Generator) -> Tensor:
        """The sampler's per-step noise ``[steps, b, ...]``: this process's rows of the micro-batch's draw."""
        shape = (self.config.sampling_steps, *self.target.state_shape(self.config.batch_size))
        return torch.randn(shape, generator=generator)[:, self.rows]

    def _rewards(self, x0: Tensor, prompts, labels, generator: torch.Generator, step: int) -> tuple[Tensor, Tensor]:
        """Decode (only the scored frames of videos) and score this process's samples: their rewards
        ``[b]`` and every process's ``[B]`` (counted as queries, checked for finiteness)."""
        frames = None
        if self.target.modality == "video":
            frames = choose_frames(self.target.state_shape(1)[1], self.config.score_frames, generator)
        samples = self.target.decode(x0, frames)
        labels = labels.to(samples.device) if labels is not None and self.conditions.to_reward else None
        scores = score_samples(self.reward, samples, prompts if self.conditions.to_reward else None, labels)
        every = self.accelerator.gather(scores.detach())
        self.queries += every.shape[0]
        if not torch.isfinite(every).all():
            kept = latest_checkpoint(self.run_dir / "checkpoints")
            where = f"the last good checkpoint stays in {kept}" if kept else "no checkpoint had been written yet"
            raise GenlabError(f"the {self.reward.name!r} reward returned non-finite values at update {step + 1}; "
                              f"stopped without saving ({where})")
        return scores, every

    def _denoise_fn(self, cond: dict):
        return partial(self.target.denoise, cond=cond)

    # -- the two updates ------------------------------------------------------------------------
    def vader_update(self, step: int) -> tuple[float, float]:
        """One VADER update: ``loss = −mean reward``, gradients through the last K steps only."""
        config, rewards = self.config, []
        for micro in range(config.accumulate):
            generator, cond, prompts, labels, noise = self._micro_batch(step, micro)
            k = int(torch.randint(1, config.k + 1, (1,), generator=generator)) if config.random_k else config.k
            x0, _ = sample_for_reward(self._denoise_fn(cond), noise, self.sigmas, config.eta, k,
                                      step_noise=self._step_noise(generator), autocast=self.autocast)
            scores, every = self._rewards(x0, prompts, labels, generator, step)
            (-scores.mean() / config.accumulate).backward()
            rewards.append(every)
        return self._apply_gradients(), float(torch.cat(rewards).mean())

    def ddpo_update(self, step: int) -> tuple[float, float]:
        """One DDPO update: sample trajectories without a graph, normalise rewards into advantages,
        then PPO-clip the probability ratio of every stochastic step (Black et al., 2023)."""
        config, batches = self.config, []
        with torch.no_grad():
            for micro in range(config.accumulate):
                generator, cond, prompts, labels, noise = self._micro_batch(step, micro)
                x0, trajectory = sample_for_reward(self._denoise_fn(cond), noise, self.sigmas, config.eta, 0,
                                                   step_noise=self._step_noise(generator), record_trajectory=True,
                                                   autocast=self.autocast)
                batches.append((cond, trajectory, *self._rewards(x0, prompts, labels, generator, step)))
        all_rewards = torch.cat([b[3] for b in batches])
        mean, std = all_rewards.mean(), all_rewards.std().clamp_min(1e-6) if len(all_rewards) > 1 else 1.0
        for _ in range(config.ddpo_epochs):
            for cond, trajectory, scores, _ in batches:
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
        self._average_gradients()
        grad_norm = float("nan")
        if self.config.grad_clip > 0:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.parameters, self.config.grad_clip))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return grad_norm

    def _average_gradients(self) -> None:
        """Data parallelism: replace every process's gradients by their mean over the processes (one
        all-reduce of all of them; every process has gradients for the same parameters)."""
        params = [p for p in self.parameters if p.grad is not None]
        if self.accelerator.num_processes == 1 or not params:
            return
        mean = self.accelerator.reduce(torch.cat([p.grad.flatten() for p in params]), reduction="mean")
        for parameter, grad in zip(params, mean.split([p.numel() for p in params]), strict=True):
            parameter.grad = grad.view_as(parameter)

    # -- the loop -------------------------------------------------------------------------------
    def fit(self) -> AlignResult:
        """Run (or, with ``resume``, continue) to ``config.steps`` updates."""
        config = self.config
        start = self._prepare_run_dir()
        update = self.vader_update if config.method == "vader" else self.ddpo_update
        self.target.module.train()
        main = self.accelerator.is_main_process
        progress = tqdm(total=config.steps, initial=start, desc=f"{config.method} {self.reward.name}",
                        disable=not (config.progress and main), dynamic_ncols=True)
        reward = float("nan")
        with StopFlag() as stop:
            for step in range(start, config.steps):
                began = time.perf_counter()
                grad_norm, reward = update(step)
                self.seconds += time.perf_counter() - began
                record = {"step": step + 1, "reward": reward, "queries": self.queries,
                          "seconds": round(self.seconds, 3)}
                if math.isfinite(grad_norm):
                    record["grad_norm"] = grad_norm
                if main:
                    append_log(self.run_dir / "log.jsonl", record)
                progress.update(1)
                progress.set_postfix(reward=f"{reward:.4f}", queries=self.queries)
                if step + 1 < config.steps and self._stop_requested(stop):
                    # Ctrl-C / SIGTERM: the update is finished; save it, then stop (--resume continues exactly)
                    self._save_checkpoint(step + 1)
                    progress.close()
                    self.accelerator.wait_for_everyone()  # no process exits before the checkpoint is written
                    raise TrainingInterrupted(
                        f"{stop.signal_name or 'a stop signal'} at update {step + 1} of {config.steps}: checkpoint "
                        f"saved in {self.run_dir / 'checkpoints'}; continue with --resume")
                if (step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps:
                    self._save_checkpoint(step + 1)
        progress.close()
        self.target.module.eval()
        note = ""
        if main:
            note = self.save_adapter()
            plot_curve(self.run_dir / "log.jsonl", self.run_dir / "reward.png", "queries", "reward",
                       f"{config.method}: {self.reward.name}", x_label="reward queries", y_label="mean reward")
        self.accelerator.wait_for_everyone()
        return AlignResult(max(start, config.steps), self.queries, reward, self.run_dir, note)

    def _stop_requested(self, stop: StopFlag) -> bool:
        """Whether any process got SIGINT/SIGTERM (all processes stop after the same update)."""
        asked = stop.signal_name is not None
        if self.accelerator.num_processes == 1:
            return asked
        votes = torch.tensor([float(asked)], device=self.accelerator.device)
        return bool(self.accelerator.reduce(votes, reduction="sum").item() > 0)

    def _prepare_run_dir(self) -> int:
        """Create or reopen the run folder; the update to start from (state loaded on ``--resume``).

        Besides what :func:`~genlab.core.train.open_run_dir` checks and replaces, a fresh run refuses a
        folder holding an alignment run's adapter/ or reward.png unless ``--overwrite``, which removes them."""
        config, main = self.config, self.accelerator.is_main_process
        if main:
            output_dir(self.run_dir, "--run-dir")
        self.accelerator.wait_for_everyone()
        outputs = [self.run_dir / name for name in RUN_OUTPUTS if os.path.lexists(self.run_dir / name)]
        if not config.resume and not config.overwrite and outputs and not run_contents(self.run_dir):
            raise GenlabError(f"run folder {self.run_dir} already holds a run's {outputs[0].name}; pass --overwrite "
                              "to replace it, or choose another --run-dir")
        loaded = open_run_dir(self.run_dir, config.resume, self.run_config, RESUMABLE_FIELDS, write=main,
                              overwrite=config.overwrite)
        if loaded is None and main:
            for stale in outputs:  # --overwrite: what the old run left must not pass for this run's
                if stale.is_dir() and not stale.is_symlink():
                    shutil.rmtree(stale)
                else:
                    stale.unlink()
        self.accelerator.wait_for_everyone()
        if loaded is None:
            return 0
        return self._load_state(*loaded)

    def _load_state(self, tensors: dict, state: dict, checkpoint: Path) -> int:
        """Put the checkpoint's weights, optimiser state and counters in place; the update it ends.

        A checkpoint whose optimiser tensors are missing or incomplete is refused: resuming with a fresh
        AdamW state would silently make another run than the uninterrupted one."""
        def corrupt(problem: str) -> GenlabError:
            return GenlabError(f"checkpoint {checkpoint} is incomplete or corrupt: {problem}; resume from an intact "
                               "checkpoint, or start afresh with --overwrite")

        for stem in ("weights", "optimizer"):
            if stem not in tensors:
                raise corrupt(f"{stem}.safetensors is missing")
        try:
            step, queries, seconds = int(state["step"]), int(state["queries"]), float(state["seconds"])
            optimizer_state = unflatten_optimizer_state(tensors["optimizer"], state["optimizer"])
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise corrupt(f"state.json lacks or mangles {error}") from error
        problem = adamw_state_problem(optimizer_state["state"], [p.shape for p in self.parameters], step)
        if problem:
            raise corrupt(problem)
        load_trainable_state(self.target.module, tensors["weights"], self.config.lora)
        try:
            self.optimizer.load_state_dict(optimizer_state)
        except (KeyError, RuntimeError, ValueError) as error:
            message = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise GenlabError(f"checkpoint {checkpoint} does not match this run's optimizer ({message})") from error
        self.queries, self.seconds = queries, seconds
        return step

    def _save_checkpoint(self, step: int) -> None:
        if not self.accelerator.is_main_process:
            return
        optimizer_tensors, optimizer_rest = flatten_optimizer_state(self.optimizer.state_dict())
        save_checkpoint(self.run_dir / "checkpoints", step,
                        {"weights": trainable_state(self.target.module, self.config.lora),
                         "optimizer": optimizer_tensors},
                        {"config": self.run_config, "optimizer": optimizer_rest, "queries": self.queries,
                         "seconds": self.seconds},
                        keep=self.config.keep_checkpoints)

    def save_adapter(self) -> str:
        """Write the trained weights to ``<run_dir>/adapter`` (see :func:`~genlab.align.export.export_adapter`);
        returns the line on how to load them."""
        info = AdapterInfo(self.config.lora_rank, self.config.lora_alpha or self.config.lora_rank,
                           tuple(self.lora_targets), self.reward.name, self.run_config.get("model"))
        return export_adapter(self.target, self.peft_model, self.run_dir / ADAPTER_DIR, info)


def apply_adapter(target: AlignTarget, run_dir: Path | str) -> AlignTarget:
    """Load the weights of a finished run (its folder or its ``adapter/``) into ``target`` in place."""
    load_adapter(target.module, run_dir)
    return target
