"""Warm start: a study file's ``enqueue`` entries are checked against the search space, queued
once per study, and run first with exactly their values."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import yaml
from omegaconf import OmegaConf
from optuna.trial import TrialState

from mspe_sweep.errors import UserError
from mspe_sweep.sweep.enqueue import enqueue_known, entry_key
from mspe_sweep.sweep.prepare import load_spec, parse_args, prepare
from mspe_sweep.sweep.records import StudyRecord
from mspe_sweep.sweep.space import suggest
from mspe_sweep.sweep.spec import StudySpec, load_study
from mspe_sweep.sweep.worker import Worker, WorkerLimits

GROUPS = {"pe": ["none", "lap", "rwse", "multiscale"]}
CFG = OmegaConf.create({
    "model": {"hidden_dim": 64},
    "pe": {"dim": 16, "rwse": {"steps": 20}},
    "training": {"optimizer": {"lr": 1e-3}, "scheduler": {"warmup_epochs": 5}},
})
PARAMS = {
    "training.optimizer.lr": "tag(log, interval(1e-5, 1e-2))",
    "training.scheduler.warmup_epochs": "choice(0, 5, 50)",
    "model.hidden_dim": "tag(int, interval(32, 128))",
    "pe": "choice(lap, rwse, multiscale)",
    "pe.rwse.steps": {"values": "range(8, 33, 8)", "when": {"pe": ["rwse", "multiscale"]}},
}
SEARCHED = ", ".join(PARAMS)
GPS = {"training.optimizer.lr": 0.001, "training.scheduler.warmup_epochs": 50, "pe": "rwse",
       "pe.rwse.steps": 24}


def study_file(tmp_path: Path, enqueue=None, name: str = "warm.yaml") -> Path:
    data = {"name": "warm", "direction": "minimize", "metric": "val/mae", "n_trials": 3,
            "params": PARAMS}
    if enqueue is not None:
        data["enqueue"] = enqueue
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def load(path: Path) -> StudySpec:
    return load_study(path, compose=lambda overrides: CFG, groups=GROUPS,
                      known_metrics={"val/mae"})


ERRORS = [
    # (enqueue as written, index named in the message (None: the list), fragment)
    ({"pe": "rwse"}, None, "enqueue: must be a list of entries"),
    (["pe=rwse"], 0, "must be a mapping {searched param: value}"),
    ([{}], 0, "must be a mapping"),
    ([{"pe": "rwse"}, {"training.epochs": 10}], 1,
     f"training.epochs is not a searched param (searched: {SEARCHED})"),
    ([{"pe": "gine"}], 0, "pe='gine' is not one of its choices: lap, rwse, multiscale"),
    ([{"training.scheduler.warmup_epochs": 7}], 0,
     "training.scheduler.warmup_epochs=7 is not one of its choices: 0, 5, 50"),
    ([{"training.scheduler.warmup_epochs": True}], 0, "is not one of its choices: 0, 5, 50"),
    ([{"training.optimizer.lr": 0.5}], 0,
     "training.optimizer.lr=0.5 is outside its range [1e-05, 0.01] (log scale)"),
    ([{"training.optimizer.lr": 0.0}], 0, "training.optimizer.lr=0.0 is outside its range"),
    ([{"training.optimizer.lr": "1e-3"}], 0, "training.optimizer.lr='1e-3' is text, not a"),
    ([{"model.hidden_dim": 200}], 0, "model.hidden_dim=200 is outside its range [32, 128]"),
    ([{"model.hidden_dim": 64.5}], 0, "model.hidden_dim=64.5 is not an integer"),
    ([{"pe": "rwse", "pe.rwse.steps": 12}], 0,
     "pe.rwse.steps=12 is outside its range [8, 32] in steps of 8 from 8"),
    ([{"pe": "lap", "pe.rwse.steps": 16}], 0,
     ("pe.rwse.steps is searched only when pe is one of rwse, multiscale, and this entry has "
      "pe='lap'")),
    ([{"pe.rwse.steps": 16}], 0,
     "pe.rwse.steps is searched only when pe is one of rwse, multiscale; give pe too"),
    ([GPS, {**GPS, "training.optimizer.lr": 1e-3}], 1, "the same configuration as enqueue[0]"),
]


@pytest.mark.parametrize(("enqueue", "index", "fragment"), ERRORS)
def test_a_bad_entry_is_one_line_naming_file_entry_and_key(tmp_path, enqueue, index, fragment):
    path = study_file(tmp_path, enqueue)
    with pytest.raises(UserError) as info:
        load(path)
    message = str(info.value)
    where = "enqueue" if index is None else f"enqueue[{index}]"
    assert message.startswith(f"{path}: {where}: "), message
    assert fragment in message and "\n" not in message, message


def test_valid_entries_are_kept_as_the_trials_will_hold_them_and_round_trip(tmp_path):
    # The second entry is partial: the sampler fills in the params it leaves out.
    written = [{**GPS, "training.scheduler.warmup_epochs": 50.0, "model.hidden_dim": 64},
               {"pe": "lap", "training.optimizer.lr": 0.005}]
    spec = load(study_file(tmp_path, written))

    first, second = spec.enqueue
    assert first == {**GPS, "model.hidden_dim": 64}
    assert type(first["training.scheduler.warmup_epochs"]) is int  # the choice itself
    assert second == {"pe": "lap", "training.optimizer.lr": 0.005}
    assert StudySpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    # A warm-start entry is no part of the study's identity.
    assert spec.fingerprint_payload() == load(study_file(tmp_path, None)).fingerprint_payload()
    assert load(study_file(tmp_path, None)).enqueue == ()


def test_entry_key_is_stable_and_order_free():
    assert entry_key(GPS) == entry_key(dict(reversed(list(GPS.items()))))
    assert len(entry_key(GPS)) == 16 and entry_key(GPS) != entry_key({**GPS, "pe.rwse.steps": 8})


def sqlite_study(tmp_path: Path, spec: StudySpec) -> tuple[optuna.Study, str]:
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    sampler = optuna.samplers.RandomSampler(seed=0)
    study = optuna.create_study(study_name=spec.name, storage=url, sampler=sampler,
                                load_if_exists=True)
    return study, url


def waiting(study: optuna.Study) -> list[dict]:
    trials = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    return [t.system_attrs["fixed_params"] for t in trials]


def test_entries_are_queued_once_per_study_and_a_new_entry_on_the_next_run(tmp_path):
    spec = load(study_file(tmp_path, [GPS]))
    study, url = sqlite_study(tmp_path, spec)

    assert enqueue_known(study, spec) == 1
    assert enqueue_known(study, spec) == 0
    # Another process (a resumed run, a second machine) opens the same study.
    again = optuna.load_study(study_name=spec.name, storage=url)
    assert enqueue_known(again, spec) == 0
    assert waiting(again) == [GPS]
    assert StudyRecord(again).enqueued == [entry_key(GPS)]

    added = load(study_file(tmp_path, [GPS, {"pe": "lap"}], "grown.yaml"))
    assert enqueue_known(again, added) == 1
    assert waiting(again) == [GPS, {"pe": "lap"}]


def test_the_worker_runs_the_queued_entry_first_with_exactly_its_values(tmp_path):
    partial = {"training.optimizer.lr": 0.001, "pe": "rwse", "pe.rwse.steps": 24}
    spec = load(study_file(tmp_path, [partial]))
    study, _ = sqlite_study(tmp_path, spec)
    seen = []

    def objective(trial: optuna.Trial) -> float:
        seen.append(suggest(trial, spec))
        return 1.0

    study.optimize(objective, n_trials=1)  # a sampled trial, before the entry is queued
    assert enqueue_known(study, spec) == 1
    del seen[:]

    limits = WorkerLimits(n_trials=3, timeout=None, max_consecutive_failures=3, max_retry=0,
                          keep_checkpoints=0, grace_period=60.0)
    Worker(study, objective, limits).run()

    assert len(seen) == 2  # the budget counts the trial that ran before
    queued = seen[0]
    assert {k: queued[k] for k in partial} == partial
    assert set(queued) == {*partial, "training.scheduler.warmup_epochs", "model.hidden_dim"}
    assert study.trials[1].params == queued
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3


def test_prepare_queues_the_study_files_entries_once_across_runs(tmp_path, sweep, capsys):
    entry = {"training.optimizer.lr": 0.001, "pe": "rwse"}
    path = sweep.write_study(tmp_path, enqueue=[entry])
    args = [f"study={path}", "tracking=none", f"storage.url=sqlite:///{tmp_path / 'o.db'}"]

    first = prepare(args)
    assert "enqueued: 1 known configuration(s) from the study file" in capsys.readouterr().out
    second = prepare(args)
    assert "enqueued:" not in capsys.readouterr().out

    assert waiting(second.study) == [entry]
    assert first.plan.spec.enqueue == (entry,)


def test_the_zinc_study_enqueues_the_graphgps_setting():
    spec, _ = load_spec(*parse_args(["study=zinc"]))
    assert spec.enqueue == ({**GPS, "pe.dim": 16},)
