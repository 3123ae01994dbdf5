"""Rewards that fit genlab's small models and ship with the package (no download).

* ``class``: the probability of a class under genlab's digit (or shapes) classifier — the one the
  metrics use (:func:`genlab.metrics.load_feature_net`); scores the label each sample was made for,
  or a fixed class.
* ``brightness`` and ``colourfulness`` (Hasler and Süsstrunk's metric): closed-form image rewards.
* ``motion-left/right/up/down``: the probability of that global motion direction under a small 3-D
  CNN trained here (``scripts/train_align_rewards.py``) on 16×16 clips of sprites all moving one way and of
  panned sprite frames; larger clips (genlab's default 32×32) are resized to 16×16.
* ``flow-left/right/up/down``: ``tanh`` of the clip's global optical flow along that direction (closed
  form, nothing to fool).
* ``temporal``: temporal consistency as the (negative) error of predicting each frame's latent map from the
  two before it, in the latent space of a frame autoencoder; both trained here on moving-sprite and 3-D
  scene clips — a small stand-in for V-JEPA's feature prediction.

The motion and temporal weights live in ``align/rewards/weights/`` (safetensors + JSON).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from genlab.align.rewards.base import Reward, RewardEntry, to_unit_range
from genlab.errors import GenlabError
from genlab.metrics import load_feature_net

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DIRECTIONS = ("left", "right", "up", "down", "still")
TRAIN_SCRIPT = "scripts/train_align_rewards.py"


class ClassProbabilityReward(Reward):
    """``p(class | image)`` under genlab's shipped classifier of ``dataset`` (digits or shapes).

    With ``target=None`` the class is each sample's label (``needs="labels"``); with a class index it
    is that class for every sample. Images of another size are resized bilinearly to the classifier's.
    The score is the probability (in [0, 1]), not its log: it is bounded, so a reward-gradient trainer
    gets no huge gradients from hopeless samples and stops pushing once a sample is clearly classified.
    In the zoo (``class``) the build path picks the data set: ``digits`` (default) or ``shapes``.
    """

    def __init__(self, dataset: str = "digits", target: int | None = None) -> None:
        super().__init__()
        self.classifier = load_feature_net(dataset)
        classes = self.classifier.config.num_classes
        if target is not None and not 0 <= target < classes:
            raise GenlabError(f"the {dataset} classifier has classes 0..{classes - 1}, got target {target}")
        self.target = target
        self.needs = "labels" if target is None else None
        self.name = "class" if target is None else f"class{target}"

    def score(self, samples, prompts, labels) -> Tensor:
        size = self.classifier.config.resolution
        if samples.shape[-1] != size:
            samples = F.interpolate(samples, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        probabilities = self.classifier(samples).softmax(-1)
        chosen = labels if self.target is None else torch.full_like(probabilities[:, 0], self.target, dtype=torch.long)
        return probabilities.gather(1, chosen[:, None])[:, 0]


class BrightnessReward(Reward):
    """Mean pixel value in ``[0, 1]``."""

    name = "brightness"

    def score(self, samples, prompts, labels) -> Tensor:
        return to_unit_range(samples).mean((1, 2, 3))


class ColourfulnessReward(Reward):
    """Hasler and Süsstrunk's colourfulness of RGB images in ``[0, 1]``:
    ``sqrt(σ_rg² + σ_yb²) + 0.3·sqrt(μ_rg² + μ_yb²)`` with ``rg = R − G`` and ``yb = (R + G)/2 − B``.

    0 for grey images; about 0.1 for moderately and above 0.2 for very colourful ones (on this scale).
    A small ε keeps the square roots differentiable at 0.
    """

    name = "colourfulness"

    def score(self, samples, prompts, labels) -> Tensor:
        if samples.shape[1] != 3:
            raise GenlabError(f"the 'colourfulness' reward needs RGB images, got {samples.shape[1]} channel(s)")
        red, green, blue = to_unit_range(samples).unbind(1)
        rg, yb = (red - green).flatten(1), ((red + green) / 2 - blue).flatten(1)
        spread = (rg.var(1) + yb.var(1) + 1e-8).sqrt()
        offset = (rg.mean(1) ** 2 + yb.mean(1) ** 2 + 1e-8).sqrt()
        return spread + 0.3 * offset


# -- nets trained here -------------------------------------------------------------------------------
@dataclass(frozen=True)
class MotionNetConfig:
    resolution: int = 16
    widths: tuple[int, ...] = (16, 32, 48)


class MotionNet(nn.Module):
    """3-D CNN: videos ``[B, T, 3, R, R]`` in [-1, 1] -> logits ``[B, 5]`` over :data:`DIRECTIONS`.

    Temporal differences are stacked onto the frames so the first layer sees motion directly;
    global average pooling makes it accept any number of frames ≥ 2.
    """

    def __init__(self, config: MotionNetConfig = MotionNetConfig()) -> None:
        super().__init__()
        self.config = config
        layers, channels = [], 6
        for stage, width in enumerate(config.widths):
            stride = (1, 1, 1) if stage == 0 else (1, 2, 2)
            layers += [nn.Conv3d(channels, width, 3, stride=stride, padding=1), nn.GroupNorm(4, width), nn.SiLU()]
            channels = width
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(channels, len(DIRECTIONS))

    def forward(self, videos: Tensor) -> Tensor:
        frames = videos[:, 1:]
        stacked = torch.cat([frames, frames - videos[:, :-1]], dim=2).transpose(1, 2)  # [B, 6, T-1, R, R]
        return self.head(self.body(stacked).mean((2, 3, 4)))


@dataclass(frozen=True)
class TemporalNetConfig:
    """Frame encoder (two stride-2 convs of ``widths`` channels, then ``latent_channels``) on frames resized to
    ``resolution``, and a next-latent predictor (three 3×3 convs of ``hidden`` channels) over ``context`` frames."""

    resolution: int = 32
    widths: tuple[int, ...] = (32, 48)
    latent_channels: int = 16
    context: int = 2
    hidden: int = 48


class FrameEncoder(nn.Module):
    """Frames ``[N, 3, R, R]`` in [-1, 1] -> latent maps ``[N, latent_channels, R/4, R/4]`` (an autoencoder's
    encoder; the decoder is only used in training)."""

    def __init__(self, config: TemporalNetConfig) -> None:
        super().__init__()
        layers, channels = [], 3
        for width in config.widths:
            layers += [nn.Conv2d(channels, width, 3, stride=2, padding=1), nn.SiLU()]
            channels = width
        layers.append(nn.Conv2d(channels, config.latent_channels, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, frames: Tensor) -> Tensor:
        return self.body(frames)


class TemporalModel(nn.Module):
    """A frozen frame encoder and a predictor of the next frame's (standardised) latent map from the
    ``context`` previous ones, V-JEPA-style prediction in a learnt feature space.

    The predictor sees the context latents stacked on the channel axis and outputs the change from the last
    one. ``latent_mean`` / ``latent_std`` (per channel) standardise the encoder's latents (set in training).
    """

    def __init__(self, config: TemporalNetConfig = TemporalNetConfig()) -> None:
        super().__init__()
        self.config = config
        self.encoder = FrameEncoder(config)
        c, h = config.latent_channels, config.hidden
        self.predictor = nn.Sequential(nn.Conv2d(config.context * c, h, 3, padding=1), nn.SiLU(),
                                       nn.Conv2d(h, h, 3, padding=1), nn.SiLU(), nn.Conv2d(h, c, 3, padding=1))
        self.register_buffer("latent_mean", torch.zeros(c))
        self.register_buffer("latent_std", torch.ones(c))

    def latents(self, videos: Tensor) -> Tensor:
        """Standardised latents ``[B, T, C, R/4, R/4]`` of ``videos [B, T, 3, H, W]`` (frames resized to R)."""
        frames = resize_frames(videos, self.config.resolution).flatten(0, 1)
        latents = self.encoder(frames)
        latents = (latents - self.latent_mean[:, None, None]) / self.latent_std[:, None, None]
        return latents.view(*videos.shape[:2], *latents.shape[1:])

    def predict(self, context: Tensor) -> Tensor:
        """The next latent ``[N, C, h, w]`` from ``context`` consecutive latents ``[N, context, C, h, w]``."""
        return context[:, -1] + self.predictor(context.flatten(1, 2))

    def errors(self, videos: Tensor) -> Tensor:
        """Mean squared error ``[B]`` of predicting every frame's latent from the ``context`` previous ones."""
        context = self.config.context
        if videos.shape[1] <= context:
            raise GenlabError(f"the 'temporal' reward needs more than {context} frames, got {videos.shape[1]}")
        latents = self.latents(videos)
        windows = latents.unfold(1, context + 1, 1).permute(0, 1, 5, 2, 3, 4)  # [B, W, context + 1, C, h, w]
        predicted = self.predict(windows[:, :, :context].flatten(0, 1))
        return (predicted - windows[:, :, context].flatten(0, 1)).pow(2).view(len(videos), -1).mean(1)


