"""DESIGN.md's dependency rule: server imports realtime and storage; they import neither
each other nor server."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {"realtime": {"server", "storage"}, "storage": {"server", "realtime"}}


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_lower_layers_do_not_import_upwards(package: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(_imports(path) & FORBIDDEN[package])
        for path in (ROOT / package).rglob("*.py")
        if _imports(path) & FORBIDDEN[package]
    }
    assert offenders == {}


def test_the_rule_checker_sees_imports() -> None:
    assert "server" in _imports(ROOT / "server" / "app.py")
    assert "storage" in _imports(ROOT / "server" / "app.py")


def _full_imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_only_the_app_imports_endpoint_modules() -> None:
    """The core (engine, events, push, outbound) renders through server/render; an endpoint
    module is imported only by the app that mounts it and by its sibling endpoints."""
    offenders = sorted(
        str(path.relative_to(ROOT))
        for path in (ROOT / "server").rglob("*.py")
        if path.parent.name != "api"
        and path.name != "app.py"
        and any(name.startswith("server.api") for name in _full_imports(path))
    )
    assert offenders == []
