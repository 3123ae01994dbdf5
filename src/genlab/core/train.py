"""One training loop for every genlab model, on accelerate.

It handles what all methods share: data order, optimiser with warm-up, gradient clipping, mixed
precision, an exponential moving average (EMA) of the weights, periodic and final checkpoints,
exact resume, a progress bar, ``log.jsonl`` and a loss-curve PNG, NaN detection, and Ctrl-C /
SIGTERM (finish the step, save, stop). The method supplies the model and a loss function.

Exactness: the data order and all randomness of step ``s`` are functions of ``(seed, s, rank)``,
and optimiser/EMA state is checkpointed, so N steps + resume + N steps equals 2N steps.
Multi-process: run the same command under ``accelerate launch``; every process takes its
share of the global batch and gradients are averaged (``batch_size`` is the global batch).
A step on N processes is therefore the single-process step on the whole global batch whose loss
is the mean of :meth:`Trainer.share_loss` over the N shares, share ``r`` with the randomness of
``(seed, step, r)``: same data, same first-step loss and gradient. The noise of a share is drawn
per process, so a one-process run of the same command draws other noise and matches the N-process
run in distribution, not bit for bit (layers with batch statistics, such as BatchNorm, also
normalise per share).
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, PartialState
from accelerate.utils import extract_model_from_parallel
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from genlab.core.checkpoint import (
    LATEST,
    STEP_NAME,
    TRASH_PREFIX,
    discard,
    flatten_optimizer_state,
    latest_checkpoint,
    load_checkpoint,
    os_reason,
    require_parts,
    save_checkpoint,
    unflatten_optimizer_state,
    write_json_atomic,
)
from genlab.core.config import LoopConfig
from genlab.core.paths import same_path
from genlab.core.runlog import append_log, plot_loss_curve, reset_log, truncate_log
from genlab.errors import GenlabError

LossFn = Callable[[nn.Module, tuple], torch.Tensor]


def main_process_first():
    """A context whose block the main process runs first and the other processes after it (e.g. to make a
    file that all of them read); a no-op in a single process."""
    # the processes as the Trainer's Accelerator sees them: plain PartialState() would see none on a
    # CPU-only machine and make every process a lone main one
    return PartialState(cpu=not torch.cuda.is_available()).main_process_first()


def wait_for_every_process() -> None:
    """Wait until every process of this run gets here (a no-op in a single process)."""
    PartialState(cpu=not torch.cuda.is_available()).wait_for_everyone()


def make_accelerator(mixed_precision: str = "no") -> Accelerator:
    """This process's accelerator: data-parallel under ``accelerate launch`` (GPUs, or CPU processes over
    gloo without them), a plain single process otherwise."""
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        # accelerate keeps one process-wide state that fixes the precision of the first run;
        # reset it so that several single-process runs (demo parts, tests) can share a process.
        AcceleratorState._reset_state(reset_partial_state=True)
    return Accelerator(mixed_precision=mixed_precision, cpu=not torch.cuda.is_available())


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside the data-parallel wrapper that a loss function gets in multi-process training.

    Read attributes (``.net``, ``.variant``, ...) from it; but compute everything that trains by
    calling the wrapper itself, whose ``forward`` is what averages the gradients across processes.
    """
    return extract_model_from_parallel(model)


RUN_FILES = ("config.json", "log.jsonl", "loss.png", "model")  # besides checkpoints/ with checkpoints in it
REPLACED_ON_OVERWRITE = ("checkpoints", "model", "loss.png")  # config.json and log.jsonl are rewritten


def run_contents(run_dir: Path) -> list[str]:
    """What of a run ``run_dir`` already holds: the names of :data:`RUN_FILES` present (folders with a
    trailing ``/``) and ``checkpoints/`` if that holds any checkpoint (or a ``latest`` pointer)."""
    run_dir = Path(run_dir)
    found = [name + "/" * (run_dir / name).is_dir() for name in RUN_FILES if os.path.lexists(run_dir / name)]
    checkpoints = run_dir / "checkpoints"
    try:
        if checkpoints.is_dir() and any(STEP_NAME.fullmatch(p.name) or p.name == LATEST
                                        for p in checkpoints.iterdir()):
            found.append("checkpoints/")
    except OSError:
        found.append("checkpoints/")
    return found


