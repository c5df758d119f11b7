"""get_scheduler: learning-rate schedules that know whether they step per epoch or per step.

Every returned scheduler has an ``interval`` attribute, ``"epoch"`` or ``"step"`` (one
optimizer step); the Trainer calls ``scheduler.step()`` accordingly (``plateau``: once per
epoch with the monitored validation value).
"""

from __future__ import annotations

import logging
import math

import torch
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau, StepLR

__all__ = ["get_scheduler", "WarmupCosineLR", "SCHEDULERS"]

log = logging.getLogger(__name__)

SCHEDULERS = ("cosine_warmup", "step", "constant", "plateau")


class WarmupCosineLR(LRScheduler):
    """Linear warmup to the base lr, then cosine decay to ``min_lr`` (or constant).

    With ``t`` the number of ``step()`` calls so far (epochs or optimizer steps), ``W`` the
    warmup length and ``T`` the total length, in the same unit::

        t <  W:        lr = base * (t + 1) / (W + 1)
        W <= t <= T:   lr = min_lr + (base - min_lr) * (1 + cos(pi * (t - W) / (T - W))) / 2
        t >  T:        lr = min_lr

    so warmup never uses lr 0 and reaches ``base`` exactly at ``t = W``. With ``total=None``
    the lr stays at ``base`` after warmup (the ``constant`` schedule).

    Args:
        optimizer: The optimizer.
        warmup: ``W`` (>= 0).
        total: ``T``, or None for no decay. With ``T <= W`` the lr ramps up until ``T`` and
            never decays (a run no longer than its warmup).
        min_lr: Final learning rate of the cosine.
        interval: ``"epoch"`` or ``"step"``: what one ``step()`` call means.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        warmup: int,
        total: int | None,
        min_lr: float = 0.0,
        interval: str = "epoch",
    ) -> None:
        self.warmup = int(warmup)
        self.total = None if total is None else int(total)
        self.min_lr = float(min_lr)
        self.interval = interval
        super().__init__(optimizer)

    def factor_lr(self, base: float, t: int) -> float:
        """Learning rate at time ``t`` for base learning rate ``base`` (closed form)."""
        if t < self.warmup:
            return base * (t + 1) / (self.warmup + 1)
        if self.total is None:
            return base
        if t >= self.total:
            return self.min_lr
        progress = (t - self.warmup) / (self.total - self.warmup)
        return self.min_lr + (base - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def get_lr(self) -> list[float]:
        """Closed-form lr for every param group at ``self.last_epoch``."""
        return [self.factor_lr(base, self.last_epoch) for base in self.base_lrs]


def _require(scheduler_type: str, **values: object) -> None:
    missing = [name for name, value in values.items() if value is None]
    if missing:
        raise ValueError(f"scheduler_type={scheduler_type!r} requires {', '.join(missing)}")


def get_scheduler(
    optimizer: torch.optim.Optimizer,
    scheduler_type: str = "cosine_warmup",
    total_epochs: int | None = None,
    warmup_epochs: int = 0,
    min_lr: float = 0.0,
    step_size: int | None = None,
    gamma: float = 0.1,
    steps_per_epoch: int | None = None,
    *,
    mode: str = "min",
    patience: int = 10,
) -> LRScheduler | ReduceLROnPlateau:
    """Build a learning-rate scheduler; arguments a type does not use are ignored.

    Types:
        ``cosine_warmup``: :class:`WarmupCosineLR`; needs ``total_epochs``. A warmup at
        least as long as the run is allowed (a smoke run of 1 epoch): the lr then ramps up
        over the whole run and never decays, and one warning says so. With
        ``steps_per_epoch`` (optimizer steps per epoch, i.e.
        ``ceil(batches / accumulation_steps)``) it advances every optimizer step for a smooth
        warmup (``interval="step"``), otherwise once per epoch.
        ``constant``: the base lr, after an optional linear warmup of ``warmup_epochs``.
        ``step``: ``StepLR``: multiply by ``gamma`` every ``step_size`` epochs; needs
        ``step_size``.
        ``plateau``: ``ReduceLROnPlateau(mode, factor=gamma, patience, min_lr)``, stepped by the
        Trainer with the monitored validation metric; ``mode`` must match ``minimize_metric``.

    Args:
        optimizer: The optimizer whose current lr is the base lr.
        scheduler_type: One of ``cosine_warmup``, ``step``, ``constant``, ``plateau``.
        total_epochs: Length of the cosine schedule, in epochs.
        warmup_epochs: Linear-warmup length, in epochs (``cosine_warmup``, ``constant``).
        min_lr: Final lr of the cosine; lower bound for ``plateau``.
        step_size: Epochs between decays (``step``).
        gamma: Decay factor (``step``, ``plateau``).
        steps_per_epoch: Optimizer steps per epoch; switches warmup schedules to per-step.
        mode: ``"min"`` or ``"max"`` (``plateau``).
        patience: Epochs without improvement before a decay (``plateau``).

    Returns:
        A scheduler with an ``interval`` attribute (``"epoch"`` or ``"step"``).

    Raises:
        ValueError: On an unknown type, a missing required argument, a negative length, or
            a cosine floor ``min_lr`` above the optimizer's lr.
    """
    key = scheduler_type.lower()
    if key not in SCHEDULERS:
        raise ValueError(
            f"unknown scheduler_type {scheduler_type!r}; valid: {', '.join(SCHEDULERS)}"
        )
    if warmup_epochs < 0:
        raise ValueError(f"warmup_epochs must be >= 0, got {warmup_epochs}")
    if steps_per_epoch is not None and steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
    unit = steps_per_epoch or 1
    interval = "step" if steps_per_epoch else "epoch"

    if key == "cosine_warmup":
        _require(key, total_epochs=total_epochs)
        if total_epochs < 1:
            raise ValueError(f"total_epochs must be >= 1, got {total_epochs}")
        peak = max(group["lr"] for group in optimizer.param_groups)
        if min_lr > peak:
            raise ValueError(f"min_lr ({min_lr}) must be <= the optimizer's lr ({peak})")
        if warmup_epochs >= total_epochs:
            log.warning("warmup (%s epochs) is not shorter than the run (%s epochs): the "
                        "learning rate ramps up over the whole run and never decays",
                        warmup_epochs, total_epochs)
        return WarmupCosineLR(
            optimizer,
            warmup=round(warmup_epochs * unit),
            total=round(total_epochs * unit),
            min_lr=min_lr,
            interval=interval,
        )
    if key == "constant":
        return WarmupCosineLR(optimizer, round(warmup_epochs * unit), None, interval=interval)
    if key == "step":
        _require(key, step_size=step_size)
        scheduler = StepLR(optimizer, step_size=step_size, gamma=gamma)
        scheduler.interval = "epoch"
        return scheduler
    scheduler = ReduceLROnPlateau(
        optimizer, mode=mode, factor=gamma, patience=patience, min_lr=min_lr
    )
    scheduler.interval = "epoch"
    return scheduler
