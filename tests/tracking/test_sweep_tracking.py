"""The real sweep, end to end, as MLflow sees it (through ``MlflowClient`` only).

Each test runs ``mspe_sweep.sweep.driver.run_study`` on a copy of ``tests/data/tiny_study.yaml``
(synthetic graphs, 2 epochs) under a unique study name, because the session's ``mlflow server``
(``mlflow_env``) is shared by all tracking tests; ``backend`` runs a test against the local
SQLite store (the default ``tracking=local``) and against that server. Only the ``workers=2``
test starts processes (``slow``).
"""

from __future__ import annotations

import logging
import os
import shlex
import socket
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import optuna
import pytest
import yaml
from _tracking_helpers import free_port
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from mspe_sweep import evaluate
from mspe_sweep.sweep.driver import run_study
from mspe_sweep.sweep.records import PARENT_RUN_ID
from mspe_sweep.tracking import guard

TINY_STUDY = Path(__file__).resolve().parents[1] / "data" / "tiny_study.yaml"
REPO_ROOT = Path(__file__).resolve().parents[2]
EPOCHS = 2  # training.epochs of the tiny study
EPOCH_KEYS = ("train/loss", "val/mae", "lr", "epoch_seconds", "graphs_per_second")
STATUS_OF_STATE = {TrialState.COMPLETE: "FINISHED", TrialState.PRUNED: "KILLED",
                   TrialState.FAIL: "FAILED"}
# A loose bound: a dead or vanished server may cost a few seconds per outage, never minutes.
MAX_OUTAGE_OVERHEAD_S = 20.0


# --- helpers -------------------------------------------------------------------------------


def write_study(tmp_path: Path, tag: str, **changes) -> tuple[Path, str]:
    """A copy of the tiny study with a session-unique name and ``changes`` (top-level keys)."""
    study = yaml.safe_load(TINY_STUDY.read_text())
    name = f"sweep-{tag}-{uuid.uuid4().hex[:8]}"
    study.update(name=name, **changes)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path, name


def tracking_args(backend) -> list[str]:
    if backend.name == "server":
        return ["tracking=server", f"tracking.uri={backend.uri}"]
    return ["tracking=local"]


def timed_sweep(*args: str):
    started = time.monotonic()
    result = run_study(list(args))
    return result, time.monotonic() - started


def load_optuna_study(name: str) -> optuna.Study:
    url = f"sqlite:///{Path(os.environ['MSPE_HOME']) / 'optuna.db'}"
    return optuna.load_study(study_name=name, storage=url)


def runs_of(client: MlflowClient, study_name: str, view=ViewType.ACTIVE_ONLY):
    """``(experiment, parents, children)`` of a study's experiment."""
    experiment = client.get_experiment_by_name(study_name)
    assert experiment is not None, f"no MLflow experiment {study_name!r}"
    runs = client.search_runs([experiment.experiment_id], run_view_type=view, max_results=1000)
    parents = [r for r in runs if r.data.tags.get("mspe.role") == "parent"]
    children = [r for r in runs if r.data.tags.get("mspe.role") == "trial"]
    assert len(parents) + len(children) == len(runs), "a run that is neither parent nor trial"
    return experiment, parents, children


def by_trial(children) -> dict[int, object]:
    runs = {int(r.data.tags["mspe.trial"]): r for r in children}
    assert len(runs) == len(children), "two runs for one trial number"
    return runs


