"""Settings of ``genlab grow``, importable without torch (``genlab --help`` reads them): each field is
one flag (see :func:`genlab.core.config.option`)."""

from __future__ import annotations

from dataclasses import MISSING, dataclass

from genlab.core.config import MAX_SEED, option

GROW_OPERATORS = ("stack", "direct", "learn", "zero", "random")  # the values of ``--operator`` ("stack" = "direct")
GROW_DIRECTIONS = ("depth", "width")
STACK_ORDERS = ("repeat", "interleave")


@dataclass(kw_only=True)
class GrowConfig:
    """What ``genlab grow`` grows, how, and where the grown model goes."""

    model: str = option(MISSING, "folder of a LlamaForCausalLM or GPT2LMHeadModel (save_pretrained)", type=str)
    operator: str = option("stack", "stack = direct: G_stack / neuron splitting; learn: LiGO; zero: "
                           "identity-initialised; random: random new parts blended in by a ramp",
                           choices=GROW_OPERATORS)
    direction: str = option("depth", "more layers, or wider hidden size / heads / MLP", choices=GROW_DIRECTIONS)
    factor: float = option(4.0, "growth factor, > 1 (whole number for depth, stack and learn)", above=1)
    order: str = option("repeat", "stacking order: repeat = 1..L,1..L,…; interleave = 1,1,2,2,…",
                        choices=STACK_ORDERS)
    ramp_steps: int = option(100, "random: optimiser steps over which new parts blend in", min=1)
    learn_steps: int = option(100, "learn: Adam steps on the expansion operators", min=1)
    learn_data: str | None = option(None, "learn: text file to train them on (default: stdlib docstrings)", type=str)
    split_noise: float = option(0.0, "width, stack/learn: zero-sum noise that lets split copies train apart "
                                "(function still exact)", min=0)
    seed: int = option(0, "seed of new random weights", min=0, max=MAX_SEED)
    out: str = option(MISSING, "folder for the grown model (save_pretrained format)", type=str)
    overwrite: bool = option(False, "write into a non-empty --out (files of the same name are replaced; never "
                             "allowed when --out holds --model)", flag=True)
