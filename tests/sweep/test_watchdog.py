"""Hang-safe trials (``study.trial_timeout``, ``study.epoch_timeout``): a trial that hangs is
killed with its whole process group, ends FAIL with its reason and is not retried, and the
worker goes on; trials that do not hang train as in-process.

The child process runs a training from ``watchdog_targets.py`` (next to this file): fake ones
start in a fraction of a second; the real ones (``slow``) pay for importing torch there.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from mspe_sweep.config import compose_run_config
from mspe_sweep.pipeline import train_from_config
from mspe_sweep.sweep import trial_process, watchdog
from mspe_sweep.sweep.watchdog import Limits, TrialProcessError, TrialTimeout, fail_reason
from mspe_sweep.training import Callback, read_checkpoint

HERE = Path(__file__).resolve().parent
TINY_RUN = ["dataset=synthetic", "model.hidden_dim=32", "model.num_layers=1", "pe.dim=8",
            "training.batch_size=16", "training.scheduler.warmup_epochs=0",
            "training.deterministic=true", "training.progress=false"]


@pytest.fixture
def child(monkeypatch, tmp_path):
    """Lets the child import ``watchdog_targets``; ``child.use(name)`` picks its training
    (``watchdog_targets:<name>``, or ``module:name``) and
    ``child.pids()`` lists the pids its processes noted."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        p for p in (str(HERE), os.environ.get("PYTHONPATH")) if p))
    pid_file = tmp_path / "pids"
    pid_file.touch()
    monkeypatch.setenv("WATCHDOG_PIDS", str(pid_file))

    class Child:
        def use(self, target: str) -> None:
            if ":" not in target:
                target = f"watchdog_targets:{target}"
            monkeypatch.setattr(watchdog, "TRAIN_TARGET", target)

        def pids(self) -> list[int]:
            return [int(line) for line in pid_file.read_text().split()]

    return Child()


