"""``storage=grpc``: a worker's end of Optuna's gRPC storage proxy, with heartbeats.

Optuna's ``GrpcStorageProxy`` speaks to ``run_grpc_proxy_server`` (``python -m
mspe_sweep.storage_proxy``), which holds the only database connections. It is a plain
``BaseStorage``: it has no heartbeat API (no ``record_heartbeat``, no stale-trial query), so
through it Optuna would neither beat nor find crashed trials. ``HeartbeatGrpcStorage`` adds
Optuna's heartbeat interface on top of calls the proxy does carry, and Optuna's own machinery
(the heartbeat thread, ``fail_stale_trials``, ``RetryHeartbeatStaleTrialCallback``) runs on it
unchanged:

* ``record_heartbeat`` writes the wall-clock time into the running trial's system attribute
  ``heartbeat`` (one small write through the proxy per ``heartbeat_interval``).
* ``_get_stale_trial_ids`` reports a RUNNING trial as stale once ITS ``heartbeat`` has not
  changed for ``grace_period`` seconds as this process watched it (its monotonic clock, so the
  hosts' clocks need not agree). A process therefore judges only after watching a trial for a
  whole grace period, and never a trial that has no heartbeat yet (the worker's rule for
  unclaimed trials covers those).
* A stall is no death: a call that fails because the proxy is unreachable, or that takes
  longer than ``(grace_period - heartbeat_interval) / 2`` (the proxy waiting for its database,
  see ``mspe_sweep/storage_proxy.py``), held up every owner's heartbeats as well, so what this
  process watched until then is forgotten and every trial gets a fresh grace period.

Workers on the proxy and workers on the database directly can share a study, but each side
watches only its own kind of heartbeat: run one study through one tier.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import grpc
import optuna
from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError
from optuna.storages import GrpcStorageProxy
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.trial import FrozenTrial, TrialState

from mspe_sweep.errors import UserError
from mspe_sweep.sweep.outage import grpc_code

HEARTBEAT_ATTR = "heartbeat"  # trial system attribute: the owner's time.time() at its last beat
READY_TIMEOUT_S = 10
USAGE_HINT = ("start one with `python -m mspe_sweep.storage_proxy storage=postgres` (see "
              "configs/storage/grpc.yaml)")


def parse_grpc_url(url: str) -> tuple[str, int]:
    """``grpc://<host>:<port>`` as ``(host, port)``.

    Raises:
        UserError: Another form (a path, credentials, a missing or bad port).
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        port = None
    if (parts.scheme != "grpc" or not parts.hostname or port is None
            or parts.path not in ("", "/") or parts.query or parts.username):
        raise UserError(f"storage.url: {url!r} is not a storage proxy address "
                        f"grpc://<host>:<port>; {USAGE_HINT}")
    return parts.hostname, port


class _TimedStub:
    """Optuna's gRPC stub, reporting how long each call took and whether the proxy answered."""

    def __init__(self, stub: Any, after_call: Callable[[float, bool], None]) -> None:
        self._stub, self._after_call = stub, after_call

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._stub, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            started, answered = time.monotonic(), True
            try:
                return method(*args, **kwargs)
            except grpc.RpcError as exc:
                answered = grpc_code(exc) not in (grpc.StatusCode.UNAVAILABLE,
                                        grpc.StatusCode.DEADLINE_EXCEEDED)
                raise
            finally:
                self._after_call(time.monotonic() - started, answered)

        return call


class HeartbeatGrpcStorage(GrpcStorageProxy, BaseHeartbeat):
    """Optuna's ``GrpcStorageProxy`` with Optuna's heartbeat interface (see the module docstring).

    Args:
        host, port: The proxy's address.
        heartbeat_interval: Seconds between a running trial's heartbeats; None: no heartbeats.
        grace_period: Seconds without a heartbeat after which a trial is stale (None: twice
            the interval, Optuna's default).
        heartbeat_stale_trial_callback: Run on each trial failed as stale (the retry).
    """

    def __init__(self, *, host: str, port: int, heartbeat_interval: int | None = None,
                 grace_period: int | None = None,
                 heartbeat_stale_trial_callback: Callable[[optuna.Study, FrozenTrial], None]
                 | None = None) -> None:
        self.url = f"grpc://{host}:{port}"
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period or 2 * (heartbeat_interval or 0)
        self.heartbeat_stale_trial_callback = heartbeat_stale_trial_callback
        self.stall_s = max(1.0, (self.grace_period - (heartbeat_interval or 0)) / 2)
        self._watch_lock = threading.Lock()
        self._watched: dict[int, tuple[Any, float]] = {}  # trial id -> (heartbeat, since)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            super().__init__(host=host, port=port)

    def _setup(self) -> None:
        super()._setup()
        # Private attributes of Optuna's client (optuna<6): every call, the cache's included,
        # goes through the timed stub.
        self._stub = _TimedStub(self._stub, self._after_call)
        self._cache.grpc_client = self._stub

    def __getstate__(self) -> dict[Any, Any]:
        state = super().__getstate__()
        state.pop("_watch_lock", None)
        return state

    def __setstate__(self, state: dict[Any, Any]) -> None:
        state["_watch_lock"] = threading.Lock()
        super().__setstate__(state)

    def _after_call(self, seconds: float, answered: bool) -> None:
        if not answered or seconds > self.stall_s:
            with self._watch_lock:
                self._watched.clear()  # heartbeats were held up too: watch afresh

    # --- Optuna's heartbeat interface -------------------------------------------------------

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, round(time.time(), 3))
        except (KeyError, UpdateFinishedTrialError):
            pass  # the trial has ended meanwhile (or another worker failed it as stale)

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        running = self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
        now, stale, watched = time.monotonic(), [], {}
        with self._watch_lock:
            for trial in running:
                beat = trial.system_attrs.get(HEARTBEAT_ATTR)
                if beat is None:
                    continue
                seen = self._watched.get(trial._trial_id)
                watched[trial._trial_id] = seen if seen and seen[0] == beat else (beat, now)
                if now - watched[trial._trial_id][1] > self.grace_period:
                    stale.append(trial._trial_id)
            self._watched = watched
        return stale

    def get_heartbeat_interval(self) -> int | None:
        return self.heartbeat_interval

    def get_heartbeat_stale_trial_callback(
            self) -> Callable[[optuna.Study, FrozenTrial], None] | None:
        return self.heartbeat_stale_trial_callback


def open_proxy(url: str, *, heartbeat_interval: int | None, grace_period: int | None,
               callback: Callable[[optuna.Study, FrozenTrial], None] | None
               ) -> HeartbeatGrpcStorage:
    """The proxy at ``grpc://host:port``, once it answers.

    Raises:
        UserError: A bad address, or no proxy answering within ``READY_TIMEOUT_S``.
    """
    host, port = parse_grpc_url(url)
    storage = HeartbeatGrpcStorage(host=host, port=port, heartbeat_interval=heartbeat_interval,
                                   grace_period=grace_period,
                                   heartbeat_stale_trial_callback=callback)
    try:
        storage.wait_server_ready(timeout=READY_TIMEOUT_S)
    except ConnectionError:
        storage.close()
        raise UserError(f"storage.url: no storage proxy answers at {url} (waited "
                        f"{READY_TIMEOUT_S} s); {USAGE_HINT}") from None
    return storage
