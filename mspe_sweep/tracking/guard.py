"""A circuit breaker around every MLflow call: tracking trouble never fails a trial.

The first call that fails because the store is unreachable (connection refused, timeout, 5xx,
a locked or broken database) logs ONE warning and opens the breaker; while it is open, calls
return immediately without touching the network. At most every ``probe_interval`` seconds the
next call probes the store (``GET <uri>/health`` with a 2 s timeout for a server, the call
itself for a local database) and, if the store answers, closes the breaker and logs one line
saying that logging resumed. Errors that are not outages (e.g. a rejected param value) are
logged as a warning for that call only and do not open the breaker.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Callable

import requests
from mlflow.exceptions import MlflowException
from sqlalchemy.exc import SQLAlchemyError

from mspe_sweep.text import mask_secrets, one_line

log = logging.getLogger("mspe_sweep.tracking")

# MLflow's defaults (7 retries, backoff factor 2, 120 s timeout) would stall a training loop
# for minutes on the first failed request of an outage. Ours: 3 attempts, 0 s then 2 s apart
# (MLflow wants whole numbers), so ~2 s for a refused connection and ~32 s for a server that
# accepts connections but never answers; paid once per outage, as the breaker then opens.
HTTP_ENV_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}
# Without this, MLflow prints two "View run ... at" lines to stdout for every ended run.
QUIET_ENV_DEFAULTS = {"MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}
PROBE_TIMEOUT_S = 2.0
_OUTAGE_CODES = {"INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED",
                 "WORKSPACE_TEMPORARILY_UNAVAILABLE", "ENDPOINT_NOT_FOUND"}


def set_env_defaults(http: bool) -> None:
    """Put our MLflow settings into ``os.environ`` where the user has not set them.

    MLflow reads these variables on every request, so they take effect for clients that
    already exist too; they apply to the whole process.

    Args:
        http: Also the HTTP retry/timeout settings (:data:`HTTP_ENV_DEFAULTS`).
    """
    for name, value in {**QUIET_ENV_DEFAULTS, **(HTTP_ENV_DEFAULTS if http else {})}.items():
        os.environ.setdefault(name, value)


def is_outage(exc: BaseException) -> bool:
    """True when ``exc`` means the store is unreachable or broken, not that a value was bad."""
    if isinstance(exc, (requests.RequestException, OSError, SQLAlchemyError)):
        return True
    if isinstance(exc, MlflowException):
        if str(exc.message).startswith("API request to"):  # connection error or retries spent
            return True
        return exc.error_code in _OUTAGE_CODES
    return False


def http_probe(uri: str) -> Callable[[], bool]:
    """A cheap liveness check of a tracking server: ``GET <uri>/health`` answers 200."""

    def probe() -> bool:
        try:
            return requests.get(f"{uri.rstrip('/')}/health", timeout=PROBE_TIMEOUT_S).ok
        except requests.RequestException:
            return False

    return probe


class Guard:
    """Runs MLflow calls behind a circuit breaker (see the module docstring).

    Args:
        uri: The tracking URI, named in the warning (never contains a password we add).
        probe: Liveness check used before re-trying an open breaker; None: retry the call.
        probe_interval: Seconds between re-tries while the store is down.
        clock: Monotonic clock (injectable for tests).
    """

    def __init__(self, uri: str, probe: Callable[[], bool] | None = None,
                 probe_interval: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.uri = uri
        self.probe = probe
        self.probe_interval = probe_interval
        self.clock = clock
        self.down_since: float | None = None
        self.next_probe = 0.0
        self.outages = 0
        self._seen: set[str] = set()

    @property
    def is_down(self) -> bool:
        """Whether the breaker is open (the last attempt found the store unreachable)."""
        return self.down_since is not None

    def call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any
             ) -> tuple[bool, Any]:
        """Run ``fn(*args, **kwargs)`` unless the breaker is open; never raises ``Exception``.

        Args:
            what: A few words for log lines (``"log epoch 3 of trial-7"``).
            fn: The MLflow call.
            *args: Its positional arguments.
            **kwargs: Its keyword arguments.

        Returns:
            ``(True, result)`` on success, ``(False, None)`` when skipped or failed.
        """
        if self.down_since is not None:
            now = self.clock()
            if now < self.next_probe:
                return False, None
            self.next_probe = now + self.probe_interval
            if self.probe is not None and not self.probe():
                return False, None
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - tracking must never fail a trial
            self._failed(what, exc)
            return False, None
        if self.down_since is not None:
            log.warning("MLflow tracking at %s is reachable again after %.0f s; logging resumes "
                        "(see mspe_sweep/tracking for what was not backfilled)", self.uri,
                        self.clock() - self.down_since)
            self.down_since = None
        return True, result

    def _failed(self, what: str, exc: Exception) -> None:
        if not is_outage(exc):
            level = logging.DEBUG if _describe(exc) in self._seen else logging.WARNING
            self._seen.add(_describe(exc))
            log.log(level, "MLflow: %s failed and was skipped: %s", what, _describe(exc))
            return
        if self.down_since is None:
            self.outages += 1
            self.down_since = self.clock()
            self.next_probe = self.down_since + self.probe_interval
            log.warning(
                "MLflow tracking at %s is unreachable (%s failed: %s). Trials go on: Optuna's "
                "storage keeps every trial, its params and values; MLflow logging is paused "
                "and re-tried every %.0f s.", self.uri, what, _describe(exc),
                self.probe_interval)
        else:
            log.debug("MLflow still unreachable: %s failed: %s", what, _describe(exc))


def _describe(exc: BaseException) -> str:
    # MLflow and SQLAlchemy quote the store's URI, password included, in their errors.
    return f"{type(exc).__name__}: {one_line(mask_secrets(str(exc)), limit=300)}"