def steps(client: MlflowClient, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def artifact_paths(client: MlflowClient, run_id: str, folder: str | None = None) -> set[str]:
    out = set()
    for item in client.list_artifacts(run_id, folder):
        out |= artifact_paths(client, run_id, item.path) if item.is_dir else {item.path}
    return out


@contextmanager
def restored_mspe_logger():
    """``run_command`` (any ``main()``) rewires the ``mspe_sweep`` logger for a terminal: a
    handler on the current (captured) stderr and ``propagate=False``. Undo it afterwards so
    later tests' ``caplog`` still sees our records and nothing writes to a closed stream."""
    logger = logging.getLogger("mspe_sweep")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    try:
        yield
    finally:
        logger.handlers[:], logger.level, logger.propagate = saved


def tracking_warnings(caplog) -> list[str]:
    """WARNING+ records the command line would print about tracking.

    ``python -m mspe_sweep.run`` prints the ``mspe_sweep`` loggers and MLflow's own (it has a
    handler); urllib3's connection-retry warnings never reach the terminal (urllib3's
    ``NullHandler`` keeps ``logging.lastResort`` away), so they are not counted here.
    """
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records
            if r.levelno >= logging.WARNING and r.name.startswith(("mspe_sweep", "mlflow"))]


@pytest.fixture
def captured_logs(caplog, monkeypatch):
    """``caplog`` at WARNING that also sees ``mspe_sweep.*`` after a CLI ``main()`` ran."""
    monkeypatch.setattr(logging.getLogger("mspe_sweep"), "propagate", True)
    caplog.set_level(logging.WARNING)
    return caplog


# --- 1 + 2: everything of a study is in MLflow, on both back-ends ---------------------------


def assert_study_tracked(client: MlflowClient, study: optuna.Study, name: str) -> str:
    """Every check of item 1 on a finished study; returns the parent run id."""
    experiment, parents, children = runs_of(client, name)
    assert experiment.name == name
    assert experiment.tags.get("mlflow.experimentKind") == "custom_model_development"
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.run_name == name
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["mspe.study"] == name
    assert study.user_attrs[PARENT_RUN_ID] == parent.info.run_id

    trials = study.get_trials(deepcopy=False)
    runs = by_trial(children)
    assert sorted(runs) == [t.number for t in trials]
    fingerprint = study.user_attrs["identity"]["dataset"]
    for trial in trials:
        run = runs[trial.number]
        run_id = run.info.run_id
        tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
        assert trial.state == TrialState.COMPLETE
        assert trial.user_attrs["mlflow_run_id"] == run_id
        assert run.info.run_name == f"trial-{trial.number}"
        assert run.info.status == "FINISHED"
        assert tags["mlflow.parentRunId"] == parent.info.run_id
        assert tags["mspe.study"] == name and tags["mspe.trial"] == str(trial.number)
        assert tags["mspe.state"] == "COMPLETE"
        assert tags["mspe.dataset_fingerprint"] == fingerprint
        assert trial.user_attrs["dataset_fingerprint"] == fingerprint
        # The runs table's Dataset column: the study's data, once per run.
        [data] = client.get_run(run_id).inputs.dataset_inputs
        assert data.dataset.name == "synthetic" and data.dataset.digest == fingerprint[:36]
        assert {t.key: t.value for t in data.tags} == {"mlflow.data.context": "training"}
        overrides = trial.user_attrs["overrides"]
        assert tags["mspe.overrides"] == shlex.join(overrides)

        # Params: the fixed overrides under their config key, plus the sampled params.
        fixed = dict(o.split("=", 1) for o in overrides if o.split("=", 1)[0] not in trial.params)
        assert {"dataset", "model.hidden_dim", "training.epochs", "training.seed"} <= set(fixed)
        assert set(params) == set(fixed) | set(trial.params)
        assert {k: params[k] for k in fixed} == fixed
        assert float(params["training.optimizer.lr"]) == trial.params["training.optimizer.lr"]
        assert params["pe"] == trial.params["pe"]

        for key in EPOCH_KEYS:
            assert steps(client, run_id, key) == list(range(1, EPOCHS + 1)), key
        val_mae = [m.value for m in client.get_metric_history(run_id, "val/mae")]
        assert metrics["best/val/mae"] == pytest.approx(trial.value)
        assert min(val_mae) == pytest.approx(trial.value)
        assert metrics["best/test/mae"] == pytest.approx(trial.user_attrs["test_metric"])
        assert metrics["best/epoch"] == trial.user_attrs["best_epoch"]
        assert artifact_paths(client, run_id) >= {"config.yaml", "checkpoints/best.pt"}

    plots = artifact_paths(client, parent.info.run_id, "plots")
    assert {Path(p).suffix for p in plots} >= {".png", ".html", ".csv"}, plots
    assert "plots/trials.csv" in plots
    best = client.get_run(parent.info.run_id).data
    assert best.metrics["best/val/mae"] == pytest.approx(study.best_value)
    assert best.tags["mspe.best_trial"] == str(study.best_trial.number)
    assert not [r.info.run_name for r in [parent, *children] if r.info.status == "RUNNING"]
    return parent.info.run_id


