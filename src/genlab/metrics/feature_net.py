"""Small CNN classifiers whose pooled activations serve as features for sample metrics.

One network per data set; its weights live in ``metrics/weights/<dataset>.safetensors`` with
a ``<dataset>.json`` config, written by ``scripts/train_feature_nets.py``. Two coordinate
channels are appended to the input so that the pooled features can encode where things are.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from genlab.core.checkpoint import json_field, load_weights, read_json
from genlab.data import DATASETS
from genlab.data.base import check_choice
from genlab.errors import GenlabError

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


@dataclass(frozen=True)
class FeatureNetConfig:
    """Architecture of a feature net; ``widths`` are the channels of its conv stages."""

    dataset: str
    channels: int
    resolution: int
    num_classes: int
    widths: tuple[int, ...] = (24, 48, 96)

    @property
    def feature_dim(self) -> int:
        """Length D of the feature vector."""
        return self.widths[-1]


class FeatureNet(nn.Module):
    """Conv stages (conv-BN-ReLU, 2×2 max-pool between) → global mean pool → linear classifier.

    ``features(x)`` maps images ``[B, C, H, W]`` in ``[-1, 1]`` to non-negative features
    ``[B, D]``; calling the net gives class logits ``[B, num_classes]``.
    """

    def __init__(self, config: FeatureNetConfig) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        in_channels = config.channels + 2
        for stage, width in enumerate(config.widths):
            if stage > 0:
                layers.append(nn.MaxPool2d(2))
            layers += [
                nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(),
            ]
            in_channels = width
        self.body = nn.Sequential(*layers)
        self.classifier = nn.Linear(config.feature_dim, config.num_classes)
        ramp = torch.linspace(-1.0, 1.0, config.resolution)
        coords = torch.stack(torch.meshgrid(ramp, ramp, indexing="ij")).unsqueeze(0)
        self.register_buffer("coords", coords, persistent=False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Features ``[B, D]`` (≥ 0) of images ``x`` ``[B, C, H, W]`` in ``[-1, 1]``."""
        self._check_input(x)
        x = x.to(self.coords.dtype)
        stacked = torch.cat([x, self.coords.expand(x.shape[0], -1, -1, -1)], dim=1)
        return self.body(stacked).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``[B, num_classes]`` of images ``x`` ``[B, C, H, W]`` in ``[-1, 1]``."""
        return self.classifier(self.features(x))

    def _check_input(self, x: torch.Tensor) -> None:
        c, r = self.config.channels, self.config.resolution
        expected = f"the {self.config.dataset!r} feature net expects {c}×{r}×{r} images"
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise GenlabError(f"{expected} as a float tensor [B, C, H, W], got {type(x).__name__}")
        if x.ndim != 4:
            raise GenlabError(f"{expected} in a batch [B, C, H, W], got a tensor of shape {tuple(x.shape)}")
        if tuple(x.shape[1:]) != (c, r, r):
            raise GenlabError(f"{expected}, got {'×'.join(str(s) for s in x.shape[1:])}")


def save_feature_net(net: FeatureNet, directory: Path, test_accuracy: float, seed: int) -> Path:
    """Write ``<dataset>.safetensors`` and ``<dataset>.json`` into ``directory``; return the weights path."""
    config = net.config
    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / f"{config.dataset}.safetensors"
    state = {name: tensor.detach().contiguous() for name, tensor in net.state_dict().items()}
    save_file(state, str(weights))
    meta = asdict(config) | {"feature_dim": config.feature_dim, "test_accuracy": test_accuracy, "seed": seed}
    (directory / f"{config.dataset}.json").write_text(json.dumps(meta, indent=2) + "\n")
    return weights


@cache
def load_feature_net(dataset: str) -> FeatureNet:
    """The committed feature net of ``dataset`` in eval mode, frozen, shared between calls."""
    check_choice("dataset", dataset, DATASETS)
    weights, meta_path = WEIGHTS_DIR / f"{dataset}.safetensors", WEIGHTS_DIR / f"{dataset}.json"
    if not weights.is_file() or not meta_path.is_file():
        raise GenlabError(
            f"no feature-net weights for {dataset!r} in {WEIGHTS_DIR}; run scripts/train_feature_nets.py"
        )
    meta = read_json(meta_path, f"{meta_path} is missing")
    widths = json_field(meta, "widths", list, meta_path)
    if not widths or not all(type(width) is int and width > 0 for width in widths):
        raise GenlabError(f"{meta_path} is corrupt: 'widths' should be positive whole numbers, got {widths!r}")
    sizes = {key: json_field(meta, key, int, meta_path) for key in ("channels", "resolution", "num_classes")}
    if min(sizes.values()) < 1:
        raise GenlabError(f"{meta_path} is corrupt: channels, resolution and num_classes should be >= 1, got {sizes}")
    config = FeatureNetConfig(dataset=json_field(meta, "dataset", str, meta_path), widths=tuple(widths), **sizes)
    net = load_weights(FeatureNet(config), weights)
    return net.eval().requires_grad_(False)
