"""Loading a causal LM to grow, and the text G_learn trains its operators on, for ``genlab grow``."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from genlab.core.checkpoint import read_json
from genlab.errors import GenlabError
from genlab.growth.architectures import architecture_of
from genlab.growth.corpus import VOCAB_SIZE, stdlib_docstrings

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def load_causal_lm(directory: Path | str) -> PreTrainedModel:
    """``from_pretrained`` a supported causal LM in its saved dtype; one GenlabError naming the folder when it is
    missing or a file, its config is corrupt or not a supported causal LM, or its weights are corrupt or do not
    fit (missing, unexpected or of another shape, which transformers would otherwise fill with random values)."""
    from genlab.core.loading import from_pretrained_checked, loading_errors, pretrained_folder

    directory = Path(directory)
    if not directory.is_dir():
        state = "is a file" if directory.exists() else "does not exist"
        raise GenlabError(f"{directory} is not a Hugging Face model folder: it {state}")
    read_json(directory / "config.json", f"{directory} is not a Hugging Face model folder (no config.json)")
    with loading_errors(f"the config of {directory}"):
        config = AutoConfig.from_pretrained(directory)
    architecture_of(config)
    architectures = config.architectures if isinstance(config.architectures, list) else []
    if not any(str(arch).endswith(("ForCausalLM", "LMHeadModel")) for arch in architectures):
        raise GenlabError(f"{directory} holds {config.architectures or 'a model'}, not a causal language model "
                          "(LlamaForCausalLM or GPT2LMHeadModel)")
    pretrained_folder(directory, "causal LM", weights="model")  # weights present, safetensors headers intact
    return from_pretrained_checked(AutoModelForCausalLM.from_pretrained, directory, "causal LM", dtype="auto",
                                   ignore_mismatched_sizes=True)


def read_text_file(path: Path | str, what: str) -> str:
    """The UTF-8 text of the file ``path``; a GenlabError naming it (as ``what``) if it is missing, a folder,
    unreadable, not UTF-8 or empty."""
    path = Path(path)
    if not path.is_file():
        raise GenlabError(f"{what} {path} {'is a folder, not a file' if path.exists() else 'does not exist'}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise GenlabError(f"{what} {path} is not UTF-8 text ({error.reason} at byte {error.start})") from error
    except OSError as error:
        raise GenlabError(f"cannot read {what} {path} ({error.strerror})") from error
    if not text.strip():
        raise GenlabError(f"{what} {path} is empty")
    return text


def _token_ids(model_dir: Path, vocab_size: int, text: str) -> torch.Tensor:
    """``text`` tokenised with the model folder's tokenizer when it has one, else as bytes (needs vocab >= 256)."""
    if not any((model_dir / name).is_file() for name in TOKENIZER_FILES):
        # some transformers releases build an empty tokenizer for a folder without one: don't ask them
        if vocab_size < VOCAB_SIZE:
            raise GenlabError(f"{model_dir} has no tokenizer and its vocabulary ({vocab_size}) is too small for "
                              "byte tokens; add a tokenizer to the folder")
        return torch.frombuffer(bytearray(text.encode("utf-8")), dtype=torch.uint8).long()
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
    except Exception as error:  # noqa: BLE001 - the tokenizers library raises plain Exception for a malformed file
        message = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
        raise GenlabError(f"cannot load the tokenizer of {model_dir}: {message}") from error
    return torch.tensor(tokenizer(text[:2_000_000])["input_ids"], dtype=torch.long)


def operator_training_batches(model_dir: Path | str, vocab_size: int, text_file: Path | str | None,
                              steps: int, batch_size: int, seq_len: int, seed: int) -> list[torch.Tensor]:
    """``steps`` token batches ``(batch_size, seq_len)`` for G_learn from ``text_file`` (default: stdlib docstrings).

    Tokenised with the model folder's tokenizer when it has one, else as bytes (needs vocab >= 256). A text
    file that is missing, empty or shorter than one training sequence is a GenlabError naming it.
    """
    if text_file:
        source = f"the operator-training text {text_file}"
        text = read_text_file(text_file, "the operator-training text")
    else:
        source, text = "the standard library's docstrings", "\n\n".join(stdlib_docstrings())
    ids = _token_ids(Path(model_dir), vocab_size, text)
    if len(ids) <= seq_len + 1:
        raise GenlabError(f"{source} has only {len(ids)} tokens; G_learn needs more than {seq_len + 1} "
                          "(one training sequence and its next token)")
    generator = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, len(ids) - seq_len, (steps, batch_size), generator=generator)
    return [torch.stack([ids[s:s + seq_len] for s in row.tolist()]) for row in starts]