def test_study_is_tracked_end_to_end_and_resumed(backend, tmp_path, capsys, captured_logs):
    path, name = write_study(tmp_path, backend.name)
    client = backend.client

    result, _ = timed_sweep(f"study={path}", "study.n_trials=2", *tracking_args(backend))
    assert result.complete == 2
    study = load_optuna_study(name)
    assert study.metric_names == ["val/mae"]  # optuna-dashboard's name for the objective
    parent_id = assert_study_tracked(client, study, name)

    # 2: a best.pt downloaded from MLflow is evaluated on its own (config inside it).
    best = study.best_trial
    run = client.get_run(best.user_attrs["mlflow_run_id"])
    downloaded = Path(client.download_artifacts(run.info.run_id, "checkpoints/best.pt",
                                                str(tmp_path / "download")))
    assert downloaded.is_file()
    capsys.readouterr()
    with restored_mspe_logger():
        assert evaluate.main([f"checkpoint={downloaded}"]) == 0
    out = capsys.readouterr().out
    lines = dict(line.split(" ", 1) for line in out.splitlines() if line.startswith("test/"))
    assert float(lines["test/mae"]) == pytest.approx(run.data.metrics["best/test/mae"],
                                                     rel=1e-4, abs=1e-6), out

    # 4a: a resumed study (same command, bigger budget) reuses its parent run.
    captured_logs.clear()
    result, _ = timed_sweep(f"study={path}", "study.n_trials=3", *tracking_args(backend))
    assert result.complete == 3
    study = load_optuna_study(name)
    assert assert_study_tracked(client, study, name) == parent_id
    _, _, children = runs_of(client, name)
    assert sorted(r.info.run_name for r in children) == ["trial-0", "trial-1", "trial-2"]
    finished = client.get_metric_history(parent_id, "trials/finished")
    assert max(m.value for m in finished) == 3

    # Checked last and together, so that either problem shows the other too.
    problems = []
    # A bigger budget is not a different study (n_trials is a driver key, outside the study's
    # identity): resuming with it must not warn that the study "changed".
    if tracking_warnings(captured_logs):
        problems.append(f"resume warned: {tracking_warnings(captured_logs)}")
    # The resumed run must not replay the first run's samples (a continuous lr repeats only
    # if the sampler restarts from the same random state).
    if study.trials[2].params == study.trials[0].params:
        problems.append(f"trial 2 repeats trial 0's params {study.trials[0].params}")
    assert not problems, problems


# --- 3: statuses -----------------------------------------------------------------------------


