"""CLIP-based image rewards: LAION aesthetics, CLIP score, PickScore and HPSv2.

All four embed images with a Hugging Face :class:`~transformers.CLIPModel` after a differentiable
torch preprocessing (:func:`clip_pixels`), so their scores back-propagate to the pixels. The
pixel and loading helpers at the top are shared with the video and detection rewards.

Score conventions (higher is better):

- ``aesthetic``: the LAION aesthetic predictor v2's rating, roughly 1-10. VADER trains with the
  loss ``|10 - r| * 0.1``; the reward returns ``r`` itself.
- ``clip-score`` and ``pickscore``: CLIP's ``logit_scale.exp()`` (100 for the released models)
  times the cosine similarity of image and prompt embeddings, PickScore's own convention.
- ``hps``: the plain cosine similarity, as HPSv2 reports it (about 0.2-0.3 for good images).
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar
from urllib.parse import unquote, urlparse

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

from genlab.align.rewards.base import Reward, RewardEntry, to_unit_range
from genlab.errors import GenlabError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# The LAION aesthetic predictor v2 head, at a fixed commit of its repository (the file was added in
# 61f2f07a2b16be5ffb40a10ba5adae4a74c9d0d9 and is unchanged at 6934dd81792f086e613a121dbce43082cb8be85e,
# the newest commit of the repository's main branch when this was pinned), and the SHA-256 of that file
# as stored in the repository at that commit. A download is checked against it; a cached copy is
# re-checked before every use.
AESTHETIC_MLP_FILE = "sac+logos+ava1-l14-linearMSE.pth"
AESTHETIC_MLP_COMMIT = "6934dd81792f086e613a121dbce43082cb8be85e"
AESTHETIC_MLP_URL = ("https://github.com/christophschuhmann/improved-aesthetic-predictor/raw/"
                     f"{AESTHETIC_MLP_COMMIT}/{AESTHETIC_MLP_FILE}")
AESTHETIC_MLP_SHA256 = "21dd590f3ccdc646f0d53120778b296013b096a035a2718c9cb0d511bff0f1e0"
# Downloads genlab verifies: URL -> SHA-256 of the file. Other URLs are refused (download the file,
# check it, and give its path).
KNOWN_DOWNLOADS = {AESTHETIC_MLP_URL: AESTHETIC_MLP_SHA256}
# The revision (branch, tag or commit) of the Hugging Face hub repositories the pretrained rewards load
# from. No commit of those repositories could be verified when this was written, so the default follows
# their main branch; pin one with ``genlab align --reward-revision COMMIT`` (or ``revision=``), or give
# a local copy with --reward-path. Tokenizers that come from another repository than the model (PickScore's
# and HPSv2's open_clip H/14 tokenizer) follow TOKENIZER_REVISION.
HUB_REVISION = "main"
TOKENIZER_REVISION = "main"
HPS_HUB_ID = "xswu/HPSv2"
HPS_FILENAME = "HPS_v2_compressed.pt"
OPEN_CLIP_H14_TOKENIZER = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"

LOAD_ERRORS = (OSError, ValueError, pickle.UnpicklingError)
Loaded = TypeVar("Loaded")


# ---------------------------------------------------------------------------------------------
# Shared helpers: differentiable pixel preprocessing and loading with clear errors.
# ---------------------------------------------------------------------------------------------


def normalise(images: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """``[N, C, H, W]`` in ``[0, 1]`` standardised per channel; a clear error unless ``C`` is 3."""
    if images.shape[-3] != len(mean):
        raise GenlabError(f"pretrained rewards score RGB samples with {len(mean)} channels, "
                          f"got {images.shape[-3]}")
    mean_ = torch.tensor(mean, dtype=images.dtype, device=images.device).view(-1, 1, 1)
    std_ = torch.tensor(std, dtype=images.dtype, device=images.device).view(-1, 1, 1)
    return (images - mean_) / std_


def resize_shortest_side(images: Tensor, size: int) -> Tensor:
    """``[N, C, H, W]`` resized (bilinear, antialiased) so that ``min(H, W) == size``, aspect kept."""
    height, width = images.shape[-2:]
    scale = size / min(height, width)
    target = (max(size, round(height * scale)), max(size, round(width * scale)))
    if target == (height, width):
        return images
    return F.interpolate(images, size=target, mode="bilinear", antialias=True, align_corners=False)


def clip_pixels(images: Tensor, size: int, mean: Sequence[float] = CLIP_MEAN,
                std: Sequence[float] = CLIP_STD) -> Tensor:
    """Model input ``[N, 3, size, size]`` from samples ``[N, 3, H, W]`` in ``[-1, 1]``.

    The differentiable counterpart of CLIP's image processor: shortest side resized to ``size``,
    centre crop, per-channel normalisation (CLIP's statistics unless ``mean``/``std`` are given).
    """
    images = resize_shortest_side(to_unit_range(images), size)
    top = (images.shape[-2] - size) // 2
    left = (images.shape[-1] - size) // 2
    return normalise(images[..., top:top + size, left:left + size], mean, std)


def load_pretrained(loader: Callable[[str], Loaded], path: str, what: str) -> Loaded:
    """``loader(path)``, with a missing or invalid checkpoint turned into a :class:`GenlabError`."""
    try:
        return loader(path)
    except LOAD_ERRORS as error:
        raise GenlabError(f"could not load the {what} from {path!r} (a local folder or Hugging Face hub "
                          f"id): {error}") from error


def file_sha256(path: Path | str) -> str:
    """The SHA-256 hex digest of the file at ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_verified(url: str, what: str) -> Path:
    """The file at ``url`` (one of :data:`KNOWN_DOWNLOADS`), downloaded once into torch's hub cache
    (``$TORCH_HOME/hub/checkpoints``) and checked against its known SHA-256 on download and on every
    later use; GenlabError for another URL, a failed download or a file that does not match."""
    expected = KNOWN_DOWNLOADS.get(url)
    if expected is None:
        raise GenlabError(f"genlab downloads only files whose SHA-256 it knows, and {url} is not one of them; "
                          f"download the {what} yourself, check it, and give the local file")
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    cached = folder / unquote(Path(urlparse(url).path).name)
    advice = (f"download {url} yourself, check that its SHA-256 is {expected}, and give the folder holding it "
              "with --reward-path")
    if not cached.is_file():
        try:
            folder.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(url, str(cached), hash_prefix=expected, progress=False)
        except RuntimeError as error:  # torch's hash check; the partial download is already deleted
            raise GenlabError(f"the {what} downloaded from {url} does not have the expected SHA-256 "
                              f"({error}); {advice}") from error
        except OSError as error:  # URLError and HTTPError are OSErrors
            raise GenlabError(f"could not download the {what} from {url} ({error}); {advice}") from error
    found = file_sha256(cached)
    if found != expected:
        raise GenlabError(f"the cached {what} {cached} has SHA-256 {found}, not the expected {expected}; delete it "
                          f"to download it again, or {advice}")
    return cached


def load_weights(path: str, what: str) -> dict[str, Tensor]:
    """A state dict from a ``.safetensors`` or torch pickle file, or an ``http(s)`` URL of one whose
    SHA-256 genlab knows (:func:`download_verified`).

    Pickles are read with ``weights_only=True``: only tensors and plain containers.
    """

    def read(source: str) -> dict[str, Tensor]:
        if source.startswith(("http://", "https://")):
            source = str(download_verified(source, what))
        if source.endswith(".safetensors"):
            from safetensors.torch import load_file

            return load_file(source)
        return torch.load(source, map_location="cpu", weights_only=True)

    try:
        return read(path)
    except LOAD_ERRORS as error:
        raise GenlabError(f"could not read the {what} from {path!r}: {error}") from error


def load_state(module: nn.Module, state_dict: Mapping[str, Tensor], what: str, path: str) -> None:
    """``module.load_state_dict(state_dict)`` (strict), with a mismatch as a :class:`GenlabError`."""
    try:
        module.load_state_dict(state_dict)
    except RuntimeError as error:
        raise GenlabError(f"the {what} in {path!r} does not fit the expected architecture: "
                          f"{error}") from error


# ---------------------------------------------------------------------------------------------
# CLIP embeddings.
# ---------------------------------------------------------------------------------------------


def clip_image_embeddings(model: CLIPModel, images: Tensor) -> Tensor:
    """L2-normalised projected image embeddings ``[B, D]`` of samples ``[B, 3, H, W]`` in ``[-1, 1]``."""
    pixels = clip_pixels(images, model.config.vision_config.image_size)
    pooled = model.vision_model(pixel_values=pixels).pooler_output
    return F.normalize(model.visual_projection(pooled), dim=-1)


class AestheticMLP(nn.Module):
    """The LAION aesthetic predictor v2 head: a linear stack (no activations) on CLIP embeddings.

    ``layers`` keeps the released module layout, so ``sac+logos+ava1-l14-linearMSE.pth`` (keys
    ``layers.0/2/4/6/7.{weight,bias}``) loads as is; ``embed_dim`` is CLIP's projection width
    (768 for ViT-L/14). Maps embeddings ``[B, embed_dim]`` to ratings ``[B, 1]``.
    """

    def __init__(self, embed_dim: int = 768):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(embed_dim, 1024), nn.Dropout(0.2),
            nn.Linear(1024, 128), nn.Dropout(0.2),
            nn.Linear(128, 64), nn.Dropout(0.1),
            nn.Linear(64, 16),
            nn.Linear(16, 1),
        )

    def forward(self, embeddings: Tensor) -> Tensor:
        return self.layers(embeddings)


