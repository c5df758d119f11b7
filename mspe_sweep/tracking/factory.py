"""``build_tracker``: the tracker for ``tracking=none|local|server``."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from mspe_sweep.errors import UserError
from mspe_sweep.sqlite_files import use_wal
from mspe_sweep.text import mask_url, one_line
from mspe_sweep.tracking.base import Tracker

BACKENDS = ("none", "local", "server")
# The SQLAlchemy dialects MLflow's database store supports (a "+driver" suffix is allowed).
DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")


def build_tracker(backend: str, uri: str | None, mspe_home: Path, *,
                  probe_interval: float | None = None) -> Tracker:
    """The tracker for ``tracking=<backend>``.

    Args:
        backend: ``none`` (no-op), ``local`` (an MLflow database, no server: ``uri`` or by
            default ``sqlite:///<mspe_home>/mlflow.db``) or ``server`` (``uri``).
        uri: The MLflow database (``local``) or the tracking server, ``http(s)://host:port``
            (``server``).
        mspe_home: The state root.
        probe_interval: Seconds between re-tries while tracking is down (default 60 for a
            server, 10 for a database).

    Raises:
        UserError: Unknown backend, or a URI the backend cannot use.
    """
    tracking_uri, artifact_root = tracking_location(backend, uri, mspe_home)
    if backend == "none":
        return Tracker()
    if artifact_root is not None:  # the database's folder (SQLite) or MSPE_HOME
        database = sqlite_database(tracking_uri)
        try:
            artifact_root.parent.mkdir(parents=True, exist_ok=True)
            if database is not None:
                use_wal(database)
        except (OSError, sqlite3.Error) as exc:
            raise UserError(f"tracking.uri={mask_url(tracking_uri)!r}: cannot create "
                            f"{database or artifact_root.parent}: "
                            f"{getattr(exc, 'strerror', None) or one_line(exc)}") from None
    # MLflow is imported only for a real backend (it takes seconds).
    from mlflow.tracking import MlflowClient

    from mspe_sweep.tracking.guard import Guard, http_probe, set_env_defaults
    from mspe_sweep.tracking.tracker import MlflowTracker

    probe = http_probe(tracking_uri) if backend == "server" else None
    interval = 60.0 if backend == "server" else 10.0
    set_env_defaults(http=backend == "server")
    guard = Guard(mask_url(tracking_uri), probe,
                  probe_interval if probe_interval is not None else interval)
    return MlflowTracker(MlflowClient(tracking_uri=tracking_uri), guard, artifact_root)


def tracking_location(backend: str, uri: str | None, mspe_home: Path) -> tuple[str, Path | None]:
    """The tracking URI a backend uses and where new experiments keep their artifacts.

    ``local`` takes any MLflow database URI; artifacts go beside a SQLite file
    (``<its folder>/mlartifacts``) or, for a database server, to ``<mspe_home>/mlartifacts``.
    ``server`` takes ``http(s)://``; the server decides where artifacts go. ``none`` has
    neither (``("", None)``). Nothing is opened, so this also checks a driver config before
    anything is written.

    Raises:
        UserError: An unknown backend, or a URI of the wrong kind for the backend, named with
            its password masked.
    """
    if backend not in BACKENDS:
        raise UserError(f"unknown tracking backend {backend!r}; valid: {', '.join(BACKENDS)}")
    if backend == "none":
        return "", None
    if backend == "server":
        if not uri or not re.match(r"https?://", uri):
            raise UserError(f"tracking=server needs tracking.uri=http://<host>:<port> "
                            f"(got {mask_url(str(uri))!r})")
        return uri, None
    uri = uri or f"sqlite:///{(mspe_home / 'mlflow.db').resolve()}"
    scheme = uri.partition("://")[0].partition("+")[0]
    if scheme not in DATABASE_SCHEMES or "://" not in uri:
        raise UserError(f"tracking=local: tracking.uri={mask_url(uri)!r} is not an MLflow "
                        f"database URI (valid: sqlite:///<path>, "
                        "postgresql+psycopg://..., mysql://..., "
                        "mssql://...; for a tracking server use tracking=server)")
    database = sqlite_database(uri)
    if database is None:
        return uri, mspe_home / "mlartifacts"
    if not database.name:
        raise UserError(f"tracking=local: tracking.uri={uri!r} names no database file "
                        "(valid: sqlite:///<path>/mlflow.db)")
    return uri, database.parent / "mlartifacts"


def sqlite_database(uri: str) -> Path | None:
    """The file of a ``sqlite:///<path>`` URI as SQLAlchemy (so MLflow) reads it
    (``Path("")`` when it names none); None for other schemes.

    Raises:
        UserError: A URI SQLAlchemy cannot parse.
    """
    if uri.partition("://")[0].partition("+")[0] != "sqlite":
        return None
    try:
        return Path(make_url(uri).database or "")
    except ArgumentError:
        raise UserError(f"tracking.uri={mask_url(uri)!r}: not a database URI (valid: "
                        "sqlite:///<path>/mlflow.db)") from None