def alive(pid: int) -> bool:
    """Running (a zombie no one reaped yet counts as dead: it holds no memory and no GPU)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def wait_until_dead(pids: list[int], seconds: float = 5.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


class Recorder:
    """Every Trainer hook call as (hook, epoch, metrics, best_metric, best_epoch)."""

    def __init__(self, raise_at: int | None = None) -> None:
        self.calls: list[tuple] = []
        self.raise_at = raise_at

    def _note(self, hook, trainer, epoch=None, metrics=None) -> None:
        self.calls.append((hook, epoch, metrics, trainer.best_metric, trainer.best_epoch))

    def on_fit_start(self, trainer):
        self._note("on_fit_start", trainer)

    def on_train_epoch_end(self, trainer, epoch, metrics):
        # Wall-clock keys differ from run to run; everything else must not.
        self._note("on_train_epoch_end", trainer, epoch,
                   {k: v for k, v in metrics.items() if k not in ("epoch_seconds",
                                                                   "samples_per_second")})

    def on_validation_recorded(self, trainer, epoch, metrics):
        self._note("on_validation_recorded", trainer, epoch, metrics)

    def on_checkpoint_saved(self, trainer, path, kind):
        self._note("on_checkpoint_saved", trainer, metrics={"file": Path(path).name,
                                                            "kind": kind})

    def on_eval_epoch_end(self, trainer, epoch, metrics):
        self._note("on_eval_epoch_end", trainer, epoch, metrics)
        if epoch == self.raise_at:
            raise optuna.TrialPruned(f"pruned at epoch {epoch}")

    def on_fit_end(self, trainer, history):
        self._note("on_fit_end", trainer, metrics={"epochs": history["epoch"]})


# --- the watched training itself --------------------------------------------------------------

def test_no_limit_means_no_child():
    assert watchdog.watched_training(None, None) is None
    assert watchdog.watched_training(5, None) is not None


def test_every_trainer_hook_is_relayed():
    hooks = {name for name in vars(Callback) if name.startswith("on_")}
    assert set(trial_process.HOOKS) == hooks
    assert all(name in vars(trial_process.HookRelay) for name in hooks)


@pytest.mark.parametrize("target", ["sleep_forever", "sleep_forever_ignoring_sigterm"])
def test_trial_timeout_kills_the_child_and_its_process_group(child, target, tmp_path,
                                                             monkeypatch):
    monkeypatch.setattr(watchdog, "KILL_GRACE_S", 1.0)
    child.use(target)
    started = time.monotonic()

    with pytest.raises(TrialTimeout) as caught:
        watchdog.train_watched(None, tmp_path / "trial-0", Limits(5, None))

    elapsed = time.monotonic() - started
    assert fail_reason(caught.value) == "timeout after 5s"
    assert 5 <= elapsed < 5 + 1 + 3, elapsed  # the limit, the SIGKILL grace, slack
    pids = child.pids()
    assert len(pids) == 2  # the trial process and its "data-loader worker"
    assert not wait_until_dead(pids), "a process of the hung trial survived"


@pytest.mark.parametrize("target, expected", [
    ("raise_value_error", "ValueError: bad value in trial-3"),
    ("raise_unpicklable", "Unpicklable: cannot travel"),
    ("exit_silently", "trial process exited with code 3 without a result"),
    ("die_by_sigkill", "trial process killed by SIGKILL"),
])
def test_a_failing_child_fails_the_trial_with_its_reason(child, target, expected, tmp_path):
    child.use(target)
    with pytest.raises(Exception) as caught:
        watchdog.train_watched(None, tmp_path / "trial-3", Limits(60, 60))
    assert fail_reason(caught.value) == expected
    # The child's own exception comes back as itself when it can travel.
    expected_type = ValueError if target == "raise_value_error" else TrialProcessError
    assert type(caught.value) is expected_type


def test_a_callback_that_raises_ends_the_child_at_that_hook(child, tmp_path):
    child.use("fake_training")
    cfg = compose_run_config([*TINY_RUN, "training.epochs=3"])
    recorder = Recorder(raise_at=2)

    with pytest.raises(optuna.TrialPruned, match="pruned at epoch 2"):
        watchdog.train_watched(cfg, tmp_path / "trial-5", Limits(60, None),
                               callbacks=[recorder])

    epochs = [c[1] for c in recorder.calls if c[0] == "on_eval_epoch_end"]
    assert epochs == [1, 2]  # nothing after the hook that raised


def test_the_child_dies_with_its_worker(child, tmp_path):
    """``kill -9`` of the worker: its trial process and the process group go within a second
    or so (no orphan keeps training, or holding a GPU, next to the trial's retry)."""
    child.use("sleep_forever")
    script = textwrap.dedent(f"""
        from pathlib import Path
        from mspe_sweep.sweep import trial_process, watchdog
        watchdog.TRAIN_TARGET = "watchdog_targets:sleep_forever"
        watchdog.train_watched(None, Path({str(tmp_path / 'trial-0')!r}),
                               watchdog.Limits(600, None))
    """)
    worker = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 60
        while len(child.pids()) < 2:
            assert worker.poll() is None and time.monotonic() < deadline, "no trial process"
            time.sleep(0.05)
        worker.kill()
        worker.wait()
        assert not wait_until_dead(child.pids()), "the trial process outlived its worker"
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


@pytest.mark.slow  # the child imports torch
def test_a_watched_training_is_the_in_process_training(child, tmp_path, caplog):
    """Same result to the last bit, same hook calls in the same order with the same trainer
    counters, and the child's log records reach this process's loggers."""
    cfg = compose_run_config([*TINY_RUN, "training.epochs=2"])
    caplog.set_level(logging.INFO, logger="mspe_sweep")
    here = Recorder()
    expected = train_from_config(cfg, tmp_path / "here", callbacks=[here])
    here_logs = [r.getMessage() for r in caplog.records if r.name == "mspe_sweep.pipeline"]
    caplog.clear()
    there = Recorder()

    result = watchdog.train_watched(cfg, tmp_path / "there", Limits(600, 600),
                                    callbacks=[there])

    assert result.best_value == expected.best_value
    assert result.history["val/mae"] == expected.history["val/mae"]
    assert (result.best_epoch, result.epochs_run, result.test_metrics) == (
        expected.best_epoch, expected.epochs_run, expected.test_metrics)
    assert there.calls == here.calls
    assert [c[0] for c in there.calls].count("on_eval_epoch_end") == 2
    there_logs = [r.getMessage() for r in caplog.records if r.name == "mspe_sweep.pipeline"]
    assert there_logs == here_logs and any(m.startswith("data:") for m in there_logs)


@pytest.mark.slow  # the child imports torch
def test_epoch_timeout_stops_a_training_whose_epoch_never_ends(child, tmp_path, monkeypatch):
    """Real training; epoch 2 hangs: the trial fails after the epoch window, with epoch 1
    reported and checkpointed, and its process is gone."""
    child.use("watchdog_hang:hang_in_epoch")
    monkeypatch.setenv("WATCHDOG_HANG_EPOCH", "2")
    cfg = compose_run_config([*TINY_RUN, "training.epochs=3"])
    recorder = Recorder()

    with pytest.raises(TrialTimeout) as caught:
        # The window must hold the data set-up and epoch 1 on a busy machine.
        watchdog.train_watched(cfg, tmp_path / "trial-0", Limits(None, 20),
                               callbacks=[recorder])

    assert str(caught.value) == "no epoch finished within 20s"
    assert [c[1] for c in recorder.calls if c[0] == "on_eval_epoch_end"] == [1]
    assert read_checkpoint(tmp_path / "trial-0" / "last.pt")["epoch"] == 1
    assert len(child.pids()) == 1 and not wait_until_dead(child.pids())


# --- in a study -------------------------------------------------------------------------------

def test_a_hung_trial_fails_and_the_worker_goes_on(sweep, child, tmp_path, capsys, mspe_home):
    """trial_timeout in the study file; trial 0 hangs after its first epoch (checkpointed,
    reported to the trial and to MLflow)."""
    child.use("fake_training")
    path = sweep.write_study(tmp_path, n_trials=2, trial_timeout=8)

    result = sweep.run_cli(capsys, [f"study={path}", "tracking=local"])

    assert result.code == 0, result.err
    study = sweep.load_study("tiny", sweep.sqlite_url(mspe_home / "optuna.db"))
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE,
                                         TrialState.COMPLETE]
    hung = trials[0]
    assert hung.user_attrs["fail_reason"] == "timeout after 8s"
    assert "trial 0 FAIL (timeout after 8s) | " in result.err
    assert not any(t.system_attrs.get("failed_trial") == 0 for t in trials)  # not retried
    # Like any failed trial's: its checkpoints are deleted, its directory stays.
    run_dir = Path(hung.user_attrs["checkpoint_dir"])
    assert run_dir.is_dir() and not list(run_dir.glob("*.pt"))
    assert not wait_until_dead(child.pids())
    assert hung.intermediate_values == {1: pytest.approx(hung.params["training.optimizer.lr"]
                                                         * 100)}
    for trial in trials[1:]:  # reports went through the child to the trial and the pruner
        assert trial.intermediate_values == {1: pytest.approx(trial.value * 2),
                                             2: pytest.approx(trial.value)}
        assert trial.user_attrs["epochs_run"] == 2
        assert f"trial {trial.number} COMPLETE" in result.err
    # MLflow: the epochs each trial finished; the hung one FAILED with its reason.
    client = MlflowClient(tracking_uri=f"sqlite:///{mspe_home / 'mlflow.db'}")
    runs = {int(r.data.tags["mspe.trial"]): r for r in client.search_runs(
        [client.get_experiment_by_name("tiny").experiment_id], "tags.`mspe.role` = 'trial'")}
    assert sorted(runs) == [0, 1, 2]
    assert (runs[0].info.status, runs[0].data.tags["mspe.fail_reason"]) == (
        "FAILED", "timeout after 8s")
    for number, epochs in ((0, [1]), (1, [1, 2]), (2, [1, 2])):
        for key in ("val/mae", "train/loss"):
            history = client.get_metric_history(runs[number].info.run_id, key)
            assert sorted(m.step for m in history) == epochs, (number, key)
    assert {runs[1].info.status, runs[2].info.status} == {"FINISHED"}


