"""The tracking interface and its no-op implementation (``tracking=none``).

This module does not import MLflow, so ``tracking=none`` never pays MLflow's import time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from mspe_sweep.training import Callback

# Optuna-style trial state (also the value of the run's mspe.state tag) -> MLflow run status.
STATES = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED", "INTERRUPTED": "KILLED"}


def check_state(state: str) -> str:
    """The MLflow status for a trial state; ``ValueError`` listing the valid states."""
    if state not in STATES:
        raise ValueError(f"unknown trial state {state!r}; valid: {', '.join(STATES)}")
    return STATES[state]


@dataclass(frozen=True)
class DataRecord:
    """The data a trial trained on, as MLflow's runs table shows it (Dataset column).

    Attributes:
        name: The dataset's config name (``zinc_rdkit``).
        source: Where the graphs came from, in words (the start-up ``data:`` line).
        fingerprint: The dataset fingerprint (MLflow's dataset digest).
        sizes: Graphs per split, ``{"train": 8000, "val": 1000, "test": 1000}``.
    """

    name: str
    source: str
    fingerprint: str
    sizes: Mapping[str, int] = field(default_factory=dict)


class TrialRun:
    """A trial's tracking handle. This base class does nothing (``tracking=none``).

    Attributes:
        run_id: The MLflow run id, or None (no tracking, or the run is not created yet
            because tracking is down).
    """

    run_id: str | None = None

    def callback(self) -> Callback:
        """A Trainer callback logging one batch of metrics per epoch (step = epoch)."""
        return Callback()

    def log_history(self, history: Mapping[str, list]) -> None:
        """Backfill a resumed trial's inherited epochs (a Trainer history) once, before ``fit``.

        Args:
            history: ``{"epoch": [1, 2], "train/loss": [...], "val/mae": [...], ...}``, e.g.
                the ``history`` of the ``last.pt`` the trial resumes from.
        """

    def finish(self, state: str, *, value: float | None = None,
               test_metric: Mapping[str, float] | None = None, best_epoch: int | None = None,
               reason: str | None = None, artifacts: Mapping[str, Path] | None = None) -> None:
        """End the run (see :class:`MlflowTrialRun`); ``ValueError`` for an unknown state."""
        check_state(state)


class Tracker:
    """The tracking interface. This base class does nothing (``tracking=none``)."""

    def start_study(self, study_name: str, parent_run_id: str | None, spec: Mapping[str, Any],
                    base_config_yaml: str, within: tuple[str, str | None] | None = None,
                    tags: Mapping[str, str] | None = None) -> str | None:
        """Open the study's experiment and parent run; returns the parent run id (or None).

        ``within`` = (experiment, run id): put the study in that experiment, its parent run
        nested under that run (a confirmation inside its sweep's experiment); ``tags`` are
        extra tags of a new parent run. See :class:`MlflowTracker`.
        """
        return None

    def start_trial(self, trial_number: int, params: Mapping[str, Any],
                    fixed_overrides: Sequence[str], overrides: Sequence[str],
                    tags: Mapping[str, str], retry_of_run_id: str | None = None,
                    data: DataRecord | None = None, run_name: str | None = None) -> TrialRun:
        """Open a child run for a trial; see :class:`MlflowTracker`."""
        return TrialRun()

    def update_study(self, parent_run_id: str | None, best: Mapping[str, Any]) -> None:
        """Record the study's best-so-far on the parent run."""

    def finish_study(self, parent_run_id: str | None, files: Sequence[Path], *,
                     status: str | None = "FINISHED") -> None:
        """Upload plots/CSV under ``plots/`` and end the parent run."""
