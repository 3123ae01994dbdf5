"""iVideoGPT-style world models (Wu et al. 2024) on a built-in interactive world.

:mod:`.env` is PushBlock, a small gymnasium environment; :mod:`.dataset` generates and reads
episode shards; :mod:`.tokenizer` holds the compressive and per-frame video tokenizers and
:mod:`.perceptual` the feature net of their perceptual loss; :mod:`.transformer` is the
action-conditioned LLaMA with its reward head; :mod:`.model` the interactive
:class:`WorldModel` (reset/step/imagine); :mod:`.planning` CEM model-predictive control;
:mod:`.training` trains the tokenizers and the transformer (settings in :mod:`.config`);
:mod:`.play` drives a world model from the keyboard or an action file.
"""

from genlab.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".env": ("PushBlockEnv", "scripted_action"),
    ".model": ("WorldModel",),
})
