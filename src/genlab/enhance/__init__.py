"""VEnhancer: generative space-time super-resolution with a video ControlNet.

* ``degradation``: space-time down-sampling, the key-frame hint and mask, trilinear up-sampling.
* ``controlnet``: the branch, a trainable copy of the base video DiT's first blocks.
* ``model``: the ControlNet enhancer (base frozen) and the L2 regression baseline; save/load.
* ``windows``: overlapping space-time windows (chunks and tiles) blended at every step.
* ``inference``: ``enhance_video``, any length and frame size under a memory budget.
* ``training``: ``genlab train enhance``.
"""

from genlab.enhance.controlnet import EnhanceControlNet
from genlab.enhance.degradation import degrade, key_frame_hint, key_frame_mask, trilinear_upsample
from genlab.enhance.inference import EnhanceSettings, enhance_video
from genlab.enhance.model import ControlNetEnhancer, RegressionEnhancer, load_enhancer, save_enhancer
from genlab.enhance.training import EnhanceConfig, train_enhancer
from genlab.enhance.windows import WindowedDenoiser, apply_in_windows

__all__ = [
    "ControlNetEnhancer",
    "EnhanceConfig",
    "EnhanceControlNet",
    "EnhanceSettings",
    "RegressionEnhancer",
    "WindowedDenoiser",
    "apply_in_windows",
    "degrade",
    "enhance_video",
    "key_frame_hint",
    "key_frame_mask",
    "load_enhancer",
    "save_enhancer",
    "train_enhancer",
    "trilinear_upsample",
]
