"""A finished alignment run's weights on disk, in the formats users load: ``<run_dir>/adapter/``.

LoRA runs write

* ``adapter_config.json`` + ``adapter_model.safetensors`` (peft's ``PeftModel.save_pretrained``),
  for every model: ``PeftModel.from_pretrained(net, folder)`` adapts ``net`` (a genlab net such as
  ``denoiser.net``, or a pipeline's ``pipe.unet``) in place;
* ``pytorch_lora_weights.safetensors`` (diffusers' LoRA layout, written by the pipeline class's
  ``save_lora_weights`` from ``convert_state_dict_to_diffusers``) where diffusers can load LoRA into
  the pipeline's UNet: ``pipe.load_lora_weights(folder)`` on Stable Diffusion. diffusers has no LoRA
  loader for the ``UNet3DConditionModel`` of ``TextToVideoSDPipeline``, so text-to-video runs get
  the peft folder only;
* ``align.json``: how the run was made (reward, model, LoRA settings; :class:`AdapterInfo`).

Full fine-tuning (``--lora-rank 0``) writes the net's whole state dict as ``weights.safetensors``
beside ``align.json``. :func:`load_adapter` reads every format, including the bare-key LoRA
``weights.safetensors`` of runs made before the peft export.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peft import LoraConfig, PeftConfig, PeftModel, get_peft_model_state_dict
from peft.utils import CONFIG_NAME, SAFETENSORS_WEIGHTS_NAME
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from genlab.align.lora import ADAPTER_NAME, inject_lora, load_trainable_state, lora_config, trainable_state
from genlab.align.targets import AlignTarget
from genlab.core.checkpoint import json_field, read_json
from genlab.errors import GenlabError

ADAPTER_DIR = "adapter"
ADAPTER_INFO = "align.json"
FULL_WEIGHTS = "weights.safetensors"
DIFFUSERS_LORA = "pytorch_lora_weights.safetensors"


@dataclass(frozen=True)
class AdapterInfo:
    """How an alignment run's weights were made, its ``align.json``: the LoRA rank (0: all weights were trained),
    alpha and target layers, the reward and the model that was aligned."""

    lora_rank: int
    lora_alpha: float
    lora_targets: tuple[str, ...]
    reward: str | None = None
    model: str | None = None

    @classmethod
    def from_json(cls, info: Mapping, source: Path | str) -> AdapterInfo:
        """The info in an ``align.json`` object ``info`` read from ``source``; GenlabError naming ``source`` for a
        missing or mistyped field."""
        rank = json_field(info, "lora_rank", int, source)
        alpha = json_field(info, "lora_alpha", (int, float), source)
        targets = json_field(info, "lora_targets", list, source)
        if not all(isinstance(name, str) for name in targets):
            raise GenlabError(f"{source} is corrupt: 'lora_targets' should be a list of layer names, got {targets!r}")
        reward, model = (json_field(info, key, (str, type(None)), source) if key in info else None
                         for key in ("reward", "model"))
        return cls(rank, alpha, tuple(targets), reward, model)

    def to_json(self) -> dict[str, Any]:
        return {"lora_rank": self.lora_rank, "lora_alpha": self.lora_alpha, "lora_targets": list(self.lora_targets),
                "reward": self.reward, "model": self.model}


def save_diffusers_lora(pipe, folder: Path) -> bool:
    """Write the LoRA of ``pipe.unet`` in diffusers' layout for ``pipe.load_lora_weights(folder)``,
    with peft's config (rank, alpha, targets) as metadata; False, writing nothing, where diffusers
    has no LoRA loader for the UNet."""
    if not hasattr(pipe.unet, "load_lora_adapter"):
        return False
    from diffusers.utils import convert_state_dict_to_diffusers

    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(pipe.unet, adapter_name=ADAPTER_NAME))
    type(pipe).save_lora_weights(folder, unet_lora_layers=layers, weight_name=DIFFUSERS_LORA,
                                 unet_lora_adapter_metadata=pipe.unet.peft_config[ADAPTER_NAME].to_dict())
    return True


def _name_or_path_as_text(module: nn.Module) -> None:
    """peft's model card names the base model by the ``_name_or_path`` of its diffusers config, which
    keeps the path the model was loaded from as given; a ``Path`` there (genlab's loaders pass one)
    would be written as a Python object that YAML readers reject, so store it as text."""
    config = getattr(module, "config", None)
    if isinstance(config, dict) and isinstance(config.get("_name_or_path"), Path):
        module.register_to_config(_name_or_path=str(config["_name_or_path"]))


def export_adapter(target: AlignTarget, peft_model: PeftModel | None, folder: Path, info: AdapterInfo) -> str:
    """Write ``target``'s trained weights to ``folder``: the LoRA of ``peft_model`` (peft folder, plus
    diffusers' layout for pipelines that can load it), or all weights when ``peft_model`` is None;
    ``info`` goes to ``align.json``. Returns one line on what was written and how to load it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ADAPTER_INFO).write_text(json.dumps(info.to_json(), indent=2))
    if peft_model is None:
        save_file({k: v.contiguous().cpu() for k, v in trainable_state(target.module, False).items()},
                  str(folder / FULL_WEIGHTS))
        return f"all weights in {folder / FULL_WEIGHTS} (genlab's apply_adapter loads them)"
    _name_or_path_as_text(target.module)
    peft_model.save_pretrained(str(folder))
    pipe = getattr(target, "pipe", None)
    if pipe is None:
        sampler = "; `genlab sample image --adapter DIR`" if target.modality == "image" else ""
        return f"adapter in {folder}: PeftModel.from_pretrained(denoiser.net, DIR){sampler}"
    if save_diffusers_lora(pipe, folder):
        return f"adapter in {folder}: pipe.load_lora_weights(DIR), or PeftModel.from_pretrained(pipe.unet, DIR)"
    return (f"adapter in {folder}: PeftModel.from_pretrained(pipe.unet, DIR) (peft format only: diffusers has no "
            f"LoRA loader for {type(pipe).__name__}'s {type(pipe.unet).__name__}, so pipe.load_lora_weights "
            "cannot load it)")


