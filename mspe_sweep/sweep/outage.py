"""Optuna storage calls that ride through a database outage (a restart, a failover, a lock).

``OutageTolerantStorage`` wraps the study's RDB storage (and Optuna's cache in front of it, as
``optuna.get_storage`` would). Every storage call goes through it:

* Only transient errors are retried: a lost or refused connection, the server starting up or
  shutting down, too many connections, a deadlock or serialization failure (SQLSTATE classes
  08, 40, 53, 57, 58 and lock-not-available), SQLite's "database is locked" / busy, and any
  error SQLAlchemy flags as a disconnect. Optuna wraps them in ``StorageInternalError``; the
  cause decides. Through the storage proxy (``storage=grpc``): the proxy being unreachable
  (gRPC ``UNAVAILABLE``: stopped, restarting); the proxy itself rides out its database's
  outages, so meanwhile a worker's calls just wait for it. Logic errors
  (``UpdateFinishedTrialError``, ``DuplicatedStudyError``, integrity and data errors, unknown
  ids) pass straight through, on the first attempt.
* One outage clock per process: the first transient failure starts it and logs ONE warning;
  the failed call, and every other call meanwhile, is retried with capped exponential backoff
  (0.5 s doubling to 5 s, jittered). Stale pooled connections are replaced by SQLAlchemy's
  ``pool_pre_ping`` (``build_storage`` sets it for PostgreSQL). The first call that succeeds
  logs ONE line that the database is back. A call that fails after ``outage_timeout`` seconds
  of outage raises ``StorageUnavailableError`` (exit code 3), and so does every later call
  until the database answers again: nobody waits twice. A call made while a Ctrl-C / SIGTERM
  is being handled does not wait at all.
* Training goes on meanwhile: only the thread that needs the database waits (an epoch needs
  it when it reports). The heartbeat thread Optuna runs inside ``study.optimize`` never waits
  and never raises for an outage: a missed heartbeat is remembered and recorded as soon as any
  call of this process reaches the database again.
* No trial is stolen from a live owner because of heartbeats missed during an outage: stale
  trials (``_get_stale_trial_ids``, used by ``fail_stale_trials``) are reported only once
  this process has seen the database reachable for a whole grace period, since it opened the
  storage and since the last outage it saw. Within that period every live owner has recorded
  a heartbeat (its heartbeat interval is shorter than the grace period). A fresh process
  cannot know whether the database was just down, so it too waits one grace period before
  judging other workers' heartbeats. ``settled`` tells the worker the same for trials that
  no worker has claimed yet.

When the outage outlasts the timeout, the running trial stays RUNNING (nothing can be written)
with its ``last.pt`` intact; the next run on this host sees that its owner process is gone and
retries it from the checkpoint at once, a worker elsewhere once its heartbeat is stale.

A write whose commit reached the database just before the connection broke is sent again; for
``set_trial_state_values`` the "already finished" answer to such a repeat counts as success.
``create_new_trial`` could in that case create one extra trial, which the worker's recovery
of unclaimed trials fails after the grace period.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import optuna
import sqlalchemy.exc
from optuna.exceptions import StorageInternalError, UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.trial import TrialState

from mspe_sweep.errors import StorageUnavailableError
from mspe_sweep.text import first_line, mask_secrets, mask_url, one_line

log = logging.getLogger(__name__)

FIRST_DELAY_S = 0.5
MAX_DELAY_S = 5.0
_TRANSIENT_SQLSTATE_CLASSES = ("08", "40", "53", "57", "58")
_TRANSIENT_SQLSTATES = ("55P03",)  # lock_not_available
_SQLITE_BUSY = ("database is locked", "database table is locked", "database is busy")


def is_transient(exc: BaseException) -> bool:
    """True when ``exc`` from a storage call means "database unreachable or busy, try again"."""
    if isinstance(exc, StorageInternalError):
        exc = exc.__cause__
    if _proxy_unavailable(exc):
        return True
    if isinstance(exc, (sqlalchemy.exc.DisconnectionError, sqlalchemy.exc.TimeoutError)):
        return True  # a pre-ping that failed; no pooled connection free in time
    if not isinstance(exc, sqlalchemy.exc.DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    return isinstance(exc, sqlalchemy.exc.OperationalError) and _transient_driver_error(exc.orig)


def grpc_code(exc: BaseException | None) -> Any:
    """The ``grpc.StatusCode`` of a gRPC call's error, or None for any other exception."""
    grpc = sys.modules.get("grpc")  # imported by storage=grpc; absent, no call can be gRPC's
    if grpc is None or not isinstance(exc, grpc.RpcError):
        return None
    return exc.code() if callable(getattr(exc, "code", None)) else None


def _proxy_unavailable(exc: BaseException | None) -> bool:
    grpc = sys.modules.get("grpc")
    return grpc is not None and grpc_code(exc) == grpc.StatusCode.UNAVAILABLE


