"""The result of a confirmation: each selected configuration's seeds, with error bars.

A sweep's best trial is one seed's draw, picked as the best of many close ones, so it is biased
towards luck. ``python -m mspe_sweep.confirm`` re-trains the top configurations over new seeds
(the linked study ``<study>/confirm``); this module holds what that measures, as values that
the text table, the CSV, ``report.html`` and the plots all read.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from mspe_sweep.sweep.records import StudyRecord, TrialRecord, json_digest
from mspe_sweep.sweep.reporting import (
    Table,
    format_number,
    format_params,
    ranked,
    text_table,
)
from mspe_sweep.sweep.stats import WELCH_MIN_N, Comparison, SeedStats, compare, seed_stats


@dataclass(frozen=True)
class SeedRun:
    """One seed of a configuration: the sweep's original trial, or a confirmation trial.

    Attributes:
        seed: ``training.seed`` of the run.
        trial: Its trial number (in the sweep for the original, else in ``<study>/confirm``).
        original: True for the sweep's own trial (the draw that got the config selected).
        value: The best monitored validation metric (the trial's value).
        test: The test metric at the best epoch, or None if not measured.
        curve: ``{epoch: monitored validation metric}`` (the trial's intermediate values).
    """

    seed: int
    trial: int
    original: bool
    value: float
    test: float | None
    curve: dict[int, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ConfirmedConfig:
    """One selected configuration and its seeds.

    Attributes:
        key: Stable key of its params (``config_key``).
        sweep_rank: Its rank among the sweep's distinct configurations now (1 = best).
        params: The sampled params, as in the sweep.
        runs: Its COMPLETE seeds, the original first.
        pending: Seeds queued or running, not COMPLETE yet.
        val: Statistics of the validation metric over ``runs``.
        test: Statistics of the test metric over the runs that have one; None if none.
        vs_best: The test against the winner's seeds; None for the winner itself.
        failed: Seeds that failed on their own (not retried; a crash is retried instead).
    """

    key: str
    sweep_rank: int
    params: dict[str, Any]
    runs: tuple[SeedRun, ...]
    pending: int
    val: SeedStats
    test: SeedStats | None
    vs_best: Comparison | None
    failed: int = 0

    @property
    def original(self) -> SeedRun:
        return self.runs[0]

    @property
    def gap(self) -> float | None:
        """The selection bias measured: the original single-seed value minus the mean of the
        NEW seeds (the original is the draw that got the configuration selected, so a mean
        that includes it would hide part of its luck); None before a new seed is COMPLETE.
        Negative for a minimized metric whose selecting draw looked better than fresh seeds.
        """
        fresh = [run.value for run in self.runs[1:]]
        return self.original.value - sum(fresh) / len(fresh) if fresh else None


@dataclass(frozen=True)
class Confirmation:
    """A confirmation's table: configurations by confirmed mean, the winner first.

    Attributes:
        study: The sweep's name (the confirmation study is ``<study>/confirm``).
        metric: The study metric (``val/mae``).
        direction: ``minimize`` or ``maximize``.
        seeds: The most seeds a configuration has or waits for (the original included).
        configs: The configurations, best confirmed mean first (those with fewer than two
            seeds last: one seed confirms nothing).
    """

    study: str
    metric: str
    direction: str
    seeds: int
    configs: tuple[ConfirmedConfig, ...]

    @property
    def winner(self) -> ConfirmedConfig | None:
        return self.configs[0] if self.configs else None

    @property
    def selection_bias(self) -> float | None:
        """The mean gap (see :attr:`ConfirmedConfig.gap`) over the configurations that have
        one; None before any has a new seed."""
        gaps = [c.gap for c in self.configs if c.gap is not None]
        return sum(gaps) / len(gaps) if gaps else None


def _seed_run(trial: FrozenTrial, seed: int, original: bool) -> SeedRun:
    return SeedRun(seed=seed, trial=trial.number, original=original, value=float(trial.value),
                   test=TrialRecord(trial).test_metric,
                   curve={int(step): float(v) for step, v in trial.intermediate_values.items()})


def config_key(params: Mapping[str, Any]) -> str:
    """A stable key of a configuration's params (12 hex digits)."""
    return json_digest(dict(params), 12)


def config_ranks(study: optuna.Study) -> dict[str, tuple[int, FrozenTrial]]:
    """The study's distinct configurations (by params), best first: ``{config key: (rank,
    its best COMPLETE trial)}``, rank 1 the best."""
    ranks: dict[str, tuple[int, FrozenTrial]] = {}
    for trial in ranked(study):
        ranks.setdefault(config_key(trial.params), (len(ranks) + 1, trial))
    return ranks


def build_confirmation(sweep: optuna.Study, confirmation: optuna.Study,
                       metric: str) -> Confirmation:
    """The confirmation's table from the two studies, as they stand (trials may be running);
    ``metric`` is the study metric (``val/mae``)."""
    selection = StudyRecord(confirmation).selection
    sweep_trials = sweep.get_trials(deepcopy=False)
    ranks = config_ranks(sweep)
    complete: dict[str, dict[int, SeedRun]] = {key: {} for key in selection}
    pending, failed = dict.fromkeys(selection, 0), dict.fromkeys(selection, 0)
    for record in StudyRecord(confirmation).trials():
        key, seed = record.confirm_config, record.confirm_seed
        if key not in selection:
            continue  # a stray trial of two workers' race for the last queued one
        if record.state == TrialState.COMPLETE:
            complete[key].setdefault(seed, _seed_run(record.trial, seed, original=False))
        elif record.state in (TrialState.WAITING, TrialState.RUNNING):
            pending[key] += 1
        elif record.state == TrialState.FAIL and record.fail_reason:
            failed[key] += 1
    rows = []
    for key, chosen in selection.items():
        original = _seed_run(sweep_trials[chosen["trial"]], chosen["seed"], original=True)
        runs = (original, *complete[key].values())
        tests = [run.test for run in runs if run.test is not None]
        rows.append((key, ranks.get(key, (chosen["rank"],))[0], runs,
                     seed_stats([run.value for run in runs]),
                     seed_stats(tests) if tests else None))
    sign = -1.0 if confirmation.direction == StudyDirection.MAXIMIZE else 1.0
    rows.sort(key=lambda row: (row[3].n < 2, sign * row[3].mean, row[1]))
    best_values = [run.value for run in rows[0][2]] if rows else []
    configs = []
    for index, (key, rank, runs, val, test) in enumerate(rows):
        values = [run.value for run in runs]
        vs_best = (compare(best_values, values) if index and len(values) + len(best_values) >= 3
                   else None)
        configs.append(ConfirmedConfig(key=key, sweep_rank=rank,
                                       params=dict(selection[key]["params"]), runs=runs,
                                       pending=pending[key], val=val, test=test,
                                       vs_best=vs_best, failed=failed[key]))
    seeds = max((len(c.runs) + c.pending for c in configs), default=0)
    return Confirmation(study=sweep.study_name, metric=metric, seeds=seeds,
                        direction=confirmation.direction.name.lower(), configs=tuple(configs))


def confirmation_table(confirmation: Confirmation) -> Table:
    """One row per confirmed configuration, best confirmed mean first."""
    rows = []
    for rank, config in enumerate(confirmation.configs, 1):
        more = [f"+{config.pending} pending"] * bool(config.pending) + (
            [f"{config.failed} failed"] if config.failed else [])
        seeds = str(config.val.n) + (f" ({', '.join(more)})" if more else "")
        cmp = config.vs_best
        vs = ("winner", "-", "-", "-") if cmp is None else (
            cmp.test, format_number(cmp.p_value, ".3g"), format_number(cmp.min_p, ".3g"),
            "yes" if cmp.distinguishable else "no")
        original = config.original
        rows.append((str(rank), str(config.sweep_rank), seeds, config.val.format(),
                     format_number(config.val.std),
                     "-" if config.test is None else config.test.format(),
                     f"{original.value:.4f} (seed {original.seed})",
                     format_number(config.gap, "+.4f"), *vs, format_params(config.params)))
    metric = confirmation.metric
    return Table(("rank", "sweep rank", "seeds", f"{metric} mean ± 95% CI", "std",
                  "test mean ± 95% CI", "single seed", "gap", "vs best", "p", "min p",
                  "distinguishable", "params"), tuple(rows))


def selection_bias(confirmation: Confirmation) -> str:
    """A sentence with the mean gap (single seed − mean of the new seeds) over the configs."""
    mean = confirmation.selection_bias
    if mean is None:
        return "Selection bias: not measured yet (no configuration has a new seed)."
    measured = sum(c.gap is not None for c in confirmation.configs)
    lucky = "below" if confirmation.direction == "minimize" else "above"
    return (f"Selection bias measured: the mean gap (the single-seed value that selected a "
            f"configuration − the mean of its new seeds) over {measured} configuration(s) is "
            f"{mean:+.4f}. A gap {lucky} zero means the selecting draw looked better than "
            f"fresh seeds of the same configuration: the sweep's best values are optimistic "
            f"by about that much. The mean ± 95% CI column includes the selecting seed.")


def test_sentence(confirmation: Confirmation) -> str:
    alpha = next((c.vs_best.alpha for c in confirmation.configs if c.vs_best), 0.05)
    return (f"Each configuration's seeds are compared with the winner's: Welch's t-test when "
            f"both have at least {WELCH_MIN_N} seeds, otherwise an exact permutation test of "
            f"the difference of means, whose p-value can never go below its minimum "
            f"attainable p (column \"min p\"; 0.1 for 3 vs 3 seeds). Distinguishable means "
            f"p < {alpha:g}; \"no\" with min p ≥ {alpha:g} means too few seeds to tell, not "
            f"equal. Intervals are two-sided 95% t-intervals of the mean over seeds.")


def format_confirmation(confirmation: Confirmation) -> str:
    """The confirmation table as text, with the selection bias and the test used."""
    if not confirmation.configs:
        return f"confirmation of {confirmation.study}: nothing selected yet"
    return "\n".join([
        f"confirmation of {confirmation.study} ({confirmation.direction} "
        f"{confirmation.metric}; the winner is the best mean over seeds, not the best draw):",
        text_table(confirmation_table(confirmation)), selection_bias(confirmation),
        test_sentence(confirmation)])


def write_csv(confirmation: Confirmation, path: Path) -> Path:
    """The table as CSV with numbers unformatted (one row per configuration)."""
    test_name = "test/" + confirmation.metric.split("/", 1)[-1]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["rank", "sweep_rank", "config", "n", "pending", "val_mean", "val_std",
                         "val_low", "val_high", f"{test_name}_mean", f"{test_name}_low",
                         f"{test_name}_high", "single_seed", "gap", "vs_best_test",
                         "vs_best_p", "seeds", "params"])
        for rank, c in enumerate(confirmation.configs, 1):
            test = c.test
            writer.writerow([
                rank, c.sweep_rank, c.key, c.val.n, c.pending, c.val.mean, c.val.std, c.val.low,
                c.val.high, test.mean if test else "", test.low if test else "",
                test.high if test else "", c.original.value, c.gap,
                c.vs_best.test if c.vs_best else "", c.vs_best.p_value if c.vs_best else "",
                " ".join(str(run.seed) for run in c.runs), json.dumps(c.params, sort_keys=True)])
    return path