def resize_frames(videos: Tensor, size: int) -> Tensor:
    """Videos ``[B, T, C, H, W]`` with square frames resized (bilinear, antialiased) to ``size``."""
    if videos.shape[-1] == size and videos.shape[-2] == size:
        return videos
    frames = F.interpolate(videos.flatten(0, 1), size=(size, size), mode="bilinear", antialias=True,
                           align_corners=False)
    return frames.view(*videos.shape[:3], size, size)


def save_net(net: nn.Module, name: str, metadata: dict) -> Path:
    """Write ``weights/<name>.safetensors`` and ``<name>.json`` (config plus ``metadata``)."""
    WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in net.state_dict().items()}, str(WEIGHTS_DIR / f"{name}.safetensors"))
    (WEIGHTS_DIR / f"{name}.json").write_text(json.dumps({**asdict(net.config), **metadata}, indent=2) + "\n")
    return WEIGHTS_DIR / f"{name}.safetensors"


@cache
def load_net(name: str) -> nn.Module:
    """The shipped ``motion`` or ``temporal`` net, frozen and shared between calls."""
    weights, meta_path = WEIGHTS_DIR / f"{name}.safetensors", WEIGHTS_DIR / f"{name}.json"
    if not weights.is_file() or not meta_path.is_file():
        raise GenlabError(f"no {name} reward weights in {WEIGHTS_DIR}; run {TRAIN_SCRIPT}")
    meta = json.loads(meta_path.read_text())
    if name == "motion":
        net = MotionNet(MotionNetConfig(resolution=meta["resolution"], widths=tuple(meta["widths"])))
    elif name == "temporal":
        net = TemporalModel(TemporalNetConfig(resolution=meta["resolution"], widths=tuple(meta["widths"]),
                                              latent_channels=meta["latent_channels"], context=meta["context"],
                                              hidden=meta["hidden"]))
    else:
        raise GenlabError(f"no shipped reward net called {name!r}; choose motion or temporal")
    net.load_state_dict(load_file(str(weights)))
    return net.eval().requires_grad_(False)


