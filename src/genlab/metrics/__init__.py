"""Sample-quality metrics computed in the feature space of small per-data-set classifiers.

- :func:`evaluate_samples`: FD, precision, recall (and class accuracy) against a test split.
- :func:`frechet_distance`, :func:`precision_recall`: distances between two feature sets.
- :func:`class_accuracy`: share of images the feature net assigns to their intended class.
- :func:`load_feature_net`: the committed feature net of a data set.
- :func:`psnr`, :func:`ssim`: per-image fidelity to a reference.
- :func:`mutual_information`, :func:`entropy`: between discrete variables (codes vs factors), in bits.
"""

from __future__ import annotations

from genlab.metrics.distances import frechet_distance, precision_recall, wasserstein2
from genlab.metrics.evaluate import class_accuracy, evaluate_samples, reference_features
from genlab.metrics.feature_net import FeatureNet, FeatureNetConfig, load_feature_net
from genlab.metrics.image_quality import psnr, ssim
from genlab.metrics.information import entropy, mutual_information

__all__ = [
    "wasserstein2",
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
