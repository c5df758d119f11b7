"""Callback base class: the Trainer's extension points (Optuna pruning, MLflow, ...).

Hooks run in this order inside ``Trainer.fit``::

    on_fit_start(trainer)
    for each epoch:
        train_epoch
        on_train_epoch_end(trainer, epoch, train_metrics)
        eval_epoch
        on_validation_recorded(trainer, epoch, val_metrics)   # the epoch is in the history
        best / early-stopping / plateau bookkeeping, "val" log hooks
        save best.pt if improved, then last.pt   -> on_checkpoint_saved(trainer, path, kind)
        on_eval_epoch_end(trainer, epoch, val_metrics)
        stop if trainer.should_stop
    on_fit_end(trainer, history)           # only when fit completes normally

Checkpoints are written before ``on_eval_epoch_end`` so that a callback raising there (e.g. a
pruner) leaves this epoch's ``last.pt`` behind for a retry to resume from. Values a callback
must not lose when a later hook raises (an MLflow logger's epoch) arrive earlier, in
``on_validation_recorded``.

A callback may set ``trainer.should_stop = True`` (fit ends after the current epoch with
``stop_reason == "callback"``) or raise; the Trainer never swallows the exception and skips
``on_fit_end`` in that case. The Trainer dispatches by name with ``getattr``, so any object
with some of these methods works; subclassing :class:`Callback` just documents intent.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .trainer import Trainer

__all__ = ["Callback"]


class Callback:
    """Base class with no-op hooks; override the ones you need."""

    def on_fit_start(self, trainer: Trainer) -> None:
        """Called once when ``fit`` starts (after a resume checkpoint is loaded)."""

    def on_train_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        """Called after each training epoch.

        Args:
            trainer: The trainer.
            epoch: 1-based epoch number.
            metrics: The ``train_epoch`` dict (bare keys: ``loss``, metrics, ``lr``,
                ``epoch_seconds``, ``samples_per_second``).
        """

    def on_validation_recorded(
        self, trainer: Trainer, epoch: int, metrics: dict[str, float]
    ) -> None:
        """Called as soon as an epoch's validation is recorded, before its bookkeeping.

        The epoch counts as completed (``trainer.epoch == epoch``, the history holds it); best
        metric, early stopping and a plateau scheduler are updated after this hook, checkpoints
        and ``on_eval_epoch_end`` later still. A callback that must keep the epoch's values
        even if a later hook raises (e.g. a pruner in ``on_eval_epoch_end``) takes them here.

        Args:
            trainer: The trainer.
            epoch: 1-based epoch number.
            metrics: The ``eval_epoch`` dict (bare keys: ``loss`` and metrics).
        """

    def on_eval_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        """Called after validation, bookkeeping and checkpoints of each epoch.

        Args:
            trainer: The trainer (``trainer.best_metric``/``best_epoch`` already updated).
            epoch: 1-based epoch number.
            metrics: The ``eval_epoch`` dict (bare keys: ``loss`` and metrics).
        """

    def on_checkpoint_saved(self, trainer: Trainer, path: Path, kind: str) -> None:
        """Called after ``fit`` wrote a checkpoint.

        Args:
            trainer: The trainer.
            path: The checkpoint file (complete: writes are atomic).
            kind: ``"best"`` or ``"last"``.
        """

    def on_fit_end(self, trainer: Trainer, history: dict[str, list]) -> None:
        """Called when ``fit`` completes normally (not when it raised).

        Args:
            trainer: The trainer (``stop_reason`` set).
            history: The full history (see ``Trainer.fit``).
        """
