"""DisCo-Diff reproduction, parts 2–4: images (procedural ``shapes``).

Per seed, an EDM baseline and a DisCo-Diff model with the same U-Net, data and budget:

2. FD at several NFE (Heun) with latents from the prior, and with the oracle latents (the
   encoder's codes of held-out images);
3. what the latents learned: a grid (each row fixes the codes, the columns vary the noise) and
   the mutual information between each latent and the data's factors (shape, colour, position);
4. a latent-CFG sweep (guidance on the codes against the null latents).

A parameter-matched control (for ``control_seeds``): DisCo-Diff's network trained with every
latent dropped (p = 1), i.e. the EDM baseline with the same cross-attention branch and size.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from genlab.base.image_model import (
    ImageModelConfig,
    balanced_labels,
    generate_images,
    load_image_model,
    train_image_model,
)
from genlab.core.edm import network_evaluations
from genlab.core.images import save_image_grid
from genlab.data import load_dataset
from genlab.disco.model import DisCoDiff
from genlab.disco.training import DisCoConfig, train_disco
from genlab.metrics import evaluate_samples, mutual_information


@dataclass
class ImageExperimentConfig:
    """Size of the image part of ``genlab reproduce disco``."""

    seeds: tuple[int, ...] = (0, 1, 2)
    data: str = "shapes"
    resolution: int = 16
    train_steps: int = 3000
    prior_steps: int = 1500
    num_latents: int = 4
    num_codes: int = 8
    num_images: int = 1000
    sampler_steps: tuple[int, ...] = (4, 8, 18, 40)  # Heun: NFE 7, 15, 35, 79
    cfg_scales: tuple[float, ...] = (1.0, 1.5, 2.0, 3.0)
    cfg_images: int = 500
    cfg_sampler_steps: int = 18
    control_seeds: tuple[int, ...] = (0, 1, 2)


def _loop_settings(config: ImageExperimentConfig, seed: int, run_dir: Path) -> dict:
    return {"data": config.data, "resolution": config.resolution, "steps": config.train_steps,
            "checkpoint_every": config.train_steps, "seed": seed, "run_dir": str(run_dir), "progress": False,
            "overwrite": True}  # a run without its exported model starts afresh


def train_pair(config: ImageExperimentConfig, seed: int, out: Path) -> tuple[tuple, DisCoDiff]:
    """Train (or reuse: the folder names carry the settings) the EDM baseline and the DisCo-Diff model of one seed."""
    common = f"{config.data}{config.resolution}-{config.train_steps}steps"
    edm_dir = out / "runs" / f"edm-{common}-seed{seed}"
    disco_dir = out / "runs" / f"disco-{common}-m{config.num_latents}k{config.num_codes}-prior{config.prior_steps}-seed{seed}"
    if not (edm_dir / "model" / "genlab.json").is_file():
        train_image_model(ImageModelConfig(**_loop_settings(config, seed, edm_dir)))
    if not (disco_dir / "model" / "genlab.json").is_file():
        train_disco(DisCoConfig(**_loop_settings(config, seed, disco_dir), num_latents=config.num_latents,
                                num_codes=config.num_codes, prior_steps=config.prior_steps))
    return load_image_model(edm_dir), DisCoDiff.from_pretrained(disco_dir)


def evaluate_control(config: ImageExperimentConfig, seed: int, out: Path) -> dict:
    """FD vs NFE of the parameter-matched control (DisCo-Diff's network, latents always dropped)."""
    run_dir = out / "runs" / f"control-{config.data}{config.resolution}-{config.train_steps}steps-seed{seed}"
    if not (run_dir / "model" / "genlab.json").is_file():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an encoder without gradients uses one code: expected here
            train_disco(DisCoConfig(**_loop_settings(config, seed, run_dir), num_latents=config.num_latents,
                                    num_codes=config.num_codes, latent_dropout=1.0, prior_steps=1))
    model = DisCoDiff.from_pretrained(run_dir)
    labels = balanced_labels(config.num_images, model.info.num_classes)
    null = torch.full((config.num_images, model.num_latents), model.num_codes)
    table = {}
    for steps in config.sampler_steps:
        images, _ = model.generate(config.num_images, labels, codes=null, steps=steps, seed=seed)
        table[str(network_evaluations(steps, "heun"))] = evaluate_samples(images, labels, config.data)
    return {"fd_table": table, "parameters": _count(model.denoiser)}


def _cached(path: Path, settings: dict, compute) -> dict:
    """``compute()``'s record, kept in ``path`` and recomputed when ``settings`` change."""
    settings = json.loads(json.dumps(settings))
    if not path.is_file() or json.loads(path.read_text()).get("config") != settings:
        path.write_text(json.dumps({"config": settings, **compute()}, indent=2))
    return json.loads(path.read_text())


def evaluate_seed(config: ImageExperimentConfig, seed: int, out: Path) -> dict:
    """All numbers of one seed (FD table, oracle, code usage, MI, CFG sweep); writes its figures."""
    (edm, edm_info), disco = train_pair(config, seed, out)
    labels = balanced_labels(config.num_images, edm_info.num_classes)
    test = load_dataset(config.data, "test", config.resolution, seed=0)
    oracle_codes = disco.encode(test.images(range(config.num_images)))
    oracle_labels = test.labels(range(config.num_images))

    def score(images, image_labels):
        return evaluate_samples(images, image_labels, config.data)

    table = {"EDM": {}, "DisCo-Diff (prior latents)": {}, "DisCo-Diff (oracle latents)": {}}
    for steps in tqdm(config.sampler_steps, desc=f"seed {seed}: FD vs NFE", leave=False):
        nfe = str(network_evaluations(steps, "heun"))
        table["EDM"][nfe] = score(generate_images(edm, config.num_images, labels, steps, seed=seed), labels)
        images, _ = disco.generate(config.num_images, labels, steps=steps, seed=seed)
        table["DisCo-Diff (prior latents)"][nfe] = score(images, labels)
        images, _ = disco.generate(config.num_images, oracle_labels, codes=oracle_codes, steps=steps, seed=seed)
        table["DisCo-Diff (oracle latents)"][nfe] = score(images, oracle_labels)

    cfg_labels = labels[: config.cfg_images]
    sweep = {}
    for scale in config.cfg_scales:
        images, _ = disco.generate(config.cfg_images, cfg_labels, steps=config.cfg_sampler_steps, seed=seed,
                                   latent_scale=scale)
        sweep[str(scale)] = score(images, cfg_labels)

    train = load_dataset(config.data, "train", config.resolution, seed=seed)
    codes = disco.encode(train.images())
    information = {name: [mutual_information(codes[:, i], values) for i in range(disco.num_latents)]
                   for name, values in train.factors().items()}
    if seed == config.seeds[0]:
        save_latent_grid(disco, out / "latent_grid.png", edm_info.num_classes, seed)
    return {"fd_table": table, "latent_cfg": sweep, "code_usage": disco.info.code_usage,
            "mutual_information_bits": information,
            "parameters": {"edm": _count(edm), "disco_denoiser": _count(disco.denoiser),
                           "disco_encoder": _count(disco.encoder), "disco_prior": _count(disco.prior)}}


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def save_latent_grid(disco: DisCoDiff, path: Path, num_classes: int, seed: int, rows: int = 8, columns: int = 8) -> None:
    """Rows fix (class, codes) drawn from the prior; columns vary the diffusion noise."""
    generator = torch.Generator().manual_seed(seed)
    row_labels = torch.arange(rows) % num_classes if num_classes else None
    row_codes = disco.sample_codes(rows, row_labels, generator=generator)
    labels = row_labels.repeat_interleave(columns) if row_labels is not None else None
    images, _ = disco.generate(rows * columns, labels, codes=row_codes.repeat_interleave(columns, dim=0),
                               steps=18, seed=seed)
    save_image_grid(images, path, columns=columns)


def run_images(out: Path, config: ImageExperimentConfig) -> dict:
    """Every seed's numbers (reusing trained models in ``out/runs``); writes ``images.json``."""
    out.mkdir(parents=True, exist_ok=True)
    settings = asdict(config) | {"seeds": None, "control_seeds": None}
    per_seed = {str(seed): _cached(out / f"images-seed{seed}.json", settings,
                                   lambda seed=seed: evaluate_seed(config, seed, out)) for seed in config.seeds}
    control = {str(seed): _cached(out / f"control-seed{seed}.json", settings,
                                  lambda seed=seed: evaluate_control(config, seed, out)) for seed in config.control_seeds}
    summary = {"config": asdict(config), "seeds": per_seed, "control": control}
    (out / "images.json").write_text(json.dumps(summary, indent=2))
    return summary
