"""Optuna study storage: URL resolution, password masking, RDB storage with heartbeat.

SQLite (default, ``sqlite:///$MSPE_HOME/optuna.db``) serves several worker processes on one
machine: the file is switched to WAL journal mode (``mspe_sweep/sqlite_files.py``) and every
connection waits up to 60 s for a lock instead of failing with "database is locked".
PostgreSQL serves many machines; ``postgresql://`` URLs use the psycopg 3 driver.
``grpc://host:port`` (``storage=grpc``) reaches PostgreSQL through Optuna's gRPC storage proxy
(``python -m mspe_sweep.storage_proxy``), for more workers than the database has connections:
see ``mspe_sweep/sweep/grpc_storage.py`` for how heartbeats travel through it.

Heartbeats: a running trial's worker records a heartbeat every ``heartbeat_interval`` s; a
trial whose heartbeat is older than ``grace_period`` (Optuna's default: twice the interval)
was crashed, is marked FAIL and re-queued as a WAITING trial with the same params, up to
``max_retry`` times (``RetryHeartbeatStaleTrialCallback``). A trial that fails on its own
ends FAIL and is not retried.

Outages: with ``outage_timeout`` the storage rides through a database restart or a lock of up
to that many seconds (``mspe_sweep/sweep/outage.py``).
"""

from __future__ import annotations

import logging
import random
import sqlite3
import time
import warnings
from pathlib import Path

import optuna
import sqlalchemy
from optuna.exceptions import DuplicatedStudyError, ExperimentalWarning
from sqlalchemy.engine import make_url

from mspe_sweep.errors import UserError
from mspe_sweep.sqlite_files import LOCK_TIMEOUT_S, use_wal
from mspe_sweep.sweep.outage import tolerate_outages
from mspe_sweep.text import first_line, mask_url, one_line

VALID_SCHEMES = ("sqlite:///<path>", "postgresql://user:pw@host:port/db",
                 "postgresql+psycopg://...", "grpc://host:port (storage proxy)")
_SETUP_ATTEMPTS = 8
_log = logging.getLogger(__name__)


def default_storage_url(mspe_home: Path) -> str:
    """The default study storage, ``sqlite:///<MSPE_HOME>/optuna.db`` (absolute path)."""
    return f"sqlite:///{(Path(mspe_home) / 'optuna.db').resolve()}"


def _hide(text: str, url: str) -> str:
    """Masks the URL's password wherever it appears inside a driver message."""
    try:
        password = make_url(url).password
    except sqlalchemy.exc.ArgumentError:
        password = None
    text = one_line(text).replace(url, mask_url(url))
    return text.replace(str(password), "***") if password else text


def _normalize(url: str) -> tuple[str, str]:
    """Returns ``(url, backend)``; rejects schemes other than sqlite and postgresql."""
    try:
        parsed = make_url(url)
    except sqlalchemy.exc.ArgumentError as exc:
        raise UserError(f"storage.url: cannot parse {mask_url(url)!r}; valid forms: "
                        f"{', '.join(VALID_SCHEMES)}") from exc
    backend, _, driver = parsed.drivername.partition("+")
    if backend not in ("sqlite", "postgresql"):
        raise UserError(f"storage.url: unsupported scheme {parsed.drivername!r} in "
                        f"{mask_url(url)!r}; valid: {', '.join(VALID_SCHEMES)}")
    if backend == "postgresql" and not driver:
        # SQLAlchemy's default PostgreSQL driver is psycopg2; we ship psycopg 3.
        url = "postgresql+psycopg" + url[len("postgresql"):]
    return url, backend


def _prepare_sqlite(url: str) -> dict:
    try:
        use_wal(make_url(url).database or "")
    except (OSError, sqlite3.Error) as exc:
        reason = one_line(exc)
        raise UserError(f"storage.url: cannot open {mask_url(url)!r}: {reason}") from exc
    return {"connect_args": {"timeout": LOCK_TIMEOUT_S}}


def _probe(url: str, engine_kwargs: dict) -> None:
    """Connects once, so a bad host or password is a clear error before Optuna starts."""
    try:
        engine = sqlalchemy.create_engine(url, **engine_kwargs)
    except ImportError as exc:
        raise UserError(f"storage.url: no driver for {mask_url(url)!r}: {exc}; "
                        "pip install 'psycopg[binary]'") from exc
    try:
        with engine.connect():
            pass
    except sqlalchemy.exc.DBAPIError as exc:
        reason = _hide(first_line(exc.orig or exc), url)
        raise UserError(f"storage.url: cannot connect to {mask_url(url)!r}: {reason}") from exc
    finally:
        engine.dispose()


