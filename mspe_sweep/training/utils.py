"""Training utilities: early stopping, the monitored metric, gradient accumulation, device,
model info, progress."""

from __future__ import annotations

import logging
import math
import sys
import time
from typing import Any, Mapping, Sequence

import torch
from torch import nn

__all__ = [
    "EarlyStopping",
    "Monitor",
    "GradientAccumulator",
    "get_device",
    "log_model_info",
    "ProgressDisplay",
]

_LOGGER = logging.getLogger("mspe_sweep.training")


class EarlyStopping:
    """Stop when the monitored value has not improved for ``patience`` consecutive checks.

    A value improves when it beats the best so far by more than ``min_delta`` (lower for
    ``mode="min"``, higher for ``mode="max"``). NaN never improves.

    Example:
        >>> stopper = EarlyStopping(patience=2)
        >>> [stopper(v) for v in [1.0, 0.5, 0.6, 0.7]]
        [False, False, False, True]

    Args:
        patience: Number of checks without improvement after which to stop (>= 1).
        mode: ``"min"`` or ``"max"``.
        min_delta: Minimum change that counts as an improvement (>= 0).

    Raises:
        ValueError: On a patience < 1, an unknown mode or a negative ``min_delta``.
    """

    MODES = ("min", "max")

    def __init__(self, patience: int, mode: str = "min", min_delta: float = 0.0) -> None:
        if int(patience) < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        if mode not in self.MODES:
            raise ValueError(f"unknown mode {mode!r}; valid: {', '.join(self.MODES)}")
        if min_delta < 0:
            raise ValueError(f"min_delta must be >= 0, got {min_delta}")
        self.patience = int(patience)
        self.mode = mode
        self.min_delta = float(min_delta)
        self.best: float | None = None
        self.counter = 0
        self.stopped = False

    def improves(self, value: float) -> bool:
        """Whether ``value`` beats the best so far by more than ``min_delta`` (no update)."""
        if math.isnan(value):
            return False
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def __call__(self, value: float) -> bool:
        """Record one check; return True when it is time to stop."""
        value = float(value)
        if self.improves(value):
            self.best = value
            self.counter = 0
        else:
            self.counter += 1
        self.stopped = self.counter >= self.patience
        return self.stopped

    def early_stop(self, val_loss: float) -> bool:
        """Alias of ``__call__`` (original API name)."""
        return self(val_loss)

    def state_dict(self) -> dict[str, Any]:
        """Plain-Python state for checkpoints."""
        return {
            "patience": self.patience,
            "mode": self.mode,
            "min_delta": self.min_delta,
            "best": self.best,
            "counter": self.counter,
            "stopped": self.stopped,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the progress (best, counter, stopped); the settings stay the constructor's."""
        self.best = state["best"]
        self.counter = int(state["counter"])
        self.stopped = bool(state["stopped"])


class Monitor:
    """The validation metric ``Trainer.fit`` watches for ``best.pt``, early stopping, plateaus.

    Args:
        metric: ``"mae"`` or ``"val/mae"``.
        minimize: Whether lower is better.
        names: The metric names the metrics function reports (its ``names`` attribute); None
            when unknown: :meth:`value` then checks each validation dict instead.

    Raises:
        ValueError: On a metric that is neither ``loss`` nor in ``names`` (the message lists
            the valid ones).
    """

    def __init__(
        self, metric: str, minimize: bool = True, names: Sequence[str] | None = None
    ) -> None:
        self.name = metric[4:] if metric.startswith("val/") else metric
        if names is not None and self.name not in ("loss", *names):
            valid = ", ".join(f"val/{n}" for n in ("loss", *names))
            raise ValueError(f"unknown metric_for_best {metric!r}; available: {valid}")
        self.minimize = minimize
        self.mode = "min" if minimize else "max"
        self.key = f"val/{self.name}"  # as checkpoints record it

    def value(self, val_metrics: Mapping[str, float]) -> float:
        """The monitored value of a validation dict (bare keys)."""
        if self.name not in val_metrics:  # custom metrics without a `names` attribute
            valid = ", ".join(f"val/{n}" for n in val_metrics)
            raise ValueError(f"unknown metric_for_best {self.name!r}; available: {valid}")
        return float(val_metrics[self.name])

    def improves(self, value: float, best: float | None) -> bool:
        """Whether ``value`` beats ``best`` (anything but NaN beats None)."""
        if math.isnan(value):
            return False
        if best is None:
            return True
        return value < best if self.minimize else value > best


class GradientAccumulator:
    """Decide when to step the optimizer when accumulating gradients over micro-batches.

    ``accumulation_steps`` micro-batches make one optimizer step; each micro-batch loss is
    scaled by ``1 / accumulation_steps`` so that equal-size micro-batches give exactly the
    gradient of one batch ``accumulation_steps`` times larger. A partial group left at the end
    of an epoch still steps (with the same ``1/k`` scaling, so its gradient is proportionally
    smaller).

    Example:
        >>> acc = GradientAccumulator(2)
        >>> [acc.micro_step(is_last=(i == 4)) for i in range(5)]
        [False, True, False, True, True]

    Args:
        accumulation_steps: Micro-batches per optimizer step (>= 1).
    """

    def __init__(self, accumulation_steps: int = 1) -> None:
        if int(accumulation_steps) < 1:
            raise ValueError(f"accumulation_steps must be >= 1, got {accumulation_steps}")
        self.accumulation_steps = int(accumulation_steps)
        self._pending = 0

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        """Return the loss to call ``backward`` on."""
        return loss / self.accumulation_steps if self.accumulation_steps > 1 else loss

    def micro_step(self, is_last: bool = False) -> bool:
        """Count one micro-batch; return True if the optimizer should step now."""
        self._pending += 1
        if self._pending >= self.accumulation_steps or is_last:
            self._pending = 0
            return True
        return False

    def reset(self) -> None:
        """Forget a partial group (called at the start of every epoch)."""
        self._pending = 0


def get_device() -> torch.device:
    """Return ``cuda`` when available, else ``cpu``."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def log_model_info(model: nn.Module, logger: logging.Logger | None = None) -> dict[str, int]:
    """Log and return the model's parameter counts.

    Args:
        model: Any module.
        logger: Where to log (INFO); defaults to the ``mspe_sweep.training`` logger.

    Returns:
        ``{"total": n, "trainable": n}``.
    """
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    (logger or _LOGGER).info(
        "%s: %s parameters (%s trainable)", type(model).__name__, f"{total:,}", f"{trainable:,}"
    )
    return {"total": total, "trainable": trainable}


class ProgressDisplay:
    """Per-epoch progress on stderr.

    On a terminal a single line is redrawn (at most every 0.2 s) while an epoch runs; when
    stderr is not a terminal (logs, CI) exactly one line is printed per epoch, with no
    carriage returns. ``enabled=False`` prints nothing.
    """

    REDRAW_SECONDS = 0.2

    def __init__(self, total_epochs: int, enabled: bool = True) -> None:
        self.total_epochs = total_epochs
        self.enabled = enabled
        self._tty = enabled and sys.stderr.isatty()
        self._last_draw = 0.0
        self._drawn = False

    def batch(self, epoch: int, batch_index: int, running_loss: float, rate: float) -> None:
        """Redraw the in-epoch line (terminals only)."""
        now = time.monotonic()
        if not self._tty or now - self._last_draw < self.REDRAW_SECONDS:
            return
        self._last_draw = now
        self._drawn = True
        sys.stderr.write(
            f"\repoch {epoch}/{self.total_epochs}  batch {batch_index + 1}  "
            f"loss {running_loss:.4f}  {rate:,.0f} samples/s"
        )
        sys.stderr.flush()

    def epoch(self, epoch: int, train: dict[str, float], val: dict[str, float]) -> None:
        """Print the end-of-epoch summary line."""
        if not self.enabled:
            return
        vals = "  ".join(f"val {k} {v:.4f}" for k, v in val.items())
        line = (
            f"epoch {epoch}/{self.total_epochs}  train loss {train['loss']:.4f}  {vals}  "
            f"lr {train['lr']:.2e}  {train['samples_per_second']:,.0f} samples/s  "
            f"{train['epoch_seconds']:.1f}s"
        )
        # "\r" + clear-to-end-of-line only where a partial line was drawn on a terminal.
        prefix = "\r\033[K" if self._drawn else ""
        self._drawn = False
        print(prefix + line, file=sys.stderr, flush=True)

    def close(self) -> None:
        """End a dangling in-epoch line so later output starts on a fresh line."""
        if self._drawn:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self._drawn = False
