"""Class-conditional (or unconditional) EDM image models on genlab's data sets, end to end.

``train_image_model(config)`` trains a U-Net or DiT with the shared loop and exports the EMA
weights to ``<run_dir>/model`` (``save_pretrained`` format plus ``genlab.json``);
``load_image_model(path)`` reads them back as an :class:`~genlab.core.denoiser.EDMDenoiser`;
``generate_images`` samples it with genlab's EDM samplers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
from torch import Tensor

from genlab.base.config import ImageModelConfig
from genlab.base.info import ARCHITECTURES, MODEL_INFO_FILE, ImageModelInfo
from genlab.core.checkpoint import read_json
from genlab.core.config import MODEL_SIZES, SAMPLERS
from genlab.core.denoiser import EDMDenoiser
from genlab.core.edm import EDMSchedule, edm_loss, karras_sigmas, network_evaluations, sample
from genlab.core.loading import load_pretrained
from genlab.core.train import Trainer, TrainResult
from genlab.data import load_dataset
from genlab.errors import GenlabError
from genlab.metrics import evaluate_samples


def build_denoiser(config: ImageModelConfig, channels: int, resolution: int, num_classes: int) -> EDMDenoiser:
    """A freshly initialised (seeded) EDM denoiser for ``config``'s architecture and size."""
    torch.manual_seed(config.seed)
    net_class = ARCHITECTURES[config.arch]
    net = net_class(in_channels=channels, resolution=resolution,
                    num_classes=num_classes if config.conditional else 0,
                    **MODEL_SIZES[config.arch][config.size])
    return EDMDenoiser(net, EDMSchedule())


def drop_labels(labels: Tensor, num_classes: int, probability: float) -> Tensor:
    """Replace each label ``[B]`` by the null label ``num_classes`` with ``probability`` (for CFG)."""
    if probability <= 0:
        return labels
    drop = torch.rand(labels.shape, device=labels.device) < probability
    return torch.where(drop, torch.full_like(labels, num_classes), labels)


def image_loss(num_classes: int, label_dropout: float):
    """EDM loss on ``(images, labels)`` batches, labels dropped to the null label with some probability."""

    def loss_fn(denoiser, batch) -> Tensor:
        images, labels = batch
        if num_classes == 0:
            return edm_loss(denoiser, images).mean()
        return edm_loss(denoiser, images, class_labels=drop_labels(labels, num_classes, label_dropout)).mean()

    return loss_fn


def train_image_model(config: ImageModelConfig) -> TrainResult:
    """Train (or resume) an image model; export EMA weights to ``<run_dir>/model``."""
    config.validate()
    dataset = load_dataset(config.data, "train", config.resolution, config.seed)
    num_classes = dataset.num_classes if config.conditional else 0
    denoiser = build_denoiser(config, dataset.channels, dataset.resolution, dataset.num_classes)
    run_config = {**asdict(config), "resolution": dataset.resolution, "method": "image"}
    trainer = Trainer(denoiser, image_loss(num_classes, config.label_dropout), dataset, config.run_dir,
                      config, run_config)
    result = trainer.fit(resume=config.resume)
    trainer.export(save_image_model, result.ema_model, Path(config.run_dir) / "model", data=config.data,
                   label_dropout=config.label_dropout)
    return result


def save_image_model(denoiser: EDMDenoiser, folder: Path, data: str, label_dropout: float | None = None) -> None:
    """Write ``denoiser`` as ``save_pretrained`` weights plus ``genlab.json`` (data set, σ settings).

    ``label_dropout`` (the training probability of the null label) is recorded when given, so that
    CFG can warn about a model that never learned its null label
    (:func:`genlab.guidance.cfg_warning`); without it the model's dropout counts as unknown.
    """
    denoiser.net.save_pretrained(folder)
    ImageModelInfo.of(denoiser, data, label_dropout).save(folder)


