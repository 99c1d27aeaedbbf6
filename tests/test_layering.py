"""Imports flow one way: services, providers and translation never import flask, and
translation does no I/O (no HTTP, sockets, database, providers or services)."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
FORBIDDEN = {"services": {"flask"}, "providers": {"flask"},
             "translation": {"flask", "requests", "socket", "sqlalchemy", "providers",
                             "services", "extensions", "models"}}


def imported(path: pathlib.Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layers(package):
    for path in (ROOT / package).rglob("*.py"):
        bad = imported(path) & FORBIDDEN[package]
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"
