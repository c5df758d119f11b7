"""`workers=4`: four local worker processes on one storage (SQLite, then PostgreSQL), and the
crash recovery that several workers on one host run concurrently."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
from optuna.trial import TrialState
from sqlalchemy.engine import make_url

import mspe_sweep.sweep.worker as worker_module
from mspe_sweep.sweep.records import OWNER
from mspe_sweep.sweep.storage import build_storage
from mspe_sweep.sweep.worker import Worker, WorkerLimits, recover_abandoned_trials

WORKERS, N_TRIALS = 4, 8


def workers_study(sweep, directory: Path, name: str) -> Path:
    # One searched param: the end-of-run plots skip the (slow) parameter importances.
    return sweep.write_study(directory, name=name, set_fixed=["pe=none"],
                             params={"training.optimizer.lr": "tag(log, interval(1e-4, 1e-2))"})


def check_parallel_study(study: optuna.Study, code: int, output: str) -> None:
    assert code == 0, output
    assert "database is locked" not in output.lower()
    assert "Traceback" not in output
    trials = study.get_trials(deepcopy=False)
    by_state = {state: [t for t in trials if t.state == state] for state in TrialState}
    assert not by_state[TrialState.FAIL], [t.user_attrs for t in by_state[TrialState.FAIL]]
    assert not by_state[TrialState.RUNNING] and not by_state[TrialState.WAITING]
    finished = by_state[TrialState.COMPLETE] + by_state[TrialState.PRUNED]
    # The budget is checked before each trial: at most workers - 1 trials overshoot it.
    assert N_TRIALS <= len(finished) <= N_TRIALS + WORKERS - 1, len(finished)
    assert sorted(t.number for t in trials) == list(range(len(trials)))
    run_dirs = [t.user_attrs["checkpoint_dir"] for t in trials]
    assert len(set(run_dirs)) == len(run_dirs), run_dirs
    for trial in by_state[TrialState.COMPLETE]:
        results = json.loads((Path(trial.user_attrs["checkpoint_dir"]) / "results.json")
                             .read_text())
        assert results["best_value"] == trial.value  # nobody else wrote into its directory
    owners = {t.system_attrs["owner"] for t in trials}
    assert len(owners) >= 2, owners  # the trials really were shared out


@pytest.mark.slow
def test_four_workers_share_a_sqlite_study(sweep, tmp_path):
    home = tmp_path / "home"
    path = workers_study(sweep, tmp_path, "tiny-workers")
    args = [f"study={path}", "tracking=none", f"workers={WORKERS}", f"study.n_trials={N_TRIALS}"]
    code, output = sweep.run_sub("mspe_sweep.run", args, home, tmp_path / "run.log", timeout=420)

    study = sweep.load_study("tiny-workers", sweep.sqlite_url(home / "optuna.db"))
    check_parallel_study(study, code, output)
    assert f"workers:  {WORKERS}" in output
    assert (home / "runs" / "tiny-workers" / "plots" / "trials.csv").is_file()

    # The report, as a command of its own.
    code, report = sweep.run_sub("mspe_sweep.report", [f"study={path}"], home,
                                 tmp_path / "report.log", timeout=120)
    assert code == 0, report
    best = study.best_trial
    assert f"best trial {best.number}: val/mae {best.value:.4f}" in report


@pytest.mark.slow
@pytest.mark.postgres
def test_four_workers_share_a_postgres_study(sweep, tmp_path, postgres_url):
    name = f"tiny-pg-{uuid.uuid4().hex[:8]}"
    path = workers_study(sweep, tmp_path, name)
    try:
        args = [f"study={path}", "tracking=none", "storage=postgres",
                f"storage.url={postgres_url}", f"workers={WORKERS}", f"study.n_trials={N_TRIALS}"]
        code, output = sweep.run_sub("mspe_sweep.run", args, tmp_path / "home",
                                     tmp_path / "run.log", timeout=420)
        assert make_url(postgres_url).password not in output
        check_parallel_study(sweep.load_study(name, postgres_url), code, output)
    finally:
        if name in sweep.study_names(postgres_url):
            optuna.delete_study(study_name=name, storage=postgres_url)


class OtherWorkerRecoversWhileSampling(optuna.samplers.RandomSampler):
    """Sampling happens after a WAITING trial was popped (now RUNNING) and before the worker's
    objective runs: this sampler lets a second worker on the same host, starting up just then,
    run its crash recovery in that window."""

    def __init__(self) -> None:
        super().__init__(seed=0)
        self.recovered: list[int] = []

    def before_trial(self, study, trial) -> None:
        super().before_trial(study, trial)
        self.recovered.append(recover_abandoned_trials(study, max_retry=3, grace_period=90))


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")
def test_a_popped_retry_is_not_mistaken_for_a_dead_trial_by_another_worker(sweep, tmp_path):
    storage = build_storage(sweep.sqlite_url(tmp_path / "optuna.db"), heartbeat_interval=30,
                            grace_period=90, max_retry=3)
    sampler = OtherWorkerRecoversWhileSampling()
    study = optuna.create_study(study_name="race", storage=storage, sampler=sampler)
    crashed = study.ask()
    crashed.suggest_float("x", 0.0, 1.0)
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid on this host that no longer exists: its worker was SIGKILLed
    storage.set_trial_system_attr(crashed._trial_id, OWNER,
                                  f"{socket.gethostname()}:{gone.pid}:{crashed.number}")
    limits = WorkerLimits(n_trials=1, timeout=None, max_consecutive_failures=5, max_retry=3,
                          keep_checkpoints=3, grace_period=90)

    # This worker recovers trial 0 (FAIL + a WAITING retry) and pops the retry; the other
    # worker's recovery runs while the retry is being sampled.
    Worker(study, lambda trial: trial.suggest_float("x", 0.0, 1.0), limits).run()

    # recovered[0] is the test's own ask() above; [1] is the other worker, mid-sampling.
    assert sampler.recovered == [0, 0], "the other worker failed the live, just-popped retry"
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert study.trials[1].params == study.trials[0].params


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")
def test_a_trial_orphaned_before_its_first_heartbeat_does_not_hang_the_workers(
        sweep, tmp_path, monkeypatch):
    # A worker killed (SIGKILL, OOM, Ctrl-C) after Optuna's ask() made its trial RUNNING but
    # before the objective started (sampling happens in between) leaves a RUNNING trial with
    # no owner and no heartbeat. Every later worker reaches the budget and then waits for that
    # trial "to finish or go stale"; it must go stale after the grace period.
    storage = build_storage(sweep.sqlite_url(tmp_path / "optuna.db"), heartbeat_interval=1,
                            grace_period=1, max_retry=3)
    study = optuna.create_study(study_name="orphan", storage=storage,
                                sampler=optuna.samplers.RandomSampler(seed=0))
    done = study.ask()
    done.suggest_float("x", 0.0, 1.0)
    study.tell(done, 0.5)  # the budget (n_trials=1) is reached
    orphan = study.ask()
    orphan.suggest_float("x", 0.0, 1.0)
    polls: list[float] = []

    def bounded_poll(seconds: float) -> None:
        polls.append(seconds)
        if len(polls) > 10:  # 5 s: five times the grace period
            raise AssertionError(f"the worker still waits for trial {orphan.number}, which has "
                                 "no heartbeat and no owner, after 10 polls")
        time.sleep(0.5)

    # Only the worker module's clock is replaced (its polls); Optuna's threads keep the real one.
    monkeypatch.setattr(worker_module, "time", SimpleNamespace(sleep=bounded_poll,
                                                                monotonic=time.monotonic))
    limits = WorkerLimits(n_trials=1, timeout=None, max_consecutive_failures=5, max_retry=3,
                          keep_checkpoints=3, grace_period=1)

    Worker(study, lambda trial: trial.suggest_float("x", 0.0, 1.0), limits).run()

    assert study.trials[orphan.number].state == TrialState.FAIL
