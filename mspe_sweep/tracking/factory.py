"""``build_tracker``: the tracker for ``tracking=none|local|server``."""

from __future__ import annotations

import re
from pathlib import Path

from mspe_sweep.errors import UserError
from mspe_sweep.text import mask_url
from mspe_sweep.tracking.base import Tracker

BACKENDS = ("none", "local", "server")


def build_tracker(backend: str, uri: str | None, mspe_home: Path, *,
                  probe_interval: float | None = None) -> Tracker:
    """The tracker for ``tracking=<backend>``.

    Args:
        backend: ``none`` (no-op), ``local`` (``sqlite:///<mspe_home>/mlflow.db``, artifacts
            in ``<mspe_home>/mlartifacts``; ``uri`` is ignored) or ``server`` (``uri``).
        uri: The tracking server, ``http(s)://host:port``.
        mspe_home: The state root.
        probe_interval: Seconds between re-tries while tracking is down (default 60 for a
            server, 10 for the local database).

    Raises:
        UserError: Unknown backend, or ``server`` without an http(s) URI.
    """
    if backend not in BACKENDS:
        raise UserError(f"unknown tracking backend {backend!r}; valid: {', '.join(BACKENDS)}")
    if backend == "none":
        return Tracker()
    # MLflow is imported only for a real backend (it takes seconds).
    from mlflow.tracking import MlflowClient

    from mspe_sweep.tracking.guard import Guard, http_probe, set_env_defaults
    from mspe_sweep.tracking.tracker import MlflowTracker

    if backend == "local":
        mspe_home.mkdir(parents=True, exist_ok=True)
        tracking_uri = f"sqlite:///{(mspe_home / 'mlflow.db').resolve()}"
        artifact_root, probe, interval = mspe_home / "mlartifacts", None, 10.0
    else:
        if not uri or not re.match(r"https?://", uri):
            raise UserError(f"tracking=server needs tracking.uri=http://<host>:<port> "
                            f"(got {uri!r})")
        tracking_uri, artifact_root, probe, interval = uri, None, http_probe(uri), 60.0
    set_env_defaults(http=backend == "server")
    guard = Guard(mask_url(tracking_uri), probe, probe_interval if probe_interval is not None else interval)
    return MlflowTracker(MlflowClient(tracking_uri=tracking_uri), guard, artifact_root)
