"""``genlab reproduce worldmodel``: iVideoGPT at small scale on the built-in PushBlock world.

Steps (each cached in ``out``, so a stopped run resumes):

1. Episode shards for training and held-out testing (different seeds), and the perceptual
   feature net (a :class:`~genlab.worldmodel.perceptual.StateNet`) shared by all tokenizers.
2. Two tokenizers: compressive (context grid², future grid² tokens) and per-frame (context grid²
   tokens for every frame).
3. Three transformers: compressive + actions, compressive action-free, per-frame + actions.
4. Prediction on held-out windows: from one true frame and the true actions, ``samples`` rollouts
   of ``future_frames`` frames each; PSNR/SSIM (mean over samples and best of them), FD of
   StateNet features of predicted vs true frames; tokens per frame and rollout frames per second.
5. Control: PushBlock episodes under a random policy, CEM-MPC on the compressive action world
   model (scored by its reward head, or by the reward of the positions a StateNet reads off the
   imagined frames), and CEM-MPC with the true simulator (the upper bound).
6. ``results.json``, ``report.md`` and a predicted-vs-true rollout (GIF and MP4) longer than the
   training sequences, so the context slides.
"""

from __future__ import annotations

import json
import shutil
import statistics
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from genlab.core.images import save_video
from genlab.experiments.parallel import map_in_processes
from genlab.experiments.reporting import cells, mean_std, table
from genlab.metrics import frechet_distance, psnr, ssim
from genlab.worldmodel.dataset import read_shards, write_shards
from genlab.worldmodel.model import WorldModel, frames_from_model, frames_to_model
from genlab.worldmodel.perceptual import StateNet
from genlab.worldmodel.planning import (
    CEMConfig,
    imagined_frames_scorer,
    run_episode,
    simulator_scorer,
    world_model_scorer,
)
from genlab.worldmodel.training import (
    ClipDataset,
    TokenizerConfig,
    TransformerConfig,
    load_or_train_state_net,
    train_tokenizer,
    train_transformer,
)

PAPER = ("Wu et al. 2024 (iVideoGPT): action-conditioned prediction on BAIR robot pushing (64×64) at FVD 60.8, "
         "with 16 tokens per future frame against 256 per context frame (16× fewer); the same model serves "
         "visual MPC (VP² benchmark) and model-based RL (MBPO with imagined rollouts of horizon 10).")

MODELS = {  # name -> (tokenizer, action-conditioned)
    "compressive": ("compressive", True),
    "compressive, action-free": ("compressive", False),
    "per-frame": ("per-frame", True),
}


@dataclass(frozen=True)
class WorldModelPreset:
    name: str
    train_episodes: int
    test_episodes: int
    episode_steps: int
    frame_size: int
    context_grid: int
    future_grid: int
    channels: int
    code_dim: int
    codes: int
    state_net_steps: int
    tokenizer_steps: int
    transformer_steps: int
    batch_size: int
    transformer_batch: int
    hidden_size: int
    layers: int
    heads: int
    future_frames: int
    windows_per_episode: int
    samples: int
    top_k: int
    control_episodes: int
    control_steps: int
    horizon: int
    population: int
    iterations: int


PRESETS = {
    "full": WorldModelPreset("full", train_episodes=400, test_episodes=40, episode_steps=30, frame_size=32,
                             context_grid=8, future_grid=4, channels=32, code_dim=8, codes=256,
                             state_net_steps=600, tokenizer_steps=800, transformer_steps=3000, batch_size=16,
                             transformer_batch=16, hidden_size=128, layers=4, heads=4, future_frames=3,
                             windows_per_episode=3, samples=4, top_k=16, control_episodes=10, control_steps=30,
                             horizon=5, population=64, iterations=3),
}
# the quick preset: the same frames, tokens and batches, fewer episodes, a smaller transformer, shorter training
PRESETS["quick"] = replace(PRESETS["full"], name="quick", train_episodes=100, test_episodes=16, episode_steps=20,
                           state_net_steps=400, tokenizer_steps=300, transformer_steps=200, hidden_size=64, layers=2,
                           heads=2, samples=3, control_episodes=4, control_steps=20, horizon=3, population=32,
                           iterations=2)
CONTROL_SEED = 10_000  # control episodes use reset seeds from here (not in the training shards)


