"""Train, measure and ship genlab's pretrained video base (the model the video methods start from).

Usage:
    python scripts/train_video_base.py [--out runs/video_latent] [--threads 1] [--ship]
    python scripts/train_video_base.py --recipe pixel --out runs/video_base    # the pixel base shipped before
    python scripts/train_video_base.py --compare runs/video_base --ship          # card quotes the pixel base

One seeded command. ``--recipe latent`` (default; what ships) first trains a frame autoencoder
(``AUTOENCODER``: a 4-channel latent cell per 4×4 pixels, in ``<out>/autoencoder``), then a video
DiT (patch 2, 128 wide, 6 blocks) on the latents of 3-D scene clips and moving sprites (half
each), conditioned on the first frame's latent, which is hidden in 10% of the training clips so
that the same model also samples without one (VEnhancer's use). ``--recipe pixel`` trains the
patch-4 pixel-space DiT shipped before, ``--recipe previous`` the base the first camera
reproduction used (scene clips only, 2,500 steps). Training resumes from the run folder's
checkpoints when stopped.

Then the model is measured on held-out clips (data seed 1, never trained on), in the video
feature net's spaces (``genlab.metrics.video_features``):

* the λ-weighted EDM loss at fixed noise levels (first frame given);
* frame FD and clip FD of 1,000 scene clips generated from the held-out clips' first frames
  against those clips, and of 1,000 clips generated without a first frame against 1,000 held-out
  clips (half scenes, half sprites);
* beside each, the true-vs-true floor: a second held-out set (data seed 2) against the first.

Everything goes to ``<out>/card.json``. ``--ship`` copies the model into the package
(``genlab/base/weights/video``) with ``card.json`` and a ``MODEL_CARD.md`` written from it;
``--compare RUN`` adds the card of another run (e.g. the previous recipe) to both.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import torch

from genlab.base.autoencoder import decode_videos, encode_videos, load_autoencoder, train_autoencoder
from genlab.base.config import AutoencoderConfig, VideoModelConfig
from genlab.base.video_model import (
    PRETRAINED_VIDEO_DIR,
    autoencoder_of,
    first_frame_kwargs,
    generate_videos,
    load_video_model,
    model_frames,
    model_videos,
    no_first_frame,
    train_video_model,
    video_clips,
)
from genlab.core.edm import held_out_loss
from genlab.metrics import psnr
from genlab.metrics.video_features import video_fd

RECIPES = {
    "latent": dict(latent=True, data="mixed", clips=12000, size="small", patch_size=2, steps=14000, batch_size=16,
                   lr=1e-3, first_frame=True, first_frame_dropout=0.1),
    "pixel": dict(data="mixed", clips=12000, size="tiny", steps=7000, batch_size=16, lr=1e-3,
                  first_frame=True, first_frame_dropout=0.1),
    "previous": dict(data="scenes", clips=3000, size="tiny", steps=2500, batch_size=16, lr=1e-3, first_frame=True),
}
AUTOENCODER = dict(data="mixed", clips=4000, steps=1500, batch_size=32, lr=1e-3, latent_channels=4, width=32,
                   downsamples=2)  # the latent recipe's frame autoencoder
FRAMES, RESOLUTION = 8, 32
EVAL_CLIPS = 1000
EVAL_SIGMAS = (0.05, 0.2, 0.5, 1.0, 2.0, 5.0)
SAMPLER_STEPS = 12  # Heun levels (23 network evaluations per clip)


def train_frame_autoencoder(out: Path, seed: int) -> Path:
    """The latent recipe's frame autoencoder in ``out/autoencoder`` (trained unless there)."""
    folder = out / "autoencoder"
    if not (folder / "model" / "config.json").is_file():
        started = time.perf_counter()
        train_autoencoder(AutoencoderConfig(frames=FRAMES, resolution=RESOLUTION, seed=seed, run_dir=str(folder),
                                            progress=True, checkpoint_every=500,
                                            resume=(folder / "checkpoints").is_dir(), **AUTOENCODER))
        (folder / "train_seconds.json").write_text(json.dumps({"seconds": time.perf_counter() - started}))
    return folder


def train(recipe: str, out: Path, seed: int) -> VideoModelConfig:
    settings = dict(RECIPES[recipe])
    if settings.pop("latent", False):
        settings["autoencoder"] = str(train_frame_autoencoder(out, seed))
    config = VideoModelConfig(frames=FRAMES, resolution=RESOLUTION, seed=seed, run_dir=str(out), progress=True,
                              checkpoint_every=500, resume=(out / "checkpoints").is_dir(), **settings)
    started = time.perf_counter()
    if not (out / "model" / "genlab.json").is_file():
        train_video_model(config)
        (out / "train_seconds.json").write_text(json.dumps({"seconds": time.perf_counter() - started}))
    return config


