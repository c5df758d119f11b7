"""Storage URLs, SQLite WAL + heartbeat storage, racing study creation."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import time

import optuna
import pytest
from sqlalchemy.engine import make_url

from mspe_sweep.errors import UserError
from mspe_sweep.sweep.storage import (
    build_storage,
    create_study_once,
    default_storage_url,
)


def _study(storage, name="s", direction="minimize"):
    return create_study_once(storage, name, direction, optuna.samplers.RandomSampler(seed=0),
                             optuna.pruners.NopPruner())


def test_default_url_is_absolute_sqlite_under_home(tmp_path):
    assert default_storage_url(tmp_path) == f"sqlite:///{tmp_path.resolve()}/optuna.db"


def test_sqlite_storage_is_wal_with_heartbeat_and_retry(tmp_path):
    path = tmp_path / "deep" / "dir" / "optuna.db"
    storage = build_storage(f"sqlite:///{path}", heartbeat_interval=30, grace_period=90,
                            max_retry=2)
    assert path.is_file()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert storage.get_heartbeat_interval() == 30
    assert storage.grace_period == 90
    callback = storage.get_heartbeat_stale_trial_callback()
    assert isinstance(callback, optuna.storages.RetryHeartbeatStaleTrialCallback)
    assert callback._max_retry == 2
    assert storage.engine_kwargs["connect_args"]["timeout"] == 60  # busy wait, not "locked"
    assert build_storage(f"sqlite:///{path}", heartbeat_interval=None).get_heartbeat_interval(
    ) is None


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")
@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_stale_trial_is_failed_and_requeued_with_its_params(tmp_path):
    storage = build_storage(f"sqlite:///{tmp_path / 'o.db'}", heartbeat_interval=1,
                            grace_period=1, max_retry=1)
    study = _study(storage)
    trial = study.ask()
    trial.suggest_float("x", 0, 1)
    storage.record_heartbeat(trial._trial_id)  # a worker that then dies
    time.sleep(2.1)
    optuna.storages.fail_stale_trials(study)
    states = [t.state for t in study.trials]
    assert states == [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.WAITING]
    assert study.trials[1].params == study.trials[0].params


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"heartbeat_interval": 0}, "storage.heartbeat_interval"),
    ({"grace_period": -1}, "storage.grace_period"),
    ({"max_retry": "3"}, "storage.max_retry"),
])
def test_bad_heartbeat_settings_are_user_errors(tmp_path, kwargs, fragment):
    with pytest.raises(UserError, match=fragment):
        build_storage(f"sqlite:///{tmp_path / 'o.db'}", **kwargs)


def test_unsupported_scheme_lists_valid_ones():
    with pytest.raises(UserError) as info:
        build_storage("mysql://root:topsecret@localhost/optuna")
    message = str(info.value)
    assert "mysql" in message and "sqlite:///" in message and "postgresql" in message
    assert "topsecret" not in message and "\n" not in message


def test_unreachable_postgres_is_one_line_error_without_password():
    with pytest.raises(UserError) as info:
        build_storage("postgresql://mspe:topsecret@127.0.0.1:1/mspe")
    message = str(info.value)
    assert "postgresql+psycopg://mspe:***@127.0.0.1:1/mspe" in message
    assert "topsecret" not in message and "\n" not in message


def test_unwritable_sqlite_location_is_user_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(UserError, match="cannot open"):
        build_storage(f"sqlite:///{blocker}/optuna.db")


def test_create_study_once_twice_loads_the_same_study(tmp_path):
    storage = build_storage(f"sqlite:///{tmp_path / 'o.db'}")
    first, second = _study(storage), _study(storage)
    assert first._study_id == second._study_id
    assert optuna.get_all_study_names(storage) == ["s"]
    with pytest.raises(UserError, match="direction minimize"):
        _study(storage, direction="maximize")


def _worker(url: str) -> int:
    storage = build_storage(url, heartbeat_interval=5)
    study = _study(storage, name="race")
    study.optimize(lambda trial: trial.suggest_float("x", -1, 1) ** 2, n_trials=5)
    return 5


def test_four_processes_share_one_sqlite_file(tmp_path):
    url = f"sqlite:///{tmp_path / 'shared' / 'optuna.db'}"
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        assert pool.map(_worker, [url] * 4) == [5, 5, 5, 5]
    study = optuna.load_study(study_name="race", storage=build_storage(url))
    assert len(study.trials) == 20
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert optuna.get_all_study_names(url) == ["race"]


POSTGRES_URL = os.environ.get("MSPE_TEST_POSTGRES_URL")
needs_postgres = pytest.mark.skipif(not POSTGRES_URL, reason="MSPE_TEST_POSTGRES_URL not set")


@pytest.mark.postgres
@needs_postgres
def test_postgres_storage_creates_and_reloads_a_study():
    storage = build_storage(POSTGRES_URL, heartbeat_interval=30)
    assert storage.engine_kwargs["pool_pre_ping"] is True
    name = f"test-{os.getpid()}-{time.time_ns()}"
    first = _study(storage, name=name)
    first.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=2)
    again = _study(build_storage(POSTGRES_URL), name=name)
    assert len(again.trials) == 2
    optuna.delete_study(study_name=name, storage=storage)


@pytest.mark.postgres
@needs_postgres
def test_postgres_wrong_password_is_one_line_error_without_password():
    url = make_url(POSTGRES_URL).set(password="definitely-wrong-pw")
    with pytest.raises(UserError) as info:
        build_storage(url.render_as_string(hide_password=False))
    message = str(info.value)
    assert "***" in message and "definitely-wrong-pw" not in message
    assert "password" in message.lower() and "\n" not in message


def test_setup_race_is_retried_and_persistent_failure_is_user_error(tmp_path, monkeypatch):
    import sqlalchemy

    from mspe_sweep.sweep import storage as storage_module

    real = optuna.storages.RDBStorage
    calls = []

    def flaky(url, **kwargs):
        calls.append(url)
        if len(calls) < 3:  # what the loser of a CREATE TABLE race sees
            raise sqlalchemy.exc.OperationalError("CREATE TABLE studies", {},
                                                  Exception("table studies already exists"))
        return real(url, **kwargs)

    monkeypatch.setattr(storage_module.time, "sleep", lambda seconds: None)
    monkeypatch.setattr(optuna.storages, "RDBStorage", flaky)
    url = f"sqlite:///{tmp_path / 'o.db'}"
    assert isinstance(build_storage(url), real) and len(calls) == 3

    def broken(url, **kwargs):
        raise sqlalchemy.exc.OperationalError("SELECT", {}, Exception("disk I/O error\nmore"))

    monkeypatch.setattr(optuna.storages, "RDBStorage", broken)
    with pytest.raises(UserError, match=r"cannot set up .*o\.db': disk I/O error$"):
        build_storage(url)
