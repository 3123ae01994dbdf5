"""iVideoGPT-style world models (Wu et al. 2024): so far the PushBlock environment and its data.

:mod:`.env` is a small interactive gymnasium environment; :mod:`.dataset` generates and reads
episode shards for training video world models on it.
"""

from genlab.worldmodel.env import PushBlockEnv, scripted_action

__all__ = ["PushBlockEnv", "scripted_action"]
