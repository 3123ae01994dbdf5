"""Model growth for language-model pre-training ("Stacking Your Transformers", Du et al. 2024).

:func:`grow` applies one of the four growth operators (G_direct/G_stack, G_learn, G_zero,
G_random) depthwise or widthwise to a Hugging Face ``LlamaForCausalLM`` or ``GPT2LMHeadModel``;
:mod:`.timing` holds the paper's growth-timing law and FLOP counting; :mod:`.corpus` and
:mod:`.lm` the download-free testbed behind ``genlab reproduce growth``.
"""

from genlab.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".architectures": ("ARCHITECTURES", "architecture_of"),
    ".operators": ("OPERATORS", "Grown", "canonical_operator", "grow"),
    ".ramp": ("GrowthRamp",),
})
