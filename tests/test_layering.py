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


# ---- the pipeline's boundaries ------------------------------------------------------------------
SKIP = {".venv", "tests", "migrations", "bench"}
APP_SOURCES = sorted(p for p in ROOT.rglob("*.py") if not SKIP & set(p.relative_to(ROOT).parts))
FORMAT_NAMES = {"openai", "anthropic", "gemini", "responses"}  # and any format to come
REGISTRY = ROOT / "translation" / "registry.py"


def tables_keyed_by_format(path: pathlib.Path) -> list[int]:
    """Line numbers of dict literals whose keys are all wire-format names."""
    tree = ast.parse(path.read_text(), filename=str(path))
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict) and node.keys:
            keys = [k.value if isinstance(k, ast.Constant) else None for k in node.keys]
            if all(isinstance(k, str) and k in FORMAT_NAMES for k in keys):
                lines.append(node.lineno)
    return lines


def test_the_format_registry_is_the_only_table_keyed_by_format():
    """A new wire format is a module and a registry line: no other table names the formats."""
    offenders = {str(p.relative_to(ROOT)): lines for p in APP_SOURCES if p != REGISTRY
                 if (lines := tables_keyed_by_format(p))}
    assert not offenders, f"tables keyed by wire-format name outside the registry: {offenders}"


def test_every_registered_format_implements_the_contract():
    from translation.format import WireFormat
    from translation.registry import FORMATS

    for name, fmt in FORMATS.items():
        assert isinstance(fmt, WireFormat) and fmt.name == name


@pytest.mark.parametrize("path", sorted((ROOT / "services").rglob("*.py")),
                         ids=lambda p: p.name)
def test_services_leave_http_to_the_providers(path):
    """Upstream faults are mapped once, in providers/: services never see requests' errors."""
    bad = {m for m in imported_modules(path) if m.split(".")[0] in ("requests", "urllib3")}
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


@pytest.mark.parametrize("path", sorted((ROOT / "blueprints").rglob("*.py")),
                         ids=lambda p: p.name)
def test_blueprints_do_not_import_each_other(path):
    bad = {m for m in imported_modules(path) if m.split(".")[0] == "blueprints"}
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_blueprints_hold_only_blueprints():
    """Plumbing shared by views lives in edge/, not beside the blueprints: every module in
    blueprints/ defines its blueprint, `bp`."""
    for path in (ROOT / "blueprints").glob("*.py"):
        if path.name == "__init__.py":
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        names = {t.id for node in tree.body if isinstance(node, ast.Assign)
                 for t in node.targets if isinstance(t, ast.Name)}
        assert "bp" in names, f"{path.name} is not a blueprint"


@pytest.mark.parametrize("path", APP_SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_internal_markers_ride_in_bodies(path):
    """Request metadata travels in translation.inbound.Inbound, never under a body key."""
    assert "__anthropic_beta__" not in path.read_text()