def test_pruned_and_failed_trials_end_their_runs(backend, tmp_path):
    # A grid over `pe` so both values run: pe=rwse needs 8 of the 8 hidden dims for its PE and
    # the model constructor raises inside the trial (FAIL); pe=none trains, and a threshold
    # pruner that nothing can pass prunes it after epoch 1 (PRUNED).
    fixed = [f for f in yaml.safe_load(TINY_STUDY.read_text())["fixed"]
             if not f.startswith("model.hidden_dim")]
    path, name = write_study(
        tmp_path, f"states-{backend.name}", n_trials=2, sampler="grid",
        pruner={"type": "threshold", "upper": 1e-9}, fixed=[*fixed, "model.hidden_dim=8"],
        params={"pe": "choice(none, rwse)"})

    result, _ = timed_sweep(f"study={path}", *tracking_args(backend))
    assert result.pruned == 2 and result.failed >= 1 and result.complete == 0

    client = backend.client
    study = load_optuna_study(name)
    _, parents, children = runs_of(client, name)
    runs = by_trial(children)
    assert sorted(runs) == [t.number for t in study.trials]
    for trial in study.trials:
        run = runs[trial.number]
        assert trial.user_attrs["mlflow_run_id"] == run.info.run_id
        assert run.info.status == STATUS_OF_STATE[trial.state], trial.number
        assert run.data.tags["mspe.state"] == trial.state.name
        assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        if trial.state == TrialState.PRUNED:
            assert trial.params["pe"] == "none"
            assert steps(client, run.info.run_id, "val/mae") == [1]
            assert run.data.tags["mspe.reason"] == "pruned at epoch 1"
            assert "best/val/mae" not in run.data.metrics
        else:
            assert trial.params["pe"] == "rwse"
            reason = run.data.tags["mspe.fail_reason"]
            assert reason == trial.user_attrs["fail_reason"]
            assert reason.startswith("UserError: model: hidden_dim=8"), reason
        assert "checkpoints/best.pt" not in artifact_paths(client, run.info.run_id)
    assert [r.info.status for r in parents] == ["FINISHED"]
    assert not [r.info.run_name for r in children if r.info.status == "RUNNING"]


# --- 4b: concurrent workers share the parent -------------------------------------------------


@pytest.mark.slow
def test_concurrent_workers_log_under_one_parent(mlflow_env, tmp_path):
    path, name = write_study(tmp_path, "workers")
    cmd = [sys.executable, "-m", "mspe_sweep.run", f"study={path}", "study.n_trials=2",
           "workers=2", "tracking=server", f"tracking.uri={mlflow_env.server_uri}"]
    done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    client = MlflowClient(tracking_uri=mlflow_env.server_uri)
    study = load_optuna_study(name)
    # Deleted runs count too: the driver creates the parent before the workers start, so no
    # worker should ever create (and then delete) one of its own.
    _, parents, children = runs_of(client, name, view=ViewType.ALL)
    assert len(parents) == 1, [p.info.run_id for p in parents]
    parent_id = parents[0].info.run_id
    assert parents[0].info.status == "FINISHED"
    assert study.user_attrs[PARENT_RUN_ID] == parent_id
    runs = by_trial(children)
    assert sorted(runs) == [t.number for t in study.trials] and len(runs) >= 2
    for trial in study.trials:
        run = runs[trial.number]
        assert trial.state == TrialState.COMPLETE
        assert run.data.tags["mlflow.parentRunId"] == parent_id
        assert run.info.run_id == trial.user_attrs["mlflow_run_id"]
        assert run.info.status == "FINISHED"
    owners = {t.system_attrs.get("owner") for t in study.trials}
    print(f"workers: {len(owners)} owner process(es) for {len(study.trials)} trials")


# --- 5: tracking outages cost seconds, never trials ------------------------------------------


@pytest.fixture(scope="module")
def untracked_seconds(tmp_path_factory):
    """Wall time of the 3-trial tiny study with ``tracking=none`` (the outage baseline).

    Run once per module in its own MSPE_HOME; the trials' params and seeds depend only on the
    study's seed and space, not its name, so the outage runs below train the same trials.
    """
    # What the study's plots import lazily (seconds on 2 cores) must not count as baseline.
    import matplotlib.pyplot  # noqa: F401
    import optuna.importance  # noqa: F401
    import optuna.visualization.matplotlib  # noqa: F401

    root = tmp_path_factory.mktemp("untracked")
    path, _ = write_study(root, "untracked")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MSPE_HOME", str(root / "mspe_home"))
        result, seconds = timed_sweep(f"study={path}", "tracking=none")
    assert result.complete == 3
    return seconds


@pytest.fixture
def failed_call_seconds(monkeypatch):
    """Seconds spent in MLflow calls that failed or were skipped (the outage's direct cost)."""
    spent = [0.0]
    call = guard.Guard.call

    def timed(self, what, fn, *args, **kwargs):
        started = time.monotonic()
        ok, result = call(self, what, fn, *args, **kwargs)
        if not ok:
            spent[0] += time.monotonic() - started
        return ok, result

    monkeypatch.setattr(guard.Guard, "call", timed)
    return spent


