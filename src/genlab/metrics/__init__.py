"""Sample-quality metrics computed in the feature space of small per-data-set classifiers.

- :func:`evaluate_samples`: FD, precision, recall (and class accuracy) against a test split.
- :func:`frechet_distance`, :func:`precision_recall`: distances between two feature sets.
- :func:`class_accuracy`: share of images the feature net assigns to their intended class.
- :func:`load_feature_net`: the committed feature net of a data set.
- :func:`psnr`, :func:`ssim`: per-image fidelity to a reference.
- :func:`mutual_information`, :func:`entropy`: between discrete variables (codes vs factors), in bits.
- :func:`camera_errors`, :func:`rotation_geodesic_degrees`: how far a video's cameras are from the requested ones;
  :func:`trajectory_discrimination`: whether they are nearer the requested path than every other candidate.
- :class:`PoseEstimator`, :func:`train_pose_estimator`: reads relative camera poses off a video's frames.
"""

from __future__ import annotations

from genlab.metrics.camera_error import (
    PoseEstimator,
    camera_errors,
    rotation_geodesic_degrees,
    train_pose_estimator,
    trajectory_discrimination,
    trajectory_distances,
)
from genlab.metrics.distances import frechet_distance, precision_recall, wasserstein2
from genlab.metrics.evaluate import class_accuracy, evaluate_samples, reference_features
from genlab.metrics.feature_net import FeatureNet, FeatureNetConfig, load_feature_net
from genlab.metrics.image_quality import psnr, ssim
from genlab.metrics.information import entropy, mutual_information

__all__ = [
    "wasserstein2",
    "PoseEstimator",
    "camera_errors",
    "rotation_geodesic_degrees",
    "train_pose_estimator",
    "trajectory_discrimination",
    "trajectory_distances",
    "FeatureNet",
    "FeatureNetConfig",
    "class_accuracy",
    "entropy",
    "evaluate_samples",
    "frechet_distance",
    "load_feature_net",
    "mutual_information",
    "precision_recall",
    "psnr",
    "reference_features",
    "ssim",
]