def test_epoch_timeout_on_the_command_line_counts_toward_max_failures(sweep, child, tmp_path,
                                                                      capsys, mspe_home):
    child.use("sleep_forever")
    path = sweep.write_study(tmp_path, n_trials=3, max_consecutive_failures=2)

    result = sweep.run_cli(capsys, [f"study={path}", "tracking=none", "study.epoch_timeout=2"])

    assert result.code == 2, result.err
    assert result.error_lines == [
        ("error: study stopped after 2 consecutive failed trials (max_consecutive_failures); "
         "last: trial 1: no epoch finished within 2s")]
    study = sweep.load_study("tiny", sweep.sqlite_url(mspe_home / "optuna.db"))
    assert [(t.state, t.user_attrs["fail_reason"]) for t in study.trials] == [
        (TrialState.FAIL, "no epoch finished within 2s")] * 2
    assert not wait_until_dead(child.pids())


def test_without_limits_trials_train_in_the_worker(sweep, tmp_path, capsys, monkeypatch):
    def no_child(*args, **kwargs):
        raise AssertionError("a trial process was started without a limit")

    monkeypatch.setattr(watchdog, "TrialProcess", no_child)
    path = sweep.write_study(tmp_path, n_trials=1)
    result = sweep.run_cli(capsys, [f"study={path}", "tracking=none"])
    assert result.code == 0, result.err
    assert "trial 0 COMPLETE" in result.err


