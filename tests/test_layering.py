"""services/, providers/ and translation/ are plain Python: none of them may import Flask."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
LAYERS = ("services", "providers", "translation")


def imported_modules(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


SOURCES = sorted(p for layer in LAYERS for p in (ROOT / layer).rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_flask_below_the_blueprints(path):
    flask_like = {m for m in imported_modules(path)
                  if m.split(".")[0] in ("flask", "flask_limiter", "flask_sqlalchemy", "werkzeug")}
    assert not flask_like, f"{path.relative_to(ROOT)} imports {sorted(flask_like)}"


TRANSLATION_IO = ("requests", "socket", "sqlalchemy", "providers", "services", "extensions",
                  "models")


@pytest.mark.parametrize("path", sorted((ROOT / "translation").rglob("*.py")),
                         ids=lambda p: p.name)
def test_translation_does_no_io(path):
    """Translation is pure: no HTTP, sockets, database, providers or services."""
    bad = {m for m in imported_modules(path) if m.split(".")[0] in TRANSLATION_IO}
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"
