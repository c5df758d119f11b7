"""The PE answer: which positional-encoding kind and scale win, and which params matter.

From a sweep study (and, when there is one, its :class:`Confirmation`) this builds three
tables that ``report``, ``report.html`` and the plots read:

- per PE kind (``none``, ``lap``, ``rwse``, ...): trials, COMPLETE trials, the best and the
  median validation metric, and the confirmed mean ± 95% interval of the kind's best confirmed
  configuration;
- per PE scale parameter (every searched ``pe.*`` key) and value within a kind, the same;
- parameter importances from PED-ANOVA (Optuna 5's default evaluator) and fANOVA side by side.

A trial's kind is its ``pe`` param when the study searches it, else the ``pe=`` entry of its
stored run overrides, else ``default``. Nothing here raises on a small or odd study: empty
tables come with a note saying why.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial

from mspe_sweep.sweep.importances import Importance, param_importances
from mspe_sweep.sweep.records import TrialRecord
from mspe_sweep.sweep.reporting import (
    Table,
    counts,
    finite_complete,
    format_number,
    format_value,
    text_table,
)

if TYPE_CHECKING:
    from mspe_sweep.sweep.confirm_table import Confirmation, ConfirmedConfig
    from mspe_sweep.sweep.stats import SeedStats

KIND_PARAM = "pe"
SCALE_PREFIX = "pe."
DEFAULT_KIND = "default"
KNOWN_KINDS = ("none", "lap", "rwse", "heat", "multiscale", DEFAULT_KIND)

__all__ = ["GroupRow", "Importance", "PeAnswer", "Table", "build_pe_answer", "finite_complete",
           "format_pe_answer", "importances_table", "kinds_table", "scales_table", "trial_kind"]


@dataclass(frozen=True)
class GroupRow:
    """Trials of one PE kind, or of one (kind, scale param, value) group.

    Attributes:
        kind: The PE kind.
        param: The scale param (``pe.rwse.steps``); None in the per-kind table.
        value: The param's value; None in the per-kind table.
        trials: Trials in the group, any state.
        complete: COMPLETE trials with a finite value.
        best: Their best value (by the study's direction); None without one.
        best_trial: The number of the trial with ``best``.
        median: Their median value.
        confirmed: Validation statistics of the group's best confirmed configuration.
        confirmed_key: That configuration's key.
    """

    kind: str
    trials: int
    complete: int
    best: float | None
    best_trial: int | None
    median: float | None
    confirmed: SeedStats | None = None
    confirmed_key: str | None = None
    param: str | None = None
    value: Any = None


@dataclass(frozen=True)
class PeAnswer:
    """Everything the PE answer shows (see the module docstring).

    Attributes:
        study: The study's name.
        metric: The study metric (``val/mae``).
        direction: ``minimize`` or ``maximize``.
        states: Trials per state name (``COMPLETE``, ``PRUNED``, ...).
        kinds: One row per PE kind, best first (kinds without a COMPLETE trial last).
        scales: One row per (kind, scale param, value), in kind order then value order.
        importances: Params by PED-ANOVA importance, highest first.
        notes: Caveats a reader needs (too few trials, params left out, ...).
    """

    study: str
    metric: str
    direction: str
    states: dict[str, int]
    kinds: tuple[GroupRow, ...]
    scales: tuple[GroupRow, ...]
    importances: tuple[Importance, ...]
    notes: tuple[str, ...]


def trial_kind(trial: FrozenTrial) -> str:
    """The PE kind of a trial: its ``pe`` param, else its ``pe=`` override, else ``default``."""
    if KIND_PARAM in trial.params:
        return str(trial.params[KIND_PARAM])
    for override in reversed(TrialRecord(trial).overrides):
        key, sep, value = override.partition("=")
        if sep and key.lstrip("+") == KIND_PARAM:
            return value
    return DEFAULT_KIND


def build_pe_answer(study: optuna.Study, metric: str,
                    confirmation: Confirmation | None = None) -> PeAnswer:
    """Build the PE answer of a sweep.

    Args:
        study: The sweep study (single objective).
        metric: Its metric, e.g. ``val/mae``.
        confirmation: Its confirmation, if one ran: fills the ``confirmed`` columns.

    Returns:
        The :class:`PeAnswer`; never raises for small studies (empty tables and a note).
    """
    states = {state.name: n for state, n in counts(study).items() if n}
    if len(study.directions) != 1:
        return PeAnswer(study.study_name, metric, "multi-objective", states, (), (), (),
                        ("multi-objective study: no PE answer (it ranks one metric)",))
    direction = study.direction.name.lower()
    trials = study.get_trials(deepcopy=False)
    kinds = {t.number: trial_kind(t) for t in trials}
    configs = _config_kinds(confirmation, {t.number: t for t in trials})

    by_kind: dict[str, list[FrozenTrial]] = defaultdict(list)
    by_scale: dict[tuple[str, str, Any], list[FrozenTrial]] = defaultdict(list)
    for trial in trials:
        by_kind[kinds[trial.number]].append(trial)
        for param, value in trial.params.items():
            if param.startswith(SCALE_PREFIX):
                by_scale[kinds[trial.number], param, value].append(trial)

    kind_rows = [_group(direction, kind, group, _best_config(configs, kind))
                 for kind, group in by_kind.items()]
    kind_rows.sort(key=lambda row: (_rank_key(row, direction), _kind_order(row.kind)))
    order = {row.kind: i for i, row in enumerate(kind_rows)}
    scale_rows = [_group(direction, kind, group, _best_config(configs, kind, param, value),
                         param=param, value=value)
                  for (kind, param, value), group in by_scale.items()]
    scale_rows.sort(key=lambda r: (order[r.kind], r.param, _value_order(r.value)))

    importances, notes = param_importances(study)
    if not trials:
        notes = ("no trials yet", *notes)
    return PeAnswer(study.study_name, metric, direction, states, tuple(kind_rows),
                    tuple(scale_rows), importances, tuple(notes))


def _config_kinds(confirmation: Confirmation | None,
                  sweep: dict[int, FrozenTrial]) -> list[tuple[str, ConfirmedConfig]]:
    """Confirmed configs (best confirmed mean first) with their kinds; a config without a
    ``pe`` param takes the kind of its original sweep trial."""
    if confirmation is None:
        return []
    result = []
    for config in confirmation.configs:
        if KIND_PARAM in config.params:
            kind = str(config.params[KIND_PARAM])
        else:
            original = sweep.get(config.original.trial)
            kind = trial_kind(original) if original is not None else DEFAULT_KIND
        result.append((kind, config))
    return result


def _best_config(configs: list[tuple[str, ConfirmedConfig]], kind: str, param: str | None = None,
                 value: Any = None) -> ConfirmedConfig | None:
    # Confirmation.configs is ordered best confirmed mean first: the first match is the best.
    for config_kind, config in configs:
        if config_kind == kind and (param is None or config.params.get(param) == value):
            return config
    return None


def _group(direction: str, kind: str, trials: list[FrozenTrial], config: ConfirmedConfig | None,
           param: str | None = None, value: Any = None) -> GroupRow:
    done = finite_complete(trials)
    best = best_trial = median = None
    if done:
        pick = min if direction == "minimize" else max
        top = pick(done, key=lambda t: t.value)
        best, best_trial = top.value, top.number
        median = statistics.median(t.value for t in done)
    return GroupRow(kind=kind, trials=len(trials), complete=len(done), best=best,
                    best_trial=best_trial, median=median,
                    confirmed=None if config is None else config.val,
                    confirmed_key=None if config is None else config.key,
                    param=param, value=value)


def _rank_key(row: GroupRow, direction: str) -> tuple[int, float]:
    if row.best is None:
        return (1, 0.0)
    return (0, row.best if direction == "minimize" else -row.best)


def _kind_order(kind: str) -> tuple[int, str]:
    return (KNOWN_KINDS.index(kind), "") if kind in KNOWN_KINDS else (len(KNOWN_KINDS), kind)


def _value_order(value: Any) -> tuple[int, float, str]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0.0, str(value))


# --- tables -------------------------------------------------------------------------------


def _confirmed(stats: SeedStats | None) -> str:
    return "-" if stats is None else f"{stats.format()} (n={stats.n})"


def _group_cells(row: GroupRow) -> tuple[str, ...]:
    trial = "-" if row.best_trial is None else str(row.best_trial)
    return (str(row.trials), str(row.complete), format_number(row.best), trial,
            format_number(row.median),
            _confirmed(row.confirmed))


def _group_header(metric: str) -> tuple[str, ...]:
    return ("trials", "complete", f"best {metric}", "best trial", f"median {metric}",
            "confirmed mean ± 95% CI")


def kinds_table(answer: PeAnswer) -> Table:
    """One row per PE kind, best first."""
    return Table(("pe", *_group_header(answer.metric)),
                 tuple((row.kind, *_group_cells(row)) for row in answer.kinds))


def scales_table(answer: PeAnswer) -> Table:
    """One row per (kind, scale param, value)."""
    return Table(("pe", "param", "value", *_group_header(answer.metric)),
                 tuple((row.kind, str(row.param), format_value(row.value), *_group_cells(row))
                       for row in answer.scales))


def importances_table(answer: PeAnswer) -> Table:
    """Params with their PED-ANOVA and fANOVA importances (normalized to sum 1 each)."""
    return Table(("param", "PED-ANOVA", "fANOVA"),
                 tuple((imp.param, _share(imp.ped_anova), _share(imp.fanova))
                       for imp in answer.importances))


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def format_pe_answer(answer: PeAnswer) -> str:
    """The PE answer as plain text: the three tables and the notes."""
    done = ", ".join(f"{n} {state.lower()}" for state, n in answer.states.items()) or "none"
    parts = [f"PE answer for {answer.study} ({answer.metric}, {answer.direction}; trials: {done})"]
    for title, table in (("by PE kind", kinds_table(answer)),
                         ("by PE scale", scales_table(answer)),
                         ("parameter importances", importances_table(answer))):
        parts += ["", f"{title}:", text_table(table) if table.rows else "  (none)"]
    if answer.notes:
        parts += ["", "notes:", *(f"  - {note}" for note in answer.notes)]
    return "\n".join(parts)
