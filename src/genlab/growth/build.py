"""Building a grown model without a second copy in memory."""

from __future__ import annotations

from collections.abc import Callable

import torch
from transformers import PretrainedConfig, PreTrainedModel

from genlab.errors import GenlabError
from genlab.growth.architectures import architecture_of


def build_grown(model: PreTrainedModel, target_config: PretrainedConfig,
                tensor_for: Callable[[str], torch.Tensor],
                source_layer_of: Callable[[int], int]) -> PreTrainedModel:
    """A ``type(model)`` with ``target_config``, every parameter set to ``tensor_for(name)``.

    Built on the meta device and filled in place one tensor at a time; non-persistent buffers
    (rotary frequencies) are copied from the source layer ``source_layer_of(layer)``.
    """
    arch = architecture_of(model)
    dtype = next(model.parameters()).dtype
    with torch.device("meta"):
        grown = type(model)(target_config)
    grown = grown.to(dtype=dtype).to_empty(device=next(model.parameters()).device)
    grown.tie_weights()  # to_empty allocates tied tensors separately
    with torch.no_grad():
        for name, parameter in grown.named_parameters():
            value = tensor_for(name)
            if value.shape != parameter.shape:
                raise GenlabError(f"internal: grown {name} has shape {tuple(value.shape)}, "
                                  f"expected {tuple(parameter.shape)}")
            parameter.copy_(value)
        source_buffers = dict(model.named_buffers())
        for name, buffer in grown.named_buffers():
            layer, inner = arch.split_layer_name(name)
            buffer.copy_(source_buffers[name if layer is None else arch.layer_name(source_layer_of(layer), inner)])
    grown.generation_config = model.generation_config
    return grown.train(model.training)
