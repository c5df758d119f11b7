"""The outage-tolerant storage on its own: which errors are retried, the outage clock, its two
log lines, heartbeats during an outage, and no stale-trial verdicts right after one. A fake
storage (or a real SQLite lock) stands in for the database; tests/sweep/test_db_restart.py
restarts a real PostgreSQL server under a running study."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import Counter

import optuna
import psycopg
import pytest
import sqlalchemy.exc
from optuna.exceptions import DuplicatedStudyError, StorageInternalError, UpdateFinishedTrialError
from optuna.storages import InMemoryStorage, RDBStorage
from optuna.storages._heartbeat import BaseHeartbeat, is_heartbeat_enabled
from optuna.trial import TrialState

from mspe_sweep.errors import StorageUnavailableError, UserError
from mspe_sweep.sweep.outage import (
    OutageTolerantStorage,
    is_transient,
    storage_settled,
    tolerate_outages,
)
from mspe_sweep.sweep.storage import build_storage
from mspe_sweep.sweep.worker import recover_abandoned_trials

URL = "postgresql+psycopg://mspe:s3cret@db-host:5432/mspe"
REFUSED = ('connection failed: connection to server at "10.0.0.5", port 5432 failed: Connection '
           'refused\n\tIs the server running on that host and accepting TCP/IP connections?')


def wrapped(orig: Exception, cls=sqlalchemy.exc.OperationalError) -> StorageInternalError:
    """What Optuna's RDBStorage raises: StorageInternalError from SQLAlchemy's error."""
    error = StorageInternalError("An exception is raised during the commit.")
    error.__cause__ = cls("SELECT 1", {}, orig)
    return error


def refused() -> StorageInternalError:
    return wrapped(psycopg.OperationalError(REFUSED))


def sqlstate_error(sqlstate: str, message: str = "boom") -> Exception:
    return psycopg.errors.lookup(sqlstate)(message)


class FakeClock:
    """Monotonic time that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class FlakyStorage(InMemoryStorage, BaseHeartbeat):
    """An in-memory storage with heartbeats whose calls fail on demand, like a database that
    went away (``down``) or a single call meeting an error (``fail_next``)."""

    CALLS = frozenset({"create_new_study", "get_trial", "get_all_trials", "set_trial_user_attr",
             "set_trial_state_values", "set_trial_intermediate_value", "record_heartbeat",
             "_get_stale_trial_ids", "get_study_id_from_name", "create_new_trial"})

    def __init__(self, heartbeat_interval: int | None = 1) -> None:
        super().__init__()
        self.url = URL
        self.heartbeat_interval = heartbeat_interval
        self.down: Exception | None = None
        self.fail_next: list[Exception] = []
        self.calls: Counter[str] = Counter()
        self.heartbeats: list[int] = []
        self.stale: list[int] = []
        self.lose_answer: set[str] = set()  # calls whose next commit succeeds, answer is lost

    def __getattribute__(self, name: str):
        attr = object.__getattribute__(self, name)
        if name not in FlakyStorage.CALLS:
            return attr

        def call(*args, **kwargs):
            self.calls[name] += 1
            if self.down is not None:
                raise self.down
            if self.fail_next:
                raise self.fail_next.pop(0)
            result = attr(*args, **kwargs)
            if name in self.lose_answer:
                self.lose_answer.discard(name)
                raise refused()
            return result

        return call

    def record_heartbeat(self, trial_id: int) -> None:
        self.heartbeats.append(trial_id)

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        return list(self.stale)

    def get_heartbeat_interval(self) -> int | None:
        return self.heartbeat_interval

    def get_heartbeat_stale_trial_callback(self):
        return None


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def fake():
    return FlakyStorage()


def tolerant(fake, clock, timeout=60.0, settle_s=0.0) -> OutageTolerantStorage:
    return OutageTolerantStorage(fake, timeout, settle_s=settle_s, clock=clock,
                                 sleep=clock.sleep)


