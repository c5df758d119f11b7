"""Experiment, parent run and child runs against the local store and a real MLflow server."""

from __future__ import annotations

import multiprocessing

import pytest
from _tracking_helpers import BASE_YAML, SPEC
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import BAD_REQUEST

from mspe_sweep.errors import UserError
from mspe_sweep.tracking import Tracker, TrialRun, build_tracker
from mspe_sweep.tracking.names import git_commit
from mspe_sweep.training import Callback


def test_build_tracker_rejects_unknown_backends(tmp_path):
    with pytest.raises(UserError, match="none, local, server"):
        build_tracker("wandb", None, tmp_path)
    with pytest.raises(UserError, match="tracking.uri"):
        build_tracker("server", None, tmp_path)


def test_none_backend_is_a_silent_no_op(tmp_path):
    tracker = build_tracker("none", None, tmp_path)
    assert type(tracker) is Tracker
    assert tracker.start_study("s", None, SPEC, BASE_YAML) is None
    run = tracker.start_trial(0, {"a": 1}, [], [], {})
    assert type(run) is TrialRun and run.run_id is None
    assert type(run.callback()) is Callback
    run.finish("COMPLETE", value=1.0)
    with pytest.raises(ValueError, match="COMPLETE, PRUNED, FAIL, INTERRUPTED"):
        run.finish("DONE")
    tracker.update_study(None, {"value": 1.0})
    tracker.finish_study(None, [])
    assert list(tmp_path.iterdir()) == []


def test_experiment_and_parent_run_are_reused(backend, study_name):
    tracker = backend.build()
    parent = tracker.start_study(study_name, None, SPEC, BASE_YAML)
    client = backend.client
    experiment = client.get_experiment_by_name(study_name)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    run = client.get_run(parent)
    assert run.info.run_name == study_name and run.info.status == "RUNNING"
    assert run.data.tags["mspe.role"] == "parent" and run.data.tags["mspe.study"] == study_name
    assert run.data.params["study.sampler.n_startup_trials"] == "5"
    assert run.data.params["space.training.optimizer.lr"] == "tag(log, interval(1e-4, 1e-2))"
    assert {a.path for a in client.list_artifacts(parent)} == {"base_config.yaml",
                                                                "study_spec.json"}
    if backend.name == "local":
        assert experiment.artifact_location.startswith((backend.home / "mlartifacts").as_uri())

    tracker.finish_study(parent, [])
    assert client.get_run(parent).info.status == "FINISHED"
    # A new process (new tracker) without the stored id finds the parent by its tags ...
    assert backend.build().start_study(study_name, None, SPEC, BASE_YAML) == parent
    assert client.get_run(parent).info.status == "RUNNING"
    # ... and with the id; a stale id falls back to the tags.
    assert backend.build().start_study(study_name, parent, SPEC, BASE_YAML) == parent
    assert backend.build().start_study(study_name, "0" * 32, SPEC, BASE_YAML) == parent
    parents = client.search_runs([experiment.experiment_id], "tags.`mspe.role` = 'parent'")
    assert [r.info.run_id for r in parents] == [parent]


def _start_study(uri, home, name, barrier, out):
    tracker = build_tracker("server", uri, home)
    barrier.wait()
    out.put(tracker.start_study(name, None, SPEC, BASE_YAML))


def test_concurrent_start_study_keeps_one_parent(mlflow_env, mspe_home, study_name):
    ctx = multiprocessing.get_context("fork")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_start_study,
                         args=(mlflow_env.server_uri, mspe_home, study_name, barrier, out))
             for _ in range(2)]
    for proc in procs:
        proc.start()
    ids = {out.get(timeout=60), out.get(timeout=60)}
    for proc in procs:
        proc.join(timeout=30)
    tracker = build_tracker("server", mlflow_env.server_uri, mspe_home)
    experiment = tracker.client.get_experiment_by_name(study_name)
    parents = tracker.client.search_runs([experiment.experiment_id],
                                         "tags.`mspe.role` = 'parent'")
    assert len(ids) == 1 and [r.info.run_id for r in parents] == list(ids)


