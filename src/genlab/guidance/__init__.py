"""Training-free guidance: CFG, ICG (independent condition guidance) and TSG (time-step guidance).

``GuidedDenoiser`` wraps any genlab denoiser (or a diffusers model through
:class:`~genlab.core.denoiser.DiffusersDenoiser`), so every genlab sampler can use it; see
:mod:`genlab.guidance.guided` for the formula and :mod:`genlab.guidance.tsg` for the hook.
"""

from genlab.guidance.conditions import (
    fixed_embedding,
    gaussian_embedding,
    null_class,
    random_class,
    random_tokens,
)
from genlab.guidance.guided import (
    GUIDANCE_CHOICES,
    GuidanceTerm,
    GuidedDenoiser,
    guide_class_model,
    parse_guidance,
)
from genlab.guidance.tsg import perturbed_time_embedding, time_embedding_modules

__all__ = [
    "GUIDANCE_CHOICES",
    "GuidanceTerm",
    "GuidedDenoiser",
    "fixed_embedding",
    "gaussian_embedding",
    "guide_class_model",
    "null_class",
    "parse_guidance",
    "perturbed_time_embedding",
    "random_class",
    "random_tokens",
    "time_embedding_modules",
]