def outage_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "mspe_sweep.sweep.outage"
            and r.levelno >= logging.WARNING]


def new_trial(storage) -> int:
    study_id = storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], "s")
    return storage.create_new_trial(study_id)


@pytest.mark.parametrize("error", [
    refused(),
    wrapped(sqlstate_error("57P01", "terminating connection due to administrator command")),
    wrapped(sqlstate_error("57P03", "the database system is starting up")),
    wrapped(sqlstate_error("53300", "sorry, too many clients already")),
    wrapped(sqlstate_error("40P01", "deadlock detected")),
    wrapped(sqlite3.OperationalError("database is locked")),
    sqlalchemy.exc.OperationalError("SELECT 1", {}, psycopg.OperationalError(REFUSED)),
    sqlalchemy.exc.InterfaceError("SELECT 1", {}, psycopg.InterfaceError("the connection is "
                                                                         "lost"),
                                  connection_invalidated=True),
])
def test_transient_errors_are_retried_with_one_line_each_way(fake, clock, caplog, error):
    storage = tolerant(fake, clock)
    trial_id = new_trial(storage)
    fake.fail_next = [error, error, error]

    assert storage.get_trial(trial_id).state == TrialState.RUNNING

    assert fake.calls["get_trial"] == 4
    assert clock.sleeps and all(0 < s <= 5 * 1.2 for s in clock.sleeps)
    assert clock.sleeps[1] > clock.sleeps[0]  # backoff
    lines = outage_lines(caplog)
    assert len(lines) == 2, lines
    assert "unreachable" in lines[0] and "storage.outage_timeout" in lines[0]
    assert "reachable again" in lines[1]
    assert "s3cret" not in " ".join(lines) and "mspe:***@db-host" in lines[0]
    assert not storage.is_down


@pytest.mark.parametrize("error", [
    UpdateFinishedTrialError("Trial#0 has already finished and can not be updated."),
    DuplicatedStudyError("exists"),
    KeyError("No trial with trial_id 7 exists."),
    ValueError("bad"),
    sqlalchemy.exc.IntegrityError("INSERT", {}, psycopg.errors.lookup("23505")("duplicate")),
    wrapped(sqlstate_error("22001", "value too long for type character varying(512)"),
            cls=sqlalchemy.exc.DataError),
    wrapped(sqlstate_error("42P01", "relation \"trials\" does not exist"),
            cls=sqlalchemy.exc.ProgrammingError),
    wrapped(sqlite3.OperationalError("no such table: trials")),
])
def test_logic_errors_pass_straight_through(fake, clock, caplog, error):
    storage = tolerant(fake, clock)
    trial_id = new_trial(storage)
    fake.fail_next = [error]

    with pytest.raises(type(error)) as raised:
        storage.set_trial_user_attr(trial_id, "k", 1)

    assert raised.value is error
    assert fake.calls["set_trial_user_attr"] == 1 and not clock.sleeps
    assert not outage_lines(caplog)


def test_outage_past_the_timeout_raises_once_then_fails_fast(fake, clock, caplog):
    storage = tolerant(fake, clock, timeout=30)
    trial_id = new_trial(storage)
    fake.down = refused()

    with pytest.raises(StorageUnavailableError) as raised:
        storage.set_trial_intermediate_value(trial_id, 1, 0.5)

    message = str(raised.value)
    assert "unreachable for 30 s" in message and "storage.outage_timeout=30" in message
    assert "Connection refused" in message and "mspe:***@db-host" in message
    assert "\n" not in message and "s3cret" not in message
    assert sum(clock.sleeps) == pytest.approx(30)
    assert not isinstance(raised.value, Exception)  # Optuna's catch=(Exception,) lets it by
    slept = len(clock.sleeps)
    with pytest.raises(StorageUnavailableError):  # nobody waits a second time
        storage.get_trial(trial_id)
    assert len(clock.sleeps) == slept
    assert len(outage_lines(caplog)) == 1

    fake.down = None
    assert storage.get_trial(trial_id).intermediate_values == {}
    assert [line.split(" after ")[0] for line in outage_lines(caplog)[1:]] == [
        "storage: the study's database is reachable again"]


