"""Loading a causal LM to grow, and the text G_learn trains its operators on, for ``genlab grow``."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from genlab.errors import GenlabError
from genlab.growth.architectures import architecture_of
from genlab.growth.corpus import VOCAB_SIZE, stdlib_docstrings

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def load_causal_lm(directory: Path | str) -> PreTrainedModel:
    """``from_pretrained`` a supported causal LM in its saved dtype, with errors that say what is wrong."""
    directory = Path(directory)
    if not (directory / "config.json").is_file():
        raise GenlabError(f"{directory} is not a Hugging Face model folder (no config.json)")
    try:
        config = AutoConfig.from_pretrained(directory)
    except (OSError, ValueError) as error:
        raise GenlabError(f"cannot read {directory}/config.json: {error}") from error
    architecture_of(config)
    if not any(arch.endswith("ForCausalLM") or arch.endswith("LMHeadModel") for arch in config.architectures or []):
        raise GenlabError(f"{directory} holds {config.architectures or 'a model'}, not a causal language model "
                          "(LlamaForCausalLM or GPT2LMHeadModel)")
    try:
        return AutoModelForCausalLM.from_pretrained(directory, dtype="auto")
    except (OSError, ValueError, RuntimeError) as error:
        raise GenlabError(f"cannot load the causal LM in {directory}: {error}") from error


def operator_training_batches(model_dir: Path | str, vocab_size: int, text_file: Path | str | None,
                              steps: int, batch_size: int, seq_len: int, seed: int) -> list[torch.Tensor]:
    """``steps`` token batches ``(batch_size, seq_len)`` for G_learn from ``text_file`` (default: stdlib docstrings).

    Tokenised with the model folder's tokenizer when it has one, else as bytes (needs vocab >= 256).
    """
    text = Path(text_file).read_text(encoding="utf-8") if text_file else "\n\n".join(stdlib_docstrings())
    try:
        if not any((Path(model_dir) / name).is_file() for name in TOKENIZER_FILES):
            raise OSError("no tokenizer files")  # some transformers releases build an empty tokenizer instead
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        ids = torch.tensor(tokenizer(text[:2_000_000])["input_ids"])
    except (OSError, ValueError):
        if vocab_size < VOCAB_SIZE:
            raise GenlabError(f"{model_dir} has no tokenizer and its vocabulary ({vocab_size}) is too small for "
                              "byte tokens; add a tokenizer to the folder") from None
        ids = torch.frombuffer(bytearray(text.encode("utf-8")), dtype=torch.uint8).long()
    if len(ids) <= seq_len + 1:
        raise GenlabError(f"the operator-training text has only {len(ids)} tokens; need more than {seq_len + 1}")
    generator = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, len(ids) - seq_len, (steps, batch_size), generator=generator)
    return [torch.stack([ids[s:s + seq_len] for s in row.tolist()]) for row in starts]
