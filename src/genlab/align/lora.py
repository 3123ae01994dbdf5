"""LoRA adapters (via peft) or full weights: which parameters alignment trains, and their state.

``add_lora`` injects peft LoRA layers into a plain ``nn.Module`` (a genlab net or a diffusers UNet)
in place. peft initialises each adapter's ``B`` matrix to zero, so the adapted model starts as an
exact copy of the base model.
"""

from __future__ import annotations

from collections.abc import Sequence

from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model, set_peft_model_state_dict
from torch import Tensor, nn

from genlab.errors import GenlabError

ADAPTER_NAME = "default"


def linear_layer_names(module: nn.Module) -> list[str]:
    """Names of the ``nn.Linear`` layers in ``module`` (what LoRA targets can match)."""
    return [name for name, child in module.named_modules() if isinstance(child, nn.Linear)]


def add_lora(module: nn.Module, rank: int, targets: Sequence[str], alpha: float | None = None,
             dropout: float = 0.0) -> list[str]:
    """Inject LoRA adapters of ``rank`` into the linear layers whose names end in one of ``targets``.

    Freezes every base parameter; only the adapters train. ``alpha`` defaults to ``rank`` (scale 1).
    Returns the names of the adapted layers. A target that matches no layer is a GenlabError
    naming some of the layers that exist.
    """
    if rank < 1:
        raise GenlabError(f"--lora-rank must be >= 1 (or 0 for full weights), got {rank}")
    linear_names = linear_layer_names(module)
    unmatched = [t for t in targets if not any(name == t or name.endswith("." + t) for name in linear_names)]
    if unmatched or not targets:
        examples = sorted({name.rsplit(".", 1)[-1] for name in linear_names})[:12]
        raise GenlabError(f"LoRA target(s) {unmatched or list(targets)} match no linear layer of "
                          f"{type(module).__name__}; its linear layers end in e.g. {', '.join(examples)}")
    config = LoraConfig(r=rank, lora_alpha=alpha or rank, lora_dropout=dropout, target_modules=list(targets),
                        init_lora_weights=True)
    module.requires_grad_(False)
    inject_adapter_in_model(config, module, adapter_name=ADAPTER_NAME)
    return [name for name, child in module.named_modules() if hasattr(child, "lora_A") and name in linear_names]


def trainable_state(module: nn.Module, lora: bool) -> dict[str, Tensor]:
    """The trained weights: the LoRA adapters, or every parameter for full fine-tuning."""
    if lora:
        return get_peft_model_state_dict(module, adapter_name=ADAPTER_NAME)
    return {name: p.detach() for name, p in module.named_parameters()}


def load_trainable_state(module: nn.Module, state: dict[str, Tensor], lora: bool) -> None:
    """Inverse of :func:`trainable_state` (the adapters must already be injected for LoRA)."""
    if lora:
        result = set_peft_model_state_dict(module, state, adapter_name=ADAPTER_NAME)
        missing = [k for k in result.missing_keys if "lora_" in k]
        if missing or result.unexpected_keys:
            raise GenlabError(f"the saved LoRA weights do not fit this model (missing {missing[:3]}, "
                              f"unexpected {list(result.unexpected_keys)[:3]}); were rank/targets changed?")
        return
    try:
        module.load_state_dict(state)
    except RuntimeError as error:
        raise GenlabError(f"the saved weights do not fit this model: {str(error).splitlines()[0]}") from error


def trainable_parameters(module: nn.Module) -> list[nn.Parameter]:
    """Parameters with ``requires_grad`` (the adapters, or all for full fine-tuning)."""
    return [p for p in module.parameters() if p.requires_grad]