def _same_setting(saved, current) -> bool:
    """Whether a saved config value and the current one agree: equal, or two texts naming the same existing
    file or folder (a relative and an absolute ``--data``)."""
    if saved == current:
        return True
    if isinstance(saved, str) and isinstance(current, str) and saved and current:
        try:
            return os.path.exists(saved) and os.path.exists(current) and same_path(saved, current)
        except (OSError, ValueError, RuntimeError):
            return False
    return False


def _replace_previous_run(run_dir: Path) -> None:
    """Remove the files of the run that ``--overwrite`` replaces (so no later ``--resume`` finds its
    checkpoints, nor anyone its model), each renamed away first so that a kill leaves none half-deleted."""
    for name in REPLACED_ON_OVERWRITE:  # what an overwrite that was killed left renamed away
        for leftover in run_dir.glob(f"{TRASH_PREFIX}{name}-*"):
            shutil.rmtree(leftover, ignore_errors=True)
    for name in REPLACED_ON_OVERWRITE:
        path = run_dir / name
        if not os.path.lexists(path):
            continue
        try:
            if path.is_dir() and not path.is_symlink():
                discard(path)
                if path.exists():
                    raise OSError(f"{path} could not be moved away")
            else:
                path.unlink()
        except OSError as error:
            raise GenlabError(f"--overwrite: cannot remove {path} of the previous run ({os_reason(error)})") from error


def open_run_dir(run_dir: Path, resume: bool, run_config: dict, resumable_fields: tuple[str, ...],
                 write: bool = True, overwrite: bool = False,
                 barrier: Callable[[], object] | None = wait_for_every_process) -> tuple[dict, dict, Path] | None:
    """Start or continue a run in ``run_dir`` (``config.json``, ``checkpoints/``, ``log.jsonl``).

    A fresh run refuses a folder that already holds a run (:func:`run_contents`) unless ``overwrite``, which
    first removes that run's checkpoints, model and loss curve; it writes ``config.json`` and an empty log
    and returns None. A resumed run (``overwrite`` is then ignored) loads the latest checkpoint, refuses
    settings that differ from its saved config (except ``resumable_fields``; texts naming the same existing
    path agree), drops log records after it and returns ``(tensors, state, checkpoint folder)``.
    ``write=False`` (non-main processes, or a check before other work) writes nothing. ``barrier`` is called
    between the checks and the writes on every process (by default :func:`wait_for_every_process`), so that
    no process checks a folder that the main one has already started writing.
    """
    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=run_dir).close()
    except OSError as error:
        raise GenlabError(f"run folder {run_dir} is not writable ({error.strerror})") from error
    if resume:
        return _continue_run(run_dir, run_config, resumable_fields, write, barrier)
    found = run_contents(run_dir)
    if found and not overwrite:
        raise GenlabError(f"run folder {run_dir} already holds a run ({', '.join(found)}); pass --resume to "
                          "continue it, --overwrite to replace it, or choose another --run-dir")
    if barrier is not None:
        barrier()
    if write:
        if found:
            _replace_previous_run(run_dir)
        write_json_atomic(run_dir / "config.json", run_config)
        reset_log(run_dir / "log.jsonl")
    return None


def _continue_run(run_dir: Path, run_config: dict, resumable_fields: tuple[str, ...], write: bool,
                  barrier: Callable[[], object] | None) -> tuple[dict, dict, Path]:
    """The resuming half of :func:`open_run_dir`: latest checkpoint, settings check, log truncation."""
    checkpoint = latest_checkpoint(run_dir / "checkpoints")
    if checkpoint is None:
        raise GenlabError(f"--resume: no checkpoint found in {run_dir / 'checkpoints'}")
    tensors, state = load_checkpoint(checkpoint)
    saved = state.get("config", {})
    if not isinstance(saved, dict):
        raise GenlabError(f"{checkpoint / 'state.json'} is corrupt: 'config' should be a JSON object")
    changed = [k for k, v in run_config.items()
               if k not in resumable_fields and k in saved and not _same_setting(saved[k], v)]
    if changed:
        details = ", ".join(f"{k}: {saved[k]!r} -> {run_config[k]!r}" for k in changed)
        raise GenlabError(f"--resume with settings that differ from the checkpoint ({details})")
    if barrier is not None:
        barrier()
    if write:
        truncate_log(run_dir / "log.jsonl", state["step"])
        write_json_atomic(run_dir / "config.json", run_config)
    return tensors, state, checkpoint


