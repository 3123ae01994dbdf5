"""CogVideoX as the frozen base of a VD3D camera model, loaded from a local diffusers folder.

A *CogVideoX folder* is a diffusers pipeline folder, as ``CogVideoXPipeline.save_pretrained`` writes
it or the hub ships it (CogVideoX-2b, CogVideoX-5b):

* ``transformer/`` and ``scheduler/`` (required): the ``CogVideoXTransformer3DModel`` and its
  discrete VP scheduler (CogVideoX ships a zero-terminal-SNR one, whose infinite last σ
  :func:`~genlab.core.denoiser.vp_sigmas` makes finite);
* ``vae/`` (for a latent model): the ``AutoencoderKLCogVideoX`` that decodes the transformer's
  latents; without it the transformer's input is the RGB clip itself;
* ``text_encoder/`` and ``tokenizer/`` (optional): the T5 that encodes prompts; without them the
  prompt embedding is zeros.

:class:`CogVideoXDenoiser` is the transformer and scheduler as an EDM denoiser over
``[B, T, C, h, w]`` that remembers its folder, so that
:func:`~genlab.camera.model.save_camera_model` saves a camera model on it as the camera branch plus
a reference to the folder. :func:`generate_camera_clip` samples a clip that follows given cameras
(``genlab sample camera``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from genlab.core.cfg import CFGDenoiser, fixed_embedding
from genlab.core.checkpoint import json_field, read_json
from genlab.core.denoiser import DiffusersDenoiser
from genlab.core.edm import karras_sigmas, sample
from genlab.core.loading import (
    LOAD_ERRORS,
    first_line,
    from_pretrained_checked,
    loading_errors,
    pretrained_folder,
)
from genlab.core.pipelines import vae_decode, vae_scale_factor
from genlab.errors import GenlabError

REQUIRED_PARTS = ("transformer", "scheduler")
TEXT_PARTS = ("text_encoder", "tokenizer")


class CogVideoXDenoiser(DiffusersDenoiser):
    """A CogVideoX transformer and scheduler from a CogVideoX folder, as an EDM denoiser.

    Called as ``denoiser(x [B, T, C, h, w], sigma [B], encoder_hidden_states=[B, L, D], **cond)``.
    The rotary position embeddings of CogVideoX 1.0 5B (``use_rotary_positional_embeddings``) are
    made for the input's grid, as ``CogVideoXPipeline`` makes them. CogVideoX 1.5 (a temporal patch,
    ``patch_size_t``) is not supported.

    Args:
        folder: the CogVideoX folder the transformer and scheduler come from.
        transformer: a ``CogVideoXTransformer3DModel``.
        scheduler: its diffusers scheduler (``alphas_cumprod``).
        prediction_type: defaults to the scheduler's (``v_prediction`` for CogVideoX).
    """

    def __init__(self, folder: Path | str, transformer: nn.Module, scheduler, prediction_type: str | None = None):
        if transformer.config.patch_size_t is not None:
            raise GenlabError(f"{folder}: CogVideoX 1.5 (a temporal patch, patch_size_t) is not supported; "
                              "use a CogVideoX 1.0 model (2b, 5b)")
        super().__init__(transformer, scheduler, prediction_type)
        self.folder = Path(folder)

    @classmethod
    def from_folder(cls, folder: Path | str, torch_dtype: torch.dtype | None = None,
                    prediction_type: str | None = None) -> CogVideoXDenoiser:
        """Load ``folder/transformer`` (in ``torch_dtype``, default float32) and ``folder/scheduler``; eval mode."""
        from diffusers import CogVideoXTransformer3DModel

        folder = Path(folder).expanduser().resolve()
        if not folder.is_dir():
            state = "is a file, not a folder" if folder.exists() else "does not exist"
            raise GenlabError(f"the CogVideoX folder {folder} {state}")
        missing = [f"{part}/" for part in REQUIRED_PARTS if not (folder / part).is_dir()]
        if missing:
            raise GenlabError(f"{folder} is not a diffusers CogVideoX folder: it lacks {', '.join(missing)}")
        transformer_folder, _ = pretrained_folder(folder / "transformer", "CogVideoX transformer")
        transformer = from_pretrained_checked(CogVideoXTransformer3DModel.from_pretrained, transformer_folder,
                                              "CogVideoX transformer", strict=False, torch_dtype=torch_dtype)
        with loading_errors(f"the CogVideoX scheduler from {folder / 'scheduler'}"):
            scheduler = _load_scheduler(folder / "scheduler")
        return cls(folder, transformer, scheduler, prediction_type).eval()

    def reference(self) -> dict:
        """What a saved camera model records to load this base again with :meth:`from_reference`."""
        return {"folder": str(self.folder), "prediction_type": self.prediction_type,
                "torch_dtype": str(self.model.dtype).removeprefix("torch.")}

    @classmethod
    def from_reference(cls, reference: dict, source: Path | str | None = None) -> CogVideoXDenoiser:
        """The base a :meth:`reference` describes, loaded from its folder; ``source`` (the file that holds the
        reference, e.g. a camera model's ``genlab.json``) is named in errors."""
        where = f"the CogVideoX reference in {source}" if source else "the CogVideoX reference"
        if not isinstance(reference, dict):
            raise GenlabError(f"{where} is corrupt: it should be a JSON object, got {reference!r}")
        folder = json_field(reference, "folder", str, where)
        dtype_name = json_field(reference, "torch_dtype", str, where) if "torch_dtype" in reference else "float32"
        dtype = getattr(torch, dtype_name, None)
        if not isinstance(dtype, torch.dtype):
            raise GenlabError(f"{where} is corrupt: {dtype_name!r} is not a torch dtype")
        prediction_type = reference.get("prediction_type")
        if prediction_type is not None:
            prediction_type = json_field(reference, "prediction_type", str, where)
        if source and not Path(folder).expanduser().is_dir():
            state = "is a file, not a folder" if Path(folder).expanduser().exists() else "does not exist"
            raise GenlabError(f"{source} is a camera branch on the CogVideoX folder {folder}, which {state} (moved or "
                              "deleted?); put the CogVideoX folder back there")
        return cls.from_folder(folder, dtype, prediction_type)

    def rotary_embedding(self, x: Tensor) -> tuple[Tensor, Tensor] | None:
        """``(cos, sin)``, each ``[T·h'·w', head_dim]`` for latents ``x [B, T, C, h, w]`` (``h' = h / patch``);
        ``None`` for a transformer without rotary embeddings."""
        config = self.model.config
        if not config.use_rotary_positional_embeddings:
            return None
        from diffusers.models.embeddings import get_3d_rotary_pos_embed
        from diffusers.pipelines.cogvideo.pipeline_cogvideox import get_resize_crop_region_for_grid

        patch = config.patch_size
        grid = (x.shape[-2] // patch, x.shape[-1] // patch)
        crops = get_resize_crop_region_for_grid(grid, config.sample_width // patch, config.sample_height // patch)
        return get_3d_rotary_pos_embed(config.attention_head_dim, crops, grid, x.shape[1], device=x.device)

    def forward(self, x: Tensor, sigma: Tensor, **cond) -> Tensor:
        rotary = self.rotary_embedding(x)
        if rotary is not None:
            cond = {"image_rotary_emb": rotary, **cond}
        return super().forward(x, sigma, **cond)


def _load_scheduler(folder: Path):
    """The diffusers scheduler saved in ``folder`` (its class named by ``scheduler_config.json``)."""
    import diffusers

    name = read_json(folder / "scheduler_config.json", f"{folder} has no scheduler_config.json").get("_class_name")
    scheduler_class = getattr(diffusers, str(name), None)
    if scheduler_class is None or not hasattr(scheduler_class, "from_pretrained"):
        raise GenlabError(f"{folder}: unknown diffusers scheduler {name!r}")
    return scheduler_class.from_pretrained(folder)


@dataclass(frozen=True)
class ClipGeometry:
    """Sizes of a CogVideoX model's clips.

    ``latent_shape = (T, C, h, w)`` is the transformer's input per clip; an output clip has
    ``frames = (T − 1)·temporal + 1`` frames of ``height × width = h·spatial × w·spatial`` pixels
    (the VAE's compression; ``temporal = spatial = 1`` without a VAE).
    """

    latent_shape: tuple[int, int, int, int]
    temporal: int = 1
    spatial: int = 1

    @property
    def frames(self) -> int:
        return (self.latent_shape[0] - 1) * self.temporal + 1

    @property
    def height(self) -> int:
        return self.latent_shape[2] * self.spatial

    @property
    def width(self) -> int:
        return self.latent_shape[3] * self.spatial


def clip_geometry(base: CogVideoXDenoiser) -> ClipGeometry:
    """The clip sizes of ``base``: the transformer's native ones (``sample_frames`` output frames,
    ``sample_height × sample_width`` latents) and its folder's VAE compression."""
    config = base.model.config
    if config.in_channels != config.out_channels:
        raise GenlabError(f"{base.folder}: image-to-video CogVideoX (in_channels {config.in_channels} ≠ out_channels "
                          f"{config.out_channels}) is not supported")
    latent_frames = (config.sample_frames - 1) // config.temporal_compression_ratio + 1
    latent_shape = (latent_frames, config.out_channels, config.sample_height, config.sample_width)
    if not (base.folder / "vae").is_dir():
        if config.out_channels != 3:
            raise GenlabError(f"{base.folder} has no vae/ to decode the transformer's {config.out_channels}-channel "
                              "latents")
        return ClipGeometry(latent_shape)
    path = base.folder / "vae" / "config.json"
    vae = read_json(path, f"{base.folder}/vae has no config.json")
    return ClipGeometry(latent_shape, json_field(vae, "temporal_compression_ratio", int, path),
                        vae_scale_factor(json_field(vae, "block_out_channels", list, path)))


def camera_plucker(poses: Tensor, geometry: ClipGeometry) -> Tensor:
    """Plücker frames ``[1, T, 6, h, w]`` (float32) for an output clip's camera-to-world ``poses [frames, 4, 4]``.

    The branch sees one camera per latent frame, those of output frames ``0, temporal, 2·temporal,
    …``, with the rays through the latent grid's cells of frames with a 60° horizontal field of
    view and square pixels.
    """
    from genlab.camera.plucker import plucker_embedding
    from genlab.data.scenes import default_intrinsics

    if tuple(poses.shape) != (geometry.frames, 4, 4):
        raise GenlabError(f"need one camera-to-world pose per frame of the clip, [{geometry.frames}, 4, 4]; "
                          f"got {list(poses.shape)}")
    latent_frames, _, height, width = geometry.latent_shape
    intrinsics = default_intrinsics(geometry.width)
    intrinsics[1, 2] = geometry.height / 2
    intrinsics[:2] /= geometry.spatial  # the same rays, in latent-grid pixels
    cameras = poses.to(torch.float64)[:: geometry.temporal][None]
    return plucker_embedding(cameras, intrinsics.expand(1, latent_frames, 3, 3), height, width).float()


def prompt_embeddings(base: CogVideoXDenoiser, prompts: list[str]) -> Tensor:
    """T5 embeddings ``[len(prompts), L, D]`` (``L = max_text_seq_length``, in the transformer's dtype and
    device), made as ``CogVideoXPipeline`` makes them; zeros when the folder has no text encoder, which
    then allows only empty prompts."""
    config, folder, device, dtype = base.model.config, base.folder, base.model.device, base.model.dtype
    if not all((folder / part).is_dir() for part in TEXT_PARTS):
        if any(prompts):
            raise GenlabError(f"a prompt needs a text encoder, but {folder} has no text_encoder/ and tokenizer/")
        return torch.zeros(len(prompts), config.max_text_seq_length, config.text_embed_dim, device=device, dtype=dtype)
    from transformers import AutoTokenizer, T5EncoderModel

    try:
        tokenizer = AutoTokenizer.from_pretrained(folder / "tokenizer")
    except (*LOAD_ERRORS, ImportError) as error:
        raise GenlabError(f"cannot load the tokenizer of {folder}: {first_line(error)}") from error
    encoder_folder, _ = pretrained_folder(folder / "text_encoder", "T5 text encoder", weights="model")
    encoder = from_pretrained_checked(T5EncoderModel.from_pretrained, encoder_folder, "T5 text encoder",
                                      strict=False, torch_dtype=dtype, ignore_mismatched_sizes=True).to(device)
    ids = tokenizer(prompts, padding="max_length", max_length=config.max_text_seq_length, truncation=True,
                    add_special_tokens=True, return_tensors="pt").input_ids
    return encoder(ids.to(device))[0].to(dtype)


def decode_clip(base: CogVideoXDenoiser, latents: Tensor) -> Tensor:
    """Clips ``[B, frames, 3, H, W]`` in ``[-1, 1]`` from the transformer's ``latents [B, T, C, h, w]``:
    the folder's VAE decodes ``latents / scaling_factor`` (tiled); without a VAE they are the frames."""
    if not (base.folder / "vae").is_dir():
        return latents.float().clamp(-1, 1)
    from diffusers import AutoencoderKLCogVideoX

    vae_folder, _ = pretrained_folder(base.folder / "vae", "CogVideoX VAE")
    vae = from_pretrained_checked(AutoencoderKLCogVideoX.from_pretrained, vae_folder, "CogVideoX VAE", strict=False,
                                  torch_dtype=base.model.dtype).to(latents.device)
    vae.enable_tiling()
    return vae_decode(vae, latents.permute(0, 2, 1, 3, 4)).permute(0, 2, 1, 3, 4)


@torch.no_grad()
def generate_camera_clip(model: nn.Module, poses: Tensor, steps: int = 50, seed: int = 0, prompt: str = "",
                         guidance_scale: float = 1.0, progress: bool = False) -> Tensor:
    """One clip ``[1, frames, 3, H, W]`` in ``[-1, 1]`` from a camera model on a :class:`CogVideoXDenoiser`
    base, following camera-to-world ``poses [frames, 4, 4]`` (OpenCV axes; see :func:`camera_plucker`).

    Heun sampling on ``steps`` Karras noise levels over the base's σ range, from noise drawn by a
    generator seeded with ``seed``; with ``guidance_scale > 1``, classifier-free guidance whose null
    condition is the empty prompt (one batched call per evaluation).
    """
    base = model.base
    geometry = clip_geometry(base)
    device = base.model.device
    plucker = camera_plucker(poses, geometry).to(device)
    text, empty = prompt_embeddings(base, [prompt, ""]).chunk(2)
    denoiser = model
    if guidance_scale != 1:
        denoiser = CFGDenoiser(model, guidance_scale, "encoder_hidden_states", fixed_embedding(empty))
    noise = torch.randn((1, *geometry.latent_shape), generator=torch.Generator().manual_seed(seed)).to(device)
    sigmas = karras_sigmas(steps, base.sigma_min, base.sigma_max)
    latents = sample(denoiser, noise, sigmas, plucker=plucker, encoder_hidden_states=text, progress=progress)
    return decode_clip(base, latents)
