"""The confirmation phase: selection, seeds, queueing once, the table, and the worker that runs
queued trials only. The end-to-end run (kill and rerun) is ``test_confirm_e2e.py``."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from mspe_sweep.sweep.confirm import (
    ConfirmObjective,
    confirm_seeds,
    confirmation_name,
    duplicate_of,
    prepare_confirmation,
    queue_trials,
    select_configs,
)
from mspe_sweep.sweep.confirm_table import (
    build_confirmation,
    config_key,
    confirmation_table,
    format_confirmation,
    write_csv,
)
from mspe_sweep.sweep.records import SEED, RunningTrial, StudyRecord, TrialRecord
from mspe_sweep.sweep.worker import Worker, WorkerLimits

TINY_STUDY = Path(__file__).resolve().parents[1] / "data" / "tiny_study.yaml"
DISTRIBUTIONS = {"lr": FloatDistribution(1e-4, 1e-1, log=True),
                 "pe": CategoricalDistribution(["none", "rwse"])}


def add(study: optuna.Study, value: float | None, lr: float, pe: str, *, seed: int = 1,
        state: TrialState = TrialState.COMPLETE, test: float | None = None,
        attrs: dict | None = None) -> None:
    user_attrs = {SEED: seed, "test_metric": test, **(attrs or {})}
    study.add_trial(create_trial(
        state=state, value=value if state == TrialState.COMPLETE else None,
        params={"lr": lr, "pe": pe}, distributions=DISTRIBUTIONS, user_attrs=user_attrs,
        intermediate_values={1: (value or 0) + 0.5, 2: value or 0}
        if state == TrialState.COMPLETE else {}))


def sweep_study() -> optuna.Study:
    """Five trials, four distinct configurations: (0.01, rwse) twice, at 0.30 and 0.50."""
    study = optuna.create_study(study_name="s", direction="minimize")
    add(study, 0.50, 0.01, "rwse", seed=11, test=0.55)
    add(study, 0.40, 0.001, "none", seed=12, test=0.45)
    add(study, 0.30, 0.01, "rwse", seed=13, test=0.35)
    add(study, None, 0.002, "none", seed=14, state=TrialState.PRUNED)
    add(study, 0.60, 0.003, "none", seed=15)
    return study


def test_config_key_is_stable_and_ignores_param_order():
    assert config_key({"a": 1, "b": "x"}) == config_key({"b": "x", "a": 1})
    assert config_key({"a": 1}) != config_key({"a": 2})
    assert len(config_key({"a": 1})) == 12


def test_confirm_seeds_skip_the_original_and_extend_the_same_list():
    three = confirm_seeds(0, "abc", original_seed=7, seeds=3)
    five = confirm_seeds(0, "abc", original_seed=7, seeds=5)
    assert len(three) == 2 and five[:2] == three and len(set(five)) == 4
    assert 7 not in five
    assert confirm_seeds(0, "other", 7, 3) != three and confirm_seeds(1, "abc", 7, 3) != three
    # A derived seed equal to the original's is skipped, not reused.
    first = confirm_seeds(0, "abc", original_seed=-1, seeds=2)[0]
    assert first not in confirm_seeds(0, "abc", original_seed=first, seeds=3)


def test_select_configs_takes_distinct_configurations_best_first():
    chosen = select_configs(sweep_study(), top_k=2, study_seed=0)
    assert [c["trial"] for c in chosen.values()] == [2, 1]  # trial 0 repeats trial 2's params
    assert [c["rank"] for c in chosen.values()] == [1, 2]
    assert [c["seed"] for c in chosen.values()] == [13, 12]
    assert list(chosen) == [config_key({"lr": 0.01, "pe": "rwse"}),
                            config_key({"lr": 0.001, "pe": "none"})]
    assert len(select_configs(sweep_study(), top_k=10, study_seed=0)) == 3  # PRUNED left out


def test_a_selection_is_kept_when_the_sweep_finds_a_better_configuration_later():
    study = sweep_study()
    first = select_configs(study, top_k=2, study_seed=0)
    add(study, 0.10, 0.005, "none", seed=16)  # the still-running sweep finds a new best
    again = select_configs(study, top_k=2, study_seed=0, selected=first)
    assert again == first  # no swap: the seeds already trained measure these two
    grown = select_configs(study, top_k=3, study_seed=0, selected=first)
    assert list(grown)[:2] == list(first) and grown[list(grown)[2]]["trial"] == 5
    assert grown[list(grown)[2]]["rank"] == 1  # its rank in the sweep when it was selected


def test_queue_trials_queues_each_configuration_and_seed_once():
    selection = select_configs(sweep_study(), top_k=2, study_seed=0)
    confirmation = optuna.create_study(study_name="s/confirm")
    assert queue_trials(confirmation, selection, seeds=3, study_seed=0) == 4
    assert queue_trials(confirmation, selection, seeds=3, study_seed=0) == 0
    assert queue_trials(confirmation, selection, seeds=4, study_seed=0) == 2  # one more each
    waiting = StudyRecord(confirmation).trials(TrialState.WAITING)
    pairs = {(r.confirm_config, r.confirm_seed) for r in waiting}
    assert len(waiting) == len(pairs) == 6
    assert all(r.confirm_seed not in (12, 13) for r in waiting)  # the originals' seeds
    assert {r.confirm_rank for r in waiting} == {1, 2}


def confirmed(values_by_rank: dict[int, list[float]], pending: int = 0, failed: int = 0):
    """A sweep, its confirmation with COMPLETE trials of these values, and the table."""
    sweep = sweep_study()
    selection = select_configs(sweep, top_k=2, study_seed=0)
    confirmation = optuna.create_study(study_name="s/confirm")
    StudyRecord(confirmation).set_selection(selection)
    for key, chosen in selection.items():
        seeds = confirm_seeds(0, key, chosen["seed"], 1 + len(values_by_rank[chosen["rank"]]))
        for seed, value in zip(seeds, values_by_rank[chosen["rank"]]):
            attrs = TrialRecord.confirm_attrs(key, seed, chosen["rank"])
            add(confirmation, value, **{k: v for k, v in chosen["params"].items()}, seed=seed,
                test=value + 0.05, attrs=attrs)
    key, chosen = next(iter(selection.items()))
    for _ in range(pending):
        confirmation.enqueue_trial(chosen["params"],
                                   user_attrs=TrialRecord.confirm_attrs(key, 99, 1))
    for seed in range(failed):  # failed on their own (a reason): not retried
        add(confirmation, None, **chosen["params"], seed=seed, state=TrialState.FAIL,
            attrs={**TrialRecord.confirm_attrs(key, seed, 1), "fail_reason": "NaN loss"})
    return build_confirmation(sweep, confirmation, "val/mae")


def test_build_confirmation_ranks_by_mean_and_measures_the_gap():
    # Sweep rank 1 (single seed 0.30) averages 0.40 over 0.30, 0.45, 0.45; rank 2 (single seed
    # 0.40) averages 0.35 over 0.40, 0.30, 0.35: the winner is the best mean, not the best draw.
    table = confirmed({1: [0.45, 0.45], 2: [0.30, 0.35]}, pending=1)
    winner, other = table.configs
    assert (winner.sweep_rank, other.sweep_rank) == (2, 1)
    assert winner.val.n == 3 and winner.val.mean == pytest.approx(0.35)
    assert winner.val.std == pytest.approx(0.05)
    assert winner.original.original and winner.original.value == 0.40
    assert winner.original.seed == 12 and winner.original.curve == {1: 0.9, 2: 0.4}
    # The gap compares the selecting draw with the NEW seeds only: 0.40 - 0.325, 0.30 - 0.45.
    assert winner.gap == pytest.approx(0.075) and other.gap == pytest.approx(-0.15)
    assert table.selection_bias == pytest.approx(-0.0375)
    assert winner.vs_best is None and other.vs_best.test == "permutation"
    assert other.pending == 1 and winner.pending == 0 and table.seeds == 4
    assert other.test.mean == pytest.approx((0.35 + 0.50 + 0.50) / 3)
    half = 4.302652729911275 * 0.05 / math.sqrt(3)  # t(0.975, 2) * s / sqrt(n)
    assert winner.val.high - winner.val.mean == pytest.approx(half)


def test_one_seed_confirms_nothing_and_ranks_after_confirmed_configurations():
    # Sweep rank 1's single draw (0.30) beats every mean, but it has no new seed yet.
    table = confirmed({1: [], 2: [0.45, 0.50]})
    assert [(c.sweep_rank, c.val.n) for c in table.configs] == [(2, 3), (1, 1)]
    assert table.configs[1].gap is None and table.selection_bias == pytest.approx(-0.075)


def test_table_text_and_csv_show_every_configuration(tmp_path):
    table = confirmed({1: [0.45, 0.45], 2: [0.30, 0.35]})
    text = format_confirmation(table)
    assert "winner" in text and "permutation" in text and "Selection bias measured" in text
    shown = confirmation_table(table)
    column = shown.header.index("sweep rank")
    assert [row[column] for row in shown.rows] == ["2", "1"]
    # Means 0.35 vs 0.40: 12 of the 20 splits of the six values are at least as far apart.
    assert shown.rows[1][shown.header.index("p")] == "0.6"
    rows = list(csv.DictReader(write_csv(table, tmp_path / "c.csv").open()))
    assert [(r["rank"], r["n"], r["sweep_rank"]) for r in rows] == [("1", "3", "2"),
                                                                    ("2", "3", "1")]
    assert float(rows[0]["val_mean"]) == pytest.approx(0.35)
    assert rows[1]["vs_best_test"] == "permutation" and rows[0]["vs_best_p"] == ""


def test_seeds_that_failed_on_their_own_are_counted_and_shown():
    table = confirmed({1: [0.45], 2: [0.30]}, pending=1, failed=1)
    config = next(c for c in table.configs if c.sweep_rank == 1)
    assert (config.val.n, config.pending, config.failed) == (2, 1, 1)
    shown = confirmation_table(table)
    assert "2 (+1 pending, 1 failed)" in [row[2] for row in shown.rows]


def test_a_configuration_without_confirmed_seeds_yet_has_one_value_and_no_interval():
    table = confirmed({1: [], 2: []}, pending=2)
    assert table.configs[0].sweep_rank == 1  # both one seed: the sweep's order
    assert [c.val.n for c in table.configs] == [1, 1]
    assert math.isnan(table.configs[0].val.low) and table.selection_bias is None
    assert "0.3000" in format_confirmation(table)


class FakeObjective:
    def __init__(self) -> None:
        self.seen: list[dict] = []

    def __call__(self, trial: optuna.Trial) -> float:
        self.seen.append(dict(trial.user_attrs))
        trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        trial.suggest_categorical("pe", ["none", "rwse"])
        return 1.0


def test_a_queue_only_worker_runs_the_queued_trials_then_stops(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'db.sqlite'}")
    selection = select_configs(sweep_study(), top_k=1, study_seed=0)
    queue_trials(study, selection, seeds=3, study_seed=0)
    objective = FakeObjective()
    limits = WorkerLimits(n_trials=1, timeout=None, max_consecutive_failures=3, max_retry=1,
                          keep_checkpoints=0, grace_period=60, queue_only=True)
    Worker(study, objective, limits).run()
    # Both queued trials ran although n_trials says 1, and no trial was sampled.
    assert len(objective.seen) == 2 and len(study.trials) == 2
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    assert {t.params["pe"] for t in study.trials} == {"rwse"}


def test_a_pair_queued_twice_runs_once():
    # Two confirm commands started at once both queued the same (configuration, seed).
    study = optuna.create_study()
    selection = select_configs(sweep_study(), top_k=1, study_seed=0)
    queue_trials(study, selection, seeds=2, study_seed=0)
    key, chosen = next(iter(selection.items()))
    seed = confirm_seeds(0, key, chosen["seed"], 2)[0]
    study.enqueue_trial(chosen["params"], user_attrs=TrialRecord.confirm_attrs(key, seed, 1))
    first, second = study.ask(), study.ask()
    assert duplicate_of(first) is None and duplicate_of(second) == first.number
    study.tell(first, state=TrialState.FAIL)  # crashed: its retry is the pair's next attempt
    assert duplicate_of(second) is None


def test_a_trial_that_was_not_queued_is_pruned_without_training(tmp_path):
    study = optuna.create_study()
    objective = ConfirmObjective.__new__(ConfirmObjective)  # nothing else is touched
    study.optimize(objective, n_trials=1)
    trial = study.trials[0]
    assert trial.state == TrialState.PRUNED and not trial.params
    assert RunningTrial(study.ask()).queued_confirmation() is None


def test_confirm_prepares_the_linked_study_and_queues_once(tmp_path, capsys):
    from mspe_sweep.sweep.prepare import prepare

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    args = [f"study={TINY_STUDY}", "tracking=none", f"storage.url={url}"]
    sweep = prepare(args).study
    add(sweep, 0.5, 0.01, "rwse", seed=3)  # a finished trial to confirm, same space
    first = prepare_confirmation([*args, "confirm.top_k=1", "confirm.seeds=3"])
    again = prepare_confirmation([*args, "confirm.top_k=1", "confirm.seeds=3"])
    assert "2 trials, 2 queued now" in capsys.readouterr().out
    confirmation = again.study
    assert confirmation.study_name == confirmation_name("tiny") == "tiny/confirm"
    assert len(confirmation.trials) == 2
    assert StudyRecord(optuna.load_study(study_name="tiny", storage=url)).confirm_study == \
        "tiny/confirm"
    assert StudyRecord(confirmation).confirms == "tiny"
    plan = first.plan
    assert plan.confirms == "tiny" and plan.spec.name == "tiny/confirm"
    assert plan.spec.pruner.type == "none" and plan.spec.n_trials == 2
    assert plan.runs_dir.parts[-2:] == ("tiny", "confirm")


def test_confirm_refuses_a_study_with_nothing_to_confirm(tmp_path):
    from mspe_sweep.errors import UserError
    from mspe_sweep.sweep.prepare import prepare

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    args = [f"study={TINY_STUDY}", "tracking=none", f"storage.url={url}"]
    with pytest.raises(UserError, match="no study named 'tiny'"):
        prepare_confirmation(args)
    prepare(args)
    with pytest.raises(UserError, match="no COMPLETE trial to confirm"):
        prepare_confirmation(args)
    add(optuna.load_study(study_name="tiny", storage=url), 0.5, 0.01, "rwse", seed=3)
    with pytest.raises(UserError, match="run overrides: extra training.batch_size=8"):
        prepare_confirmation([*args, "training.batch_size=8"])