def prepare_data(out: Path, preset: WorldModelPreset) -> None:
    for split, episodes, seed in (("train", preset.train_episodes, 0), ("test", preset.test_episodes, 1)):
        if not (out / "data" / split / "meta.json").exists():
            write_shards(out / "data" / split, episodes=episodes, steps=preset.episode_steps,
                         size=preset.frame_size, seed=seed)
    load_or_train_state_net(read_shards(out / "data" / "train"), out / "state_net", preset.state_net_steps, 0)


def tokenizer_config(out: Path, preset: WorldModelPreset, kind: str) -> TokenizerConfig:
    return TokenizerConfig(
        data=str(out / "data" / "train"), clip_frames=1 + preset.future_frames, compressive=kind == "compressive",
        context_grid=preset.context_grid, future_grid=preset.future_grid, channels=preset.channels,
        code_dim=preset.code_dim, num_codes=preset.codes, steps=preset.tokenizer_steps, batch_size=preset.batch_size,
        lr=1e-3, warmup_steps=20, ema_decay=0.99, checkpoint_every=preset.tokenizer_steps,
        run_dir=str(out / f"tokenizer-{kind}"), progress=False, overwrite=True)  # an unfinished stage starts afresh


def train_tokenizer_job(out: Path, preset: WorldModelPreset, kind: str) -> str:
    config = tokenizer_config(out, preset, kind)
    if not (Path(config.run_dir) / "model" / "config.json").exists():
        if not (Path(config.run_dir) / "state_net").exists():
            shutil.copytree(out / "state_net", Path(config.run_dir) / "state_net")
        train_tokenizer(config)
    return config.run_dir


def model_dir(out: Path, name: str) -> Path:
    return out / ("wm-" + name.replace(", ", "-"))


def train_transformer_job(out: Path, preset: WorldModelPreset, name: str) -> str:
    kind, actions = MODELS[name]
    run_dir = model_dir(out, name)
    if not (run_dir / "model" / "transformer" / "config.json").exists():
        train_transformer(TransformerConfig(
            data=str(out / "data" / "train"), tokenizer=str(out / f"tokenizer-{kind}" / "model"),
            future_frames=preset.future_frames, actions=actions, hidden_size=preset.hidden_size,
            layers=preset.layers, heads=preset.heads, steps=preset.transformer_steps,
            batch_size=preset.transformer_batch,
            lr=1e-3, warmup_steps=50, ema_decay=0.99, checkpoint_every=preset.transformer_steps,
            run_dir=str(run_dir), progress=False, overwrite=True))
    return str(run_dir)


