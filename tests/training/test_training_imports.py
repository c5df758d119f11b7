"""The seam: mspe_sweep.training never imports Optuna, MLflow, or the packages that wrap them."""

from __future__ import annotations

import ast
from pathlib import Path

import mspe_sweep.training as training

FORBIDDEN = ("optuna", "mlflow", "mspe_sweep.sweep", "mspe_sweep.tracking")
# Relative imports out of the package that would reach the same modules.
FORBIDDEN_RELATIVE = ("sweep", "tracking")
SOURCE_DIR = Path(training.__file__).parent


def _imported_modules(tree: ast.AST):
    """Every module name an import statement or a string-based import call refers to."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level >= 2:  # from ..sweep import x  /  from .. import tracking
                parts = [node.module or ""] + [alias.name for alias in node.names]
                yield from (f"..{part}" for part in parts if part)
            elif node.level == 0 and node.module:
                yield node.module
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) in
            ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            yield str(node.args[0].value)


def _violations(source: str) -> list[str]:
    found = []
    for name in _imported_modules(ast.parse(source)):
        if name.startswith(".."):
            if name[2:].split(".")[0] in FORBIDDEN_RELATIVE:
                found.append(name)
        elif any(name == f or name.startswith(f + ".") for f in FORBIDDEN):
            found.append(name)
    return found


def test_training_sources_do_not_import_optuna_or_mlflow():
    files = sorted(SOURCE_DIR.glob("*.py"))
    assert len(files) >= 10
    offenders = {f.name: _violations(f.read_text()) for f in files}
    assert {name: v for name, v in offenders.items() if v} == {}


def test_the_scanner_catches_each_form():
    assert _violations("import optuna") == ["optuna"]
    assert _violations("from mlflow.tracking import MlflowClient") == ["mlflow.tracking"]
    assert _violations("from ..tracking import log_hook") == ["..tracking"]
    assert _violations("from .. import sweep") == ["..sweep"]
    assert _violations("importlib.import_module('optuna.pruners')") == ["optuna.pruners"]
    assert _violations("import torch\nfrom .loops import x") == []
