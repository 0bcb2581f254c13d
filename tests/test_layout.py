"""The house rules that the layout keeps: imports run downwards only, files stay readable."""

from __future__ import annotations

import ast
from pathlib import Path

import lmforge

ROOT = Path(lmforge.__file__).parent


def imported_modules(path: Path) -> set[str]:
    """Every ``lmforge...`` module a file imports, at any depth of the file."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {n for n in names if n == "lmforge" or n.startswith("lmforge.")}


def test_no_module_inside_imports_the_package_root():
    """The version lives in lmforge._version: nothing runs back up to lmforge/__init__.py."""
    offenders = [
        str(path.relative_to(ROOT))
        for path in ROOT.rglob("*.py")
        if path != ROOT / "__init__.py" and "lmforge" in imported_modules(path)
    ]
    assert offenders == []


def test_the_data_layer_imports_no_model():
    offenders = {
        str(path.relative_to(ROOT)): sorted(m for m in imported_modules(path) if ".models" in m)
        for path in (ROOT / "data").rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_no_source_file_is_over_650_lines():
    long = {
        str(path.relative_to(ROOT)): n
        for path in ROOT.rglob("*.py")
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > 650
    }
    assert long == {}