def autoencoder_quality(out: Path) -> dict:
    """Reconstruction PSNR of the frame autoencoder on held-out scene and sprite frames."""
    autoencoder = load_autoencoder(out / "autoencoder")
    true = held_out("mixed", 1)
    decoded = decode_videos(autoencoder, encode_videos(autoencoder, true))
    return {"latent_channels": autoencoder.config.latent_channels, "factor": autoencoder.factor,
            "parameters": sum(p.numel() for p in autoencoder.parameters()),
            "reconstruction_psnr": float(psnr(decoded.flatten(0, 1), true.flatten(0, 1)).mean()),
            "train_seconds": json.loads((out / "autoencoder" / "train_seconds.json").read_text())["seconds"]
            if (out / "autoencoder" / "train_seconds.json").is_file() else None}


def held_out(data: str, seed: int) -> torch.Tensor:
    """``EVAL_CLIPS`` true clips ``[N, T, 3, R, R]`` in ``[-1, 1]`` of ``data`` at data seed ``seed``."""
    return video_clips(data, EVAL_CLIPS, FRAMES, RESOLUTION, seed, progress=False).video_tensor()


def evaluate(out: Path, unconditional: bool) -> dict:
    """Held-out loss, and frame/clip FD of generated clips with their true-vs-true floors."""
    model = load_video_model(out)
    net = model.net
    scenes, scenes_again = held_out("scenes", 1), held_out("scenes", 2)
    given = first_frame_kwargs(net, model_frames(model, scenes[:, 0]))
    losses = held_out_loss(model, model_videos(model, scenes[:200]), EVAL_SIGMAS,
                           **{k: v[:200] for k, v in given.items()})
    result = {"held_out_loss": dict(zip(map(str, EVAL_SIGMAS), losses.tolist(), strict=True))}
    if autoencoder_of(model) is not None:
        result["autoencoder"] = autoencoder_quality(out)
    started = time.perf_counter()
    generated = generate_videos(model, tuple(scenes.shape), steps=SAMPLER_STEPS, seed=0, batch_size=50, progress=True,
                                schedule=model.schedule, **given)
    seconds = time.perf_counter() - started
    result["first frame given (scenes)"] = {**video_fd(scenes, generated), "floor": video_fd(scenes, scenes_again),
                                            "sampling_seconds_per_clip": seconds / len(scenes),
                                            "psnr_frame0": float(psnr(generated[:, 0], scenes[:, 0]).mean())}
    torch.save(generated[:16].clone(), out / "examples_first_frame.pt")
    if unconditional:
        mixed, mixed_again = held_out("mixed", 1), held_out("mixed", 2)
        generated = generate_videos(model, tuple(mixed.shape), steps=SAMPLER_STEPS, seed=1, batch_size=50,
                                    progress=True, schedule=model.schedule, **no_first_frame(net, len(mixed)))
        result["no first frame (scenes and sprites)"] = {**video_fd(mixed, generated), "floor": video_fd(mixed, mixed_again)}
        torch.save(generated[:16].clone(), out / "examples_unconditional.pt")
    return result


def card(config: VideoModelConfig, recipe: str, out: Path, metrics: dict) -> dict:
    net_config = json.loads((out / "model" / "config.json").read_text())
    parameters = sum(p.numel() for p in load_video_model(out).net.parameters())
    return {"recipe": recipe, "command": f"python scripts/train_video_base.py --recipe {recipe} --out {out}",
            "training": {key: value for key, value in asdict(config).items()
                         if key in ("data", "clips", "data_seed", "frames", "resolution", "size", "attention",
                                    "first_frame", "first_frame_dropout", "steps", "batch_size", "lr", "seed",
                                    "autoencoder")},
            "architecture": {key: net_config[key] for key in ("in_channels", "resolution", "patch_size", "hidden_size",
                                                              "depth", "num_heads", "attention", "condition_channels")},
            "parameters": parameters,
            "train_seconds": json.loads((out / "train_seconds.json").read_text())["seconds"]
            if (out / "train_seconds.json").is_file() else None,
            "hardware": f"{platform.machine()} CPU ({os.cpu_count()} cores), {torch.get_num_threads()} thread(s)",
            "torch": torch.__version__, "evaluation": {"clips": EVAL_CLIPS, "sampler": f"heun, {SAMPLER_STEPS} levels",
                                                      **metrics}}


