"""Train the feature nets used by genlab.metrics and write their weights.

Usage: python scripts/train_feature_nets.py [--datasets digits shapes] [--seed 0] [--out DIR]

Each net is trained on its data set's train split with small random shifts, a little blur,
contrast/brightness jitter and Gaussian noise, so that it stays reliable on imperfect generated
samples. For "shapes" two
auxiliary linear heads (colour and grid position) are trained on the same features and then
dropped, so that the features also tell colours and positions apart. Training is deterministic
given the seed on a given machine; the test accuracy of each net is printed and stored.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from genlab.data import DATASETS, ImageDataset, load_dataset
from genlab.metrics.artefacts import blur
from genlab.metrics.feature_net import WEIGHTS_DIR, FeatureNet, FeatureNetConfig, save_feature_net


@dataclass(frozen=True)
class Recipe:
    """Training settings of one data set.

    ``max_shift`` and ``max_blur`` (a Gaussian blur std) are in pixels; ``max_contrast`` and
    ``max_brightness`` bound a random affine change ``x → (1 ± max_contrast) x ± max_brightness``
    and ``max_noise`` is a noise std, all in image units. Each image draws its own values.
    """

    epochs: int
    batch_size: int = 128
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    max_shift: int = 1
    max_blur: float = 0.7
    max_contrast: float = 0.2
    max_brightness: float = 0.1
    max_noise: float = 0.1
    auxiliary: tuple[str, ...] = ()


RECIPES = {
    "digits": Recipe(epochs=40),
    "shapes": Recipe(epochs=3, max_shift=2, max_blur=1.0, max_noise=0.2, auxiliary=("colour", "position")),
}


def augment(images: torch.Tensor, recipe: Recipe, generator: torch.Generator) -> torch.Tensor:
    """Blur, shift (edges repeated), rescale and add noise to each image ``[B, C, H, W]`` in [-1, 1]."""
    images = blur(images, recipe.max_blur, generator)
    b, _, h, w = images.shape
    s = recipe.max_shift
    padded = F.pad(images, (s, s, s, s), mode="replicate")
    dy, dx = torch.randint(0, 2 * s + 1, (2, b, 1, 1), generator=generator)
    rows = torch.arange(h).view(1, h, 1) + dy
    cols = torch.arange(w).view(1, 1, w) + dx
    shifted = padded[torch.arange(b).view(b, 1, 1), :, rows, cols].permute(0, 3, 1, 2)
    contrast, brightness, noise_std = torch.rand(3, b, 1, 1, 1, generator=generator)
    scale = 1.0 + (2.0 * contrast - 1.0) * recipe.max_contrast
    offset = (2.0 * brightness - 1.0) * recipe.max_brightness
    noise = noise_std * recipe.max_noise * torch.randn(shifted.shape, generator=generator)
    return scale * shifted + offset + noise


@torch.no_grad()
def accuracy(net: FeatureNet, dataset: ImageDataset, batch_size: int = 500) -> float:
    """Share of ``dataset`` that ``net`` classifies correctly, in [0, 1]."""
    images, labels = dataset.images(), dataset.labels()
    correct = sum(
        (net(images[i : i + batch_size]).argmax(dim=1) == labels[i : i + batch_size]).sum().item()
        for i in range(0, len(labels), batch_size)
    )
    return correct / len(labels)


def train(name: str, seed: int) -> tuple[FeatureNet, float]:
    """Train the feature net of data set ``name``; return it (eval mode) and its test accuracy."""
    recipe = RECIPES[name]
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    train_set, test_set = load_dataset(name, "train"), load_dataset(name, "test")
    config = FeatureNetConfig(name, train_set.channels, train_set.resolution, train_set.num_classes)
    net = FeatureNet(config)
    targets = {"label": train_set.labels()} | {key: train_set.factors()[key] for key in recipe.auxiliary}
    heads = nn.ModuleDict(
        {key: nn.Linear(config.feature_dim, int(targets[key].max()) + 1) for key in recipe.auxiliary}
    )
    parameters = list(net.parameters()) + list(heads.parameters())
    optimiser = torch.optim.AdamW(parameters, lr=recipe.learning_rate, weight_decay=recipe.weight_decay)
    images = train_set.images()
    steps_per_epoch = len(images) // recipe.batch_size
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=recipe.learning_rate, total_steps=recipe.epochs * steps_per_epoch
    )
    net.train()
    for _ in range(recipe.epochs):
        order = torch.randperm(len(images), generator=generator)
        for step in range(steps_per_epoch):
            batch = order[step * recipe.batch_size : (step + 1) * recipe.batch_size]
            features = net.features(augment(images[batch], recipe, generator))
            loss = F.cross_entropy(net.classifier(features), targets["label"][batch])
            for key, head in heads.items():
                loss = loss + 0.5 * F.cross_entropy(head(features), targets[key][batch])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
    net.eval()
    return net, accuracy(net, test_set)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=WEIGHTS_DIR, help="directory for the weights")
    args = parser.parse_args()
    torch.use_deterministic_algorithms(True)
    for name in args.datasets:
        start = time.perf_counter()
        net, test_accuracy = train(name, args.seed)
        path = save_feature_net(net, args.out, test_accuracy, args.seed)
        elapsed = time.perf_counter() - start
        print(f"{name}: test accuracy {test_accuracy:.4f}, {elapsed:.0f} s, wrote {path}")


if __name__ == "__main__":
    main()
