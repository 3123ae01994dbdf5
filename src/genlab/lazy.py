"""Lazy package exports (PEP 562), so that importing a light submodule stays light.

A package's ``__init__`` names what it exports and the submodule each name lives in; a submodule is
imported the first time one of its names is read (``from genlab.camera import load_camera_model``).
Importing ``genlab.camera.config`` therefore does not import torch, which keeps ``genlab --help`` fast.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable


def lazy_exports(package: str, exports: dict[str, tuple[str, ...]]) -> tuple[Callable, Callable, list[str]]:
    """``(__getattr__, __dir__, __all__)`` for ``package``, whose ``exports`` map a module (absolute, or
    relative to the package such as ``".model"``) to the names it provides."""
    where = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str):
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(where[name], package), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *where})

    return __getattr__, __dir__, sorted(where)
