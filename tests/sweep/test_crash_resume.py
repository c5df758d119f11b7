"""A worker killed mid-trial: SIGKILL (crash) and SIGTERM (polite stop), then the same command
again. Deterministic kill points: the trial's ``last.pt`` holding epoch 2 of 5."""

from __future__ import annotations

import re
import signal
import time

import pytest
from optuna.trial import TrialState

from mspe_sweep.training import read_checkpoint

pytestmark = pytest.mark.slow

EPOCHS = 5
# 600 training graphs make an epoch long enough (~1 s) that a kill lands mid-trial.
RUN_ARGS = ["tracking=none", "training.deterministic=true", "dataset.train_size=600"]


def crash_study(sweep, directory):
    # Every point of this space has its best validation epoch after the kill point (epoch 4
    # of 5 with 600 graphs), so the trial's value itself depends on the resumed epochs.
    return sweep.write_study(directory, name="crash", n_trials=1, pruner="none",
                             set_fixed=[f"training.epochs={EPOCHS}"],
                             params={"training.optimizer.lr": "choice(0.0003, 0.001)",
                                     "pe": "choice(none, rwse)"})


def test_sigkilled_worker_is_recovered_and_resumes_bit_exact(sweep, tmp_path, capsys, monkeypatch):
    path = crash_study(sweep, tmp_path)
    home = tmp_path / "home"
    args = [f"study={path}", *RUN_ARGS]
    url = sweep.sqlite_url(home / "optuna.db")
    last = home / "runs" / "crash" / "trial-0" / "last.pt"

    proc = sweep.Proc("mspe_sweep.run", args, home, tmp_path / "killed.log")
    sweep.wait_for_checkpoint_epoch(proc, last, 2)
    proc.popen.send_signal(signal.SIGKILL)
    proc.popen.wait()  # reaped: its pid no longer exists
    proc.kill()
    epoch = int(read_checkpoint(last)["epoch"])
    assert 2 <= epoch < EPOCHS, f"the kill landed after the trial ended:\n{proc.output}"
    dead = sweep.load_study("crash", url).trials
    assert [t.state for t in dead] == [TrialState.RUNNING]  # nobody told the storage

    code, output = sweep.run_sub("mspe_sweep.run", args, home, tmp_path / "restarted.log")

    assert code == 0, output
    trials = sweep.load_study("crash", url).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE], output
    failed, retry = trials
    assert retry.params == failed.params == dead[0].params
    assert retry.system_attrs["failed_trial"] == 0
    assert retry.user_attrs["seed"] == failed.user_attrs["seed"]
    assert retry.user_attrs["checkpoint_dir"] == str(last.parent)
    assert f"trial 1 resumes trial-0 from its epoch-{epoch} checkpoint" in output
    assert retry.user_attrs["epochs_run"] == EPOCHS

    # The same study, never interrupted, in another MSPE_HOME: same params, same seed, and
    # the resumed trial's value to the last bit.
    baseline_home = tmp_path / "baseline"
    monkeypatch.setenv("MSPE_HOME", str(baseline_home))
    baseline = sweep.run_cli(capsys, args)
    assert baseline.code == 0, baseline.err
    clean = sweep.load_study("crash", sweep.sqlite_url(baseline_home / "optuna.db")).trials
    assert [t.state for t in clean] == [TrialState.COMPLETE]
    assert clean[0].params == retry.params
    assert clean[0].user_attrs["seed"] == retry.user_attrs["seed"]
    assert retry.value == clean[0].value
    assert retry.intermediate_values == clean[0].intermediate_values
    for key in ("best_epoch", "test_metric", "epochs_run"):
        assert retry.user_attrs[key] == clean[0].user_attrs[key], key


def test_sigterm_stops_promptly_and_the_next_run_resumes(sweep, tmp_path, capsys, monkeypatch):
    path = crash_study(sweep, tmp_path)
    home = tmp_path / "home"
    monkeypatch.setenv("MSPE_HOME", str(home))
    args = [f"study={path}", *RUN_ARGS]
    url = sweep.sqlite_url(home / "optuna.db")
    last = home / "runs" / "crash" / "trial-0" / "last.pt"

    proc = sweep.Proc("mspe_sweep.run", args, home, tmp_path / "terminated.log")
    sweep.wait_for_checkpoint_epoch(proc, last, 2)
    sent = time.monotonic()
    proc.popen.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=60)
    stopped_after = time.monotonic() - sent

    assert code == 130, proc.output
    assert stopped_after < 20, stopped_after
    assert proc.output.rstrip().splitlines()[-1] == "interrupted"
    assert "Traceback" not in proc.output
    epoch = int(read_checkpoint(last)["epoch"])
    assert 2 <= epoch < EPOCHS, f"SIGTERM landed after the trial ended:\n{proc.output}"
    trials = sweep.load_study("crash", url).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
    interrupted, waiting = trials
    assert interrupted.user_attrs["interrupted"] is True
    assert interrupted.user_attrs["fail_reason"] is None
    assert waiting.params == interrupted.params
    assert waiting.system_attrs["failed_trial"] == 0
    assert last.is_file()

    resumed = sweep.run_cli(capsys, args)

    assert resumed.code == 0, resumed.err
    assert f"trial 1 resumes trial-0 from its epoch-{epoch} checkpoint" in resumed.err
    trials = sweep.load_study("crash", url).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert trials[1].user_attrs["epochs_run"] == EPOCHS
    assert trials[1].user_attrs["interrupted"] is False
    assert sorted(trials[1].intermediate_values) == list(range(1, EPOCHS + 1))
    assert re.search(r"study crash: 1/1 done \(0 pruned, 1 failed\)", resumed.out)