def test_windows(out: Path, preset: WorldModelPreset) -> tuple[torch.Tensor, torch.Tensor]:
    """Held-out windows: frames ``[W, 1 + T, 3, H, W]`` in [-1, 1] and actions ``[W, T, 2]``."""
    clips = ClipDataset(read_shards(out / "data" / "test"), 1 + preset.future_frames)
    stride = max(1, clips.starts // preset.windows_per_episode)
    picks = [e * clips.starts + s for e in range(preset.test_episodes)
             for s in range(0, clips.starts, stride)[: preset.windows_per_episode]]
    frames, actions, _ = zip(*(clips[i] for i in picks), strict=True)
    return torch.stack(frames), torch.stack(actions)


def state_features(state_net: StateNet, frames: torch.Tensor) -> torch.Tensor:
    """Globally pooled last-block StateNet features ``[N, C]`` of frames ``[N, 3, H, W]``."""
    with torch.no_grad():
        return state_net.features(frames)[-1].mean(dim=(2, 3))


def predict(world_model: WorldModel, frames: torch.Tensor, actions: torch.Tensor, samples: int,
            batch: int = 64) -> torch.Tensor:
    """Rollouts ``[W, samples, T, 3, H, W]`` from each window's first frame under its actions."""
    context = frames_from_model(frames[:, :1]).repeat(samples, axis=0)  # [W·S, 1, H, W, 3]
    actions = actions.repeat_interleave(samples, dim=0).numpy()
    out = []
    for start in range(0, len(context), batch):
        world_model.reset(context[start: start + batch])
        out.append(np.stack([world_model.step(actions[start: start + batch, t])[0]
                             for t in range(actions.shape[1])], axis=1))
    predicted = frames_to_model(np.concatenate(out))
    return predicted.unflatten(0, (len(frames), samples))


def rollout_speed(world_model: WorldModel, context: np.ndarray, steps: int) -> float:
    """Imagined frames per second of one rollout (generation + decoding) from uint8 ``[Tc, H, W, 3]``."""
    world_model.reset(context)
    start = time.perf_counter()
    for _ in range(steps):
        world_model.step(np.zeros(2, np.float32) if world_model.transformer.action_conditioned else None)
    return steps / (time.perf_counter() - start)


def evaluate_prediction(out: Path, preset: WorldModelPreset, name: str) -> dict:
    torch.set_num_threads(1)
    world_model = WorldModel.from_pretrained(model_dir(out, name) / "model", top_k=preset.top_k, seed=0)
    frames, actions = test_windows(out, preset)
    truth = frames[:, 1:]
    predicted = predict(world_model, frames, actions, preset.samples)  # [W, S, T, 3, H, W]
    flat_truth = truth[:, None].expand_as(predicted).flatten(0, 2)
    frame_psnr = psnr(predicted.flatten(0, 2), flat_truth).view(predicted.shape[:3])
    frame_ssim = ssim(predicted.flatten(0, 2), flat_truth).view(predicted.shape[:3])
    with torch.no_grad():
        tokens = world_model.tokenizer.encode(frames)
        recon = world_model.tokenizer.decode(tokens)[:, 1:]
    state_net = StateNet.from_pretrained(out / "state_net").eval()
    fd = frechet_distance(state_features(state_net, predicted[:, 0].flatten(0, 1)),
                          state_features(state_net, truth.flatten(0, 1)))
    with torch.no_grad():  # where StateNet sees the agent in the imagined frames vs in the true ones
        agent_error = (state_net(predicted.flatten(0, 2).clamp(-1, 1))[:, :2]
                       - state_net(flat_truth)[:, :2]).norm(dim=1).mean().item()
    return {
        "psnr": frame_psnr.mean().item(), "ssim": frame_ssim.mean().item(),
        "psnr_best": frame_psnr.mean(dim=2).max(dim=1).values.mean().item(),
        "ssim_best": frame_ssim.mean(dim=2).max(dim=1).values.mean().item(),
        "psnr_per_step": frame_psnr.mean(dim=(0, 1)).tolist(),
        "fd": fd, "agent_error": agent_error,
        "tokenizer_psnr": psnr(recon.flatten(0, 1), truth.flatten(0, 1)).mean().item(),
        "copy_psnr": psnr(frames[:, :1].expand_as(truth).flatten(0, 1), truth.flatten(0, 1)).mean().item(),
        "codes_used": [tokens.context.unique().numel(), tokens.future.unique().numel()],
        "context_tokens": world_model.tokenizer.context_tokens, "future_tokens": world_model.tokenizer.future_tokens,
        "sequence_tokens": world_model.transformer.sequence_length,
        "frames_per_second": rollout_speed(world_model, frames_from_model(frames[0, :1]), 2 * preset.future_frames),
        "windows": len(frames), "samples": preset.samples,
    }


def control_job(out: Path, preset: WorldModelPreset, policy: str, seed: int) -> dict:
    torch.set_num_threads(1)
    config = CEMConfig(horizon=preset.horizon, population=preset.population,
                       elites=max(2, preset.population // 8), iterations=preset.iterations)
    scorer = None
    if policy.startswith("world model"):
        world_model = WorldModel.from_pretrained(model_dir(out, "compressive") / "model", top_k=preset.top_k, seed=seed)
        scorer = (world_model_scorer(world_model) if policy == WORLD_MODEL_REWARD_HEAD else
                  imagined_frames_scorer(world_model, StateNet.from_pretrained(out / "state_net").eval()))
    elif policy == "simulator MPC":
        scorer = simulator_scorer
    start = time.perf_counter()
    episode = run_episode(seed, "random" if policy == "random" else "mpc", preset.control_steps, config, scorer,
                          frame_size=preset.frame_size)
    return {"policy": policy, "seed": seed, "success": episode.success, "return": episode.episode_return,
            "final_distance": episode.final_distance, "steps": episode.steps,
            "seconds": time.perf_counter() - start}


WORLD_MODEL_REWARD_HEAD = "world model MPC, reward head"
WORLD_MODEL_FRAMES = "world model MPC, imagined frames"
POLICIES = ("random", WORLD_MODEL_REWARD_HEAD, WORLD_MODEL_FRAMES, "simulator MPC")


def summarise_control(records: list[dict]) -> dict:
    summary = {}
    for policy in POLICIES:
        rows = [r for r in records if r["policy"] == policy]
        summary[policy] = {"success_rate": statistics.mean(r["success"] for r in rows),
                           "returns": [r["return"] for r in rows],
                           "final_distances": [r["final_distance"] for r in rows],
                           "seconds_per_step": sum(r["seconds"] for r in rows) / sum(r["steps"] for r in rows)}
    return summary


def rollout_video(out: Path, preset: WorldModelPreset, seconds_per_frame: float = 0.2) -> Path:
    """Side-by-side true | compressive | per-frame rollouts of a test episode, 3× the training length."""
    episodes = read_shards(out / "data" / "test")
    steps = min(3 * preset.future_frames, preset.episode_steps)
    truth = episodes["frames"][0, : steps + 1]
    columns = [truth]
    for name in ("compressive", "per-frame"):
        world_model = WorldModel.from_pretrained(model_dir(out, name) / "model", top_k=preset.top_k, seed=0)
        world_model.reset(truth[:1])
        columns.append(np.stack([truth[0]] + [world_model.step(a)[0] for a in episodes["actions"][0, :steps]]))
    gap = np.full((steps + 1, preset.frame_size, 2, 3), 255, np.uint8)
    video = np.concatenate([part for column in columns for part in (column, gap)][:-1], axis=2)
    save_video(video, out / "rollout.mp4", fps=1 / seconds_per_frame, scale=3)
    return save_video(video, out / "rollout.gif", fps=1 / seconds_per_frame, scale=3)


def run(out: Path, preset: WorldModelPreset, workers: int = 2) -> dict:
    """The whole reproduction into ``out`` (see the module docstring); returns the results."""
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    prepare_data(out, preset)
    map_in_processes(train_tokenizer_job, [(out, preset, kind) for kind in ("compressive", "per-frame")],
                     workers, "tokenizers")
    map_in_processes(train_transformer_job, [(out, preset, name) for name in MODELS], workers, "transformers")
    prediction = dict(zip(MODELS, map_in_processes(evaluate_prediction, [(out, preset, n) for n in MODELS],
                                                   workers, "prediction"), strict=True))
    seeds = range(CONTROL_SEED, CONTROL_SEED + preset.control_episodes)
    control = summarise_control(map_in_processes(
        control_job, [(out, preset, policy, seed) for policy in POLICIES for seed in seeds], workers, "control"))
    rollout_video(out, preset)
    results = {"preset": asdict(preset), "prediction": prediction, "control": control,
               "minutes": (time.perf_counter() - started) / 60, "paper": PAPER}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "report.md").write_text(report(results))
    return results


PREDICTION_COLUMNS = (("psnr", ".2f"), ("ssim", ".3f"), ("psnr_best", ".2f"), ("ssim_best", ".3f"), ("fd", ".3f"),
                      ("agent_error", ".3f"), ("tokenizer_psnr", ".2f"), ("frames_per_second", ".1f"))


def report(results: dict) -> str:
    preset = results["preset"]
    lines = [f"# World model (iVideoGPT) on PushBlock, preset {preset['name']}", "",
             f"{preset['train_episodes']} training episodes of {preset['episode_steps']} steps at "
             f"{preset['frame_size']}×{preset['frame_size']}; predictions of {preset['future_frames']} frames from "
             f"1 true frame on {next(iter(results['prediction'].values()))['windows']} held-out windows, "
             f"{preset['samples']} samples each (top-k {preset['top_k']}).", "",
             *table(["model", "tokens/frame (context, future)", "PSNR", "SSIM", "PSNR best-of-N", "SSIM best-of-N", "FD",
                     "agent error", "tokenizer PSNR", "rollout frames/s"],
                    ([name, f"{r['context_tokens']}, {r['future_tokens']}", *cells(r, PREDICTION_COLUMNS)]
                     for name, r in results["prediction"].items()))]
    copy = next(iter(results["prediction"].values()))["copy_psnr"]
    lines += ["", f"Copying the context frame scores PSNR {copy:.2f}. Agent error: distance (arena units, the "
              "arena is 1 wide, one step moves at most 0.06) between where the perceptual StateNet places the "
              "agent in the imagined and in the true frames.", "",
              f"Control: {preset['control_episodes']} episodes of up to {preset['control_steps']} steps; CEM with "
              f"horizon {preset['horizon']}, {preset['population']} candidates, {preset['iterations']} iterations.", "",
              *table(["policy", "success", "return", "final block-goal distance", "seconds per step"],
                     ([policy, f"{r['success_rate']:.0%}", mean_std(r["returns"]), mean_std(r["final_distances"]),
                       f"{r['seconds_per_step']:.2f}"] for policy, r in results["control"].items()))]
    lines += ["", f"Run time: {results['minutes']:.1f} min. Rollout: rollout.gif (true | compressive | per-frame).",
              "", f"Paper: {results['paper']}", ""]
    return "\n".join(lines)

