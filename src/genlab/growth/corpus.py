"""A text corpus that needs no download: the docstrings of the Python standard library.

Every CPython installation carries them (about 1.6 MB of English technical prose in 3.11,
collected from ``Lib/**/*.py`` without the test suites, in sorted path order). Tokens are bytes
(vocabulary 256), so no tokenizer has to be trained or shipped. Every 20th docstring is held out
for validation. The text differs slightly between Python versions; results name the version.
"""

from __future__ import annotations

import ast
import functools
import platform
import sysconfig
from pathlib import Path

import torch

VOCAB_SIZE = 256
SKIPPED_DIRS = {"test", "tests", "idlelib", "site-packages", "lib2to3", "__pycache__"}


@functools.lru_cache(maxsize=1)
def stdlib_docstrings() -> tuple[str, ...]:
    """All module/class/function docstrings of the standard library, in a fixed order."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.rglob("*.py") if not SKIPPED_DIRS & set(p.relative_to(root).parts))
    docs = []
    for path in files:
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc:
                    docs.append(doc)
    return tuple(docs)


def corpus_name() -> str:
    return f"CPython {platform.python_version()} standard-library docstrings, byte tokens"


class ByteCorpus:
    """Train/validation byte streams with seeded random windows ``(batch, seq_len + 1)``."""

    def __init__(self, docs: tuple[str, ...] | None = None, holdout_every: int = 20):
        docs = stdlib_docstrings() if docs is None else docs
        if not docs:
            raise ValueError("empty corpus")
        self.train = self._encode(d for i, d in enumerate(docs) if i % holdout_every)
        self.valid = self._encode(d for i, d in enumerate(docs) if not i % holdout_every)

    @staticmethod
    def _encode(docs) -> torch.Tensor:
        data = "\n\n".join(docs).encode("utf-8")
        return torch.frombuffer(bytearray(data), dtype=torch.uint8).long()

    def batch(self, batch_size: int, seq_len: int, generator: torch.Generator, split: str = "train") -> torch.Tensor:
        """``(batch_size, seq_len + 1)`` token windows starting at random offsets."""
        stream = self.train if split == "train" else self.valid
        starts = torch.randint(0, len(stream) - seq_len - 1, (batch_size,), generator=generator)
        return torch.stack([stream[s:s + seq_len + 1] for s in starts.tolist()])