def test_a_call_during_ctrl_c_does_not_wait(fake, clock):
    storage = tolerant(fake, clock)
    trial_id = new_trial(storage)
    fake.down = refused()
    with pytest.raises(StorageUnavailableError):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            storage.set_trial_user_attr(trial_id, "interrupted", True)
    assert not clock.sleeps


def test_heartbeats_never_wait_or_raise_and_are_recorded_on_reconnect(fake, clock, caplog):
    storage = tolerant(fake, clock)
    trial_id = new_trial(storage)
    fake.down = refused()

    for _ in range(3):
        storage.record_heartbeat(trial_id)  # the heartbeat thread, every interval

    assert not clock.sleeps and fake.heartbeats == [] and storage.is_down
    fake.down = None
    storage.get_trial(trial_id)  # the first call that gets through: the owner is alive
    assert fake.heartbeats == [trial_id]
    assert len(outage_lines(caplog)) == 2  # heartbeats and calls share one outage


def test_no_stale_verdicts_until_the_database_was_up_for_the_settle_time(fake, clock):
    fake.stale = [42]
    storage = tolerant(fake, clock, settle_s=90)
    study = optuna.create_study(storage=storage)
    assert not storage_settled(storage) and storage._get_stale_trial_ids(study._study_id) == []
    clock.now += 90  # a fresh process judges others only after one grace period
    assert storage_settled(storage) and storage._get_stale_trial_ids(study._study_id) == [42]

    fake.down = refused()
    storage.record_heartbeat(0)  # an outage starts...
    clock.now += 300
    fake.down = None
    storage.get_study_id_from_name(study.study_name)
    assert storage._get_stale_trial_ids(study._study_id) == []  # ...and just ended
    clock.now += 89
    assert not storage_settled(storage)
    clock.now += 1
    assert storage._get_stale_trial_ids(study._study_id) == [42]
    assert storage_settled(InMemoryStorage())  # no outage handling: nothing to wait for


def test_a_repeated_state_write_whose_first_commit_arrived_succeeds(fake, clock):
    storage = tolerant(fake, clock)
    trial_id = new_trial(storage)
    fake.lose_answer = {"set_trial_state_values"}

    assert storage.set_trial_state_values(trial_id, TrialState.COMPLETE, [0.5]) is True

    assert fake.calls["set_trial_state_values"] == 2
    assert storage.get_trial(trial_id).state == TrialState.COMPLETE
    with pytest.raises(UpdateFinishedTrialError):  # without an outage it stays an error
        storage.set_trial_state_values(trial_id, TrialState.FAIL)


def test_the_heartbeat_thread_of_optimize_rides_through_silently(fake, monkeypatch, caplog):
    crashes = []
    monkeypatch.setattr(threading, "excepthook", crashes.append)
    storage = OutageTolerantStorage(fake, 60)
    study = optuna.create_study(storage=storage)
    assert is_heartbeat_enabled(study._storage)

    def objective(trial):
        fake.down = refused()  # the database goes away during training...
        time.sleep(1.5)        # ...while the heartbeat thread beats every second
        fake.down = None
        return 1.0

    study.optimize(objective, n_trials=1)

    assert crashes == []
    assert study.trials[0].state == TrialState.COMPLETE
    assert fake.calls["record_heartbeat"] >= 2 and fake.heartbeats
    assert len(outage_lines(caplog)) == 2


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")
def test_wraps_an_rdb_storage_with_optunas_cache_and_keeps_its_api(tmp_path):
    rdb = build_storage(f"sqlite:///{tmp_path / 'o.db'}", heartbeat_interval=1, grace_period=1,
                        max_retry=1)
    storage = tolerate_outages(rdb, 600)
    assert tolerate_outages(rdb, None) is rdb
    assert isinstance(storage._inner, optuna.storages._CachedStorage)
    assert optuna.storages.get_storage(storage) is storage  # not wrapped twice
    assert storage.grace_period == 1 and storage.engine_kwargs["connect_args"]["timeout"] == 60
    study = optuna.create_study(storage=storage, study_name="s")
    trial = study.ask()
    trial.suggest_float("x", 0, 1)
    storage.record_heartbeat(trial._trial_id)
    time.sleep(2.1)  # stale, and the storage has been up for its grace period
    with pytest.warns(optuna.exceptions.ExperimentalWarning):
        optuna.storages.fail_stale_trials(study)
    # RetryHeartbeatStaleTrialCallback (from build_storage) re-queued it with its params.
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.WAITING]
    assert study.trials[1].params == study.trials[0].params
    assert study.trials[1].system_attrs["failed_trial"] == 0


