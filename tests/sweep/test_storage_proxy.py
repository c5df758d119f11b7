"""``storage=grpc``: Optuna's gRPC storage proxy between the workers and the database.

Fast tests run the proxy's server in this process, over SQLite: addresses, heartbeats through
the proxy (recorded, judged stale only after a grace period of watching, forgotten after a
stall), a proxy restart ridden through, and the proxy's command line. The ``postgres`` tests
start ``python -m mspe_sweep.storage_proxy`` in front of the test PostgreSQL: two workers
finish a tiny study through it, and a worker killed mid-trial on "another host" is found by
its heartbeat through the proxy, failed and retried from its checkpoint.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from urllib.parse import quote

import optuna
import pytest
from optuna.storages import InMemoryStorage
from optuna.storages._grpc.server import make_server  # the server run_grpc_proxy_server runs
from optuna.storages._heartbeat import is_heartbeat_enabled
from optuna.trial import TrialState

from mspe_sweep import storage_proxy
from mspe_sweep.config import REPO_ROOT, compose_typed
from mspe_sweep.errors import StorageUnavailableError, UserError
from mspe_sweep.schema import DriverConfig
from mspe_sweep.sweep import grpc_storage
from mspe_sweep.sweep.grpc_storage import HEARTBEAT_ATTR, HeartbeatGrpcStorage, parse_grpc_url
from mspe_sweep.sweep.outage import OutageTolerantStorage, is_transient
from mspe_sweep.sweep.prepare import storage_url
from mspe_sweep.sweep.storage import build_storage
from mspe_sweep.training import read_checkpoint

# These tests ask for trials outside Study.optimize to drive the heartbeats by hand.
ASKED_BY_HAND = pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Proxy:
    """Optuna's proxy server over a SQLite file, in this process; stop and start at will."""

    def __init__(self, path) -> None:
        self.storage = build_storage(f"sqlite:///{path}", heartbeat_interval=None)
        self.port = free_port()
        self.url = f"grpc://127.0.0.1:{self.port}"
        self.server = None
        self.start()

    def start(self) -> None:
        self.server = make_server(optuna.storages.get_storage(self.storage), "127.0.0.1",
                                  self.port)
        self.server.start()

    def stop(self) -> None:
        self.server.stop(grace=None).wait()


@pytest.fixture
def proxy(tmp_path):
    server = Proxy(tmp_path / "proxied.db")
    yield server
    server.stop()


# --- addresses and settings ----------------------------------------------------------------


@pytest.mark.parametrize("url", ["grpc://10.0.0.7", "grpc://host:port", "grpc://host:70000",
                                 "grpc://host:1300/db", "grpc://u:pw@host:1300", "http://h:1"])
def test_only_grpc_host_port_addresses_are_accepted(url):
    with pytest.raises(UserError, match=r"grpc://<host>:<port>.*mspe_sweep.storage_proxy"):
        parse_grpc_url(url)
    assert parse_grpc_url("grpc://proxy.cluster:13000") == ("proxy.cluster", 13000)


def test_storage_grpc_needs_a_proxy_address(monkeypatch):
    monkeypatch.delenv("MSPE_STORAGE_URL", raising=False)
    driver = compose_typed("sweep", ["storage=grpc"], DriverConfig)
    assert driver.storage.backend == "grpc" and driver.storage.heartbeat_interval == 30
    with pytest.raises(UserError, match=r"storage=grpc needs the storage proxy's address"):
        storage_url(driver)
    monkeypatch.setenv("MSPE_STORAGE_URL", "postgresql+psycopg://u:secret@db/mspe")
    with pytest.raises(UserError) as info:
        storage_url(compose_typed("sweep", ["storage=grpc"], DriverConfig))
    assert "is not the storage proxy's address" in str(info.value)
    assert "secret" not in str(info.value)
    monkeypatch.setenv("MSPE_STORAGE_URL", "grpc://proxy:13000")
    assert storage_url(compose_typed("sweep", ["storage=grpc"], DriverConfig)) == (
        "grpc://proxy:13000")


def test_no_proxy_listening_is_a_one_line_error(monkeypatch):
    monkeypatch.setattr(grpc_storage, "READY_TIMEOUT_S", 0.5)
    with pytest.raises(UserError, match=r"no storage proxy answers at grpc://127.0.0.1:\d+"):
        build_storage(f"grpc://127.0.0.1:{free_port()}")


# --- heartbeats through the proxy ----------------------------------------------------------


