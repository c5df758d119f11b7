"""Grammar -> distributions, conditional define-by-run suggestion, override strings."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import optuna
import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from mspe_sweep.sweep import space
from mspe_sweep.sweep.factories import build_sampler
from mspe_sweep.sweep.space import GrammarError, parse_distribution, suggest, to_overrides
from mspe_sweep.sweep.spec import ParamSpec, StudySpec


@pytest.mark.parametrize(("text", "expected"), [
    ("choice(32, 64)", CategoricalDistribution([32, 64])),
    ("choice(adamw, sgd)", CategoricalDistribution(["adamw", "sgd"])),
    ("choice(0.1, 0.5)", CategoricalDistribution([0.1, 0.5])),
    ("choice(true, false)", CategoricalDistribution([True, False])),
    ("choice('a b', 'x')", CategoricalDistribution(["a b", "x"])),
    ("lap,rwse", CategoricalDistribution(["lap", "rwse"])),
    # Hydra's range is end-exclusive: the distribution holds exactly the values it visits.
    ("range(1, 5)", IntDistribution(1, 4)),
    ("range(4)", IntDistribution(0, 3)),
    ("range(8, 33, 8)", IntDistribution(8, 32, step=8)),
    ("range(0, 10, 3)", IntDistribution(0, 9, step=3)),
    ("range(0.1, 0.5, 0.1)", FloatDistribution(0.1, 0.4, step=0.1)),
    ("range(0, 1, 0.25)", FloatDistribution(0.0, 0.75, step=0.25)),
    ("shuffle(range(1, 4))", IntDistribution(1, 3)),
    ("interval(0, 1)", FloatDistribution(0.0, 1.0)),
    ("interval(0.1, 0.5)", FloatDistribution(0.1, 0.5)),
    ("tag(log, interval(1e-5, 1e-2))", FloatDistribution(1e-5, 1e-2, log=True)),
    ("tag(int, interval(16, 128))", IntDistribution(16, 128)),
    ("tag(log, int, interval(1, 64))", IntDistribution(1, 64, log=True)),
])
def test_grammar_maps_to_distribution(text, expected):
    dist = parse_distribution("k", text)
    assert dist == expected
    if isinstance(expected, CategoricalDistribution):
        assert [type(c) for c in dist.choices] == [type(c) for c in expected.choices]


@pytest.mark.parametrize(("text", "words"), [
    ("choice(a,", "unbalanced parentheses (1 '(' but 0 ')')"),
    ("choice(a,,b)", "a value is missing next to a ','"),
    ("interval(1e-4 1e-2)", "interval(low, high) takes two numbers"),
    ("foo(1, 2)", "unknown function 'foo' (valid: choice, range, interval, tag)"),
    ("interval(a, b)", "take numbers"),
])
def test_parse_errors_say_in_words_what_is_wrong(text, words):
    with pytest.raises(space.GrammarError) as info:
        parse_distribution("training.optimizer.lr", text)
    message = str(info.value)
    assert words in message and repr(text) in message
    assert "Exception" not in message and "^" not in message


def test_range_matches_hydras_own_sweep_values():
    for text in ("range(1, 5)", "range(8, 33, 8)", "range(0.1, 0.5, 0.1)"):
        override = OverridesParser.create().parse_override(f"k={text}")
        hydra_values = list(override.sweep_iterator())
        ours = space.discrete_values(parse_distribution("k", text))
        assert ours == pytest.approx(hydra_values)


@pytest.mark.parametrize(("text", "fragment"), [
    ("5", "plain value"), ("adamw", "plain value"), ("choice(1,2", "cannot parse"),
    ("choice()", "empty choice"), ("choice(1, 1)", "twice"), ("choice([1], [2])", "must be a"),
    ("range(5, 1)", "empty"), ("range(1, 1)", "empty"), ("range(1, 5, -1)", "step"),
    ("interval(1, 1)", "inverted"), ("interval(2, 1)", "inverted"),
    ("tag(log, interval(0, 1))", "above 0"), ("tag(log, interval(-1, 1))", "above 0"),
    ("tag(log, int, interval(0, 8))", "above 0"), ("tag(int, interval(0.5, 2))", "integer"),
    ("tag(fast, interval(0, 1))", "unknown tag"), ("tag(log, range(1, 3))", "not allowed"),
    ("glob(*)", "not supported"),
])
def test_grammar_errors_are_one_line(text, fragment):
    with pytest.raises(GrammarError) as info:
        parse_distribution("k", text)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_plus_or_package_keys_are_rejected():
    with pytest.raises(GrammarError, match="plain config key"):
        parse_distribution("+k", "choice(1, 2)")
    with pytest.raises(GrammarError, match="plain config key"):
        parse_distribution("k@pkg", "choice(1, 2)")


def _spec(*params: ParamSpec) -> StudySpec:
    return StudySpec(path=Path("toy.yaml"), name="toy", direction="minimize", metric="val/mae",
                     n_trials=20, params=params)


TOY = _spec(
    ParamSpec("opt", CategoricalDistribution(["adamw", "sgd"])),
    ParamSpec("lr", FloatDistribution(1e-4, 1e-1, log=True)),
    ParamSpec("momentum", FloatDistribution(0.0, 0.99), when={"opt": ("sgd",)}),
    ParamSpec("nesterov", CategoricalDistribution([True, False]), when={"opt": ("sgd",)}),
    ParamSpec("dampening", FloatDistribution(0.0, 0.5), when={"nesterov": (False,)}),
    ParamSpec("layers", IntDistribution(2, 8, step=2)),
    ParamSpec("depth_bonus", IntDistribution(1, 3), when={"layers": (8,)}),
)


def test_conditional_param_is_absent_when_condition_is_false():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.enqueue_trial({"opt": "adamw", "layers": 8})
    study.enqueue_trial({"opt": "sgd", "layers": 4})
    first, second = study.ask(), study.ask()
    values = suggest(first, TOY)
    assert set(values) == set(first.params) == {"opt", "lr", "layers", "depth_bonus"}
    values = suggest(second, TOY)
    assert set(values) == set(second.params)
    assert list(values)[:3] == ["opt", "lr", "momentum"]  # file order
    assert "layers" in values and "depth_bonus" not in values


def test_tpe_multivariate_group_study_on_conditional_space_is_clean():
    sampler = build_sampler("tpe", 0, TOY.params)
    study = optuna.create_study(sampler=sampler)

    def objective(trial):
        p = suggest(trial, TOY)
        loss = abs(math.log10(p["lr"]) + 2.5) + (0.5 - p.get("momentum", 0.5)) ** 2
        return loss + 0.01 * p["layers"] - 0.1 * p.get("depth_bonus", 0)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        study.optimize(objective, n_trials=20)
    assert len(study.get_trials(states=[optuna.trial.TrialState.COMPLETE])) == 20
    for trial in study.trials:
        sgd = trial.params["opt"] == "sgd"
        assert ("momentum" in trial.params) == sgd
        assert ("nesterov" in trial.params) == sgd
        # A condition on a param that was not suggested is false.
        assert ("dampening" in trial.params) == (trial.params.get("nesterov") is False)
        assert ("depth_bonus" in trial.params) == (trial.params["layers"] == 8)
    assert {t.params["opt"] for t in study.trials} == {"adamw", "sgd"}


def test_condition_compares_values_strictly():
    assert space.condition_holds({"a": (1,)}, {"a": 1.0})
    assert not space.condition_holds({"a": (1,)}, {"a": True})
    assert not space.condition_holds({"a": ("1",)}, {"a": 1})
    assert not space.condition_holds({"a": (1,)}, {})


@pytest.mark.parametrize("value", [
    0.0013, 1e-5, 0.1 + 0.2, 2.0, -3.5e20, 64, 0, -1, True, False, "multiscale", "adamw",
    "true", "1", "1.5", "null", "a b", "a,b", "it's", 'say "hi"', "x=y", "choice(a)", "",
])
def test_to_overrides_round_trips_through_hydras_parser(value):
    (override,) = to_overrides({"training.optimizer.lr": value})
    parsed = OverridesParser.create().parse_override(override)
    assert parsed.key_or_group == "training.optimizer.lr"
    assert not parsed.is_sweep_override()
    assert parsed.value() == value and type(parsed.value()) is type(value)


def test_to_overrides_keeps_plain_strings_bare_and_order():
    params = {"training.optimizer.lr": 0.0013, "pe": "multiscale", "model.heads": 4}
    assert to_overrides(params) == ["training.optimizer.lr=0.0013", "pe=multiscale",
                                    "model.heads=4"]
    assert to_overrides({"k": "true"}) == ["k='true'"]