def model_card(info: dict) -> str:
    evaluation = info["evaluation"]
    rows = []
    cards = [("this model", info)] + ([(f"previous base (`--recipe {info['compared']['recipe']}`: patch "
                                        f"{info['compared']['architecture']['patch_size']} on "
                                        f"{'latents' if info['compared']['training'].get('autoencoder') else 'pixels'}, "
                                        f"{info['compared']['training']['steps']:,} steps)", info["compared"])]
                                      if "compared" in info else [])
    for name in ("first frame given (scenes)", "no first frame (scenes and sprites)"):
        for model, card_info in cards:
            if name in card_info["evaluation"]:
                e = card_info["evaluation"][name]
                rows.append(f"| {name} | {model} | {e['frame_fd']:.2f} | {e['floor']['frame_fd']:.3f} | "
                            f"{e['clip_fd']:.2f} | {e['floor']['clip_fd']:.2f} |")
    t, a = info["training"], info["architecture"]
    minutes = f"{info['train_seconds'] / 60:.0f} min" if info["train_seconds"] else "see the run log"
    autoencoder = evaluation.get("autoencoder")
    space = (f"the {a['in_channels']}-channel {a['resolution']}×{a['resolution']} latents of a frame autoencoder"
             if autoencoder else "pixels")
    return "\n".join([
        "# genlab pretrained video base",
        "",
        f"A video DiT ({info['parameters'] / 1e6:.2f} M parameters; patch {a['patch_size']}, width {a['hidden_size']}, "
        f"{a['depth']} blocks, {a['attention']} attention) for {t['frames']}-frame clips at "
        f"{t['resolution']}×{t['resolution']}, denoising {space}, EDM-preconditioned, conditioned on the clip's first "
        "frame or (an all-zero first frame) on nothing.",
        "",
        *([f"* **Frame autoencoder** (`autoencoder/`): convolutional, {autoencoder['parameters'] / 1e6:.2f} M parameters, "
           f"a {autoencoder['latent_channels']}-channel latent cell per {autoencoder['factor']}×{autoencoder['factor']} "
           f"pixels; trained first ({AUTOENCODER['steps']:,} steps of {AUTOENCODER['batch_size']} frames, L1 loss, "
           f"{AUTOENCODER['clips']:,} {AUTOENCODER['data']} clips"
           + (f", {autoencoder['train_seconds'] / 60:.0f} min" if autoencoder["train_seconds"] else "")
           + f"); reconstruction PSNR on held-out frames {autoencoder['reconstruction_psnr']:.1f} dB."]
          if autoencoder else []),
        f"* **Data**: {t['clips']:,} procedural clips ({t['data']}: 3-D scenes under random camera paths and moving "
        f"sprites), data seed {t['data_seed']}; first frame hidden in {t['first_frame_dropout']:.0%} of training clips.",
        f"* **Training**: {t['steps']:,} Adam steps, batch {t['batch_size']}, peak lr {t['lr']}, seed {t['seed']}, EMA "
        f"weights; {minutes} on {info['hardware']} (torch {info['torch']}).",
        f"* **Retrain**: `{info['command']} --ship`.",
        "",
        f"Quality on held-out clips (data seed 1; {evaluation['clips']:,} clips a side; sampler {evaluation['sampler']}), "
        "in genlab's video feature net; the floor is a second held-out set against the first:",
        "",
        "| use | model | frame FD | floor | clip FD | floor |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        "PSNR of the generated frame 0 against the given one (first frame given): "
        + "; ".join(f"{model} {card_info['evaluation']['first frame given (scenes)']['psnr_frame0']:.1f} dB"
                    for model, card_info in cards
                    if "psnr_frame0" in card_info["evaluation"]["first frame given (scenes)"]) + ".",
        "",
        *(f"Held-out λ-weighted EDM loss of {model} (first frame given, 200 scene clips, in the space it denoises, so "
          "not comparable between a pixel and a latent model) at σ = "
          + ", ".join(f"{sigma}: {loss:.3f}" for sigma, loss in card_info["evaluation"]["held_out_loss"].items()) + "."
          for model, card_info in cards),
        "",
        "The architecture was chosen by matched-time pilots on one thread: `benchmarks/video_base_latent.py` "
        "(docs/results/camera/base_latent.json; clips generated from held-out first frames) found a patch-2 DiT on the "
        "autoencoder's latents far ahead of a patch-1 DiT on them and of the 98-minute pixel base after only 10 "
        "minutes (clip FD 26.9 vs 57.1 and 57.0); `benchmarks/video_base_sizes.py` had chosen the pixel base's size "
        "(docs/results/camera/base_sizes.json).",
        "",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", choices=tuple(RECIPES), default="latent")
    parser.add_argument("--out", type=Path, default=Path("runs/video_latent"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--compare", type=Path, default=None, help="a run of this script whose card to quote beside")
    parser.add_argument("--ship", action="store_true", help="copy the model, card.json and MODEL_CARD.md into the package")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = train(args.recipe, args.out, args.seed)
    if not (args.out / "card.json").is_file():
        info = card(config, args.recipe, args.out, evaluate(args.out, unconditional=config.first_frame_dropout > 0))
        (args.out / "card.json").write_text(json.dumps(info, indent=2) + "\n")
    info = json.loads((args.out / "card.json").read_text())
    if args.compare is not None:
        info["compared"] = {key: value for key, value in json.loads((args.compare / "card.json").read_text()).items()
                            if key != "compared"}
        (args.out / "card.json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info["evaluation"], indent=2))
    if args.ship:
        shutil.rmtree(PRETRAINED_VIDEO_DIR, ignore_errors=True)
        shutil.copytree(args.out / "model", PRETRAINED_VIDEO_DIR)
        shutil.copy(args.out / "card.json", PRETRAINED_VIDEO_DIR / "card.json")
        (PRETRAINED_VIDEO_DIR / "MODEL_CARD.md").write_text(model_card(info))
        print(f"shipped to {PRETRAINED_VIDEO_DIR}")


if __name__ == "__main__":
    main()
