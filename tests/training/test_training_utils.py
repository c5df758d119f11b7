"""EarlyStopping, GradientAccumulator, get_device, log_model_info."""

from __future__ import annotations

import logging
import math

import pytest
import torch
from torch import nn

from mspe_sweep.training import EarlyStopping, GradientAccumulator, get_device, log_model_info


def test_early_stopping_min_mode_and_alias():
    stopper = EarlyStopping(patience=2)
    assert [stopper.early_stop(v) for v in [1.0, 0.9, 0.95, 0.9, 0.8, 0.85, 0.81]] == [
        False, False, False, True, False, False, True
    ]


def test_early_stopping_max_mode_min_delta_and_nan():
    stopper = EarlyStopping(patience=1, mode="max", min_delta=0.1)
    assert stopper(0.5) is False
    assert stopper(0.55) is True  # +0.05 is not more than min_delta
    stopper = EarlyStopping(patience=2)
    assert [stopper(v) for v in [1.0, math.nan, math.nan]] == [False, False, True]


def test_early_stopping_state_round_trip_and_validation():
    stopper = EarlyStopping(patience=3)
    for value in [1.0, 2.0, 3.0]:
        stopper(value)
    fresh = EarlyStopping(patience=3)
    fresh.load_state_dict(stopper.state_dict())
    assert fresh(4.0) is True and fresh.best == 1.0
    with pytest.raises(ValueError, match="patience"):
        EarlyStopping(0)
    with pytest.raises(ValueError, match="min, max"):
        EarlyStopping(1, mode="lower")


def test_accumulator_schedule_and_validation():
    acc = GradientAccumulator(3)
    assert [acc.micro_step(is_last=(i == 6)) for i in range(7)] == [
        False, False, True, False, False, True, True
    ]
    assert acc.scale(torch.tensor(6.0)).item() == 2.0
    with pytest.raises(ValueError, match="accumulation_steps"):
        GradientAccumulator(0)


def test_accumulated_micro_batches_equal_one_large_batch():
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(12, 3, generator=gen), torch.randn(12, 1, generator=gen)
    base = nn.Linear(3, 1)

    big = nn.Linear(3, 1)
    big.load_state_dict(base.state_dict())
    opt_big = torch.optim.SGD(big.parameters(), lr=0.1)
    nn.functional.mse_loss(big(x), y).backward()
    opt_big.step()

    small = nn.Linear(3, 1)
    small.load_state_dict(base.state_dict())
    opt_small = torch.optim.SGD(small.parameters(), lr=0.1)
    acc = GradientAccumulator(4)
    steps = 0
    for i, (xb, yb) in enumerate(zip(x.split(3), y.split(3))):
        acc.scale(nn.functional.mse_loss(small(xb), yb)).backward()
        if acc.micro_step(is_last=i == 3):
            opt_small.step()
            steps += 1
    assert steps == 1
    assert torch.allclose(small.weight, big.weight, atol=1e-6)
    assert torch.allclose(small.bias, big.bias, atol=1e-6)
    assert not torch.allclose(small.weight, base.weight)


def test_get_device_and_model_info(caplog):
    assert get_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    model = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1))
    model[1].requires_grad_(False)
    with caplog.at_level(logging.INFO, logger="mspe_sweep.training"):
        info = log_model_info(model)
    assert info == {"total": 11, "trainable": 8}
    assert "11 parameters (8 trainable)" in caplog.text
