"""Seeded random draws for the guidance terms (ICG's independent conditions, TSG's embedding noise).

Every draw of genlab's guidance comes from an explicit ``torch.Generator``, so a seeded run is
reproducible and does not depend on what else used torch's global RNG before it. The guidance
generator lives on the CPU (draws are small: labels, tokens, embeddings) and each draw is moved
to the device of the tensor it replaces, so the same seed gives the same draws on any device.
``generator=None`` falls back to torch's global RNG, as torch's own functions do.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch
from torch import Tensor

_MASK = 2**64 - 1


def guidance_seed(seed: int) -> int:
    """The seed of the guidance generator for sampling seed ``seed``.

    A fixed bijective mix of ``seed`` (an odd multiplier plus an offset, modulo 2^64), so the guidance
    draws are not the same numbers as the initial noise drawn from ``Generator().manual_seed(seed)``,
    while different seeds still give different guidance draws.
    """
    return (int(seed) * 0x9E3779B97F4A7C15 + 0x6A09E667F3BCC909) & _MASK


def guidance_generator(seed: int) -> torch.Generator:
    """A CPU generator seeded by :func:`guidance_seed` (``seed``)."""
    return torch.Generator().manual_seed(guidance_seed(seed))


def _draw_device(generator: torch.Generator | None, device: torch.device) -> torch.device:
    return generator.device if generator is not None else device


def randn(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device,
          dtype: torch.dtype = torch.float32) -> Tensor:
    """Standard normal ``shape`` on ``device``, drawn from ``generator`` (on its own device)."""
    return torch.randn(shape, generator=generator, device=_draw_device(generator, device), dtype=dtype).to(device)


def randint(high: int, shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device,
            dtype: torch.dtype = torch.long) -> Tensor:
    """Uniform integers in ``[0, high)`` shaped ``shape`` on ``device``, drawn from ``generator``."""
    return torch.randint(0, high, shape, generator=generator, device=_draw_device(generator, device),
                         dtype=dtype).to(device)


def takes_generator(maker: Callable) -> bool:
    """Whether ``maker`` accepts a ``generator=`` keyword (genlab's makers do; a user's lambda may not)."""
    try:
        parameters = inspect.signature(maker).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "generator" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
               or p.kind == p.VAR_KEYWORD for p in parameters)


def call_maker(maker: Callable, condition, generator: torch.Generator | None):
    """``maker(condition, generator=generator)`` if the maker takes a generator, else ``maker(condition)``."""
    if generator is not None and takes_generator(maker):
        return maker(condition, generator=generator)
    return maker(condition)
