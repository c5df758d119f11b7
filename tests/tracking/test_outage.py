"""A tracking outage never fails a trial: one warning, no stalls, backfill after recovery."""

from __future__ import annotations

import logging
import time

import pytest
from _tracking_helpers import BASE_YAML, SPEC, fit, free_port, steps
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from mspe_sweep.tracking import build_tracker
from mspe_sweep.tracking.guard import Guard


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def outage_warnings(caplog):
    return [r for r in caplog.records
            if r.levelno == logging.WARNING and "unreachable" in r.getMessage()]


def test_dead_server_costs_seconds_and_one_warning(mspe_home, tmp_path, caplog):
    uri = f"http://127.0.0.1:{free_port()}"
    (tmp_path / "best.pt").write_bytes(b"weights")
    started = time.monotonic()
    tracker = build_tracker("server", uri, mspe_home)
    assert tracker.start_study("s", None, SPEC, BASE_YAML) is None
    for number in range(3):
        run = tracker.start_trial(number, {"lr": 0.1}, ["dataset=synthetic"], [], {},
                                  retry_of_run_id="abc" if number else None)
        run.log_history({"epoch": [1], "val/mae": [1.0]})
        fit([run.callback()])
        run.finish("COMPLETE", value=0.5, artifacts={"best.pt": tmp_path / "best.pt"})
        assert run.run_id is None
        tracker.update_study(None, {"value": 0.5, "trial": number})
    tracker.finish_study(None, [tmp_path / "best.pt"])
    elapsed = time.monotonic() - started
    assert len(outage_warnings(caplog)) == 1
    assert uri in outage_warnings(caplog)[0].getMessage()
    assert "Optuna" in outage_warnings(caplog)[0].getMessage()
    assert elapsed < 8, f"outage cost {elapsed:.1f} s"


def test_server_outage_mid_trial_is_backfilled_after_recovery(proxy, mspe_home, caplog):
    clock = FakeClock()
    tracker = build_tracker("server", f"http://127.0.0.1:{proxy.port}", mspe_home)
    tracker.guard.clock = clock
    parent = tracker.start_study("outage-study", None, SPEC, BASE_YAML)
    run = tracker.start_trial(0, {}, [], [], {})
    run.log_history({"epoch": [1], "val/mae": [1.0]})

    proxy.stop()
    run.log_history({"epoch": [2], "val/mae": [2.0]})
    run.log_history({"epoch": [3], "val/mae": [3.0]})  # skipped without a network attempt
    late = tracker.start_trial(1, {}, [], [], {})
    assert tracker.guard.is_down and late.run_id is None

    proxy.start()
    clock.now += 30  # before the probe interval: still paused
    run.log_history({"epoch": [4], "val/mae": [4.0]})
    assert tracker.guard.is_down
    clock.now += 60
    run.finish("COMPLETE", value=1.0)
    late.finish("FAIL", reason="boom")
    tracker.finish_study(parent, [])

    client = tracker.client
    assert steps(client, run.run_id, "val/mae") == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0)]
    assert client.get_run(run.run_id).info.status == "FINISHED"
    assert client.get_run(late.run_id).data.tags["mspe.fail_reason"] == "boom"
    assert client.get_run(late.run_id).data.tags["mlflow.parentRunId"] == parent
    assert len(outage_warnings(caplog)) == 1
    assert any("reachable again" in r.getMessage() for r in caplog.records)


def test_guard_probes_at_most_every_interval():
    clock, calls = FakeClock(), []

    def down():
        calls.append(clock.now)
        raise MlflowException("API request to http://x failed with exception refused")

    guard = Guard("http://x", probe=None, probe_interval=60, clock=clock)
    assert guard.call("a", down) == (False, None) and guard.is_down
    for _ in range(6):
        clock.now += 10
        guard.call("b", down)
    assert calls == [1000.0, 1060.0]
    clock.now += 60
    assert guard.call("c", lambda: 42) == (True, 42) and not guard.is_down


def test_guard_rejected_values_do_not_open_the_breaker(caplog):
    def rejected():
        raise MlflowException("bad param", error_code=INVALID_PARAMETER_VALUE)

    guard = Guard("http://x")
    assert guard.call("log params", rejected) == (False, None)
    assert not guard.is_down
    assert "log params failed and was skipped" in caplog.text
    with pytest.raises(KeyboardInterrupt):
        guard.call("x", lambda: (_ for _ in ()).throw(KeyboardInterrupt()))