def adapter_folder(path: Path | str) -> Path:
    """The adapter folder at ``path``: the folder itself or an alignment run's ``adapter/``."""
    for folder in (Path(path), Path(path) / ADAPTER_DIR):
        if (folder / CONFIG_NAME).is_file() or (folder / ADAPTER_INFO).is_file():
            return folder
    raise GenlabError(f"{path} holds no alignment adapter (no {CONFIG_NAME} or {ADAPTER_INFO}, nor an "
                      f"{ADAPTER_DIR}/ folder with them); give a finished `genlab align` run or its {ADAPTER_DIR}/")


def _read_peft(folder: Path) -> tuple[LoraConfig, dict[str, Tensor]]:
    """The LoRA config and weights of peft's adapter folder (the keys of ``PeftModel.save_pretrained``)."""
    weights = folder / SAFETENSORS_WEIGHTS_NAME
    try:
        config = PeftConfig.from_pretrained(str(folder))
        state = load_file(str(weights))
    except (OSError, ValueError, TypeError, SafetensorError) as error:
        raise GenlabError(f"{folder} holds no readable peft adapter ({CONFIG_NAME} and {SAFETENSORS_WEIGHTS_NAME}): "
                          f"{str(error).splitlines()[0]}") from error
    if not isinstance(config, LoraConfig) or isinstance(config.target_modules, str):
        raise GenlabError(f"{folder} holds a {type(config).__name__} adapter; genlab loads LoRA adapters on a "
                          "list of target layers")
    return config, state


def _read_info_and_weights(folder: Path) -> tuple[LoraConfig | None, dict[str, Tensor]]:
    """Full weights (``--lora-rank 0``; config None), or LoRA saved as bare peft keys by runs before the
    peft export, from ``align.json`` and ``weights.safetensors``."""
    info = AdapterInfo.from_json(read_json(folder / ADAPTER_INFO, f"{folder} has no {ADAPTER_INFO}"),
                                 folder / ADAPTER_INFO)
    try:
        state = load_file(str(folder / FULL_WEIGHTS))
        lora = info.lora_rank > 0
        return (lora_config(info.lora_rank, info.lora_targets, info.lora_alpha) if lora else None), state
    except (OSError, SafetensorError) as error:
        raise GenlabError(f"{folder} holds no readable alignment weights ({ADAPTER_INFO} and {FULL_WEIGHTS}): "
                          f"{str(error).splitlines()[0] if str(error) else type(error).__name__}") from error


def load_adapter(module: nn.Module, path: Path | str) -> nn.Module:
    """Load the weights of an alignment run into ``module`` in place; returns it in eval mode, frozen.

    ``path`` is a finished run folder or its ``adapter/``. GenlabError when it is missing, unreadable
    or made for another model (other layer names or shapes).
    """
    folder = adapter_folder(path)
    config, state = (_read_peft if (folder / CONFIG_NAME).is_file() else _read_info_and_weights)(folder)
    try:
        if config is not None:
            inject_lora(module, config)
        load_trainable_state(module, state, lora=config is not None)
    except GenlabError as error:
        raise GenlabError(f"the adapter in {folder} does not fit this {type(module).__name__}: {error}") from error
    return module.eval().requires_grad_(False)
