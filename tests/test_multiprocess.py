"""Every trainer on two processes (``accelerate launch``, gloo on the CPU) against its single-process equivalent.

One launch runs this file as a script: both processes train every case of ``CASES`` for two tiny
steps, each case through the command line as a user would. A patched ``Trainer._step`` records,
per run folder and process, the step-1 loss and gradient norm, the same two computed in the
process alone on an unwrapped copy of the initial model (the mean of :meth:`Trainer.share_loss`
over both shares, see :mod:`genlab.core.train`), and a digest of the parameters after the last
step. The test then asks: same loss and gradient as the single-process equivalent, and the same
weights on both processes (their gradients were averaged). To add a trainer, add a case (and its
Trainer run folders to ``TRAINER_RUNS`` when they are not just the case's folder).
"""

import copy
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import default_collate

from genlab.core.checkpoint import latest_checkpoint, load_checkpoint
from genlab.core.runlog import read_log
from genlab.core.train import StepBatchSampler, Trainer, unwrap

PROCESSES = 2
LOOP = ("--steps", "2", "--batch-size", "4", "--warmup-steps", "1", "--checkpoint-every", "2", "--no-progress")
VIDEO = ("--clips", "4", "--frames", "4", "--resolution", "8")
TOKENIZER = ("--context-grid", "8", "--future-grid", "2", "--channels", "16", "--num-codes", "32")


def cli(*args: str):
    """A case that runs ``genlab ARGS`` with the tiny loop settings, its run folder named after the case."""

    def run(name: str) -> None:
        from genlab.cli import main

        main([*args, *LOOP, "--run-dir", name])

    return run


def toy(name: str) -> None:
    """The DisCo-Diff 2-D toy (no command of its own: its experiment's training function)."""
    from genlab.disco.toy import ToyDisCo, ring_of_gaussians
    from genlab.experiments.disco.toy import ToyConfig, train_toy

    torch.manual_seed(0)
    points = ring_of_gaussians(64, generator=torch.Generator().manual_seed(0))
    train_toy(ToyDisCo(hidden=16), points, Path(name), ToyConfig(train_steps=2, batch_size=4, hidden=16), seed=0)


def restarting_tokenizer(name: str) -> None:
    """The tokenizer with every code restarted at every step: the codebooks must stay the same on all processes."""
    from genlab.worldmodel.quantizer import VectorQuantizer

    original = VectorQuantizer.__init__
    VectorQuantizer.__init__ = lambda self, *args, **kwargs: original(self, *args, **{**kwargs, "restart_below": 1e6})
    try:
        cli("train", "tokenizer", "--data", "pushblock", *TOKENIZER, "--state-net-steps", "2")(name)
    finally:
        VectorQuantizer.__init__ = original


ALIGN = ("align", "--model", "image/model", "--reward", "brightness", "--steps", "2", "--batch-size", "4",
         "--sampling-steps", "3", "--k", "2", "--lora-rank", "2", "--lr", "0.05", "--no-progress")


def align(name: str) -> None:
    """``genlab align`` (VADER; its own loop, not a Trainer) on the image case's model."""
    from genlab.cli import main

    main([*ALIGN, "--run-dir", name])


CASES = {  # run in this order, in one folder (later cases read earlier runs and the ``pushblock`` shards)
    # first: the tokenizer's perceptual net is made before any Trainer has set up the processes
    "tokenizer": cli("train", "tokenizer", "--data", "pushblock", *TOKENIZER, "--state-net-steps", "2"),
    "tokenizer-restarts": restarting_tokenizer,
    "worldmodel": cli("train", "worldmodel", "--data", "pushblock", "--tokenizer", "tokenizer/model",
                      "--future-frames", "2", "--hidden-size", "32", "--layers", "1", "--heads", "2"),
    "image": cli("train", "image", "--resolution", "8", "--label-dropout", "0.2"),
    "video": cli("train", "video", *VIDEO),
    "video-unconditional": cli("train", "video", *VIDEO, "--no-first-frame", "--data", "mixed"),
    "camera": cli("train", "camera", "--base", "video", "--clips", "4", "--branch-hidden", "16"),
    "camera-concat": cli("train", "camera", "--base", "video", "--clips", "4", "--variant", "concat"),
    "enhance": cli("train", "enhance", "--base", "video-unconditional", "--clips", "4", "--branch-depth", "1"),
    "enhance-regression": cli("train", "enhance", "--base", "video-unconditional", "--clips", "4",
                              "--branch-depth", "1", "--variant", "regression"),
    "disco": cli("train", "disco", "--data", "digits", "--resolution", "8", "--num-latents", "2",
                 "--prior-steps", "2", "--prior-batch-size", "4"),
    "toy": toy,
    "align": align,
}
TRAINER_RUNS = {"disco": ["disco/stage1", "disco/prior"], "align": []}  # a case's Trainer run folders, if not just its own
RUNS = [run for name in CASES for run in TRAINER_RUNS.get(name, [name])]


def share_batch(trainer: Trainer, rank: int) -> list:
    """Process ``rank``'s share of the first global batch, collated."""
    cfg = trainer.config
    sampler = StepBatchSampler(len(trainer.dataset), cfg.batch_size, cfg.seed, 0, 1, rank, PROCESSES)
    return default_collate([trainer.dataset[index] for index in next(iter(sampler))])


