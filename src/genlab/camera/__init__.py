"""VD3D camera control.

* ``plucker``: Plücker ray embeddings of per-frame cameras (CameraCtrl's ``ray_condition`` convention).
* ``controlnet``: the camera branch and the hooks that add it into a frozen video transformer
  (genlab's ``VideoDiT`` or diffusers' ``CogVideoXTransformer3DModel``).
* ``model``: camera-conditioned denoisers (ControlNet, the naive concat baseline, the camera-blind
  base) and their save/load; ``training``: ``genlab train camera``.
* Trajectories and pose checks are re-exported from ``genlab.data.trajectories``.
"""

from genlab.camera.controlnet import CameraControlNet, camera_control
from genlab.camera.model import (
    CameraBlindDenoiser,
    ConcatCameraDenoiser,
    ControlNetCameraDenoiser,
    load_camera_model,
    save_camera_model,
)
from genlab.camera.plucker import plucker_embedding
from genlab.data.trajectories import TRAJECTORIES, check_cameras, look_at, make_trajectory, relative_to_first

__all__ = [
    "TRAJECTORIES",
    "CameraBlindDenoiser",
    "CameraControlNet",
    "ConcatCameraDenoiser",
    "ControlNetCameraDenoiser",
    "camera_control",
    "check_cameras",
    "load_camera_model",
    "look_at",
    "make_trajectory",
    "plucker_embedding",
    "relative_to_first",
    "save_camera_model",
]