def test_a_worker_that_loses_the_params_race_still_opens_the_study(backend, study_name,
                                                                   caplog):
    # Two workers open a study whose spec gained a key: both log it, the slower one's insert
    # hits the row the other just wrote (the server answers 400: UNIQUE constraint failed).
    parent = backend.build().start_study(study_name, None, SPEC, BASE_YAML)
    spec = {**SPEC, "extra_key": 1}
    tracker = backend.build()
    real, calls = tracker.client.log_batch, []

    def log_batch(run_id, **kwargs):
        calls.append(kwargs)
        if len(calls) == 1:
            assert backend.build().start_study(study_name, None, spec, BASE_YAML) == parent
            raise MlflowException("UNIQUE constraint failed: params.key, params.run_uuid",
                                  error_code=BAD_REQUEST)
        return real(run_id, **kwargs)

    tracker.client.log_batch = log_batch
    assert tracker.start_study(study_name, None, spec, BASE_YAML) == parent
    assert [p.key for p in calls[0]["params"]] == ["study.extra_key"] and len(calls) == 1
    assert backend.client.get_run(parent).data.params["study.extra_key"] == "1"
    assert "failed and was skipped" not in caplog.text


def test_child_run_hierarchy_params_and_tags(backend, study_name):
    tracker = backend.build()
    parent = tracker.start_study(study_name, None, SPEC, BASE_YAML)
    overrides = ["dataset=synthetic", "training.optimizer.lr=0.01", "pe=rwse",
                 "+training.note=a b"]
    run = tracker.start_trial(
        3, {"training.optimizer.lr": 0.0013, "pe": "rwse"},
        ["dataset=synthetic", "training.optimizer.lr=0.01", "+training.note=a b", "~model.x"],
        overrides, {"mspe.dataset_fingerprint": "fp123"})
    got = backend.client.get_run(run.run_id)
    assert got.info.run_name == "trial-3" and got.info.status == "RUNNING"
    assert got.data.params == {"dataset": "synthetic", "training.optimizer.lr": "0.0013",
                               "pe": "rwse", "training.note": "a b"}
    tags = got.data.tags
    assert tags["mlflow.parentRunId"] == parent
    assert tags["mspe.study"] == study_name and tags["mspe.trial"] == "3"
    assert tags["mspe.state"] == "RUNNING" and tags["mspe.dataset_fingerprint"] == "fp123"
    assert tags["mspe.overrides"] == ("dataset=synthetic training.optimizer.lr=0.01 pe=rwse "
                                      "'+training.note=a b'")
    assert tags.get("mlflow.source.git.commit") == git_commit()


def test_retry_marks_the_dead_running_run_failed(backend, study_name):
    tracker = backend.build()
    tracker.start_study(study_name, None, SPEC, BASE_YAML)
    dead = tracker.start_trial(0, {}, [], [], {})
    retry = tracker.start_trial(1, {}, [], [], {}, retry_of_run_id=dead.run_id)
    client = backend.client
    old, new = client.get_run(dead.run_id), client.get_run(retry.run_id)
    assert old.info.status == "FAILED" and old.data.tags["mspe.state"] == "CRASHED"
    assert old.data.tags["mspe.retried_by"] == retry.run_id
    assert new.data.tags["mspe.retry_of"] == dead.run_id and new.info.status == "RUNNING"


def test_update_study_keeps_the_best_so_far(backend, study_name):
    tracker = backend.build()
    parent = tracker.start_study(study_name, None, SPEC, BASE_YAML)
    tracker.update_study(parent, {"value": 0.5, "trial": 0, "params": {"lr": 0.1},
                                  "finished": 1, "complete": 1})
    tracker.update_study(parent, {"value": 0.25, "trial": 2, "params": {"lr": 0.01},
                                  "finished": 3, "complete": 2, "pruned": 1})
    client = backend.client
    run = client.get_run(parent)
    assert run.data.metrics["best/val/mae"] == 0.25 and run.data.metrics["trials/pruned"] == 1
    assert run.data.tags["mspe.best_trial"] == "2"
    assert run.data.tags["mspe.best_params"] == '{"lr": 0.01}'
    history = client.get_metric_history(parent, "best/value")
    assert [(m.step, m.value) for m in history] == [(1, 0.5), (3, 0.25)]


def test_a_rejected_call_does_not_stop_the_run(backend, study_name, caplog):
    tracker = backend.build()
    tracker.start_study(study_name, None, SPEC, BASE_YAML)
    run = tracker.start_trial(0, {}, [], [], {}, retry_of_run_id="0" * 32)  # no such run
    run.log_history({"epoch": [1, 2], "val/mae": [0.5, 0.4]})
    run.finish("COMPLETE", value=0.4)
    got = backend.client.get_run(run.run_id)
    assert got.info.status == "FINISHED" and got.data.metrics["val/mae"] == 0.4
    assert "mark 00000000000000000000000000000000 crashed failed" in caplog.text
    assert not tracker.guard.is_down