def _transient_driver_error(orig: BaseException | None) -> bool:
    if isinstance(orig, sqlite3.Error):
        name = getattr(orig, "sqlite_errorname", "") or ""
        return name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or any(
            text in str(orig).lower() for text in _SQLITE_BUSY)
    state = getattr(orig, "sqlstate", None)  # psycopg; None: failed before the server answered
    return (state is None or state[:2] in _TRANSIENT_SQLSTATE_CLASSES
            or state in _TRANSIENT_SQLSTATES)


def _reason(exc: BaseException) -> str:
    """The driver's own first line, e.g. ``connection failed: ... Connection refused``."""
    if isinstance(exc, StorageInternalError) and exc.__cause__ is not None:
        exc = exc.__cause__
    root = getattr(exc, "orig", None) or exc
    if _proxy_unavailable(root):
        return mask_secrets(one_line(root.details() or "UNAVAILABLE", limit=200))
    return mask_secrets(one_line(first_line(root), limit=200))


def _handling_interrupt() -> bool:
    return isinstance(sys.exc_info()[1], KeyboardInterrupt)


def _retried(name: str) -> Callable[..., Any]:
    """A method that makes the wrapped storage's call ``name``, retried through an outage."""

    def method(self: OutageTolerantStorage, *args: Any, **kwargs: Any) -> Any:
        return self._call(getattr(self._inner, name), *args, **kwargs)

    method.__name__ = method.__qualname__ = name
    method.__doc__ = f"``BaseStorage.{name}``, retried through an outage."
    return method