MIRRORS = {"left": ("right", -1), "right": ("left", -1), "up": ("down", -2), "down": ("up", -2)}  # (direction, axis)


class MotionDirectionReward(Reward):
    """``p(direction | video)`` under the shipped motion classifier; videos are resized to its frame size.

    The classifier's training clips are symmetric under mirroring, but a CNN is not exactly so on clips
    unlike them (e.g. sprites moving different ways); the score averages ``p(left | x)`` with
    ``p(right | x mirrored left-right)`` (likewise for up/down) so that mirroring a clip swaps the two.
    """

    modality = "video"

    def __init__(self, direction: str) -> None:
        super().__init__()
        if direction not in DIRECTIONS[:4]:
            raise GenlabError(f"motion direction must be one of {', '.join(DIRECTIONS[:4])}, got {direction!r}")
        self.direction, self.name = direction, f"motion-{direction}"
        self.net = load_net("motion")

    def score(self, samples, prompts, labels) -> Tensor:
        samples = resize_frames(samples, self.net.config.resolution)
        mirrored, axis = MIRRORS[self.direction]
        direct = self.net(samples).softmax(-1)[:, DIRECTIONS.index(self.direction)]
        flipped = self.net(samples.flip(axis)).softmax(-1)[:, DIRECTIONS.index(mirrored)]
        return (direct + flipped) / 2


