"""When to grow, and what training costs: the paper's growth-timing law and FLOP counting.

FLOPs follow Kaplan et al.: a forward pass costs ``2·N_matmul + 2·L·T·d_attn`` per token
(``N_matmul`` the weights used in matrix products — every layer matrix plus the LM head, not the
embedding lookups; ``T`` the sequence length; causal attention averages ``T/2`` keys, counted for
both the score and the value product), and training costs three forward passes.
"""

from __future__ import annotations

import math

import torch
from transformers import AutoModelForCausalLM, PretrainedConfig

from genlab.errors import GenlabError
from genlab.growth.architectures import FIXED, HIDDEN_OUT, architecture_of


def recommended_growth_tokens(num_params: float, compute_flops: float) -> float:
    """Tokens ``d`` to train the small model before growing (Du et al. 2024, eq. fitted on LLaMA runs).

    ``log10 d = 0.88·log10 N + 163.27 / log10 C − 5.74`` with ``N`` the target model's
    parameters and ``C`` its total training FLOPs. Fitted for 410M–7B models and C ≈ 1e20–1e22;
    far outside that range it is an extrapolation.
    """
    if num_params <= 1 or compute_flops <= 10:
        raise GenlabError(f"need num_params > 1 and compute_flops > 10, got {num_params}, {compute_flops}")
    return 10 ** (0.88 * math.log10(num_params) + 163.27 / math.log10(compute_flops) - 5.74)


def matmul_parameters(config: PretrainedConfig) -> int:
    """Weights used in matrix products per token: every layer matrix and the LM head (tied or not)."""
    arch = architecture_of(config)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    # remove_duplicate=False lists a tied LM head under its own name, so it is counted here too
    return sum(p.numel() for name, p in model.named_parameters(remove_duplicate=False)
               if p.dim() == 2 and arch.axes(name) != (FIXED, HIDDEN_OUT))


def training_flops_per_token(config: PretrainedConfig, seq_len: int) -> float:
    """Training FLOPs per token (forward + backward = 3 forward passes) at context length ``seq_len``."""
    arch = architecture_of(config)
    attention = 2 * arch.num_layers(config) * seq_len * arch.dims(config)["q"]
    return 3 * (2 * matmul_parameters(config) + attention)
