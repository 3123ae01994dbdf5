"""VEnhancer: generative space-time super-resolution with a video ControlNet.

* ``degradation``: space-time down-sampling, the key-frame hint and mask, trilinear up-sampling.
* ``controlnet``: the branch, a trainable copy of the base video DiT's first blocks.
* ``model``: the ControlNet enhancer (base frozen) and the L2 regression baseline; save/load.
* ``windows``: overlapping space-time windows (chunks and tiles) blended at every step.
* ``inference``: ``enhance_video``, any length and frame size under a memory budget.
* ``training``: ``genlab train enhance``; ``config``: its settings and those of ``genlab enhance``.
"""

from genlab.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".config": ("EnhanceConfig", "EnhanceSettings"),
    ".controlnet": ("EnhanceControlNet",),
    ".degradation": ("degrade", "key_frame_hint", "key_frame_mask", "trilinear_upsample"),
    ".inference": ("enhance_video",),
    ".model": ("ControlNetEnhancer", "RegressionEnhancer", "load_enhancer", "save_enhancer"),
    ".training": ("train_enhancer",),
    ".windows": ("WindowedDenoiser", "apply_in_windows"),
})