def build_storage(
    url: str,
    *,
    heartbeat_interval: int | None = 60,
    grace_period: int | None = None,
    max_retry: int | None = 3,
    outage_timeout: int | None = None,
) -> optuna.storages.BaseStorage:
    """Opens (and if needed creates) an RDB study storage with heartbeat and stale-trial retry.

    Args:
        url: ``sqlite:///...``, ``postgresql[+psycopg]://...`` or ``grpc://host:port`` (a
            storage proxy; its storage is Optuna's client with heartbeats, not an RDBStorage).
        heartbeat_interval: Seconds between heartbeats of a running trial; ``None`` disables
            heartbeats (and with them the stale-trial retry).
        grace_period: Seconds without heartbeat before a trial counts as crashed; ``None``
            means Optuna's default, twice ``heartbeat_interval``.
        max_retry: How often a crashed trial is re-queued; ``None`` retries without limit.
        outage_timeout: Seconds a storage call waits for an unreachable or locked database;
            ``None`` fails at once, as Optuna does.

    Returns:
        The ``RDBStorage`` (for ``grpc://``, the proxy's client); with ``outage_timeout``,
        behind an ``OutageTolerantStorage``.

    Raises:
        UserError: Unsupported scheme, unreachable server, wrong password, bad settings.
    """
    for key, value in (("heartbeat_interval", heartbeat_interval),
                       ("grace_period", grace_period), ("max_retry", max_retry),
                       ("outage_timeout", outage_timeout)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < (0 if key == "max_retry" else 1)):
            raise UserError(f"storage.{key}: must be a positive integer or null, got {value!r}")
    callback = None
    if heartbeat_interval is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            callback = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
    if url.startswith("grpc:"):
        from mspe_sweep.sweep.grpc_storage import open_proxy  # imports grpc: only when used

        return tolerate_outages(open_proxy(url, heartbeat_interval=heartbeat_interval,
                                           grace_period=grace_period, callback=callback),
                                outage_timeout)
    url, backend = _normalize(url)
    if backend == "sqlite":
        engine_kwargs = _prepare_sqlite(url)
    else:
        engine_kwargs = {"pool_pre_ping": True, "pool_size": 2, "max_overflow": 4,
                         "connect_args": {"connect_timeout": 10}}
    _probe(url, engine_kwargs)
    # Workers starting together on a fresh database race in CREATE TABLE (optuna#4621): the
    # loser sees "already exists"; after a short random pause the tables are there.
    for attempt in range(_SETUP_ATTEMPTS):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)
                return tolerate_outages(optuna.storages.RDBStorage(
                    url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_interval,
                    grace_period=grace_period, heartbeat_stale_trial_callback=callback),
                    outage_timeout)
        except sqlalchemy.exc.DBAPIError as exc:
            reason = _hide(first_line(exc.orig or exc), url)
            if attempt == _SETUP_ATTEMPTS - 1:
                raise UserError(f"storage.url: cannot set up {mask_url(url)!r}: {reason}") from exc
            _log.debug("storage set-up raced another worker (%s); retrying", reason)
            time.sleep(random.uniform(0.1, 0.3) * (attempt + 1))
        except RuntimeError as exc:  # Optuna's schema-version check.
            raise UserError(f"storage.url: {mask_url(url)!r}: {_hide(str(exc), url)}") from exc
    raise AssertionError("unreachable")


def create_study_once(
    storage: optuna.storages.BaseStorage,
    name: str,
    direction: str,
    sampler: optuna.samplers.BaseSampler,
    pruner: optuna.pruners.BasePruner,
) -> optuna.Study:
    """Creates the study or loads it, safe when several workers start at the same moment.

    Raises:
        UserError: The study exists with the opposite direction.
    """
    kwargs = {"study_name": name, "storage": storage, "sampler": sampler, "pruner": pruner}
    try:
        study = optuna.create_study(direction=direction, load_if_exists=True, **kwargs)
    except (sqlalchemy.exc.IntegrityError, DuplicatedStudyError):
        study = optuna.load_study(**kwargs)
    existing = study.direction.name.lower()
    if existing != direction:
        raise UserError(f"study {name!r} already exists in the storage with direction "
                        f"{existing}; the study file says {direction} (rename the study)")
    return study
