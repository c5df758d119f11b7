"""Tiny data and models for the training tests (CPU, milliseconds per epoch)."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def regression_tensors(n: int = 48, features: int = 4, seed: int = 0):
    """``x [n, features]`` and a noisy linear target ``y [n]``."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=gen)
    y = x @ torch.arange(1.0, features + 1) + 0.1 * torch.randn(n, generator=gen)
    return x, y


def regression_loaders(batch_size: int = 8, shuffle: bool = False, n: int = 48):
    """Train and val DataLoaders over ``(x, y)`` tuples."""
    x, y = regression_tensors(n)
    train = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=shuffle)
    val = DataLoader(TensorDataset(*regression_tensors(16, seed=1)), batch_size=batch_size)
    return train, val


def tiny_mlp(dropout: float = 0.0) -> nn.Module:
    """4 -> 8 -> 1 MLP; output ``[B, 1]`` (the Trainer reshapes it to the ``[B]`` target)."""
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(dropout), nn.Linear(8, 1))
