"""What a study looks like to a person: progress lines, the leaderboard, and disk clean-up."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import optuna
from optuna.trial import FrozenTrial, TrialState

from mspe_sweep.sweep.records import TrialRecord
from mspe_sweep.tracking import Tracker

# Loggers whose per-trial lines (data, PE cache, model) only repeat the start-up lines.
TRIAL_LOGGERS = ("mspe_sweep.pipeline", "mspe_sweep.training", "mspe_sweep.dataset")


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """The process-wide settings of a sweep command, applied by its entry point: Optuna's own
    per-trial lines off (we print ours; restored at the end) and MLflow's logging at WARNING
    unless the user set ``MLFLOW_LOGGING_LEVEL`` (kept: MLflow reads it once, on import)."""
    verbosity = optuna.logging.get_verbosity()
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(verbosity)


@contextlib.contextmanager
def quiet_trial_logs() -> Iterator[None]:
    """While trials run, only warnings of the ``TRIAL_LOGGERS``: the start-up lines name the
    data, and per-trial data, PE-cache and model lines would repeat it once per trial."""
    levels = {name: logging.getLogger(name).level for name in TRIAL_LOGGERS}
    for name in TRIAL_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def counts(study: optuna.Study) -> dict[TrialState, int]:
    """Trials per state."""
    return _tally(study.get_trials(deepcopy=False))


def _tally(trials: Iterable[FrozenTrial]) -> dict[TrialState, int]:
    result = {state: 0 for state in TrialState}
    for trial in trials:
        result[trial.state] += 1
    return result


def _ranked(trials: Iterable[FrozenTrial], study: optuna.Study) -> list[FrozenTrial]:
    """The COMPLETE ones of ``trials``, best first (of equal values the first by number;
    Optuna's ``study.best_trial`` leaves that order to the database)."""
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    reverse = study.direction == optuna.study.StudyDirection.MAXIMIZE
    return sorted(complete, key=lambda t: t.value, reverse=reverse)


def _best(trials: Iterable[FrozenTrial], study: optuna.Study) -> FrozenTrial | None:
    return next(iter(_ranked(trials, study)), None)


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The best COMPLETE trial, or None (Optuna raises when there is none)."""
    return _best(study.get_trials(deepcopy=False), study)


def finite_complete(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """The COMPLETE trials with a finite value: the only ones a best, median or importance
    may use."""
    return [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None
            and math.isfinite(t.value)]


def budget_done(study: optuna.Study) -> int:
    """Finished trials: what the budget counts (COMPLETE + PRUNED)."""
    return _done(counts(study))


def _done(c: Mapping[TrialState, int]) -> int:
    return c[TrialState.COMPLETE] + c[TrialState.PRUNED]


def budget_line(study: optuna.Study, n_trials: int) -> str:
    """``3/10 done (1 pruned, 0 failed), best 0.4123 (trial 2)``."""
    trials = study.get_trials(deepcopy=False)  # once: this runs after every trial
    c = _tally(trials)
    done = _done(c)
    best = _best(trials, study)
    best_text = f", best {best.value:.4f} (trial {best.number})" if best else ""
    return (f"{done}/{n_trials} done ({c[TrialState.PRUNED]} pruned, "
            f"{c[TrialState.FAIL]} failed){best_text}")


def ranked(study: optuna.Study) -> list[FrozenTrial]:
    """COMPLETE trials, best first."""
    return _ranked(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), study)


def format_value(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_params(params: Mapping[str, Any]) -> str:
    """``training.optimizer.lr=0.001252 pe=rwse``: params as a table shows them."""
    return " ".join(f"{k}={format_value(v)}" for k, v in params.items())


def format_number(value: float | None, spec: str = ".4f") -> str:
    """A metric in a table: ``-`` for None and NaN."""
    return "-" if value is None or math.isnan(value) else format(value, spec)


@dataclass(frozen=True)
class Table:
    """A table as strings, shared by the text report and ``report.html``."""

    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


def text_table(table: Table) -> str:
    """Left-aligned columns, two spaces apart."""
    rows = [table.header, *table.rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(table.header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
                     for row in rows)


def leaderboard_table(study: optuna.Study, metric: str, top: int = 10) -> Table:
    """The best ``top`` COMPLETE trials with their val and test metric and params."""
    test_name = "test/" + metric.split("/", 1)[-1]
    rows = []
    for rank, trial in enumerate(ranked(study)[:top], 1):
        record = TrialRecord(trial)
        test, epoch = record.test_metric, record.best_epoch
        params = format_params(trial.params)
        rows.append((str(rank), str(trial.number), f"{trial.value:.4f}",
                     "-" if test is None else f"{test:.4f}",
                     "-" if epoch is None else str(epoch), params))
    return Table(("rank", "trial", metric, test_name, "epoch", "params"), tuple(rows))


def leaderboard(study: optuna.Study, metric: str, top: int = 10) -> str:
    """The leaderboard (:func:`leaderboard_table`) as plain text."""
    table = leaderboard_table(study, metric, top)
    return text_table(table) if table.rows else "no COMPLETE trials yet"


def summary(study: optuna.Study, metric: str, n_trials: int) -> str:
    """The end-of-run block: counts, the best trial and how to reproduce it, the leaderboard."""
    lines = [f"study {study.study_name}: {budget_line(study, n_trials)}"]
    saved = pruning_savings(study)
    if saved:
        lines.append(saved)
    best = best_trial(study)
    if best is not None:
        record = TrialRecord(best)
        lines.append(f"best trial {best.number}: {metric} {best.value:.4f}; reproduce with:")
        lines.append(f"  python -m mspe_sweep.train {shlex.join(record.overrides)}")
        if record.checkpoint_dir:
            lines.append(f"  checkpoints: {record.checkpoint_dir}")
    lines += ["", leaderboard(study, metric)]
    return "\n".join(lines)


def track_progress(tracker: Tracker, parent_run_id: str | None, study: optuna.Study) -> None:
    """Keep the study's best-so-far and trial counts on the tracking parent run."""
    trials = study.get_trials(deepcopy=False)  # once: this runs after every trial
    c = _tally(trials)
    progress = {"finished": _done(c), "complete": c[TrialState.COMPLETE],
                "pruned": c[TrialState.PRUNED], "failed": c[TrialState.FAIL]}
    best = _best(trials, study)
    if best is not None:
        progress.update(value=best.value, trial=best.number, params=best.params)
    tracker.update_study(parent_run_id, progress)


def pruning_savings(study: optuna.Study) -> str:
    """``pruning saved 24 of 48 planned epochs (50%)`` over finished trials, or ''."""
    planned = run = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,
                                                           TrialState.PRUNED)):
        record = TrialRecord(trial)
        if record.epochs_planned is not None and record.epochs_run is not None:
            planned += record.epochs_planned
            run += record.epochs_run
    if not planned or planned == run:
        return ""
    saved = planned - run
    return (f"pruning and early stopping saved {saved} of {planned} planned epochs "
            f"({100 * saved / planned:.0f}%)")


def prune_checkpoints(study: optuna.Study, keep: int) -> None:
    """Delete checkpoints no one needs: only the best ``keep`` COMPLETE trials keep theirs.

    A trial directory belongs to a retry chain (``trial-<first number>``). It is left alone
    while the chain's latest trial is RUNNING or WAITING, or crashed (FAIL without a reason of
    its own): its retry may be queued at any moment and resumes from ``last.pt``.
    """
    latest: dict[int, TrialRecord] = {}
    for trial in study.get_trials(deepcopy=False):
        record = TrialRecord(trial)
        latest[record.root_number] = record
    keep_dirs = {TrialRecord(t).checkpoint_dir for t in ranked(study)[:keep]}
    for record in latest.values():
        run_dir = record.checkpoint_dir
        if not run_dir or run_dir in keep_dirs:
            continue
        if record.state in (TrialState.RUNNING, TrialState.WAITING):
            continue
        if record.state == TrialState.FAIL and not record.fail_reason:
            continue  # crashed or interrupted: its retry resumes from these checkpoints
        for checkpoint in Path(run_dir).glob("*.pt"):
            checkpoint.unlink(missing_ok=True)
