"""Trainer callbacks that connect one fit to its Optuna trial.

The Trainer knows nothing of Optuna: these callbacks receive its per-epoch validation metrics
through the documented hook (``on_eval_epoch_end``) and talk to the trial.
"""

from __future__ import annotations

import logging
import math
from typing import Mapping

import optuna

from mspe_sweep.sweep.records import RunningTrial
from mspe_sweep.training import Callback

log = logging.getLogger(__name__)


def metric_value(metrics: Mapping[str, float], monitor: str) -> float:
    """The monitored value from a bare-key val dict (``mae``) given ``val/mae`` or ``mae``."""
    return float(metrics[monitor.split("/", 1)[-1]])


class PruningCallback(Callback):
    """Report the monitored validation metric each epoch and prune when the pruner says so.

    It watches the same metric as early stopping and the best checkpoint, so the pruner, the
    early-stopping rule and the trial's value all judge the same curve. Epoch numbers are the
    report steps; a resumed trial re-reports the epochs it inherited (see ``replay``).

    Args:
        trial: The running Optuna trial.
        monitor: ``val/<name>`` or ``<name>``.
    """

    def __init__(self, trial: optuna.Trial, monitor: str) -> None:
        self.trial = trial
        self.monitor = monitor

    def replay(self, history: Mapping[str, list]) -> None:
        """Report the epochs a resumed run already has, so the pruner sees the whole curve."""
        key = self.monitor if "/" in self.monitor else f"val/{self.monitor}"
        for epoch, value in zip(history.get("epoch", []), history.get(key, [])):
            self._report(float(value), int(epoch))

    def on_eval_epoch_end(self, trainer, epoch: int, metrics: Mapping[str, float]) -> None:
        self._report(metric_value(metrics, self.monitor), epoch)
        if self.trial.should_prune():
            RunningTrial(self.trial).set_epochs_run(epoch)
            raise optuna.TrialPruned(f"pruned at epoch {epoch}")

    def _report(self, value: float, epoch: int) -> None:
        # The pruners compare finite numbers only; a NaN metric is the Trainer's to reject.
        if math.isfinite(value):
            self.trial.report(value, epoch)


class EpochProgress(Callback):
    """One line per epoch naming the trial, so several workers' output stays readable."""

    def __init__(self, trial_number: int, monitor: str, epochs: int) -> None:
        self.trial_number = trial_number
        self.monitor = monitor
        self.epochs = epochs

    def on_eval_epoch_end(self, trainer, epoch: int, metrics: Mapping[str, float]) -> None:
        value = metric_value(metrics, self.monitor)
        best = trainer.best_metric
        best_text = "-" if best is None else f"{best:.4f} @ {trainer.best_epoch}"
        log.info("  trial %d  epoch %d/%d  %s %.4f  (best %s)", self.trial_number, epoch,
                 self.epochs, self.monitor, value, best_text)