def global_flow(videos: Tensor) -> Tensor:
    """Global optical flow ``[B, 2]`` (x, y) in pixels per frame of ``videos [B, T, C, H, W]``.

    One Lucas-Kanade estimate per clip and axis over all pixels and frame pairs of the grey video:
    ``u = −Σ I_x·I_t / Σ I_x²`` (likewise ``v`` with ``I_y``), with central spatial differences.
    Exact for a pattern translated by a small constant shift; differentiable.
    """
    grey = videos.mean(2)
    change = (grey[:, 1:] - grey[:, :-1])[:, :, 1:-1, 1:-1]
    gradient_x = ((grey[..., 1:-1, 2:] - grey[..., 1:-1, :-2]) / 2)[:, :-1]
    gradient_y = ((grey[..., 2:, 1:-1] - grey[..., :-2, 1:-1]) / 2)[:, :-1]
    flows = [-(g * change).flatten(1).sum(1) / (g.pow(2).flatten(1).sum(1) + 1e-4) for g in (gradient_x, gradient_y)]
    return torch.stack(flows, 1)


FLOW_DIRECTIONS = {"left": (0, -1.0), "right": (0, 1.0), "up": (1, -1.0), "down": (1, 1.0)}  # (axis, sign)


class FlowDirectionReward(Reward):
    """``tanh`` of the global optical flow (:func:`global_flow`) along a direction, in px per frame: a
    closed-form motion reward with no network to fool."""

    modality = "video"

    def __init__(self, direction: str) -> None:
        super().__init__()
        if direction not in FLOW_DIRECTIONS:
            raise GenlabError(f"flow direction must be one of {', '.join(FLOW_DIRECTIONS)}, got {direction!r}")
        self.direction, self.name = direction, f"flow-{direction}"

    def score(self, samples, prompts, labels) -> Tensor:
        axis, sign = FLOW_DIRECTIONS[self.direction]
        return torch.tanh(sign * global_flow(samples)[:, axis])


class TemporalConsistencyReward(Reward):
    """``−`` the mean squared error of predicting each frame's standardised latent map from the two previous
    frames' (:class:`TemporalModel`); frames of any square size are resized to 32×32.

    Training (``scripts/train_align_rewards.py``) is two-stage so the feature space cannot collapse: a frame
    autoencoder first learns latents that keep what is where, then, with the encoder frozen, a small conv
    predictor learns the next latent. Real sprite and scene clips score about −0.1 to −0.2; shuffled frames
    about −0.5 to −1 and per-frame noise (flicker) about −0.25 to −0.35 (see ``weights/temporal.json``). A
    static clip is the easiest to predict, so this reward alone also favours slow motion, like V-JEPA's.
    """

    name = "temporal"
    modality = "video"

    def __init__(self) -> None:
        super().__init__()
        self.model = load_net("temporal")

    def score(self, samples, prompts, labels) -> Tensor:
        return -self.model.errors(samples)


SMALL_REWARDS: dict[str, RewardEntry] = {
    "class": RewardEntry(lambda path: ClassProbabilityReward(path or "digits").freeze(),
                         "p(label | image) under genlab's classifier (needs labels; --reward-path digits|shapes)"),
    "brightness": RewardEntry(lambda path: BrightnessReward().freeze(), "mean pixel value in [0, 1]"),
    "colourfulness": RewardEntry(lambda path: ColourfulnessReward().freeze(), "Hasler-Süsstrunk colourfulness"),
    **{f"motion-{d}": RewardEntry(lambda path, d=d: MotionDirectionReward(d).freeze(),
                                  f"videos: p(global motion {d}) under a 3-D CNN trained here")
       for d in DIRECTIONS[:4]},
    **{f"flow-{d}": RewardEntry(lambda path, d=d: FlowDirectionReward(d).freeze(),
                                f"videos: tanh of the global optical flow {d} (px/frame), closed form")
       for d in FLOW_DIRECTIONS},
    "temporal": RewardEntry(lambda path: TemporalConsistencyReward().freeze(),
                            "videos: −next-frame prediction error in a feature space trained here"),
}