class AestheticReward(Reward):
    """LAION aesthetic predictor v2: the MLP's rating of the L2-normalised CLIP image embedding.

    Scores ``[B]`` of images ``[B, 3, H, W]``, roughly on a 1-10 scale (VADER's loss is
    ``|10 - score| * 0.1``).
    """

    name = "aesthetic"
    default_path = "openai/clip-vit-large-patch14"

    def __init__(self, model: CLIPModel, mlp: AestheticMLP):
        super().__init__()
        self.model = model
        self.mlp = mlp

    @classmethod
    def from_pretrained(cls, path: str | None = None, mlp_path: str | None = None,
                        revision: str = HUB_REVISION) -> AestheticReward:
        """CLIP from a folder or hub id (default ViT-L/14, at ``revision`` on the hub) and the MLP from a
        ``.pth``/``.safetensors`` file or a URL genlab knows the SHA-256 of. Without ``mlp_path`` the MLP
        is ``sac+logos+ava1-l14-linearMSE.pth`` inside the folder ``path`` when it holds one (weights you
        verified yourself), else the released file, downloaded from a fixed commit and checked against
        its SHA-256 (:data:`AESTHETIC_MLP_URL`); frozen."""
        path = path or cls.default_path
        if mlp_path is None:
            local = Path(path) / AESTHETIC_MLP_FILE
            mlp_path = str(local) if local.is_file() else AESTHETIC_MLP_URL
        model = load_pretrained(lambda source: CLIPModel.from_pretrained(source, revision=revision), path,
                                "aesthetic reward's CLIP model")
        mlp = AestheticMLP(model.config.projection_dim)
        load_state(mlp, load_weights(mlp_path, "aesthetic MLP weights"), "aesthetic MLP", mlp_path)
        return cls(model, mlp).freeze()

    def score(self, samples: Tensor, prompts: Sequence[str] | None, labels: Tensor | None) -> Tensor:
        return self.mlp(clip_image_embeddings(self.model, samples)).squeeze(-1)


