"""The layers point one way: click only in the command layer, output/ never reaching into
engine/. Read from the source's import statements, so a new module is checked too."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "replayer"


def _imports(path: Path) -> set[str]:
    """The modules `path` imports, at any depth of the file (functions included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _modules(under: Path) -> list[Path]:
    return sorted(under.rglob("*.py"))


def _imports_of(path: Path, prefix: str) -> list[str]:
    return sorted(n for n in _imports(path) if n == prefix or n.startswith(prefix + "."))


@pytest.mark.parametrize("path", _modules(PACKAGE), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_click_only_in_the_command_layer(path: Path) -> None:
    in_commands = path == PACKAGE / "cli.py" or (PACKAGE / "commands") in path.parents
    if not in_commands:
        assert _imports_of(path, "click") == []


@pytest.mark.parametrize("path", _modules(PACKAGE / "output"),
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_output_imports_nothing_from_the_engine(path: Path) -> None:
    assert _imports_of(path, "replayer.engine") == []


def test_the_api_limits_are_defined_once() -> None:
    """400, 139, 50 and 500 are named in limits.py; nobody else gives them a name of their own."""
    spelled = re.compile(r"^\s*\w*(id|name|users|actions)\w*\s*(:[^=]+)?=\s*(400|139|50|500)\b",
                         re.MULTILINE | re.IGNORECASE)
    found = [str(p.relative_to(PACKAGE)) for p in _modules(PACKAGE)
             if p.name != "limits.py" and spelled.search(p.read_text(encoding="utf-8"))]
    assert found == []
