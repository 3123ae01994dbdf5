"""The house rules of docs/architecture.md, checked over the source's import statements (AST).

Imports flow one way, from the interface down to core:

    core (with errors, lazy)  <-  data  <-  metrics  <-  base  <-  methods  <-  experiments  <-  cli, demo

A package may import its own layer's modules only within itself: the seven methods never import
each other (a piece two methods share belongs in core or base).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import genlab

SOURCE = Path(genlab.__file__).parent
METHODS = ("guidance", "disco", "camera", "worldmodel", "growth", "enhance", "align")
LAYERS = (("core", "errors", "lazy"), ("data",), ("metrics",), ("base",), METHODS, ("experiments",), ("cli", "demo"))
LAYER_OF = {package: rank for rank, packages in enumerate(LAYERS) for package in packages}


def package_of(module: str) -> str:
    """The top-level genlab package of dotted ``module``: ``genlab.core.edm`` -> ``core``."""
    return module.split(".")[1]


def module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """``(line, dotted module)`` of every genlab import in ``path``, relative ones resolved."""
    here = module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return [(line, module) for line, module in found if module.startswith("genlab.")]


def wrong_way(importer: str, imported: str) -> bool:
    """Whether package ``importer`` may not import package ``imported``."""
    if importer == imported:
        return False
    if importer in METHODS and imported in METHODS:
        return True
    return LAYER_OF[imported] > LAYER_OF[importer]


SOURCES = sorted(SOURCE.rglob("*.py"))


def test_every_package_has_a_layer():
    packages = {package_of(module_name(path)) for path in SOURCES if path.parent != SOURCE or path.name != "__init__.py"}
    assert packages <= set(LAYER_OF), f"add {sorted(packages - set(LAYER_OF))} to LAYERS and docs/architecture.md"


@pytest.mark.parametrize("path", SOURCES, ids=lambda path: str(path.relative_to(SOURCE)))
def test_imports_flow_one_way(path):
    if path.parent == SOURCE and path.name == "__init__.py":
        return
    importer = package_of(module_name(path))
    wrong = [f"{path.relative_to(SOURCE)}:{line} imports {module}" for line, module in imported_modules(path)
             if wrong_way(importer, package_of(module))]
    assert not wrong, "imports against docs/architecture.md's direction:\n" + "\n".join(wrong)


def test_the_rule_catches_a_method_importing_a_method():
    assert wrong_way("disco", "guidance") and wrong_way("core", "data") and wrong_way("metrics", "base")
    assert not wrong_way("experiments", "guidance") and not wrong_way("metrics", "data")
