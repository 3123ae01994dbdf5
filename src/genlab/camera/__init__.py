"""VD3D camera control: Plücker ray embeddings (``plucker``) and camera trajectories (``trajectories``)."""

from genlab.camera.plucker import check_cameras, plucker_embedding, relative_to_first
from genlab.camera.trajectories import TRAJECTORIES, look_at, make_trajectory

__all__ = ["TRAJECTORIES", "check_cameras", "look_at", "make_trajectory", "plucker_embedding", "relative_to_first"]
