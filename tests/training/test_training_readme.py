"""Every ```python block of mspe_sweep/training/README.md runs (```python no-run blocks do not)."""

from __future__ import annotations

import re
from pathlib import Path

import torch

import mspe_sweep.training as training

README = Path(training.__file__).parent / "README.md"
# Only fences whose info string is exactly "python": "python no-run" needs optional packages.
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def test_readme_has_runnable_and_guarded_examples():
    text = README.read_text()
    assert len(BLOCK.findall(text)) >= 6
    assert text.count("```python no-run") == 2  # TensorBoard and W&B recipes


def test_readme_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the examples write ckpt/ relative to the working directory
    namespace: dict = {}
    for index, block in enumerate(BLOCK.findall(README.read_text())):
        code = compile(block, f"{README.name}[python block {index}]", "exec")
        exec(code, namespace)  # noqa: S102 - the README's own examples
    assert (tmp_path / "ckpt" / "last.pt").is_file()
    assert isinstance(namespace["trainer"].model, torch.nn.Module)
