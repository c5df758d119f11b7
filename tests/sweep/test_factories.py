"""Samplers and pruners: every type builds, defaults are as documented, mistakes are errors."""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from mspe_sweep.errors import UserError
from mspe_sweep.sweep.factories import (
    PRUNER_TYPES,
    SAMPLER_TYPES,
    ComponentSpec,
    build_pruner,
    build_sampler,
)
from mspe_sweep.sweep.space import suggest
from mspe_sweep.sweep.spec import ParamSpec, StudySpec

DISCRETE = (
    ParamSpec("pe", CategoricalDistribution(["rwse", "lap"])),
    ParamSpec("layers", IntDistribution(2, 6, step=2)),
)
MIXED = (*DISCRETE, ParamSpec("lr", FloatDistribution(1e-4, 1e-2, log=True)))

SAMPLER_CLASSES = {
    "tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler,
    "cmaes": optuna.samplers.CmaEsSampler, "gp": optuna.samplers.GPSampler,
    "qmc": optuna.samplers.QMCSampler, "grid": optuna.samplers.GridSampler,
}
PRUNERS = {
    "median": optuna.pruners.MedianPruner, "percentile": optuna.pruners.PercentilePruner,
    "hyperband": optuna.pruners.HyperbandPruner,
    "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
    "wilcoxon": optuna.pruners.WilcoxonPruner, "threshold": optuna.pruners.ThresholdPruner,
    "patient": optuna.pruners.PatientPruner, "none": optuna.pruners.NopPruner,
}
PRUNER_ARGS = {"percentile": {"percentile": 25.0}, "threshold": {"upper": 1.0},
               "patient": {"patience": 2, "wrapped": {"type": "median"}}}


def test_type_tables_are_complete():
    assert set(SAMPLER_TYPES) == set(SAMPLER_CLASSES)
    assert set(PRUNER_TYPES) == set(PRUNERS)


@pytest.mark.parametrize("name", SAMPLER_TYPES)
def test_every_sampler_builds(name):
    params = DISCRETE if name == "grid" else MIXED
    if name == "cmaes" and importlib.util.find_spec("cmaes") is None:
        with pytest.raises(UserError, match="pip install cmaes"):
            build_sampler(name, 0, params)
        return
    sampler = build_sampler({"type": name}, 0, params)
    assert isinstance(sampler, SAMPLER_CLASSES[name])


@pytest.mark.parametrize("name", PRUNER_TYPES)
def test_every_pruner_builds(name):
    pruner = build_pruner({"type": name, **PRUNER_ARGS.get(name, {})})
    assert isinstance(pruner, PRUNERS[name])


def test_tpe_defaults_model_conditional_spaces_for_parallel_workers():
    sampler = build_sampler("tpe", 7, MIXED)
    # Private attributes: Optuna exposes no getter for these constructor options.
    assert (sampler._multivariate, sampler._group, sampler._constant_liar) == (True, True, True)
    overridden = build_sampler({"type": "tpe", "group": False, "n_startup_trials": 3}, 7, MIXED)
    assert (overridden._group, overridden._n_startup_trials) == (False, 3)


def test_median_defaults_and_overrides():
    pruner = build_pruner("median")
    assert (pruner._n_startup_trials, pruner._n_warmup_steps) == (5, 5)
    assert build_pruner({"type": "median", "n_warmup_steps": 0})._n_warmup_steps == 0


def test_patient_wraps_the_inner_pruner():
    pruner = build_pruner(
        {"type": "patient", "patience": 3, "wrapped": {"type": "median", "n_warmup_steps": 1}})
    assert pruner._patience == 3
    assert isinstance(pruner._wrapped_pruner, optuna.pruners.MedianPruner)
    assert pruner._wrapped_pruner._n_warmup_steps == 1
    alone = build_pruner(ComponentSpec("patient", {"patience": 1}))
    assert alone._wrapped_pruner is None


def test_workers_get_distinct_seeds_and_same_worker_repeats():
    def first_values(worker):
        sampler = build_sampler("random", 3, MIXED, worker=worker)
        study = optuna.create_study(sampler=sampler)
        trial = study.ask()
        return trial.suggest_float("lr", 1e-4, 1e-2, log=True)

    assert first_values(0) == first_values(0)
    assert first_values(0) != first_values(1)


def test_grid_enumerates_every_combination_of_choices_and_ranges():
    spec = StudySpec(path=Path("g.yaml"), name="g", direction="minimize", metric="val/mae",
                     n_trials=6, params=DISCRETE)
    study = optuna.create_study(sampler=build_sampler("grid", 0, DISCRETE))
    study.optimize(lambda trial: suggest(trial, spec)["layers"], n_trials=20)
    assert len(study.trials) == 6  # the grid sampler stops the study when it is exhausted
    seen = {(t.params["pe"], t.params["layers"]) for t in study.trials}
    assert seen == set(itertools.product(["rwse", "lap"], [2, 4, 6]))


@pytest.mark.parametrize(("call", "fragment"), [
    (lambda: build_sampler("annealing", 0, MIXED), "valid: tpe, random, cmaes, gp, qmc, grid"),
    (lambda: build_sampler({"type": "tpe", "n_startup": 2}, 0, MIXED), "'n_startup'"),
    (lambda: build_sampler({"type": "qmc", "qmc_type": "bogus"}, 0, MIXED), "sobol"),
    (lambda: build_sampler({"type": "grid", "search_space": {}}, 0, DISCRETE), "search_space"),
    (lambda: build_sampler("grid", 0, MIXED), "params.lr is continuous"),
    (lambda: build_sampler("grid", 0, (*DISCRETE, ParamSpec(
        "x", IntDistribution(1, 2), when={"pe": ("lap",)}))), "conditional"),
    (lambda: build_sampler({"kind": "tpe"}, 0, MIXED), "`type` key"),
    (lambda: build_pruner("sometimes"), "valid: median, percentile, hyperband"),
    (lambda: build_pruner({"type": "median", "warmup": 1}), "valid: interval_steps"),
    (lambda: build_pruner({"type": "median", "n_startup_trials": -1}), "bad arguments"),
    (lambda: build_pruner("percentile"), "percentile"),
    (lambda: build_pruner({"type": "threshold"}), "threshold"),
    (lambda: build_pruner({"type": "patient", "patience": 1, "wrapped": "nope"}),
     "pruner.wrapped: unknown pruner 'nope'"),
    (lambda: build_pruner({"type": "patient"}), "patience"),
])
def test_mistakes_are_one_line_user_errors(call, fragment):
    with pytest.raises(UserError) as info:
        call()
    assert fragment in str(info.value) and "\n" not in str(info.value)