def single_process_step(trainer: Trainer, model: torch.nn.Module) -> dict[str, float]:
    """Loss and gradient norm of the first step in this process alone: the mean of the shares' losses,
    each on its own copy of ``model`` (the unwrapped initial model), and the sum of the copies' gradients."""
    copies = [copy.deepcopy(model) for _ in range(PROCESSES)]
    with torch.random.fork_rng():
        loss = torch.stack([trainer.share_loss(share_model, share_batch(trainer, rank), 0, rank)
                            for rank, share_model in enumerate(copies)]).mean()
    loss.backward()
    shared = zip(*(share_model.parameters() for share_model in copies), strict=True)
    grads = [sum(p.grad for p in same) for same in shared if same[0].grad is not None]
    return {"loss": float(loss), "grad_norm": float(torch.nn.utils.get_total_norm(grads))}


def digest(model: torch.nn.Module) -> str:
    """A hash of the parameters' bytes."""
    return hashlib.sha256(b"".join(p.detach().cpu().numpy().tobytes() for p in model.parameters())).hexdigest()


def record_steps(records: dict[str, dict]) -> None:
    """Patch :class:`Trainer` to fill ``records[run folder]`` as the module docstring says."""
    original = Trainer._step

    def step(self, model, optimizer, batch, index):
        initial = copy.deepcopy(unwrap(model)) if index == 0 else None
        loss, grad_norm = original(self, model, optimizer, batch, index)
        record = records.setdefault(self.run_dir.as_posix(), {})
        if initial is not None:
            record.update(loss=loss, grad_norm=grad_norm, single_process=single_process_step(self, initial))
        record["digest"] = digest(unwrap(model))
        return loss, grad_norm

    Trainer._step = step


def run_cases() -> None:
    """The launched script: every case in this process; ``records-<rank>.json`` in the working folder."""
    torch.set_num_threads(1)
    records: dict[str, dict] = {}
    record_steps(records)
    for name, case in CASES.items():
        case(name)
    Path(f"records-{os.environ['RANK']}.json").write_text(json.dumps(records, indent=1))


def mismatches(run: str, processes: list[dict]) -> list[str]:
    """What differs between the processes' records of ``run`` and its single-process equivalent."""
    first, expected = processes[0], processes[0]["single_process"]
    problems = []
    if any(record["digest"] != first["digest"] for record in processes):
        problems.append(f"{run}: the processes' weights differ after the last step (gradients not averaged?)")
    mean_loss = sum(record["loss"] for record in processes) / len(processes)
    if mean_loss != pytest.approx(expected["loss"], rel=1e-5):
        problems.append(f"{run}: step-1 loss {mean_loss} on {PROCESSES} processes, {expected['loss']} in one")
    for record in processes:
        if record["grad_norm"] != pytest.approx(expected["grad_norm"], rel=1e-4):
            problems.append(f"{run}: step-1 gradient norm {record['grad_norm']}, {expected['grad_norm']} in one")
    return problems


@pytest.mark.slow
@pytest.mark.skipif(not Path(sys.executable).with_name("accelerate").exists() and shutil.which("accelerate") is None,
                    reason="accelerate launcher not installed")
def test_every_trainer_on_two_processes_matches_its_single_process_equivalent(tmp_path):
    from genlab.worldmodel.dataset import write_shards

    write_shards(tmp_path / "pushblock", episodes=4, steps=5, size=32, progress=False)
    launcher = Path(sys.executable).with_name("accelerate")
    # accelerate's torchrun launcher (--multi_gpu) also starts CPU processes (gloo)
    result = subprocess.run(
        [str(launcher if launcher.exists() else "accelerate"), "launch", "--multi_gpu", "--num_processes",
         str(PROCESSES), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
         "--main_process_port", "0", __file__],
        cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-5000:]
    reports = [line for line in result.stdout.splitlines() if line.startswith(("trained ", "vader: "))]
    assert len(reports) == len(CASES) - 1, reports  # one final line per command (the toy has none), not per process
    records = [json.loads((tmp_path / f"records-{rank}.json").read_text()) for rank in range(PROCESSES)]
    assert all(set(processes) == set(RUNS) for processes in records)
    problems = [problem for run in RUNS for problem in mismatches(run, [r[run] for r in records])]
    assert not problems, "\n".join(problems)
    assert all(load_checkpoint(latest_checkpoint(tmp_path / run / "checkpoints"))[1]["num_processes"] == PROCESSES
               for run in RUNS)
    assert all((tmp_path / name / "model").is_dir() for name in CASES if name not in ("toy", "align"))
    assert_align_matches_one_process(tmp_path)


def assert_align_matches_one_process(folder: Path) -> None:
    """Each process samples its half of every micro-batch of 4 (rows of the same seeded draw); with the
    gradients averaged, 2 updates give one process's gradient norms, rewards, query counts and adapter.
    (Adam's first steps move by about lr·sign(g), so the adapter alone would hardly notice unaveraged
    gradients; the logged norm of the averaged gradient does.)"""
    from genlab.cli import main

    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.setattr(torch.cuda, "is_available", lambda: False)  # both runs on the CPU, on any machine
        main([*ALIGN, "--run-dir", "align-one"])
    logs = [read_log(folder / run / "log.jsonl") for run in ("align-one", "align")]
    assert [r["queries"] for r in logs[1]] == [r["queries"] for r in logs[0]] == [4, 8]
    for field in ("reward", "grad_norm"):  # the norm of the averaged gradient, before clipping
        assert [r[field] for r in logs[1]] == pytest.approx([r[field] for r in logs[0]], rel=1e-5)
    one, two = (load_file(folder / run / "adapter" / "adapter_model.safetensors") for run in ("align-one", "align"))
    assert one.keys() == two.keys() and any(v.abs().sum() > 0 for k, v in one.items() if "lora_B" in k)
    for key in one:  # the all-reduce sums in another order; Adam's 1/sqrt(v) amplifies that on tiny gradients
        torch.testing.assert_close(two[key], one[key], rtol=1e-4, atol=1e-5)  # 2e-4 of a step of lr 0.05


if __name__ == "__main__":
    run_cases()