def crash(proxy) -> None:
    """The server process dies: its connections are reset and new ones refused.

    ``Proxy.stop`` alone close()s the live connections, which does not wake the threads
    blocked in recv() on them, so an in-flight request would hang until MLflow's read timeout
    (a network partition rather than a crash); shut them down first.
    """
    for conn in list(proxy.conns):
        try:
            conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    proxy.stop()


def test_dead_server_costs_seconds_and_one_warning(untracked_seconds, tmp_path,
                                                   captured_logs, failed_call_seconds):
    path, name = write_study(tmp_path, "dead-server")
    uri = f"http://127.0.0.1:{free_port()}"
    result, seconds = timed_sweep(f"study={path}", "tracking=server", f"tracking.uri={uri}")

    assert (result.complete, result.pruned, result.failed) == (3, 0, 0)
    assert all(t.state == TrialState.COMPLETE for t in load_optuna_study(name).trials)
    overhead = seconds - untracked_seconds
    print(f"dead server: {seconds:.1f} s vs tracking=none {untracked_seconds:.1f} s "
          f"(+{overhead:.1f} s; {failed_call_seconds[0]:.1f} s in failed MLflow calls)")
    assert overhead < MAX_OUTAGE_OVERHEAD_S, (seconds, untracked_seconds)
    assert failed_call_seconds[0] < 6, failed_call_seconds
    warnings_ = tracking_warnings(captured_logs)
    assert len(warnings_) == 1, warnings_
    assert uri in warnings_[0] and "unreachable" in warnings_[0]


def test_server_lost_mid_study_costs_seconds(untracked_seconds, mlflow_env, proxy, tmp_path,
                                             captured_logs, failed_call_seconds):
    path, name = write_study(tmp_path, "mid-outage")
    client = MlflowClient(tracking_uri=mlflow_env.server_uri)  # direct, not via the proxy
    stopped = threading.Event()
    quit_ = threading.Event()

    def stop_after_first_trial() -> None:
        while not quit_.wait(0.3):
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                continue
            found = client.search_runs([experiment.experiment_id],
                                       "attributes.run_name = 'trial-0'")
            if found and found[0].info.status == "FINISHED":
                crash(proxy)
                stopped.set()
                return

    watcher = threading.Thread(target=stop_after_first_trial, daemon=True)
    watcher.start()
    try:
        result, seconds = timed_sweep(f"study={path}", "tracking=server",
                                      f"tracking.uri=http://127.0.0.1:{proxy.port}")
    finally:
        quit_.set()
        watcher.join(timeout=10)
        if stopped.is_set():
            proxy.start()  # the fixture's teardown stops it again

    assert stopped.is_set(), "trial-0 never showed up FINISHED in MLflow"
    assert (result.complete, result.pruned, result.failed) == (3, 0, 0)
    study = load_optuna_study(name)
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    overhead = seconds - untracked_seconds
    print(f"mid-study outage: {seconds:.1f} s vs tracking=none {untracked_seconds:.1f} s "
          f"(+{overhead:.1f} s; {failed_call_seconds[0]:.1f} s in failed MLflow calls)")
    assert overhead < MAX_OUTAGE_OVERHEAD_S, (seconds, untracked_seconds)
    assert failed_call_seconds[0] < 6, failed_call_seconds
    warnings_ = tracking_warnings(captured_logs)
    assert len(warnings_) == 1 and "unreachable" in warnings_[0], warnings_

    # What MLflow got before the outage is complete: trial 0 is fully tracked.
    _, parents, children = runs_of(client, name)
    first = by_trial(children)[0]
    assert first.info.status == "FINISHED"
    assert first.info.run_id == study.trials[0].user_attrs["mlflow_run_id"]
    assert artifact_paths(client, first.info.run_id) >= {"config.yaml", "checkpoints/best.pt"}
    assert len(parents) == 1