class TrainingInterrupted(GenlabError):
    """Training stopped on Ctrl-C / SIGTERM after saving a checkpoint."""

    exit_code = 130


class StepBatchSampler(Sampler[list[int]]):
    """Yields this process's share of the global batch for steps ``start_step .. end_step - 1``.

    The global batch of step ``s`` covers positions ``s·B .. (s+1)·B − 1`` of an endless
    sequence of epochs, each a permutation of the data set drawn from ``(seed, epoch)``;
    process ``rank`` of ``world`` takes every ``world``-th index of it.
    """

    def __init__(self, dataset_size: int, global_batch: int, seed: int, start_step: int, end_step: int,
                 rank: int = 0, world: int = 1):
        if global_batch % world:
            raise GenlabError(f"--batch-size {global_batch} must be divisible by the {world} processes")
        self.size, self.batch, self.seed = dataset_size, global_batch, seed
        self.start, self.end, self.rank, self.world = start_step, end_step, rank, world
        self._epoch, self._order = -1, torch.empty(0, dtype=torch.long)

    def _index(self, position: int) -> int:
        epoch = position // self.size
        if epoch != self._epoch:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._epoch, self._order = epoch, torch.randperm(self.size, generator=generator)
        return int(self._order[position % self.size])

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.end):
            batch = [self._index(p) for p in range(step * self.batch, (step + 1) * self.batch)]
            yield batch[self.rank :: self.world]

    def __len__(self) -> int:
        return max(self.end - self.start, 0)


