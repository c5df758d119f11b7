"""The phases of a study run: ``prepare`` returns a Plan that a launched worker receives whole,
without the command line and without the storage password on its command line."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from mspe_sweep.sweep import factories
from mspe_sweep.sweep.launch import (
    INDEX_ENV,
    PLAN_ENV,
    launcher_for,
    worker_command,
    worker_env,
)
from mspe_sweep.sweep.plan import Plan
from mspe_sweep.sweep.prepare import prepare
from mspe_sweep.sweep.records import StudyRecord
from mspe_sweep.sweep.work import open_study, work_in_this_process

TINY_STUDY = Path(__file__).resolve().parents[1] / "data" / "tiny_study.yaml"


def test_prepare_creates_the_study_once_and_its_plan_survives_serialization(tmp_path):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    sweep = prepare([f"study={TINY_STUDY}", "tracking=none", f"storage.url={url}",
                     "study.n_trials=7", "training.batch_size=8", "workers=3"])
    plan = sweep.plan

    assert (plan.spec.name, plan.spec.n_trials, plan.workers) == ("tiny", 7, 3)
    assert plan.run_overrides == ("training.batch_size=8",)
    assert plan.overrides[-1] == "training.batch_size=8"
    assert plan.storage_url == url and len(plan.fingerprint) == 16
    assert [s.study_name for s in optuna.get_all_study_summaries(url)] == ["tiny"]
    assert StudyRecord(sweep.study).n_trials == 7

    assert Plan.from_json(plan.to_json()) == plan


def test_a_worker_gets_its_plan_in_the_environment_not_on_the_command_line(tmp_path):
    password = "s3cret-pa55"
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    plan = prepare([f"study={TINY_STUDY}", "tracking=none", f"storage.url={url}"]).plan
    # A PostgreSQL URL as it would be handed on; the plan is not opened again here.
    shared = Plan(**{**plan.__dict__,
                     "storage_url": f"postgresql+psycopg://mspe:{password}@db:5432/mspe"})

    env = worker_env(shared, 2)

    assert password not in " ".join(worker_command())
    assert worker_command()[1:] == ["-m", "mspe_sweep.sweep.work"]
    assert env[INDEX_ENV] == "2"
    assert Plan.from_json(env[PLAN_ENV]) == shared
    assert callable(launcher_for(shared).launch)


def test_a_worker_opens_the_prepared_study_with_its_own_sampler_seed(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    plan = prepare([f"study={TINY_STUDY}", "tracking=none", f"storage.url={url}"]).plan
    built = []
    real = factories.build_sampler

    def recording(spec, seed, params, **kwargs):
        built.append((seed, kwargs["worker"]))
        return real(spec, seed, params, **kwargs)

    monkeypatch.setattr(factories, "build_sampler", recording)
    studies = [open_study(plan, worker=0), open_study(plan, worker=1)]

    assert [study.study_name for study in studies] == ["tiny", "tiny"]
    assert built == [(plan.spec.seed, 0), (plan.spec.seed, 1)]  # seeds seed + worker

    studies[0].enqueue_trial({"training.optimizer.lr": 1e-3, "pe": "none"})
    open_study(plan, worker=1)  # a study with trials: the seed moves on with its progress
    assert built[-1] == (factories.derive_seed(plan.spec.seed, 1), 1)


def test_workers_of_a_detached_launch_publish_the_study_themselves(tmp_path, skip_study_plots):
    # No driver waits for a batch job: the worker that ends publishes plots and ends the
    # parent run; a local launch leaves that to the driver.
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    args = [f"study={TINY_STUDY}", "tracking=none", f"storage.url={url}", "study.n_trials=1"]
    detached = prepare([*args, "launcher=slurm"]).plan
    assert launcher_for(detached).detached
    work_in_this_process(detached, 0)
    assert skip_study_plots == ["tiny"]
    local = prepare([*args, "study.n_trials=2", "workers=2"]).plan
    work_in_this_process(local, 1)
    assert skip_study_plots == ["tiny"]  # not published again by a local worker


def test_a_worker_waits_for_a_database_that_is_away_when_it_starts(tmp_path, monkeypatch,
                                                                   caplog):
    from mspe_sweep.errors import StorageUnavailableError, UserError
    from mspe_sweep.sweep import work as work_module

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    plan = prepare([f"study={TINY_STUDY}", "tracking=none", f"storage.url={url}"]).plan
    real, calls = work_module.build_storage, []

    def flaky(*args, **kwargs):  # down for two attempts, then back
        calls.append(1)
        if len(calls) <= 2:
            raise UserError("storage.url: cannot connect: connection refused")
        return real(*args, **kwargs)

    monkeypatch.setattr(work_module, "build_storage", flaky)
    caplog.set_level("WARNING", logger="mspe_sweep")
    assert work_module.reopen_storage(plan, poll_seconds=0.01) is not None
    assert len(calls) == 3
    assert len([r for r in caplog.records if "unreachable" in r.getMessage()]) == 1

    calls.clear()
    monkeypatch.setattr(work_module, "build_storage", lambda *a, **k: flaky() or 1 / 0)
    short = Plan(**{**plan.__dict__,
                    "storage_options": {**plan.storage_options, "outage_timeout": 0}})
    with pytest.raises(StorageUnavailableError, match="storage.outage_timeout"):
        work_module.reopen_storage(short, poll_seconds=0.01)
