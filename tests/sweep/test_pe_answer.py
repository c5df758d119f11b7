"""The PE answer: per-kind and per-scale tables checked by hand, importances and their notes.

Studies are in memory, filled with ``create_trial``; every expected number below is worked
out from the trial values written next to it.
"""

from __future__ import annotations

import math
import random

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from mspe_sweep.sweep.confirm_table import Confirmation, ConfirmedConfig, SeedRun
from mspe_sweep.sweep.importances import MIN_TRUSTED_TRIALS
from mspe_sweep.sweep.pe_answer import build_pe_answer, format_pe_answer, trial_kind
from mspe_sweep.sweep.stats import SeedStats

KINDS = CategoricalDistribution(["none", "lap", "rwse", "heat", "multiscale"])
LR = FloatDistribution(1e-4, 1e-2, log=True)
STEPS = CategoricalDistribution([8, 16])


def add(study, value, *, state=TrialState.COMPLETE, user_attrs=None, **params):
    """Add a finished trial; params named with ``__`` for dots (``pe__rwse__steps``)."""
    params = {key.replace("__", "."): v for key, v in params.items()}
    dists = {"pe": KINDS, "training.optimizer.lr": LR, "pe.rwse.steps": STEPS,
             "pe.lap.k": CategoricalDistribution([4, 8])}
    study.add_trial(create_trial(
        params=params, distributions={k: dists[k] for k in params}, state=state,
        value=value if state == TrialState.COMPLETE else None, user_attrs=user_attrs or {},
        intermediate_values={0: 1.0, 1: 0.9} if state == TrialState.PRUNED else None))


@pytest.fixture
def study():
    s = optuna.create_study(study_name="hand")
    add(s, 0.50, pe="none", training__optimizer__lr=1e-3)  # 0
    add(s, 0.70, pe="none", training__optimizer__lr=2e-3)  # 1
    add(s, 0.60, pe="none", training__optimizer__lr=3e-3)  # 2  none: best .5, median .6
    add(s, 0.40, pe="rwse", pe__rwse__steps=8, training__optimizer__lr=1e-3)  # 3
    add(s, 0.45, pe="rwse", pe__rwse__steps=16, training__optimizer__lr=4e-3)  # 4
    add(s, None, state=TrialState.PRUNED, pe="rwse", pe__rwse__steps=16,
        training__optimizer__lr=5e-3)  # 5
    add(s, None, state=TrialState.FAIL, pe="rwse", pe__rwse__steps=16,
        training__optimizer__lr=6e-3)  # 6  rwse: 4 trials, 2 complete, best .4, median .425
    add(s, None, state=TrialState.FAIL, pe="lap", pe__lap__k=4,
        training__optimizer__lr=7e-3)  # 7  lap: nothing complete
    return s


def stats(mean: float, n: int = 4, half: float = 0.02) -> SeedStats:
    return SeedStats(n=n, mean=mean, std=half, low=mean - half, high=mean + half)


def config(key: str, params: dict, mean: float, original_trial: int) -> ConfirmedConfig:
    runs = (SeedRun(seed=0, trial=original_trial, original=True, value=mean - 0.01, test=None),)
    return ConfirmedConfig(key=key, sweep_rank=1, params=params, runs=runs, pending=0,
                           val=stats(mean), test=None, vs_best=None)


def test_kinds_count_all_states_and_rank_complete_values(study):
    answer = build_pe_answer(study, "val/mae")
    rows = {row.kind: row for row in answer.kinds}
    assert [row.kind for row in answer.kinds] == ["rwse", "none", "lap"]  # best first, empty last
    assert (rows["rwse"].trials, rows["rwse"].complete) == (4, 2)
    assert rows["rwse"].best == 0.40 and rows["rwse"].best_trial == 3
    assert rows["rwse"].median == pytest.approx(0.425)
    assert (rows["none"].best, rows["none"].best_trial, rows["none"].median) == (0.5, 0, 0.6)
    assert (rows["lap"].trials, rows["lap"].complete, rows["lap"].best) == (1, 0, None)
    assert answer.states == {"COMPLETE": 5, "PRUNED": 1, "FAIL": 2}


def test_scales_group_conditional_params_by_kind_and_value(study):
    answer = build_pe_answer(study, "val/mae")
    scales = {(r.kind, r.param, r.value): r for r in answer.scales}
    assert set(scales) == {("rwse", "pe.rwse.steps", 8), ("rwse", "pe.rwse.steps", 16),
                           ("lap", "pe.lap.k", 4)}
    steps16 = scales["rwse", "pe.rwse.steps", 16]
    assert (steps16.trials, steps16.complete, steps16.best, steps16.median) == (3, 1, .45, .45)
    assert scales["lap", "pe.lap.k", 4].best is None
    assert [r.value for r in answer.scales if r.kind == "rwse"] == [8, 16]  # in value order