class ExponentialMovingAverage:
    """EMA of a model's floating-point parameters and buffers, kept in float32."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().clone().float() for k, v in model.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
        current = model.state_dict()
        names = list(self.shadow)
        torch._foreach_lerp_([self.shadow[n] for n in names], [current[n].float() for n in names], 1 - decay)

    def to(self, device: torch.device) -> ExponentialMovingAverage:
        """Keep the averages on ``device`` (the model's)."""
        self.shadow = {k: v.to(device) for k, v in self.shadow.items()}
        return self

    def copy_into(self, model: nn.Module) -> nn.Module:
        """A deep copy of ``model`` carrying the EMA weights."""
        averaged = copy.deepcopy(model)
        state = averaged.state_dict()
        averaged.load_state_dict({k: self.shadow.get(k, v).to(v.dtype) for k, v in state.items()})
        return averaged


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` returns."""

    steps: int
    ema_model: nn.Module
    last_loss: float


class StopFlag:
    """Turns SIGINT/SIGTERM into a flag checked between steps (a second Ctrl-C aborts).

    Inside :meth:`shielded` (a checkpoint being saved) a second Ctrl-C does not abort: it is noted in
    :attr:`deferred` and the save completes, after which the run stops as interrupted (the flag is set), so
    that impatience never leaves a run without its checkpoint.
    """

    def __init__(self):
        self.signal_name: str | None = None
        self.deferred = False
        self._shielded = False
        self._previous: dict[int, object] = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum, frame):
        if self.signal_name is not None and signum == signal.SIGINT:
            if self._shielded:
                self.deferred = True
                return
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(signum).name

    @contextlib.contextmanager
    def shielded(self):
        """A block (the save of a checkpoint) that a second Ctrl-C does not interrupt."""
        outer, self._shielded = self._shielded, True
        try:
            yield self
        finally:
            self._shielded = outer

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class Trainer:
    """Train ``model`` by minimising ``loss_fn(model, batch)`` over ``dataset``.

    Args:
        model: the module to train (its ``state_dict`` is checkpointed).
        loss_fn: ``loss_fn(model, batch) -> scalar``; ``batch`` is the collated dataset items,
            moved to the device. All randomness inside is reproducible (seeded per step). Under
            several processes ``model`` is wrapped for data parallelism: the trained parameters must
            be reached through calls of ``model(...)`` (its ``forward``), attributes through
            :func:`unwrap`.
        dataset: map-style data set.
        run_dir: folder for ``config.json``, ``checkpoints/``, ``log.jsonl``, ``loss.png``.
        config: loop settings.
        run_config: the method's full resolved config, saved to ``config.json`` and checked on
            resume (only the fields in ``RESUMABLE_FIELDS`` may change).
    """

    RESUMABLE_FIELDS = ("steps", "resume", "overwrite", "checkpoint_every", "log_every", "keep_checkpoints",
                        "progress", "num_workers", "run_dir")

    def __init__(self, model: nn.Module, loss_fn: LossFn, dataset: Dataset, run_dir: Path | str,
                 config: LoopConfig, run_config: dict | None = None):
        config.validate()
        self.config = config
        self.run_config = run_config if run_config is not None else asdict(config)
        self.model, self.loss_fn, self.dataset = model, loss_fn, dataset
        self.run_dir = Path(run_dir)
        if config.mixed_precision == "fp16" and not torch.cuda.is_available():
            raise GenlabError("--mixed-precision fp16 needs a GPU; use bf16 (or no) on the CPU")
        self.accelerator = make_accelerator(config.mixed_precision)

    # -- set-up -------------------------------------------------------------------------------
    def _prepare_run_dir(self, resume: bool) -> int:
        """Create the run folder; return the step to start from (loading state on resume)."""
        loaded = open_run_dir(self.run_dir, resume, self.run_config, self.RESUMABLE_FIELDS,
                              write=self.accelerator.is_main_process, overwrite=self.config.overwrite,
                              barrier=self.accelerator.wait_for_everyone)
        if loaded is None:
            return 0
        tensors, state, checkpoint = loaded
        # without the optimiser's moments (or the EMA) the run would go on, but not as it would have
        require_parts(checkpoint, tensors, state, files=("model", "ema", "optimizer"), fields=("optimizer",))
        try:
            self.model.load_state_dict(tensors["model"])
            ema = dict(tensors["ema"])
            wrong = sorted(set(ema) ^ set(self.ema.shadow))
            wrong += [k for k in self.ema.shadow if k in ema and ema[k].shape != self.ema.shadow[k].shape]
            if wrong:
                raise ValueError(f"EMA weights {wrong[:3]} do not fit")
            self.ema.shadow = {k: v.float() for k, v in ema.items()}
            self.optimizer.load_state_dict(unflatten_optimizer_state(tensors["optimizer"], state["optimizer"]))
        except (KeyError, RuntimeError, ValueError, TypeError, AttributeError, IndexError) as error:
            message = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise GenlabError(f"checkpoint {checkpoint} does not match this model ({message})") from error
        return int(state["step"])

    # -- the loop -------------------------------------------------------------------------------
    def fit(self, resume: bool = False) -> TrainResult:
        """Run (or continue) training to ``config.steps``; returns the EMA model and last loss."""
        cfg, accelerator = self.config, self.accelerator
        torch.manual_seed(cfg.seed)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        self.ema = ExponentialMovingAverage(self.model, cfg.ema_decay)
        start = self._prepare_run_dir(resume)
        model, optimizer = accelerator.prepare(self.model, self.optimizer)
        self.ema.to(accelerator.device)
        sampler = StepBatchSampler(len(self.dataset), cfg.batch_size, cfg.seed, start, cfg.steps,
                                   accelerator.process_index, accelerator.num_processes)
        loader = DataLoader(self.dataset, batch_sampler=sampler, num_workers=cfg.num_workers)
        progress = tqdm(total=cfg.steps, initial=start, desc=f"training {self.run_dir.name}",
                        disable=not (cfg.progress and accelerator.is_main_process), dynamic_ncols=True)
        window, last_loss, started = [], float("nan"), time.perf_counter()
        step = start
        with StopFlag() as stop:
            for step, batch in enumerate(loader, start=start):
                loss, grad_norm = self._step(model, optimizer, batch, step)
                window.append(loss)
                last_loss = loss
                progress.update(1)
                done = step + 1
                if done % cfg.log_every == 0 or done == cfg.steps:
                    self._log(done, window, grad_norm, time.perf_counter() - started)
                    progress.set_postfix(loss=f"{sum(window) / len(window):.4f}")
                    window = []
                if stop.signal_name is not None or done % cfg.checkpoint_every == 0 or done == cfg.steps:
                    with stop.shielded():  # a second Ctrl-C waits for the checkpoint
                        self._save(done)
                    if stop.signal_name is not None:  # also when it came during the save
                        progress.close()
                        raise TrainingInterrupted(
                            f"{stop.signal_name} at step {done}: checkpoint saved in "
                            f"{self.run_dir / 'checkpoints'}; continue with --resume"
                        )
        progress.close()
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            plot_loss_curve(self.run_dir / "log.jsonl", self.run_dir / "loss.png")
        return TrainResult(max(step + 1, start), self.ema.copy_into(accelerator.unwrap_model(model)), last_loss)

    def export(self, save: Callable[..., object], *args, **kwargs) -> None:
        """Write the trained model with ``save(*args, **kwargs)`` on the main process only; every process
        returns once it is written (so what runs next, on any process, can read it)."""
        if self.accelerator.is_main_process:
            save(*args, **kwargs)
        self.accelerator.wait_for_everyone()

    def share_loss(self, model: nn.Module, batch, step: int, rank: int) -> torch.Tensor:
        """The loss of process ``rank``'s share ``batch`` of step ``step``'s global batch, randomness
        seeded from ``(seed, step, rank)``."""
        accelerator = self.accelerator
        torch.manual_seed(self.config.seed * 1_000_003 + step * 1009 + rank)
        batch = tuple(b.to(accelerator.device) if isinstance(b, torch.Tensor) else b for b in batch)
        with accelerator.autocast():
            return self.loss_fn(model, batch)

    def _step(self, model: nn.Module, optimizer, batch, step: int) -> tuple[float, float]:
        cfg, accelerator = self.config, self.accelerator
        loss = self.share_loss(model, batch, step, accelerator.process_index)
        if not torch.isfinite(loss):
            raise GenlabError(
                f"loss became {loss.item()} at step {step + 1}; lower --lr or --grad-clip "
                f"(the last good checkpoint stays in {self.run_dir / 'checkpoints'})"
            )
        accelerator.backward(loss)
        grad_norm = float("nan")
        if cfg.grad_clip > 0:
            grad_norm = float(accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip))
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr * min(1.0, (step + 1) / max(cfg.warmup_steps, 1))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        self.ema.update(accelerator.unwrap_model(model), step)
        return float(loss.detach()), grad_norm

    def _log(self, step: int, window: list[float], grad_norm: float, seconds: float) -> None:
        losses = torch.tensor(window, device=self.accelerator.device)
        mean_loss = float(self.accelerator.reduce(losses.mean(), reduction="mean"))
        if self.accelerator.is_main_process:
            record = {"step": step, "loss": mean_loss, "lr": self.optimizer.param_groups[0]["lr"],
                      "seconds": round(seconds, 3)}
            if math.isfinite(grad_norm):
                record["grad_norm"] = grad_norm
            append_log(self.run_dir / "log.jsonl", record)

    def _save(self, step: int) -> None:
        accelerator = self.accelerator
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            optimizer_tensors, optimizer_rest = flatten_optimizer_state(self.optimizer.state_dict())
            save_checkpoint(
                self.run_dir / "checkpoints", step,
                {"model": accelerator.unwrap_model(self.model).state_dict(), "ema": self.ema.shadow,
                 "optimizer": optimizer_tensors},
                {"config": self.run_config, "optimizer": optimizer_rest,
                 "num_processes": accelerator.num_processes},
                keep=self.config.keep_checkpoints,
            )
            plot_loss_curve(self.run_dir / "log.jsonl", self.run_dir / "loss.png")
        accelerator.wait_for_everyone()