class ClipScoreReward(Reward):
    """Prompt alignment: ``logit_scale.exp() * cos(image embedding, prompt embedding)``.

    Scores ``[B]`` of images ``[B, 3, H, W]`` against one prompt per image; the logit scale is 100
    for the released CLIP models, so scores are cosine similarities in percent.
    """

    name = "clip-score"
    needs = "prompts"
    default_path = "openai/clip-vit-large-patch14"
    default_tokenizer_path: str | None = None  # None: the tokenizer saved with the model
    scaled = True  # multiply the cosine similarity by CLIP's logit scale

    def __init__(self, model: CLIPModel, tokenizer: CLIPTokenizer):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer

    @classmethod
    def from_pretrained(cls, path: str | None = None, tokenizer_path: str | None = None,
                        revision: str = HUB_REVISION) -> ClipScoreReward:
        """A CLIPModel from a folder or hub id (``default_path`` when None; ``revision`` on the hub) and its
        BPE tokenizer (from ``tokenizer_path``, else ``default_tokenizer_path`` at TOKENIZER_REVISION, else
        the model's own, at ``revision``); frozen."""
        path = path or cls.default_path
        model = load_pretrained(lambda source: CLIPModel.from_pretrained(source, revision=revision), path,
                                f"{cls.name} reward's CLIP model")
        return cls(model, cls.load_tokenizer(tokenizer_path or cls.default_tokenizer_path or path,
                                             revision if cls.default_tokenizer_path is None else TOKENIZER_REVISION)
                   ).freeze()

    @classmethod
    def load_tokenizer(cls, path: str, revision: str = TOKENIZER_REVISION) -> CLIPTokenizer:
        return load_pretrained(lambda source: CLIPTokenizer.from_pretrained(source, revision=revision), path,
                               f"{cls.name} reward's CLIP tokenizer")

    def text_embeddings(self, prompts: Sequence[str], device: torch.device) -> Tensor:
        """L2-normalised projected prompt embeddings ``[B, D]`` (padded to CLIP's context length)."""
        tokens = self.tokenizer(list(prompts), padding="max_length", truncation=True, return_tensors="pt",
                                max_length=self.model.config.text_config.max_position_embeddings).to(device)
        pooled = self.model.text_model(input_ids=tokens.input_ids,
                                       attention_mask=tokens.attention_mask).pooler_output
        return F.normalize(self.model.text_projection(pooled), dim=-1)

    def score(self, samples: Tensor, prompts: Sequence[str] | None, labels: Tensor | None) -> Tensor:
        if labels is not None:
            raise GenlabError(f"the {self.name!r} reward compares samples with text prompts, "
                              "not class labels")
        images = clip_image_embeddings(self.model, samples)
        similarity = (images * self.text_embeddings(prompts, samples.device)).sum(-1)
        return similarity * self.model.logit_scale.exp() if self.scaled else similarity