def test_workers_get_optunas_heartbeat_machinery_through_the_proxy(proxy):
    storage = build_storage(proxy.url, heartbeat_interval=5, grace_period=20, outage_timeout=60)
    assert isinstance(storage, OutageTolerantStorage)
    assert is_heartbeat_enabled(storage) and storage.settle_s == 20
    study = optuna.create_study(study_name="beats", storage=storage)
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=2)
    assert all(HEARTBEAT_ATTR in trial.system_attrs for trial in study.trials)
    # What the proxy wrote reached the database behind it.
    direct = optuna.load_study(study_name="beats", storage=proxy.storage)
    assert [t.state for t in direct.trials] == [TrialState.COMPLETE] * 2


@ASKED_BY_HAND
def test_a_trial_is_stale_only_after_its_heartbeat_stood_still_for_the_grace_period(proxy):
    storage = HeartbeatGrpcStorage(host="127.0.0.1", port=proxy.port, heartbeat_interval=1,
                                   grace_period=1)
    study = optuna.create_study(study_name="watch", storage=storage)
    dead, live, unclaimed = study.ask(), study.ask(), study.ask()
    storage.record_heartbeat(dead._trial_id)
    storage.record_heartbeat(live._trial_id)
    assert storage._get_stale_trial_ids(study._study_id) == []  # first sight: no verdict
    for _ in range(3):
        time.sleep(0.45)
        storage.record_heartbeat(live._trial_id)
        found = storage._get_stale_trial_ids(study._study_id)
    assert found == [dead._trial_id]  # the silent one; never the one without any heartbeat
    study.tell(unclaimed, 1.0)
    storage.record_heartbeat(unclaimed._trial_id)  # a finished trial's late beat is harmless


@ASKED_BY_HAND
def test_a_proxy_outage_restarts_the_watch_and_is_ridden_through(proxy, caplog):
    # A grace period of 3 s: the checks right after the outage must come within it even on a
    # loaded 2-core machine (with 1 s this test failed there once).
    storage = build_storage(proxy.url, heartbeat_interval=1, grace_period=3, outage_timeout=60)
    study = optuna.create_study(study_name="restart", storage=storage)
    dead = study.ask()
    storage.record_heartbeat(dead._trial_id)
    watcher = storage._inner
    watcher._get_stale_trial_ids(study._study_id)
    time.sleep(3.2)  # the trial has now been silent for longer than the grace period, but:
    proxy.stop()
    restarter = threading.Timer(1.0, proxy.start)
    restarter.start()
    with caplog.at_level(logging.WARNING, logger="mspe_sweep"):
        assert [t.number for t in study.get_trials()] == [0]  # waits for the proxy
    restarter.join()
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("mspe_sweep")]
    assert len(lines) == 2 and "grpc://127.0.0.1" in lines[0] and "reachable again" in lines[1]
    # the outage held every owner's heartbeats up as well: a fresh grace period for all.
    assert watcher._get_stale_trial_ids(study._study_id) == []
    time.sleep(3.2)
    assert watcher._get_stale_trial_ids(study._study_id) == [dead._trial_id]


def test_the_proxy_away_past_the_outage_timeout_is_exit_code_3_material(proxy):
    storage = build_storage(proxy.url, outage_timeout=1)
    proxy.stop()
    with pytest.raises(StorageUnavailableError, match=r"grpc://127.0.0.1:\d+ has been unreach"
                       ) as info:
        storage.get_all_studies()
    assert is_transient(info.value.__cause__)


# --- the proxy's command -------------------------------------------------------------------


@pytest.mark.parametrize("args, message", [
    (["foo=1"], "unexpected argument 'foo=1'"),
    (["storage=grpc", "storage.url=grpc://h:1"], "the proxy serves the database itself"),
    (["proxy.port=0"], "proxy.port=0: must be >= 1"),
    (["storage.outage_timeout=0"], "storage.outage_timeout=0"),
    (["proxy.colour=red"], "proxy.colour"),
])
def test_proxy_command_line_mistakes_are_one_line_errors(args, message, capsys):
    assert storage_proxy.main(args) == 2
    assert message in capsys.readouterr().err


def test_the_proxy_exits_3_when_its_database_stays_away(monkeypatch, capsys):
    class Unreachable(InMemoryStorage):
        def get_all_studies(self):
            raise storage_proxy.StorageUnavailableError("the study's database is gone")

    def exit_(code):
        raise SystemExit(code)

    monkeypatch.setattr(storage_proxy.os, "_exit", exit_)
    backend = storage_proxy.ExitOnGiveUp(Unreachable(), 1)
    with pytest.raises(SystemExit) as info:
        backend.get_all_studies()
    assert info.value.code == 3
    assert "error: the study's database is gone" in capsys.readouterr().err