def load_image_model(path: Path | str) -> tuple[EDMDenoiser, ImageModelInfo]:
    """Load a model saved by :func:`save_image_model` from a run folder or its ``model/`` folder.

    Returns ``(denoiser in eval mode, info)``, an :class:`~genlab.base.info.ImageModelInfo` with
    ``data``, ``num_classes``, ``channels``, ``resolution``, the σ settings and ``label_dropout``
    (None for models saved before genlab recorded it). A path that is not a model folder, a
    ``genlab.json`` that is missing, not a JSON object or has missing or mistyped fields, and
    missing, corrupt or truncated weights all give one GenlabError.
    """
    folder = Path(path)
    if folder.is_file():
        raise GenlabError(f"{path} is a file; give the model's folder (a run folder of `genlab train image` "
                          "or its model/ folder)")
    if (folder / "model" / MODEL_INFO_FILE).is_file():
        folder = folder / "model"
    source = folder / MODEL_INFO_FILE
    saved = read_json(source, f"{path} holds no genlab image model (no {MODEL_INFO_FILE}); train one first")
    method = saved.get("method", "image")
    if method != "image":
        raise GenlabError(f"{path} holds a {method} model, not a plain image model; use `genlab sample {method}`"
                          if isinstance(method, str) else f"{source} is corrupt: 'method' should be str, got {method!r}")
    info = ImageModelInfo.from_json(saved, source)
    net = load_pretrained(info.net_class, folder, "image model")
    return EDMDenoiser(net, info.schedule).eval(), info.with_net(net)


@torch.no_grad()
def generate_images(denoiser: EDMDenoiser, num_images: int, class_labels: Tensor | None = None, steps: int = 18,
                    sampler: str = "heun", churn: float = 0.0, seed: int = 0, batch_size: int = 250,
                    progress: bool = False, wrapped: Callable[..., Tensor] | None = None,
                    extra: dict[str, Tensor] | None = None) -> Tensor:
    """Sample ``num_images`` images ``[N, C, H, W]`` in ``[-1, 1]``.

    The initial noise comes from one generator seeded by ``seed``, so the result does not depend
    on ``batch_size``. ``class_labels`` ``[N]`` (long) is required for conditional models and
    must be None for unconditional ones. ``wrapped``, if given, is called instead of
    ``denoiser`` (e.g. a guided wrapper of it); shapes and noise levels still come from ``denoiser``.
    A wrapper with a ``manual_seed`` method (:class:`~genlab.guidance.GuidedDenoiser`) is seeded
    with ``seed`` first, so its random draws (ICG, TSG) repeat with the seed as the noise does.
    ``extra`` holds further per-image conditions ``[N, …]`` (e.g. DisCo-Diff's ``codes``), batched alike.
    """
    if sampler not in SAMPLERS:
        raise GenlabError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    net = getattr(denoiser.net, "backbone", denoiser.net)  # wrapper nets (DisCoNet) expose their image backbone
    shape = (num_images, net.config.in_channels, net.config.resolution, net.config.resolution)
    per_image = dict(extra or {})
    if class_labels is not None:
        per_image["class_labels"] = class_labels
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(shape, generator=generator)
    reseed = getattr(wrapped, "manual_seed", None)
    if callable(reseed):
        reseed(seed)
    schedule = denoiser.schedule
    sigmas = karras_sigmas(steps, schedule.sigma_min, schedule.sigma_max, schedule.rho)
    chunks = []
    for start in range(0, num_images, batch_size):
        cond = {key: value[start : start + batch_size] for key, value in per_image.items()}
        chunks.append(sample(wrapped or denoiser, noise[start : start + batch_size], sigmas, sampler, churn=churn,
                             generator=generator, progress=progress, **cond))
    return torch.cat(chunks).clamp(-1, 1)


def balanced_labels(num_images: int, num_classes: int) -> Tensor:
    """Labels ``0, 1, …, K−1, 0, 1, …`` of length ``num_images`` (equal share per class)."""
    return torch.arange(num_images) % num_classes


def evaluate_image_model(denoiser: EDMDenoiser, info: ImageModelInfo, num_images: int = 1000, steps: int = 18,
                         sampler: str = "heun", seed: int = 0, progress: bool = False,
                         wrapped: Callable[..., Tensor] | None = None) -> dict:
    """Sample ``num_images`` (class-balanced if conditional) and score them against held-out data.

    Returns FD, precision, recall (and class accuracy for conditional models) from
    :func:`genlab.metrics.evaluate_samples`, plus the sampling settings and NFE.
    """
    num_classes = info.num_classes
    labels = balanced_labels(num_images, num_classes) if num_classes else None
    images = generate_images(denoiser, num_images, labels, steps, sampler, seed=seed, progress=progress,
                             wrapped=wrapped)
    scores = evaluate_samples(images, labels, info.data)
    return {**scores, "num_images": num_images, "steps": steps, "sampler": sampler,
            "nfe": network_evaluations(steps, sampler), "seed": seed}