class PickScoreReward(ClipScoreReward):
    """PickScore: a CLIP-H/14 fine-tuned on Pick-a-Pic preferences, scored like :class:`ClipScoreReward`.

    The released model (``yuvalkirstain/PickScore_v1``) is a CLIPModel whose tokenizer comes with
    the ``laion/CLIP-ViT-H-14-laion2B-s32B-b79K`` processor (the standard CLIP BPE vocabulary).
    """

    name = "pickscore"
    default_path = "yuvalkirstain/PickScore_v1"
    default_tokenizer_path = OPEN_CLIP_H14_TOKENIZER


# ---------------------------------------------------------------------------------------------
# HPSv2: an open_clip ViT-H-14 checkpoint converted to transformers' CLIPModel.
# ---------------------------------------------------------------------------------------------

# open_clip name -> transformers name, for a key equal to the left side or starting with it and a dot.
_OPEN_CLIP_TOWER_KEYS = {
    "visual.conv1": "vision_model.embeddings.patch_embedding",
    "visual.class_embedding": "vision_model.embeddings.class_embedding",
    "visual.positional_embedding": "vision_model.embeddings.position_embedding.weight",
    "visual.ln_pre": "vision_model.pre_layrnorm",
    "visual.ln_post": "vision_model.post_layernorm",
    "token_embedding": "text_model.embeddings.token_embedding",
    "positional_embedding": "text_model.embeddings.position_embedding.weight",
    "ln_final": "text_model.final_layer_norm",
    "logit_scale": "logit_scale",
}
# Projections open_clip applies as ``x @ proj`` ([width, embed_dim]); Linear weights are their transposes.
_OPEN_CLIP_PROJECTIONS = {"visual.proj": "visual_projection.weight",
                          "text_projection": "text_projection.weight"}
