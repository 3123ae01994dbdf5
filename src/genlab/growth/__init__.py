"""Model growth for language-model pre-training ("Stacking Your Transformers", Du et al. 2024).

:func:`grow` applies one of the four growth operators (G_direct/G_stack, G_learn, G_zero,
G_random) depthwise or widthwise to a Hugging Face ``LlamaForCausalLM`` or ``GPT2LMHeadModel``;
:mod:`.timing` holds the paper's growth-timing law and FLOP counting; :mod:`.corpus` and
:mod:`.lm` the download-free testbed behind ``genlab reproduce growth``.
"""

from genlab.growth.architectures import ARCHITECTURES, architecture_of
from genlab.growth.operators import OPERATORS, Grown, canonical_operator, grow
from genlab.growth.ramp import GrowthRamp

__all__ = ["ARCHITECTURES", "OPERATORS", "Grown", "GrowthRamp", "architecture_of", "canonical_operator", "grow"]
