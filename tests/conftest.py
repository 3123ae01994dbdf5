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