_OPEN_CLIP_RESBLOCKS = {"visual.transformer.resblocks": "vision_model.encoder.layers",
                        "transformer.resblocks": "text_model.encoder.layers"}
_OPEN_CLIP_BLOCK_KEYS = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "mlp.c_fc": "mlp.fc1",
                         "mlp.c_proj": "mlp.fc2", "attn.out_proj": "self_attn.out_proj"}


def open_clip_vit_h14_config() -> CLIPConfig:
    """transformers' CLIPConfig of open_clip's ViT-H-14 (HPSv2's backbone).

    Vision: 224 px, patch 14, width 1280, 32 layers, 16 heads; text: width 1024, 24 layers, 16
    heads, 77 tokens; 1024-d joint embedding. open_clip uses exact GELU and layer-norm eps 1e-5.
    """
    return CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                         num_attention_heads=16, max_position_embeddings=77, hidden_act="gelu",
                         layer_norm_eps=1e-5, bos_token_id=49406, eos_token_id=49407),
        vision_config=dict(image_size=224, patch_size=14, hidden_size=1280, intermediate_size=5120,
                           num_hidden_layers=32, num_attention_heads=16, hidden_act="gelu",
                           layer_norm_eps=1e-5),
        projection_dim=1024,
    )


def _renamed(key: str, table: Mapping[str, str]) -> str | None:
    for old, new in table.items():
        if key == old or key.startswith(old + "."):
            return new + key[len(old):]
    return None


def _convert_open_clip_key(key: str, value: Tensor) -> dict[str, Tensor]:
    """The transformers entries of one open_clip entry (three for a fused attention input projection)."""
    if key in _OPEN_CLIP_PROJECTIONS:
        return {_OPEN_CLIP_PROJECTIONS[key]: value.t().contiguous()}
    if (new := _renamed(key, _OPEN_CLIP_TOWER_KEYS)) is not None:
        return {new: value}
    for old, new in _OPEN_CLIP_RESBLOCKS.items():
        if key.startswith(old + "."):
            index, rest = key[len(old) + 1:].split(".", 1)
            layer = f"{new}.{index}."
            if rest in ("attn.in_proj_weight", "attn.in_proj_bias"):
                kind = rest.rsplit("_", 1)[1]
                return {f"{layer}self_attn.{name}_proj.{kind}": part
                        for name, part in zip("qkv", value.chunk(3, dim=0), strict=True)}
            if (block := _renamed(rest, _OPEN_CLIP_BLOCK_KEYS)) is not None:
                return {layer + block: value}
    raise GenlabError(f"unexpected key {key!r} in the open_clip checkpoint: only plain ViT CLIP models "
                      "(visual.*, token_embedding, transformer.resblocks.*, ln_final, text_projection) "
                      "convert")


