"""Training-free guidance: CFG, ICG (independent condition guidance) and TSG (time-step guidance).

``GuidedDenoiser`` wraps any genlab denoiser (or a diffusers model through
:class:`~genlab.core.denoiser.DiffusersDenoiser`), so every genlab sampler can use it; see
:mod:`genlab.guidance.guided` for the formula (CFG's guided prediction and null conditions, which
it builds on, are in :mod:`genlab.core.cfg`) and :mod:`genlab.guidance.tsg` for the hook.
"""

from genlab.lazy import lazy_exports

GUIDANCE_CHOICES = ("none", "cfg", "icg", "tsg", "icg+tsg")  # the values of ``--guidance`` (see parse_guidance)

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".conditions": ("gaussian_embedding", "random_class", "random_tokens"),
    ".guided": ("GuidanceTerm", "GuidedDenoiser", "cfg_warning", "guide_class_model", "parse_guidance"),
    ".tsg": ("perturbed_time_embedding", "time_embedding_modules"),
})
__all__ = ["GUIDANCE_CHOICES", *__all__]
