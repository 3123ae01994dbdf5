"""iVideoGPT-style world models (Wu et al. 2024). Landed so far: environment, data, tokenizers.

:mod:`.env` is a small interactive gymnasium environment; :mod:`.dataset` generates and reads
episode shards; :mod:`.tokenizer` holds the compressive and per-frame video tokenizers,
:mod:`.perceptual` the feature net of their perceptual loss and :mod:`.training` their training.
The action-conditioned transformer, the interactive API and planning are still to come.
"""

from genlab.worldmodel.env import PushBlockEnv, scripted_action

__all__ = ["PushBlockEnv", "scripted_action"]
