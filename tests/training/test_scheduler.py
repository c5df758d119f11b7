"""get_scheduler: curve values at specific points, intervals, validation, state round trip."""

from __future__ import annotations

import io
import math

import pytest
import torch

from mspe_sweep.training import get_scheduler


def _optimizer(lr=1.0):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def _lrs(scheduler, steps):
    """lr in effect for t = 0 .. steps - 1."""
    values = []
    for _ in range(steps):
        values.append(scheduler.optimizer.param_groups[0]["lr"])
        scheduler.optimizer.step()
        scheduler.step()
    return values


def test_cosine_warmup_per_epoch_values():
    scheduler = get_scheduler(_optimizer(), "cosine_warmup", total_epochs=6, warmup_epochs=2,
                              min_lr=0.1)
    assert scheduler.interval == "epoch"
    lrs = _lrs(scheduler, 8)
    # warmup (t+1)/(W+1), peak at t=W, cosine to min_lr at t=T, then flat
    expected = [1 / 3, 2 / 3, 1.0, 0.1 + 0.9 * (1 + math.cos(math.pi / 4)) / 2, 0.55,
                0.1 + 0.9 * (1 + math.cos(3 * math.pi / 4)) / 2, 0.1, 0.1]
    assert lrs == pytest.approx(expected)


def test_cosine_without_warmup_starts_at_base_lr():
    scheduler = get_scheduler(_optimizer(0.01), "cosine_warmup", total_epochs=4)
    assert _lrs(scheduler, 5) == pytest.approx([0.01, 0.01 * (1 + math.cos(math.pi / 4)) / 2,
                                                0.005, 0.01 * (1 + math.cos(3 * math.pi / 4)) / 2,
                                                0.0])


def test_cosine_per_step_is_smooth():
    scheduler = get_scheduler(_optimizer(), "cosine_warmup", total_epochs=3, warmup_epochs=1,
                              steps_per_epoch=4)
    assert scheduler.interval == "step"
    lrs = _lrs(scheduler, 13)
    assert lrs[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert lrs[8] == pytest.approx(0.5)  # halfway through the 8 decay steps
    assert lrs[12] == pytest.approx(0.0)


def test_constant_with_optional_warmup_and_step():
    assert _lrs(get_scheduler(_optimizer(), "constant", warmup_epochs=1), 3) == [0.5, 1, 1]
    assert _lrs(get_scheduler(_optimizer(), "constant"), 2) == [1, 1]
    step = get_scheduler(_optimizer(), "step", step_size=2, gamma=0.5)
    assert step.interval == "epoch"
    assert _lrs(step, 5) == pytest.approx([1, 1, 0.5, 0.5, 0.25])


@pytest.mark.parametrize("warmup", [3, 5])
def test_warmup_as_long_as_the_run_ramps_over_the_whole_run(warmup, caplog):
    with caplog.at_level("WARNING", logger="mspe_sweep.training"):
        scheduler = get_scheduler(_optimizer(), "cosine_warmup", total_epochs=3,
                                  warmup_epochs=warmup)
    assert _lrs(scheduler, 3) == pytest.approx([(t + 1) / (warmup + 1) for t in range(3)])
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "ramps up over the whole run" in warnings[0]


def test_warmup_shorter_than_the_run_does_not_warn(caplog):
    with caplog.at_level("WARNING", logger="mspe_sweep.training"):
        get_scheduler(_optimizer(), "cosine_warmup", total_epochs=3, warmup_epochs=2)
    assert not caplog.records


def test_plateau_is_epoch_interval():
    scheduler = get_scheduler(_optimizer(), "plateau", patience=3, gamma=0.2, mode="max")
    assert scheduler.interval == "epoch" and scheduler.mode == "max"
    assert scheduler.factor == pytest.approx(0.2)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"scheduler_type": "cosine_warmup"}, "total_epochs"),
    ({"scheduler_type": "cosine_warmup", "total_epochs": 5, "warmup_epochs": -1}, "warmup_epochs"),
    ({"scheduler_type": "cosine_warmup", "total_epochs": 5, "min_lr": 2.0}, "min_lr"),
    ({"scheduler_type": "step"}, "step_size"),
    ({"scheduler_type": "linear"}, "cosine_warmup, step, constant, plateau"),
    ({"scheduler_type": "constant", "steps_per_epoch": 0}, "steps_per_epoch"),
])
def test_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        get_scheduler(_optimizer(), **kwargs)


def test_state_round_trips_through_weights_only_load():
    scheduler = get_scheduler(_optimizer(), "cosine_warmup", total_epochs=6, warmup_epochs=2)
    _lrs(scheduler, 3)
    buffer = io.BytesIO()
    torch.save(scheduler.state_dict(), buffer)
    buffer.seek(0)
    fresh = get_scheduler(_optimizer(), "cosine_warmup", total_epochs=6, warmup_epochs=2)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    fresh.step()
    scheduler.step()
    assert fresh.get_last_lr() == scheduler.get_last_lr() and fresh.last_epoch == 4