@pytest.mark.parametrize("args, changes, error", [
    (["study.trial_timeout=0"], {}, "study.trial_timeout=0.0: must be a number of seconds > 0"),
    (["study.epoch_timeout=abc"], {}, "study.epoch_timeout"),
    ([], {"epoch_timeout": -5}, "epoch_timeout: must be a number of seconds > 0, or null"),
    ([], {"trial_timeout": "1h"}, "trial_timeout: must be a number of seconds > 0, or null"),
])
def test_bad_limits_are_one_line_errors(sweep, tmp_path, capsys, args, changes, error):
    path = sweep.write_study(tmp_path, **changes)
    result = sweep.run_cli(capsys, [f"study={path}", "tracking=none", *args])
    assert result.code == 2
    assert len(result.error_lines) == 1 and error in result.error_lines[0], result.err


# --- a worker stopped by SIGTERM mid-trial ----------------------------------------------------

@pytest.mark.slow
def test_sigterm_kills_the_trial_process_and_requeues_the_trial(sweep, child, tmp_path):
    """As without limits: the trial is queued for a resumed retry; and its process is gone."""
    path = sweep.write_study(tmp_path, n_trials=1, trial_timeout=600)
    home = tmp_path / "home"
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent("""
        import sys
        from mspe_sweep import run
        from mspe_sweep.sweep import trial_process, watchdog
        watchdog.TRAIN_TARGET = "watchdog_targets:sleep_forever"
        sys.exit(run.main(sys.argv[1:]))
    """))
    env = {**os.environ, "MSPE_HOME": str(home), "OMP_NUM_THREADS": "1"}
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        worker = subprocess.Popen([sys.executable, str(script), f"study={path}",
                                   "tracking=none"], env=env, stdout=out,
                                  stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 240
            while len(child.pids()) < 2:
                assert worker.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            worker.send_signal(signal.SIGTERM)
            code = worker.wait(timeout=60)
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    output = log.read_text()
    assert code == 130, output
    assert not wait_until_dead(child.pids()), output
    trials = sweep.load_study("tiny", sweep.sqlite_url(home / "optuna.db")).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING], output
    assert trials[0].user_attrs["interrupted"] is True
    assert trials[1].system_attrs["failed_trial"] == 0
    assert "trial 0 interrupted; it resumes from its last checkpoint" in output
