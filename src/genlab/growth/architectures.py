"""What the growth operators need to know about each supported causal-LM architecture.

Every parameter is described axis by axis with an :class:`Axis` — the *kind* of dimension it
indexes and the *role* it plays — so one set of operators handles LLaMA (``nn.Linear``, weights
``(out, in)``) and GPT-2 (``Conv1D``, weights ``(in, out)``, fused q/k/v) alike.

Kinds (what grows when the model widens):
  ``hidden`` the residual stream (``hidden_size`` / ``n_embd``),
  ``q``      all attention heads side by side (heads × head_dim; head_dim never changes),
  ``kv``     the key/value heads of grouped-query attention,
  ``qkv``    GPT-2's fused projection: three ``q`` blocks,
  ``inter``  the MLP's inner neurons,
  ``fixed``  vocabulary or positions (never grows).
Roles:
  ``out``  the axis a layer writes along, ``in`` the axis it reads along,
  ``norm`` a normalisation's per-channel parameter, ``final_norm`` the last one before the head,
  ``head`` the language-model head's hidden axis (it reads the final norm's output).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from transformers import PretrainedConfig, PreTrainedModel

from genlab.errors import GenlabError


@dataclass(frozen=True)
class Axis:
    kind: str
    role: str


FIXED = Axis("fixed", "fixed")
HIDDEN_OUT, HIDDEN_IN, NORM = Axis("hidden", "out"), Axis("hidden", "in"), Axis("hidden", "norm")


@dataclass(frozen=True)
class Architecture:
    """One supported ``model_type``: config field names and an axis description of every tensor.

    ``layer_params`` maps a name inside a layer (after ``layer_prefix.{i}.``) to its axes; the
    ``global_params`` are outside the layer stack. ``norm`` is ``"rms"`` or ``"layer"``.
    """

    model_type: str
    layer_prefix: str
    layers_field: str
    hidden_field: str
    heads_field: str
    kv_heads_field: str | None
    inter_field: str
    eps_field: str | None
    norm: str
    layer_params: dict[str, tuple[Axis, ...]]
    global_params: dict[str, tuple[Axis, ...]]

    def axes(self, name: str) -> tuple[Axis, ...]:
        """The axes of parameter ``name`` (a full state-dict name)."""
        layer, inner = self.split_layer_name(name)
        table = self.global_params if layer is None else self.layer_params
        key = name if layer is None else inner
        if key not in table:
            raise GenlabError(f"growth does not know the {self.model_type} parameter {name!r}")
        return table[key]

    def split_layer_name(self, name: str) -> tuple[int | None, str]:
        """``("model.layers.3.mlp.up_proj.weight")`` → ``(3, "mlp.up_proj.weight")``; globals → ``(None, name)``."""
        match = re.fullmatch(re.escape(self.layer_prefix) + r"\.(\d+)\.(.+)", name)
        return (None, name) if match is None else (int(match.group(1)), match.group(2))

    def layer_name(self, layer: int, inner: str) -> str:
        return f"{self.layer_prefix}.{layer}.{inner}"

    def num_layers(self, config: PretrainedConfig) -> int:
        return getattr(config, self.layers_field)

    def head_dim(self, config: PretrainedConfig) -> int:
        explicit = getattr(config, "head_dim", None)
        return explicit or getattr(config, self.hidden_field) // getattr(config, self.heads_field)

    def dims(self, config: PretrainedConfig) -> dict[str, int]:
        """Size of every growable kind (``qkv`` is given per block, i.e. equal to ``q``)."""
        hidden = getattr(config, self.hidden_field)
        heads = getattr(config, self.heads_field)
        kv_heads = getattr(config, self.kv_heads_field) if self.kv_heads_field else heads
        kv_heads = kv_heads or heads
        inter = getattr(config, self.inter_field) or 4 * hidden
        q = heads * self.head_dim(config)
        return {"hidden": hidden, "q": q, "qkv": q, "kv": kv_heads * self.head_dim(config), "inter": inter}

    def is_residual_writer(self, inner: str) -> bool:
        """True for a layer tensor that writes into the residual stream (attention out, MLP down)."""
        return HIDDEN_OUT in self.layer_params[inner]


def _linear(out_kind: str, in_kind: str) -> tuple[Axis, ...]:
    return (Axis(out_kind, "out"), Axis(in_kind, "in"))


def _conv1d(in_kind: str, out_kind: str) -> tuple[Axis, ...]:
    return (Axis(in_kind, "in"), Axis(out_kind, "out"))


LLAMA = Architecture(
    model_type="llama", layer_prefix="model.layers", layers_field="num_hidden_layers",
    hidden_field="hidden_size", heads_field="num_attention_heads", kv_heads_field="num_key_value_heads",
    inter_field="intermediate_size", eps_field="rms_norm_eps", norm="rms",
    layer_params={
        "self_attn.q_proj.weight": _linear("q", "hidden"), "self_attn.q_proj.bias": (Axis("q", "out"),),
        "self_attn.k_proj.weight": _linear("kv", "hidden"), "self_attn.k_proj.bias": (Axis("kv", "out"),),
        "self_attn.v_proj.weight": _linear("kv", "hidden"), "self_attn.v_proj.bias": (Axis("kv", "out"),),
        "self_attn.o_proj.weight": _linear("hidden", "q"), "self_attn.o_proj.bias": (HIDDEN_OUT,),
        "mlp.gate_proj.weight": _linear("inter", "hidden"), "mlp.gate_proj.bias": (Axis("inter", "out"),),
        "mlp.up_proj.weight": _linear("inter", "hidden"), "mlp.up_proj.bias": (Axis("inter", "out"),),
        "mlp.down_proj.weight": _linear("hidden", "inter"), "mlp.down_proj.bias": (HIDDEN_OUT,),
        "input_layernorm.weight": (NORM,), "post_attention_layernorm.weight": (NORM,),
    },
    global_params={
        "model.embed_tokens.weight": (FIXED, HIDDEN_OUT),
        "model.norm.weight": (Axis("hidden", "final_norm"),),
        "lm_head.weight": (FIXED, Axis("hidden", "head")),
    },
)

GPT2 = Architecture(
    model_type="gpt2", layer_prefix="transformer.h", layers_field="n_layer", hidden_field="n_embd",
    heads_field="n_head", kv_heads_field=None, inter_field="n_inner", eps_field=None, norm="layer",
    layer_params={
        "ln_1.weight": (NORM,), "ln_1.bias": (NORM,), "ln_2.weight": (NORM,), "ln_2.bias": (NORM,),
        "attn.c_attn.weight": _conv1d("hidden", "qkv"), "attn.c_attn.bias": (Axis("qkv", "out"),),
        "attn.c_proj.weight": _conv1d("q", "hidden"), "attn.c_proj.bias": (HIDDEN_OUT,),
        "mlp.c_fc.weight": _conv1d("hidden", "inter"), "mlp.c_fc.bias": (Axis("inter", "out"),),
        "mlp.c_proj.weight": _conv1d("inter", "hidden"), "mlp.c_proj.bias": (HIDDEN_OUT,),
    },
    global_params={
        "transformer.wte.weight": (FIXED, HIDDEN_OUT), "transformer.wpe.weight": (FIXED, HIDDEN_OUT),
        "transformer.ln_f.weight": (Axis("hidden", "final_norm"),),
        "transformer.ln_f.bias": (Axis("hidden", "final_norm"),),
        "lm_head.weight": (FIXED, Axis("hidden", "head")),
    },
)

ARCHITECTURES = {arch.model_type: arch for arch in (LLAMA, GPT2)}


def architecture_of(model_or_config: PreTrainedModel | PretrainedConfig) -> Architecture:
    """The :class:`Architecture` of a model or config, or a GenlabError naming what is supported."""
    config = getattr(model_or_config, "config", model_or_config)
    model_type = getattr(config, "model_type", None)
    if model_type not in ARCHITECTURES:
        raise GenlabError(f"growth supports {sorted(ARCHITECTURES)} causal LMs, not model_type={model_type!r}")
    arch = ARCHITECTURES[model_type]
    if model_type == "gpt2" and getattr(config, "scale_attn_by_inverse_layer_idx", False):
        raise GenlabError("GPT-2 with scale_attn_by_inverse_layer_idx=True depends on layer positions; "
                          "growth would change every layer's function")
    hidden, heads = getattr(config, arch.hidden_field), getattr(config, arch.heads_field)
    if arch.head_dim(config) * heads != hidden and arch is GPT2:
        raise GenlabError(f"width {hidden} is not divisible by the head count {heads}")
    return arch