def clip_state_dict_from_open_clip(state_dict: Mapping[str, Tensor], config: CLIPConfig) -> dict[str, Tensor]:
    """transformers CLIPModel weights from an open_clip ViT CLIP state dict (as HPSv2 ships it).

    Accepts the plain state dict or one nested under ``"state_dict"``, with or without a DDP
    ``module.`` prefix. The fused attention ``in_proj_weight``/``in_proj_bias`` (q, k, v stacked)
    is split into ``q_proj``/``k_proj``/``v_proj``; ``visual.proj`` and ``text_projection`` are
    transposed into Linear weights; the causal ``attn_mask`` buffer is dropped. The result is
    checked against the keys and shapes of a CLIPModel built from ``config`` (clear error if not).
    """
    if "state_dict" in state_dict:
        state_dict = state_dict["state_dict"]
    converted: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        key = key.removeprefix("module.")
        if key.split(".")[-1] != "attn_mask":
            converted.update(_convert_open_clip_key(key, value))
    with torch.device("meta"):
        expected = {key: value.shape for key, value in CLIPModel(config).state_dict().items()}
    problems = [f"missing {key}" for key in expected.keys() - converted.keys()]
    problems += [f"{key} has shape {tuple(converted[key].shape)}, the config needs {tuple(shape)}"
                 for key, shape in expected.items() if key in converted and converted[key].shape != shape]
    if problems:
        raise GenlabError("the open_clip checkpoint does not match the CLIP config: "
                          + "; ".join(sorted(problems)[:5]))
    return converted


class HPSReward(ClipScoreReward):
    """Human Preference Score v2: cosine similarity of HPSv2's image and prompt embeddings.

    HPSv2 is an open_clip ViT-H-14 fine-tuned on human preferences, released as an open_clip state
    dict (``HPS_v2_compressed.pt`` in the ``xswu/HPSv2`` hub repo); it is converted on load with
    :func:`clip_state_dict_from_open_clip`. Scores ``[B]`` are unscaled cosines, as HPSv2 reports.
    """

    name = "hps"
    default_path = HPS_HUB_ID
    default_tokenizer_path = OPEN_CLIP_H14_TOKENIZER
    scaled = False

    @classmethod
    def from_pretrained(cls, path: str | None = None, tokenizer_path: str | None = None,
                        config: CLIPConfig | None = None, filename: str = HPS_FILENAME,
                        revision: str = HUB_REVISION) -> HPSReward:
        """The checkpoint from a local file, or ``filename`` from a hub repo at ``revision`` (default
        ``xswu/HPSv2``; ``HPS_v2.1_compressed.pt`` is v2.1), into a CLIPModel of ``config`` (default
        :func:`open_clip_vit_h14_config`), plus the CLIP BPE tokenizer; frozen."""
        path = path or cls.default_path
        config = config or open_clip_vit_h14_config()
        if Path(path).is_file():
            checkpoint = path
        else:
            from huggingface_hub import hf_hub_download

            checkpoint = load_pretrained(lambda repo: hf_hub_download(repo, filename, revision=revision), path,
                                         f"HPSv2 checkpoint {filename!r}")
        weights = clip_state_dict_from_open_clip(load_weights(checkpoint, "HPSv2 checkpoint"), config)
        model = CLIPModel(config)
        load_state(model, weights, "HPSv2 checkpoint", checkpoint)
        return cls(model, cls.load_tokenizer(tokenizer_path or cls.default_tokenizer_path)).freeze()


ZOO: dict[str, RewardEntry] = {
    "aesthetic": RewardEntry(AestheticReward.from_pretrained,
                             "LAION aesthetic predictor v2 on CLIP ViT-L/14 image embeddings (about 1-10)",
                             AestheticReward.default_path),
    "clip-score": RewardEntry(ClipScoreReward.from_pretrained,
                              "CLIP image-prompt similarity (100 x cosine); needs --prompts",
                              ClipScoreReward.default_path),
    "pickscore": RewardEntry(PickScoreReward.from_pretrained,
                             "PickScore human-preference CLIP-H/14 (100 x cosine with the prompt); "
                             "needs --prompts",
                             PickScoreReward.default_path),
    "hps": RewardEntry(HPSReward.from_pretrained,
                       "HPSv2 human-preference score (open_clip ViT-H-14 checkpoint); needs --prompts",
                       HPSReward.default_path),
}