# --- in front of PostgreSQL ---------------------------------------------------------------


@pytest.fixture(scope="module")
def pg_proxy(postgres_url, tmp_path_factory):
    """``python -m mspe_sweep.storage_proxy storage=postgres`` on a schema of its own."""
    import psycopg

    schema = f"proxy_{uuid.uuid4().hex[:8]}"
    conninfo = postgres_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    database = (f"{postgres_url}{'&' if '?' in postgres_url else '?'}"
                f"options={quote(f'-csearch_path={schema}')}")
    port = free_port()
    log = tmp_path_factory.mktemp("proxy") / "proxy.log"
    env = {**os.environ, "MSPE_STORAGE_URL": database, "OMP_NUM_THREADS": "1"}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "mspe_sweep.storage_proxy",
                                 "storage=postgres", f"proxy.port={port}"], cwd=REPO_ROOT,
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        text = log.read_text()
        assert "storage proxy: grpc://127.0.0.1:" in text and "mspe-ci" not in text
        yield f"grpc://127.0.0.1:{port}", database
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.mark.slow
@pytest.mark.postgres
def test_two_workers_finish_a_study_through_the_proxy(sweep, pg_proxy, tmp_path):
    grpc_url, database = pg_proxy
    name = f"proxy-{uuid.uuid4().hex[:6]}"
    path = sweep.write_study(tmp_path, name=name, n_trials=4)
    args = [f"study={path}", "storage=grpc", f"storage.url={grpc_url}", "workers=2",
            "tracking=none"]

    code, output = sweep.run_sub("mspe_sweep.run", args, tmp_path / "home", tmp_path / "run.log")

    assert code == 0, output
    assert f"storage:  {grpc_url}" in output
    trials = sweep.load_study(name, database).trials
    # The budget, overshot by at most workers - 1 (each worker checks it before a trial).
    assert 4 <= len(trials) <= 5
    assert all(t.state == TrialState.COMPLETE for t in trials), trials
    owners = {t.system_attrs["owner"].split(":")[1] for t in trials}
    assert len(owners) == 2, owners  # both workers ran trials
    assert all(HEARTBEAT_ATTR in t.system_attrs for t in trials)


@pytest.mark.slow
@pytest.mark.postgres
def test_a_crashed_worker_elsewhere_is_found_by_its_heartbeat_through_the_proxy(
        sweep, pg_proxy, tmp_path):
    grpc_url, database = pg_proxy
    name, epochs = f"proxy-crash-{uuid.uuid4().hex[:6]}", 4
    path = sweep.write_study(tmp_path, name=name, n_trials=1, set_fixed=[
        f"training.epochs={epochs}"])
    home = tmp_path / "home"
    args = [f"study={path}", "storage=grpc", f"storage.url={grpc_url}", "tracking=none",
            "dataset.train_size=600"]
    last = home / "runs" / name / "trial-0" / "last.pt"

    proc = sweep.Proc("mspe_sweep.run", args, home, tmp_path / "killed.log")
    sweep.wait_for_checkpoint_epoch(proc, last, 1)
    proc.popen.send_signal(signal.SIGKILL)
    proc.popen.wait()
    proc.kill()
    epoch = int(read_checkpoint(last)["epoch"])
    assert epoch < epochs, f"the kill landed after the trial ended:\n{proc.output}"
    study = sweep.load_study(name, database)
    [dead] = study.trials
    assert dead.state == TrialState.RUNNING and HEARTBEAT_ATTR in dead.system_attrs
    # As if its worker had run on another machine: only its heartbeat can tell it is dead.
    study._storage.set_trial_system_attr(dead._trial_id, "owner", "elsewhere:1:0")

    started = time.monotonic()
    code, output = sweep.run_sub("mspe_sweep.run", [*args, "storage.heartbeat_interval=1",
                                                    "storage.grace_period=3"],
                                 home, tmp_path / "restarted.log")

    assert code == 0, output
    trials = sweep.load_study(name, database).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE], output
    assert trials[1].system_attrs["failed_trial"] == 0 and trials[1].params == dead.params
    assert f"trial 1 resumes trial-0 from its epoch-{epoch} checkpoint" in output
    assert trials[1].user_attrs["epochs_run"] == epochs
    assert time.monotonic() - started < 180
