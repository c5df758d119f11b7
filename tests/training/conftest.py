"""Fixtures for the training tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def restore_determinism():
    """Undo the global flags that ``set_seed(..., deterministic=True)`` turns on."""
    saved = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    yield
    torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[2], saved[3]