def test_real_driver_errors_are_classified(tmp_path):
    # A PostgreSQL port nobody listens on: the real psycopg error, as Optuna wraps it.
    with pytest.raises(StorageInternalError) as refused_error:
        RDBStorage("postgresql+psycopg://u:pw@127.0.0.1:1/db", skip_table_creation=True,
                   engine_kwargs={"connect_args": {"connect_timeout": 2}})
    assert is_transient(refused_error.value)

    # SQLite under contention: another connection holds the write lock.
    path = tmp_path / "locked.db"
    rdb = RDBStorage(f"sqlite:///{path}", engine_kwargs={"connect_args": {"timeout": 0.1}})
    study_id = rdb.create_new_study([optuna.study.StudyDirection.MINIMIZE], "s")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(Exception) as locked:
            rdb.set_study_user_attr(study_id, "k", 1)
    finally:
        holder.execute("ROLLBACK")
    assert "database is locked" in str(locked.value.__cause__ or locked.value)
    assert is_transient(locked.value)


def test_sqlite_database_is_locked_is_ridden_through(tmp_path, caplog):
    path = tmp_path / "locked.db"
    rdb = RDBStorage(f"sqlite:///{path}", engine_kwargs={"connect_args": {"timeout": 0.1}})
    storage = OutageTolerantStorage(rdb, 30)
    study = optuna.create_study(storage=storage, study_name="s")
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    release = threading.Timer(1.5, holder.execute, args=("ROLLBACK",))
    release.start()
    started = time.monotonic()

    study.set_user_attr("k", 1)  # waits for the lock instead of failing

    release.join()
    assert 1.4 < time.monotonic() - started < 10
    assert optuna.load_study(study_name="s", storage=f"sqlite:///{path}").user_attrs == {"k": 1}
    lines = outage_lines(caplog)
    assert len(lines) == 2 and "database is locked" in lines[0], lines


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")
def test_an_unclaimed_trial_is_not_recovered_right_after_an_outage(tmp_path, clock):
    # A worker whose trial was between Optuna's ask and its claim when the database went away
    # claims it as soon as the database is back; nobody may fail it as unclaimed before that.
    rdb = build_storage(f"sqlite:///{tmp_path / 'o.db'}", heartbeat_interval=1, max_retry=1)
    storage = OutageTolerantStorage(rdb, 60, settle_s=10, clock=clock, sleep=clock.sleep)
    study = optuna.create_study(storage=storage, study_name="s")
    study.ask()  # RUNNING, no owner

    assert recover_abandoned_trials(study, max_retry=1, grace_period=0) == 0
    clock.now += 10
    assert recover_abandoned_trials(study, max_retry=1, grace_period=0) == 1
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.WAITING]


@pytest.mark.parametrize("value", [0, -5, 1.5, True])
def test_outage_timeout_must_be_a_positive_integer(tmp_path, value):
    with pytest.raises(UserError, match=r"storage\.outage_timeout: must be a positive integer"):
        build_storage(f"sqlite:///{tmp_path / 'o.db'}", outage_timeout=value)
    assert not (tmp_path / "o.db").exists()  # checked before anything is opened
