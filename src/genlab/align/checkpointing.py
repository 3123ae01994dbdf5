"""Gradient checkpointing block by block: recompute each block's activations in the backward pass.

Checkpointing a whole denoiser call saves nothing (the backward pass recomputes, and so holds, all
of its activations at once); checkpointing each block keeps only one block's activations alive
plus the block inputs. diffusers models use their own switch; genlab's nets get their blocks wrapped.
"""

from __future__ import annotations

from functools import partial

from torch import nn
from torch.utils.checkpoint import checkpoint


def _innermost_blocks(module: nn.Module) -> list[nn.Module]:
    """Children of ``nn.ModuleList``s that hold no ``ModuleList`` themselves (transformer/res blocks)."""
    blocks = []
    for child in module.modules():
        if isinstance(child, nn.ModuleList):
            blocks += [b for b in child if not any(isinstance(m, nn.ModuleList) for m in b.modules())]
    return blocks


def enable_block_checkpointing(module: nn.Module) -> int:
    """Switch on per-block gradient checkpointing in ``module``; returns the number of blocks wrapped
    (0 for diffusers models, which checkpoint their own blocks while in training mode)."""
    if getattr(module, "_supports_gradient_checkpointing", False):
        module.enable_gradient_checkpointing()
        return 0
    blocks = _innermost_blocks(module)
    for block in blocks:
        block.forward = partial(checkpoint, block.forward, use_reentrant=False)
    return len(blocks)
