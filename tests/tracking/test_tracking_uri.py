"""``tracking=local`` honours ``tracking.uri``: any MLflow database, artifacts beside it."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import pytest
from _tracking_helpers import BASE_YAML, SPEC
from mlflow.tracking import MlflowClient

from mspe_sweep.errors import UserError
from mspe_sweep.tracking import build_tracker
from mspe_sweep.tracking.factory import tracking_location


def test_local_default_is_the_sqlite_file_under_mspe_home(tmp_path):
    uri, artifacts = tracking_location("local", None, tmp_path)
    assert uri == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert artifacts == tmp_path.resolve() / "mlartifacts"


def test_local_sqlite_uri_keeps_artifacts_beside_its_file(tmp_path):
    uri, artifacts = tracking_location("local", f"sqlite:///{tmp_path}/x/runs.db", tmp_path / "h")
    assert uri == f"sqlite:///{tmp_path}/x/runs.db"
    assert artifacts == tmp_path / "x" / "mlartifacts"
    assert not (tmp_path / "x").exists()  # a check: nothing is created


def test_local_database_server_keeps_artifacts_under_mspe_home(tmp_path):
    uri = "postgresql+psycopg://u:pw@db:5432/mlflow"
    assert tracking_location("local", uri, tmp_path) == (uri, tmp_path / "mlartifacts")


@pytest.mark.parametrize("uri", ["http://u:s3cret@mlflow:5000", "file:///tmp/mlruns", "mlruns",
                                 "redis://u:s3cret@host/0"])
def test_local_rejects_what_is_not_a_database_in_one_masked_line(tmp_path, uri):
    with pytest.raises(UserError) as info:
        tracking_location("local", uri, tmp_path)
    message = str(info.value)
    assert "tracking.uri=" in message and "sqlite:///" in message and "\n" not in message
    assert "s3cret" not in message
    assert not list(tmp_path.iterdir())


def _log_one_trial(tracker, study):
    parent = tracker.start_study(study, None, SPEC, BASE_YAML)
    run = tracker.start_trial(0, {"pe": "rwse"}, ["pe=rwse"], [], {})
    run.finish("COMPLETE", value=0.5)
    tracker.finish_study(parent, [])
    return parent


def test_runs_land_in_the_given_sqlite_store_and_nowhere_else(tmp_path, mlflow_env, mspe_home):
    store = tmp_path / "elsewhere" / "mlflow.db"
    store.parent.mkdir()
    shutil.copyfile(mlflow_env.template_db, store)  # an MLflow schema, migrated once
    parent = _log_one_trial(build_tracker("local", f"sqlite:///{store}", mspe_home), "s")
    client = MlflowClient(tracking_uri=f"sqlite:///{store}")
    experiment = client.get_experiment_by_name("s")
    assert client.get_run(parent).info.experiment_id == experiment.experiment_id
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 2  # the parent and the trial
    assert experiment.artifact_location.startswith((store.parent / "mlartifacts").as_uri())
    assert not (mspe_home / "mlflow.db").exists() and not (mspe_home / "mlartifacts").exists()
    with sqlite3.connect(store) as conn:  # readers (the MLflow UI) never block a worker
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.postgres
def test_runs_land_in_an_mlflow_store_in_postgresql(tmp_path, mspe_home):
    url = os.environ.get("MSPE_TEST_MLFLOW_POSTGRES_URL")
    if not url:
        pytest.skip("MSPE_TEST_MLFLOW_POSTGRES_URL not set (.ci/run creates that database)")
    study = f"pg-{os.getpid()}-{tmp_path.name}"
    parent = _log_one_trial(build_tracker("local", url, mspe_home), study)
    client = MlflowClient(tracking_uri=url)
    assert client.get_run(parent).data.tags["mspe.study"] == study
    assert not (mspe_home / "mlflow.db").exists()


@pytest.mark.slow
def test_a_study_run_lands_in_the_given_store(tmp_path, mlflow_env, mspe_home, capsys):
    from mspe_sweep import report, run

    store = tmp_path / "custom" / "mlflow.db"
    store.parent.mkdir()
    shutil.copyfile(mlflow_env.template_db, store)
    study = Path(__file__).resolve().parents[1] / "data" / "tiny_study.yaml"
    args = [f"study={study}", "study.n_trials=1", "tracking=local",
            f"tracking.uri=sqlite:///{store}"]
    assert run.main(args) == 0
    out = capsys.readouterr().out
    assert f"tracking: local sqlite:///{store}" in out
    client = MlflowClient(tracking_uri=f"sqlite:///{store}")
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    assert sorted(r.info.run_name for r in runs) == ["tiny", "trial-0"]
    assert report.main(args[:1] + args[2:]) == 0
    assert not (mspe_home / "mlflow.db").exists() and not (mspe_home / "mlartifacts").exists()
    assert (store.parent / "mlartifacts").is_dir()
