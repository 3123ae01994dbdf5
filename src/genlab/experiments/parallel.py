"""Running independent experiment jobs in worker processes (spawned, one CPU thread each)."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence

import torch
from tqdm.auto import tqdm


def _worker_init() -> None:
    torch.set_num_threads(1)


def _call(job: tuple[Callable, tuple]):
    function, arguments = job
    return function(*arguments)


def map_in_processes(function: Callable, arguments: Sequence[tuple], workers: int, desc: str) -> list:
    """``[function(*a) for a in arguments]``, in ``workers`` spawned processes when ``workers > 1``.

    ``function`` must be importable (a module-level function); results come back in order.
    """
    if workers <= 1 or len(arguments) <= 1:
        return [function(*a) for a in tqdm(arguments, desc=desc)]
    pool = multiprocessing.get_context("spawn").Pool(min(workers, len(arguments)), initializer=_worker_init)
    try:
        return list(tqdm(pool.imap(_call, [(function, a) for a in arguments]), total=len(arguments), desc=desc))
    except BaseException:
        pool.terminate()
        raise
    finally:  # close + join lets the workers exit cleanly; terminating them leaks their semaphores
        pool.close()
        pool.join()