def test_maximize_takes_the_largest_value_as_best():
    s = optuna.create_study(direction="maximize")
    for value, kind in ((0.1, "lap"), (0.9, "lap"), (0.5, "rwse")):
        add(s, value, pe=kind)
    answer = build_pe_answer(s, "val/acc")
    assert [(r.kind, r.best) for r in answer.kinds] == [("lap", 0.9), ("rwse", 0.5)]


def test_kind_falls_back_to_overrides_then_default():
    s = optuna.create_study()
    add(s, 0.3, user_attrs={"overrides": ["training.seed=1", "pe=heat"]},
        training__optimizer__lr=1e-3)
    add(s, 0.2, user_attrs={"overrides": ["training.seed=1"]}, training__optimizer__lr=2e-3)
    assert [trial_kind(t) for t in s.trials] == ["heat", "default"]
    assert [r.kind for r in build_pe_answer(s, "val/mae").kinds] == ["default", "heat"]


def test_confirmed_columns_take_each_groups_best_confirmed_config(study):
    s = study
    add(s, 0.35, user_attrs={"overrides": ["pe=heat"]})  # 8: pe not searched in this trial
    confirmation = Confirmation(study="hand", metric="val/mae", direction="minimize", seeds=4,
                                configs=(
        config("a", {"pe": "rwse", "pe.rwse.steps": 8}, 0.42, 3),
        config("b", {"pe": "none"}, 0.55, 0),
        config("c", {"pe": "rwse", "pe.rwse.steps": 16}, 0.47, 4),
        config("d", {"training.optimizer.lr": 1e-3}, 0.36, 8)))  # kind from its sweep trial
    answer = build_pe_answer(s, "val/mae", confirmation)
    kinds = {r.kind: r for r in answer.kinds}
    assert (kinds["rwse"].confirmed_key, kinds["rwse"].confirmed.mean) == ("a", 0.42)
    assert kinds["none"].confirmed_key == "b" and kinds["heat"].confirmed_key == "d"
    assert kinds["lap"].confirmed is None
    scales = {(r.param, r.value): r for r in answer.scales if r.kind == "rwse"}
    assert scales["pe.rwse.steps", 16].confirmed_key == "c"
    text = format_pe_answer(answer)
    assert "0.4200 ± 0.0200 (n=4)" in text


def test_importances_few_trials_are_computed_with_a_note(study):
    answer = build_pe_answer(study, "val/mae")
    by_param = {imp.param: imp for imp in answer.importances}
    assert set(by_param) == {"pe", "training.optimizer.lr", "pe.rwse.steps"}
    # pe.rwse.steps is conditional: PED-ANOVA scores it, fANOVA cannot (not in every trial).
    assert by_param["pe.rwse.steps"].fanova is None
    assert by_param["pe.rwse.steps"].ped_anova is not None
    assert sum(i.fanova for i in answer.importances if i.fanova is not None) == pytest.approx(1)
    assert sum(i.ped_anova for i in answer.importances) == pytest.approx(1)
    notes = " ".join(answer.notes)
    assert f"only 5 COMPLETE trials (fewer than {MIN_TRUSTED_TRIALS})" in notes
    assert "not scored (conditional): pe.rwse.steps" in notes


def test_importances_ignore_failed_and_pruned_trials(study):
    add(study, None, state=TrialState.PRUNED, pe="heat", training__optimizer__lr=1e-3)
    imps = build_pe_answer(study, "val/mae").importances
    assert "pe.lap.k" not in {i.param for i in imps}  # only in a FAIL trial


def test_enough_trials_drop_the_few_trials_note():
    s = optuna.create_study()
    rng = random.Random(0)
    for _ in range(MIN_TRUSTED_TRIALS):
        lr = 10 ** rng.uniform(-4, -2)
        add(s, abs(math.log10(lr) + 3) + rng.random() / 10, pe=rng.choice(["none", "rwse"]),
            training__optimizer__lr=lr)
    answer = build_pe_answer(s, "val/mae")
    assert not any("fewer than" in note for note in answer.notes)
    assert answer.importances[0].param == "training.optimizer.lr"  # the value depends on lr


@pytest.mark.parametrize("n_complete", [0, 1])
def test_no_or_one_complete_trial_gives_empty_importances_and_a_note(n_complete):
    s = optuna.create_study(study_name="tiny")
    add(s, None, state=TrialState.FAIL, pe="rwse")
    for _ in range(n_complete):
        add(s, 0.5, pe="none")
    answer = build_pe_answer(s, "val/mae")
    assert answer.importances == ()
    assert any(f"have {n_complete}" in note for note in answer.notes)
    text = format_pe_answer(answer)
    assert "parameter importances:\n  (none)" in text


def test_empty_study():
    answer = build_pe_answer(optuna.create_study(study_name="empty"), "val/mae")
    assert (answer.kinds, answer.scales, answer.importances) == ((), (), ())
    assert "no trials yet" in answer.notes
    assert "trials: none" in format_pe_answer(answer)
