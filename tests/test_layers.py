"""The layers of docs/architecture.md: pages -> storage -> spoco_core, never upwards.

``spoco_core`` imports neither ``storage``, ``streamlit`` nor ``pages`` (the method runs headless:
CLI, benchmarks, the worker); ``storage`` imports neither ``streamlit`` nor ``pages`` (the service
and the worker run without a browser session). Checked on the source with ``ast``, so imports
inside functions and under ``TYPE_CHECKING`` count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

FORBIDDEN = {
    "spoco_core": {"storage", "streamlit", "pages"},
    "storage": {"streamlit", "pages"},
}


def imported_modules(source: str, package: str, module_path: Path) -> set[str]:
    """Top-level names of every module the source imports, relative imports resolved."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the module's own package
                parts = module_path.relative_to(ROOT).with_suffix("").parts[: -node.level]
                base = ".".join([*parts, node.module] if node.module else parts)
                names.add(base.split(".")[0] if base else package)
            elif node.module:
                names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and _is_dynamic_import(node):
            arg = node.args[0] if node.args else None
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                names.add(arg.value.split(".")[0])
    return names


def _is_dynamic_import(node: ast.Call) -> bool:
    """``importlib.import_module("x")`` or ``__import__("x")``."""
    func = node.func
    if isinstance(func, ast.Name):
        return func.id in {"__import__", "import_module"}
    return isinstance(func, ast.Attribute) and func.attr == "import_module"


def violations(package: str) -> list[str]:
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for name in sorted(
            imported_modules(path.read_text(encoding="utf-8"), package, path) & FORBIDDEN[package]
        ):
            found.append(f"{path.relative_to(ROOT)} imports {name}")
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_does_not_import_upper_layers(package: str) -> None:
    assert list((ROOT / package).rglob("*.py")), f"no sources found under {package}/"
    assert violations(package) == []


@pytest.mark.parametrize(
    ("source", "module", "expected"),
    [
        ("import streamlit as st", "spoco_core/io.py", {"streamlit"}),
        ("from storage.service import Studio", "spoco_core/io.py", {"storage"}),
        ("def f():\n    from pages import _render\n", "spoco_core/io.py", {"pages"}),
        ("if TYPE_CHECKING:\n    import storage.records\n", "spoco_core/io.py", {"storage"}),
        (
            "import importlib\nimportlib.import_module('streamlit.runtime')",
            "storage/db.py",
            {"importlib", "streamlit"},
        ),
        ("__import__('pages.annotate')", "storage/db.py", {"pages"}),
        ("from . import io", "spoco_core/commands/train.py", {"spoco_core"}),
        ("from .. import io", "spoco_core/commands/train.py", {"spoco_core"}),
    ],
)
def test_the_check_sees_every_kind_of_import(source: str, module: str, expected: set[str]) -> None:
    """The scanner itself: top-level, inside functions, under TYPE_CHECKING, dynamic, relative."""
    assert imported_modules(source, module.split("/")[0], ROOT / module) == expected
