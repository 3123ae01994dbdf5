"""Test-wide settings: one CPU thread per test process.

The suite runs as two pytest-xdist workers on two cores; tiny tensors are fastest on one thread
and two workers with two threads each would fight over the cores. Subprocesses started by
tests (CLI, accelerate launch) inherit OMP_NUM_THREADS.
"""

import os

import pytest
import torch

from genlab.cli import main

os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)


@pytest.fixture
def run_cli(capsys):
    """Run ``genlab ARGS...`` in-process: ``(exit status, stdout, stderr)``."""

    def run(*args: str) -> tuple[int, str, str]:
        try:
            main(list(args))
            code = 0
        except SystemExit as exit_:
            code = exit_.code or 0
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


TINY_TOKENIZER = dict(frame_size=32, context_grid=8, future_grid=2, channels=16, code_dim=8, context_codes=32,
                      future_codes=16, num_heads=2)
TINY_TRANSFORMER = dict(context_tokens=64, future_tokens=4, future_frames=2, context_codes=32, future_codes=16,
                        hidden_size=32, num_layers=2, num_heads=2)


def randomise_action_projection(model):
    """Give a world-model transformer's zero-initialised action projection random weights (as if trained)."""
    for parameter in model.action_projection.parameters():
        torch.nn.init.normal_(parameter)


@pytest.fixture
def tiny_world_model():
    """An untrained 32-px world model (greedy sampling) whose actions matter."""
    from genlab.worldmodel.model import WorldModel
    from genlab.worldmodel.tokenizer import VideoTokenizer
    from genlab.worldmodel.transformer import WorldModelTransformer

    torch.manual_seed(0)
    transformer = WorldModelTransformer(**TINY_TRANSFORMER)
    randomise_action_projection(transformer)
    return WorldModel(VideoTokenizer(**TINY_TOKENIZER), transformer, top_k=1)