class OutageTolerantStorage(BaseStorage, BaseHeartbeat):
    """An Optuna storage that retries the calls of ``storage`` through an outage.

    Args:
        storage: The storage to wrap; an ``RDBStorage`` gets Optuna's cache in front of it.
            Its other attributes (``url``, ``engine_kwargs``, ...) read through.
        outage_timeout: Seconds of outage after which a call raises
            ``StorageUnavailableError``.
        settle_s: Seconds the database must have been reachable before stale trials are
            reported (default: the storage's heartbeat grace period, Optuna's default when
            unset: twice the heartbeat interval).
        clock: Monotonic clock; sleep: its sleep (both injectable for tests).
    """

    def __init__(self, storage: BaseStorage, outage_timeout: float, *,
                 settle_s: float | None = None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._storage = storage
        self._inner = optuna.storages.get_storage(storage)
        self.outage_timeout = outage_timeout
        if settle_s is None:
            interval = getattr(storage, "heartbeat_interval", None)
            settle_s = getattr(storage, "grace_period", None) or 2 * (interval or 0)
        self.settle_s = settle_s
        self._clock, self._sleep = clock, sleep
        self._where = mask_url(str(getattr(storage, "url", type(storage).__name__)))
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._up_since = clock()
        self._missed_heartbeats: set[int] = set()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or "_storage" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self._storage, name)

    # --- the outage clock -------------------------------------------------------------------

    @property
    def is_down(self) -> bool:
        """Whether the last call found the database unreachable (and none has succeeded since)."""
        return self._down_since is not None

    def settled(self) -> bool:
        """Whether the database has been reachable for ``settle_s`` as far as this process saw:
        only then may another worker's silence mean that it died."""
        with self._lock:
            return self._down_since is None and self._clock() - self._up_since >= self.settle_s

    def _went_down(self, exc: BaseException, attempt_started: float) -> float | None:
        """Start the outage clock (one warning); returns when the outage began, or None when
        the database came back after the failed attempt began (its failure is old news)."""
        with self._lock:
            if self._down_since is None:
                if attempt_started < self._up_since:
                    return None
                self._down_since = self._clock()
                first = True
            else:
                first = False
            down_since = self._down_since
        if first:
            log.warning("storage: the study's database %s is unreachable (%s); training goes on "
                        "and storage calls are retried for up to %.0f s (storage.outage_timeout)",
                        self._where, _reason(exc), self.outage_timeout)
        return down_since

    def _came_back(self) -> None:
        with self._lock:
            if self._down_since is None:
                return
            now = self._clock()
            down_for, self._down_since, self._up_since = now - self._down_since, None, now
            missed, self._missed_heartbeats = self._missed_heartbeats, set()
        log.warning("storage: the study's database is reachable again after %.0f s; the study "
                    "goes on", down_for)
        for trial_id in sorted(missed):  # the owner is alive: say so before anyone looks
            try:
                self._inner.record_heartbeat(trial_id)
            except Exception as exc:  # noqa: BLE001 - the heartbeat thread tries again
                log.debug("heartbeat of trial id %d after the outage failed: %s", trial_id, exc)

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)``, retried through an outage (see the module docstring)."""
        delay, interrupted = FIRST_DELAY_S, _handling_interrupt()
        while True:
            started = self._clock()
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                down_since = self._went_down(exc, started)
                if down_since is not None:
                    left = self.outage_timeout - (self._clock() - down_since)
                    if left <= 0 or interrupted:
                        raise StorageUnavailableError(self._gave_up(exc, down_since)) from exc
                    self._sleep(max(0.0, min(delay * random.uniform(0.8, 1.2), left)))
                    delay = min(2 * delay, MAX_DELAY_S)
                continue
            self._came_back()
            return result

    def _gave_up(self, exc: BaseException, down_since: float) -> str:
        return (f"the study's database {self._where} has been unreachable for "
                f"{self._clock() - down_since:.0f} s (storage.outage_timeout="
                f"{self.outage_timeout:g}): {_reason(exc)}. The running trial keeps its last "
                "checkpoint: run the same command again once the database is back to resume it")

    # --- heartbeats -------------------------------------------------------------------------

    def record_heartbeat(self, trial_id: int) -> None:
        """Never waits or raises for an outage: a missed heartbeat is recorded on reconnect."""
        started = self._clock()
        try:
            self._inner.record_heartbeat(trial_id)
        except Exception as exc:
            if not is_transient(exc):
                raise
            if self._went_down(exc, started) is not None:
                with self._lock:
                    self._missed_heartbeats.add(trial_id)
            return
        self._came_back()

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        if not self.settled():
            return []
        stale = self._call(self._inner._get_stale_trial_ids, study_id)
        return stale if self.settled() else []  # an outage may have ended during the call

    def get_heartbeat_interval(self) -> int | None:
        inner = self._inner
        return inner.get_heartbeat_interval() if isinstance(inner, BaseHeartbeat) else None

    def get_heartbeat_stale_trial_callback(self) -> Callable | None:
        inner = self._inner
        return (inner.get_heartbeat_stale_trial_callback() if isinstance(inner, BaseHeartbeat)
                else None)

    # --- trial state: a repeated write after an ambiguous commit ----------------------------

    def set_trial_state_values(self, trial_id: int, state: TrialState,
                               values: Sequence[float] | None = None) -> bool:
        attempts = 0

        def attempt() -> bool:
            nonlocal attempts
            attempts += 1
            try:
                return self._inner.set_trial_state_values(trial_id, state, values)
            except UpdateFinishedTrialError:
                if attempts > 1 and self._inner.get_trial(trial_id).state == state:
                    return True  # our first attempt's commit arrived; its answer did not
                raise

        return self._call(attempt)

    # --- everything else: the same call, retried --------------------------------------------

    create_new_study = _retried("create_new_study")
    delete_study = _retried("delete_study")
    set_study_user_attr = _retried("set_study_user_attr")
    set_study_system_attr = _retried("set_study_system_attr")
    get_study_id_from_name = _retried("get_study_id_from_name")
    get_study_name_from_id = _retried("get_study_name_from_id")
    get_study_directions = _retried("get_study_directions")
    get_study_user_attrs = _retried("get_study_user_attrs")
    get_study_system_attrs = _retried("get_study_system_attrs")
    get_all_studies = _retried("get_all_studies")
    create_new_trial = _retried("create_new_trial")
    set_trial_param = _retried("set_trial_param")
    get_trial_id_from_study_id_trial_number = _retried("get_trial_id_from_study_id_trial_number")
    get_trial_number_from_id = _retried("get_trial_number_from_id")
    get_trial_param = _retried("get_trial_param")
    set_trial_intermediate_value = _retried("set_trial_intermediate_value")
    set_trial_user_attr = _retried("set_trial_user_attr")
    set_trial_system_attr = _retried("set_trial_system_attr")
    get_trial = _retried("get_trial")
    get_all_trials = _retried("get_all_trials")
    get_n_trials = _retried("get_n_trials")
    get_best_trial = _retried("get_best_trial")
    get_trial_params = _retried("get_trial_params")
    get_trial_user_attrs = _retried("get_trial_user_attrs")
    get_trial_system_attrs = _retried("get_trial_system_attrs")

    def remove_session(self) -> None:
        self._inner.remove_session()


def storage_settled(storage: BaseStorage) -> bool:
    """Whether a worker may judge other workers' trials dead (see ``settled``); True for
    storages without outage handling."""
    return not isinstance(storage, OutageTolerantStorage) or storage.settled()


def tolerate_outages(storage: BaseStorage, outage_timeout: float | None) -> BaseStorage:
    """``storage`` behind an ``OutageTolerantStorage``, or unchanged when the timeout is None
    (``storage.outage_timeout=null``: the first failed call fails, as Optuna does)."""
    return storage if outage_timeout is None else OutageTolerantStorage(storage, outage_timeout)
