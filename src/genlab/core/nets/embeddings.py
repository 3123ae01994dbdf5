"""Conditioning pieces and input checks shared by the image backbones.

Both backbones build their conditioning vector the same way::

    emb = time_embed(noise_labels) + class_embed(class_labels)   # [B, D]

where ``noise_labels`` is EDM's ``c_noise = ln(sigma) / 4`` (roughly in [-1.5, 1.2]) and a
conditional model's label table has ``num_classes + 1`` rows, the last being the null label.
"""

import math

import torch
from torch import Tensor, nn

from genlab.errors import GenlabError

_INTEGER_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


class SinusoidalEmbedding(nn.Module):
    """Fixed sin/cos features of a scalar noise level.

    Angular frequencies are geometrically spaced in ``[1, max_freq]``, which resolves the
    ~3-unit range of ``ln(sigma) / 4`` from its coarsest to a ~0.06 step.
    Maps ``[B]`` to ``[B, num_channels]`` (float32); ``num_channels`` must be even.
    """

    def __init__(self, num_channels: int, max_freq: float = 100.0) -> None:
        super().__init__()
        self.num_channels = num_channels
        self.max_freq = max_freq

    def forward(self, noise_labels: Tensor) -> Tensor:
        """``noise_labels [B]`` -> ``[B, num_channels]`` = ``[cos(f*x), sin(f*x)]``."""
        half = self.num_channels // 2
        freqs = torch.logspace(0.0, math.log10(self.max_freq), half, device=noise_labels.device)
        angles = noise_labels.to(torch.float32)[:, None] * freqs[None, :]
        return torch.cat([angles.cos(), angles.sin()], dim=1)


class TimeEmbedding(nn.Module):
    """Noise-level embedding: sinusoidal features followed by a two-layer SiLU MLP.

    Maps ``noise_labels [B]`` to ``[B, emb_dim]`` in the dtype of the MLP weights.
    Backbones keep it as ``self.time_embed`` so that a forward hook can perturb its output.
    """

    def __init__(self, freq_channels: int, emb_dim: int) -> None:
        super().__init__()
        self.features = SinusoidalEmbedding(freq_channels)
        self.linear_1 = nn.Linear(freq_channels, emb_dim)
        self.act = nn.SiLU()
        self.linear_2 = nn.Linear(emb_dim, emb_dim)

    def forward(self, noise_labels: Tensor) -> Tensor:
        """``noise_labels [B]`` -> ``[B, emb_dim]``."""
        h = self.features(noise_labels).to(self.linear_1.weight.dtype)
        return self.linear_2(self.act(self.linear_1(h)))


class ClassEmbedding(nn.Module):
    """Learned class embedding with ``num_classes + 1`` rows; row ``num_classes`` is the null label.

    Maps ``class_labels [B]`` (or ``None``, meaning all-null) to ``[B, emb_dim]``.
    """

    def __init__(self, num_classes: int, emb_dim: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.table = nn.Embedding(num_classes + 1, emb_dim)

    def forward(self, class_labels: Tensor | None, batch_size: int) -> Tensor:
        """``class_labels [B] | None`` -> ``[B, emb_dim]``; labels must already be checked."""
        if class_labels is None:
            class_labels = torch.full(
                (batch_size,), self.num_classes, dtype=torch.long, device=self.table.weight.device
            )
        return self.table(class_labels.long())


def check_config(condition: bool, message: str) -> None:
    """Raise :class:`GenlabError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise GenlabError(message)


def check_inputs(
    x: Tensor,
    noise_labels: Tensor,
    class_labels: Tensor | None,
    *,
    in_channels: int,
    resolution: int,
    num_classes: int,
) -> None:
    """Validate a backbone call: ``x [B, in_channels, resolution, resolution]``, ``noise_labels [B]``
    floating point, ``class_labels`` ``None`` or integers ``[B]`` in ``[0, num_classes]`` (conditional
    models only). Raises :class:`GenlabError` naming the offending argument.
    """
    expected = f"[B, {in_channels}, {resolution}, {resolution}]"
    if x.ndim != 4 or x.shape[1:] != (in_channels, resolution, resolution):
        raise GenlabError(f"x must have shape {expected}, got {list(x.shape)}")
    batch = x.shape[0]
    if noise_labels.shape != (batch,) or not noise_labels.is_floating_point():
        raise GenlabError(
            f"noise_labels must be a float tensor of shape [{batch}], got {noise_labels.dtype} "
            f"{list(noise_labels.shape)}"
        )
    if class_labels is None:
        return
    if num_classes == 0:
        raise GenlabError("class_labels must be None: the model is unconditional (num_classes=0)")
    if class_labels.shape != (batch,) or class_labels.dtype not in _INTEGER_DTYPES:
        raise GenlabError(
            f"class_labels must be an integer tensor of shape [{batch}], got {class_labels.dtype} "
            f"{list(class_labels.shape)}"
        )
    if batch == 0:
        return
    low, high = (int(v) for v in class_labels.aminmax())
    if low < 0 or high > num_classes:
        raise GenlabError(
            f"class_labels must lie in [0, {num_classes}] ({num_classes} = null label), got values in "
            f"[{low}, {high}]"
        )


def check_context_config(cross_attention_dim: int, context_groups: int, places: int, what: str) -> None:
    """Validate a backbone's cross-attention settings: ``context_groups`` groups spread over ``places``
    places that cross-attend (each group must reach at least one of them)."""
    check_config(cross_attention_dim >= 0, f"cross_attention_dim must be >= 0, got {cross_attention_dim}")
    check_config(
        1 <= context_groups <= places,
        f"context_groups must be in [1, {places}] (at most one group per each of the {places} {what}), "
        f"got {context_groups}",
    )


def check_context(context: Tensor | None, batch: int, cross_attention_dim: int, context_groups: int) -> None:
    """``context`` must be ``[B, M >= context_groups, cross_attention_dim]`` floats for a net with
    cross-attention and ``None`` for one without."""
    if not cross_attention_dim:
        if context is not None:
            raise GenlabError("context must be None: the model has no cross-attention (cross_attention_dim=0)")
        return
    if context is None:
        raise GenlabError(f"this model cross-attends to context tokens: pass context [B, M, {cross_attention_dim}]")
    if (context.ndim != 3 or context.shape[0] != batch or context.shape[2] != cross_attention_dim
            or context.shape[1] < context_groups or not context.is_floating_point()):
        raise GenlabError(
            f"context must be a float tensor [{batch}, M >= {context_groups}, {cross_attention_dim}], "
            f"got {context.dtype} {list(context.shape)}"
        )


def conditioning(net: nn.Module, x: Tensor, noise_labels: Tensor, class_labels: Tensor | None,
                 context: Tensor | None = None) -> Tensor:
    """Check a backbone call against ``net.config`` and return ``SiLU(emb)``, ``[B, emb_dim]``.

    ``emb = net.time_embed(noise_labels) + net.class_embed(class_labels)`` (the class term only
    for conditional nets). Shared by :class:`ImageUNet` and :class:`ImageDiT`.
    """
    cfg = net.config
    check_inputs(x, noise_labels, class_labels, in_channels=cfg.in_channels, resolution=cfg.resolution,
                 num_classes=cfg.num_classes)
    check_context(context, x.shape[0], cfg.cross_attention_dim, cfg.context_groups)
    emb = net.time_embed(noise_labels)
    if net.class_embed is not None:
        emb = emb + net.class_embed(class_labels, x.shape[0])
    return torch.nn.functional.silu(emb)
