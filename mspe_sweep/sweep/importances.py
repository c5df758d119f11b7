"""Parameter importances of a study: PED-ANOVA and fANOVA side by side, with their caveats.

Both are computed on an in-memory copy of the study holding only its COMPLETE trials with a
finite value, so neither evaluator sees a PRUNED or FAIL trial whatever its own filtering.
They treat conditional params (``pe.rwse.steps`` exists only when ``pe`` is ``rwse`` or
``multiscale``) differently, which the notes say:

- PED-ANOVA (``optuna.importance.PedAnovaImportanceEvaluator``, Optuna 5's default) is the
  conditional variant: it scores every param that occurs in a COMPLETE trial, within each
  "regime" of trials that have it, and warns (here: a note) when a regime has too few trials.
- fANOVA (``FanovaImportanceEvaluator``, a random forest, needs scikit-learn) scores only the
  params present in EVERY COMPLETE trial (Optuna's intersection search space); conditional
  params get no fANOVA value.

Importances from a handful of trials are noise with a number attached: below
``MIN_TRUSTED_TRIALS`` COMPLETE trials a note says so (PED-ANOVA's own documentation asks for
at least 5 trials in its top 10%, i.e. ~50 trials).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import optuna
from optuna.trial import FrozenTrial, TrialState

from mspe_sweep.sweep.reporting import finite_complete

if TYPE_CHECKING:  # optuna.importance takes ~1 s to import: only when a report is built
    from optuna.importance import BaseImportanceEvaluator

log = logging.getLogger(__name__)

MIN_TRUSTED_TRIALS = 20
FANOVA_SEED = 0  # the random forest's seed: the same study gives the same table every time


@dataclass(frozen=True)
class Importance:
    """One param's importances, each normalized to sum to 1 over the params it scored.

    Attributes:
        param: The param's name.
        ped_anova: PED-ANOVA importance; None when not computed.
        fanova: fANOVA importance; None when not computed or the param is conditional.
    """

    param: str
    ped_anova: float | None
    fanova: float | None


def param_importances(study: optuna.Study) -> tuple[tuple[Importance, ...], tuple[str, ...]]:
    """PED-ANOVA and fANOVA importances of a single-objective study's params.

    Args:
        study: The study; only its COMPLETE trials with a finite value are used.

    Returns:
        ``(importances by PED-ANOVA descending, notes)``. Never raises: with fewer than 2 usable
        trials the table is empty, and an evaluator that fails leaves its column empty; the
        notes say why.
    """
    complete = finite_complete(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    params = sorted({name for trial in complete for name in trial.params})
    if len(complete) < 2 or not params:
        return (), ((f"importances: need at least 2 COMPLETE trials with searched params, "
                     f"have {len(complete)}"),)
    notes: list[str] = []
    if len(complete) < MIN_TRUSTED_TRIALS:
        notes.append(f"importances come from only {len(complete)} COMPLETE trials (fewer than "
                     f"{MIN_TRUSTED_TRIALS}): treat them as hints, not findings")
    copy = _complete_copy(study, complete)
    from optuna.importance import PedAnovaImportanceEvaluator

    ped = _evaluate("PED-ANOVA", copy, PedAnovaImportanceEvaluator, notes)
    fanova = _evaluate("fANOVA", copy, _fanova, notes)
    conditional = [p for p in params if any(p not in t.params for t in complete)]
    if conditional and fanova is not None:
        notes.append("fANOVA scores only params present in every COMPLETE trial; not scored "
                     f"(conditional): {', '.join(conditional)}. PED-ANOVA scores them within "
                     "the trials that have them")
    rows = [Importance(p, None if ped is None else ped.get(p),
                       None if fanova is None else fanova.get(p)) for p in params]
    rows.sort(key=lambda r: (-(r.ped_anova or 0.0), -(r.fanova or 0.0), r.param))
    return tuple(rows), tuple(notes)


def _complete_copy(study: optuna.Study, complete: list[FrozenTrial]) -> optuna.Study:
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "new study created" line
    try:
        copy = optuna.create_study(direction=study.direction)
    finally:
        optuna.logging.set_verbosity(verbosity)
    copy.add_trials(complete)
    return copy


def _fanova() -> BaseImportanceEvaluator:
    try:
        import sklearn  # noqa: F401 - fANOVA's random forest; checked here for the hint
    except ImportError:
        raise ImportError("fANOVA needs scikit-learn (pip install scikit-learn)") from None
    from optuna.importance import FanovaImportanceEvaluator

    return FanovaImportanceEvaluator(seed=FANOVA_SEED)


def _evaluate(name: str, study: optuna.Study, make: Callable[[], BaseImportanceEvaluator],
              notes: list[str]) -> dict[str, float] | None:
    """One evaluator's normalized importances, or None (and a note) when it fails."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = optuna.importance.get_param_importances(study, evaluator=make())
        except Exception as exc:  # noqa: BLE001 - a report must not fail on a statistic
            log.warning("importances: %s skipped: %s: %s", name, type(exc).__name__, exc)
            notes.append(f"{name} not computed: {exc}")
            return None
    for message in dict.fromkeys(str(w.message) for w in caught
                                 if not issubclass(w.category, DeprecationWarning)):
        if "experimental" not in message:
            notes.append(f"{name}: {message}")
    return result
