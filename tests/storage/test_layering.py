"""storage/ stays a dumb log: no sync, api, pycrdt, pydantic or asyncio imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.storage.helpers import REPO_ROOT

FORBIDDEN = {"sync", "api", "pycrdt", "pydantic", "asyncio"}


def imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize(
    "path", sorted((REPO_ROOT / "storage").glob("*.py")), ids=lambda path: path.name
)
def test_storage_imports_no_upper_layer(path: Path) -> None:
    assert imported_roots(path) & FORBIDDEN == set()
