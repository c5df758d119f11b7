"""Import rules of ``mspe_sweep.tracking`` (checked on the source: no extra processes)."""

from __future__ import annotations

import ast
from pathlib import Path

import mspe_sweep.tracking as tracking

PACKAGE = Path(tracking.__file__).parent


def top_level_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module.split(".")[0])
    return found


def all_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_tracking_never_imports_optuna():
    modules = sorted(PACKAGE.glob("*.py"))
    assert len(modules) >= 6
    assert [m.name for m in modules if "optuna" in all_imports(m)] == []


def test_tracking_none_does_not_import_mlflow():
    light = [PACKAGE / "__init__.py", PACKAGE / "base.py", PACKAGE / "factory.py"]
    assert [m.name for m in light if "mlflow" in top_level_imports(m)] == []
    assert "mlflow" in all_imports(PACKAGE / "factory.py")
