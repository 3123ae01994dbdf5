"""Pixel or latent video DiT: the pilot behind the shipped video base's architecture.

Losses in pixel and latent space cannot be compared, so each candidate is judged by what it
renders: clips generated from the first frames of held-out scene clips (data seed 1), scored in
genlab's video feature net (frame FD and clip FD, beside the true-vs-true floor of a second
held-out set) and by PSNR against the true clips (frame 0, which is given, and frames 1+).

Each latent candidate trains on the shipped recipe's data (scene and sprite clips, first frame hidden
in 10%) on the latents of one frame autoencoder (``--autoencoder``, trained by
``scripts/train_video_base.py --stage autoencoder``) for ``--steps`` steps on one thread; the pixel
reference is any trained video model (default: the shipped pixel base, 98 minutes of training).

    python benchmarks/video_base_latent.py --autoencoder runs/video_latent/autoencoder \\
        --candidates p1-h96-d4:850 p2-h128-d6:2000 --out runs/video_base_latent
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from genlab.base.autoencoder import decode_videos, encode_videos, load_autoencoder
from genlab.base.config import VideoModelConfig
from genlab.base.video_model import (
    PRETRAINED,
    first_frame_kwargs,
    generate_videos,
    load_video_model,
    model_frames,
    train_video_model,
    video_clips,
)
from genlab.metrics import psnr
from genlab.metrics.video_features import video_fd

CLIPS, SAMPLER_STEPS = 250, 12
SIZES = {"h96-d4": "tiny", "h128-d6": "small"}  # the VIDEO_SIZES preset of each width/depth


def train_candidate(name: str, steps: int, autoencoder: Path, out: Path) -> float:
    """Train latent candidate ``p<patch>-h<width>-d<depth>`` for ``steps`` steps; returns its training seconds."""
    patch, size = name.split("-", 1)
    config = VideoModelConfig(clips=4000, data="mixed", size=SIZES[size], patch_size=int(patch[1:]), steps=steps,
                              batch_size=16, lr=1e-3, first_frame_dropout=0.1, autoencoder=str(autoencoder),
                              checkpoint_every=steps, run_dir=str(out / name), overwrite=True, progress=False)
    started = time.perf_counter()
    train_video_model(config)
    return time.perf_counter() - started


def score(model_path: Path | str, true: torch.Tensor, again: torch.Tensor) -> dict:
    """Generated-from-first-frame clips of a model against held-out clips ``true``."""
    model = load_video_model(model_path)
    started = time.perf_counter()
    generated = generate_videos(model, tuple(true.shape), steps=SAMPLER_STEPS, seed=0, batch_size=50,
                                **first_frame_kwargs(model.net, model_frames(model, true[:, 0])))
    return {"parameters": sum(p.numel() for p in model.net.parameters()),
            "sampling_seconds_per_clip": (time.perf_counter() - started) / len(true),
            **video_fd(true, generated), "floor": video_fd(true, again),
            "psnr_frame0": float(psnr(generated[:, 0], true[:, 0]).mean()),
            "psnr_later": float(psnr(generated[:, 1:].flatten(0, 1), true[:, 1:].flatten(0, 1)).mean()),
            "still_clip_psnr_later": float(psnr(true[:, :1].expand_as(true)[:, 1:].flatten(0, 1),
                                                true[:, 1:].flatten(0, 1)).mean())}


def reconstruction(autoencoder: Path, true: torch.Tensor, again: torch.Tensor) -> dict:
    """The autoencoder's ceiling: the held-out clips encoded and decoded, scored like the candidates."""
    model = load_autoencoder(autoencoder)
    decoded = decode_videos(model, encode_videos(model, true))
    return {"model": f"autoencoder reconstruction {autoencoder}", **video_fd(true, decoded),
            "floor": video_fd(true, again), "psnr": float(psnr(decoded.flatten(0, 1), true.flatten(0, 1)).mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--autoencoder", type=Path, required=True)
    parser.add_argument("--candidates", nargs="*", default=["p1-h96-d4:850", "p2-h128-d6:2000"],
                        help="p<patch>-h<width>-d<depth>:STEPS (h96-d4 = tiny, h128-d6 = small)")
    parser.add_argument("--reference", default=PRETRAINED, help="a pixel video model to score beside them")
    parser.add_argument("--out", type=Path, default=Path("runs/video_base_latent"))
    parser.add_argument("--score-only", action="store_true", help="score candidates already trained in --out")
    args = parser.parse_args()
    torch.set_num_threads(1)
    true = video_clips("scenes", CLIPS, 8, 32, seed=1, progress=False).video_tensor()
    again = video_clips("scenes", CLIPS, 8, 32, seed=2, progress=False).video_tensor()
    print(json.dumps(reconstruction(args.autoencoder, true, again)), flush=True)
    for pair in args.candidates:
        name, steps = pair.split(":")
        seconds = None if args.score_only else train_candidate(name, int(steps), args.autoencoder, args.out)
        print(json.dumps({"model": f"latent {name}", "steps": int(steps), "train_s": seconds,
                          **score(args.out / name, true, again)}), flush=True)
    if args.reference:
        print(json.dumps({"model": f"pixel reference {args.reference}", **score(args.reference, true, again)}),
              flush=True)


if __name__ == "__main__":
    main()
