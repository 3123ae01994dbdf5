"""VD3D camera control.

* ``plucker``: Plücker ray embeddings of per-frame cameras (CameraCtrl's ``ray_condition`` convention).
* ``controlnet``: the camera branch and the hooks that add it into a frozen video transformer
  (genlab's ``VideoDiT`` or diffusers' ``CogVideoXTransformer3DModel``).
* ``model``: camera-conditioned denoisers (ControlNet, the naive concat baseline, the camera-blind
  base) and their save/load; ``training``: ``genlab train camera`` (``config``: its settings).
* Trajectories and pose checks are re-exported from ``genlab.data.trajectories``.
"""

from genlab.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".controlnet": ("CameraControlNet", "camera_control"),
    ".model": ("CameraBlindDenoiser", "ConcatCameraDenoiser", "ControlNetCameraDenoiser", "load_camera_model",
               "save_camera_model"),
    ".plucker": ("plucker_embedding",),
    "genlab.data.trajectories": ("TRAJECTORIES", "check_cameras", "look_at", "make_trajectory", "relative_to_first"),
})
