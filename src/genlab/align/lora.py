"""LoRA adapters (via peft) or full weights: which parameters alignment trains, and their state.

``add_lora`` wraps a plain ``nn.Module`` (a genlab net or a diffusers UNet) in a ``PeftModel``,
injecting the LoRA layers into the module itself. peft initialises each adapter's ``B`` matrix to
zero, so the adapted model starts as an exact copy of the base model.

LoRA targets follow peft's rule for a list of names: a target matches every layer whose full name
is the target or ends in ``"." + target``. genlab insists that each target match at least one
layer and only layers LoRA can adapt (``Linear`` and ``Conv``): ``"0"`` would also match whole
blocks such as ``blocks.0``, which peft refuses with a long error.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from peft import LoraConfig, PeftModel, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
from torch import Tensor, nn

from genlab.errors import GenlabError

ADAPTER_NAME = "default"
PEFT_PREFIX = "base_model.model."  # what PeftModel.save_pretrained puts before every key
ADAPTABLE_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
MAX_EXAMPLES = 24


def _matches(name: str, target: str) -> bool:
    """peft's rule: ``target`` is the layer's full name or a dotted suffix of it."""
    return name == target or name.endswith("." + target)


def _suffixes(name: str) -> list[str]:
    """Dotted suffixes of ``name``, shortest first: ``a.b.c`` → ``c``, ``b.c``, ``a.b.c``."""
    parts = name.split(".")
    return [".".join(parts[-k:]) for k in range(1, len(parts) + 1)]


def target_examples(module: nn.Module) -> list[str]:
    """Valid LoRA targets of ``module``: for each Linear/Conv layer, the shortest suffix of its name
    that starts with a word (``mlp.0``, not ``0``) and matches no other kind of module (sorted, distinct)."""
    layers = dict(module.named_modules())
    blocked = {s for name, m in layers.items() if name and not isinstance(m, ADAPTABLE_LAYERS) for s in _suffixes(name)}
    examples = {next((s for s in _suffixes(name) if s not in blocked and not s.split(".")[0].isdigit()), name)
                for name, m in layers.items() if isinstance(m, ADAPTABLE_LAYERS)}
    return sorted(examples)


def check_targets(module: nn.Module, targets: Iterable[str]) -> None:
    """GenlabError unless every target matches at least one layer of ``module`` and only Linear or
    Conv layers; the message names the bad target and lists valid ones."""
    layers = dict(module.named_modules())
    for target in list(targets) or [""]:
        matched = [name for name in layers if name and _matches(name, target)]
        others = [name for name in matched if not isinstance(layers[name], ADAPTABLE_LAYERS)]
        if matched and not others:
            continue
        model = type(module).__name__
        problem = (f"matches {others[0]} ({type(layers[others[0]]).__name__}) in {model}, which LoRA cannot adapt"
                   if others else f"matches no layer of {model}")
        examples = target_examples(module)
        more = ", ..." if len(examples) > MAX_EXAMPLES else ""
        raise GenlabError(f"LoRA target {target!r} {problem}; targets are ends of Linear/Conv layer names, "
                          f"e.g. {', '.join(examples[:MAX_EXAMPLES])}{more}")


def inject_lora(module: nn.Module, config: LoraConfig) -> PeftModel:
    """Check ``config``'s targets, then wrap ``module`` in a PeftModel (LoRA layers go into ``module``
    itself; every base parameter is frozen)."""
    check_targets(module, sorted(config.target_modules))
    return get_peft_model(module, config, adapter_name=ADAPTER_NAME)


def add_lora(module: nn.Module, rank: int, targets: Sequence[str], alpha: float | None = None,
             dropout: float = 0.0) -> PeftModel:
    """Inject LoRA adapters of ``rank`` into the Linear/Conv layers that ``targets`` name.

    ``alpha`` defaults to ``rank`` (scale 1). Returns the PeftModel around ``module`` (whose
    ``save_pretrained`` writes peft's adapter folder); ``module`` itself now carries the adapters.
    A target that matches no layer, or a module LoRA cannot adapt, is a GenlabError.
    """
    return inject_lora(module, lora_config(rank, targets, alpha, dropout))


def lora_config(rank: int, targets: Sequence[str], alpha: float | None = None, dropout: float = 0.0) -> LoraConfig:
    """peft's config of rank-``rank`` adapters on ``targets``; ``alpha`` defaults to ``rank``."""
    if rank < 1:
        raise GenlabError(f"--lora-rank must be >= 1 (or 0 for full weights), got {rank}")
    return LoraConfig(r=rank, lora_alpha=alpha or rank, lora_dropout=dropout, target_modules=list(targets),
                      init_lora_weights=True)


def trainable_state(module: nn.Module, lora: bool) -> dict[str, Tensor]:
    """The trained weights: the LoRA adapters, or every parameter for full fine-tuning."""
    if lora:
        return get_peft_model_state_dict(module, adapter_name=ADAPTER_NAME)
    return {name: p.detach() for name, p in module.named_parameters()}


def load_trainable_state(module: nn.Module, state: dict[str, Tensor], lora: bool) -> None:
    """Inverse of :func:`trainable_state` (the adapters must already be injected for LoRA); also
    takes peft's saved keys (``base_model.model.…``)."""
    try:
        if not lora:
            module.load_state_dict(state)
            return
        # peft's saved keys start with its wrapper's prefix; older peft releases do not strip it themselves
        state = {key.removeprefix(PEFT_PREFIX): value for key, value in state.items()}
        result = set_peft_model_state_dict(module, state, adapter_name=ADAPTER_NAME)
    except (RuntimeError, KeyError, ValueError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise GenlabError(f"the saved weights do not fit this model: {message}") from error
    missing = [k for k in result.missing_keys if "lora_" in k]
    if missing or result.unexpected_keys:
        raise GenlabError(f"the saved LoRA weights do not fit this model (missing {missing[:3]}, "
                          f"unexpected {list(result.unexpected_keys)[:3]}); were rank/targets changed?")


def trainable_parameters(module: nn.Module) -> list[nn.Parameter]:
    """Parameters with ``requires_grad`` (the adapters, or all for full fine-tuning)."""
    return [p for p in module.parameters() if p.requires_grad]
