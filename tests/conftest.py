"""Test-wide settings: one CPU thread per test process.

The suite runs as two pytest-xdist workers on two cores; tiny tensors are fastest on one thread
and two workers with two threads each would fight over the cores. Subprocesses started by
tests (CLI, accelerate launch) inherit OMP_NUM_THREADS.
"""

import os

import torch

os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)
