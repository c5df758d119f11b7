"""`python -m mspe_sweep.storage_proxy storage=postgres [storage.url=URL] [proxy.*]`: Optuna's
gRPC storage proxy in front of the study database, for workers started with ``storage=grpc``.

Hundreds of workers, each with its own database connections, exhaust PostgreSQL's
``max_connections``; behind the proxy they hold none: the proxy serves them all from one
connection pool (at most 6 connections, ``build_storage``'s pool) and Optuna's trial cache.
The workers never see the database password either.

Outages: the proxy's storage rides out a database restart like a worker's would
(``storage.outage_timeout``); meanwhile the workers' calls wait in the proxy. Past the timeout
the proxy exits with code 3: its workers see it unreachable, wait for it for their own
``storage.outage_timeout`` (docker compose restarts it) and exit with code 3 if it does not
come back.
"""

from __future__ import annotations

import os
import socket
import sys
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import optuna
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from optuna.exceptions import ExperimentalWarning

from mspe_sweep.cli import EXIT_STORAGE_UNAVAILABLE, run_command
from mspe_sweep.config import compose_typed, describe_config_error
from mspe_sweep.errors import StorageUnavailableError, UserError
from mspe_sweep.schema import DriverConfig, ProxyConfig
from mspe_sweep.sweep.outage import OutageTolerantStorage
from mspe_sweep.sweep.prepare import storage_url
from mspe_sweep.sweep.storage import build_storage
from mspe_sweep.text import mask_secrets, mask_url
from mspe_sweep.validation import check_rules

USAGE = """\
usage: python -m mspe_sweep.storage_proxy storage=postgres [storage.url=URL]
                                          [proxy.host=HOST] [proxy.port=PORT] [proxy.threads=N]

Serves the study database (storage=postgres, its URL from $MSPE_STORAGE_URL or storage.url;
storage=sqlite for one machine) to workers started with
  python -m mspe_sweep.run study=<name> storage=grpc storage.url=grpc://<this host>:<port>
until stopped. proxy.host (default 127.0.0.1) is the interface it listens on: the proxy has no
authentication and no TLS, so use a private interface only. proxy.port defaults to 13000,
proxy.threads (calls served at once) to 10. storage.outage_timeout=S: a database outage is
ridden out for S seconds (default 600), then the proxy exits with code 3.
"""


class ExitOnGiveUp(OutageTolerantStorage):
    """The proxy's database storage: an outage is ridden out as in a worker; past the timeout
    the process exits at once, so that its clients see the proxy unreachable (and wait for it)
    instead of getting the error as the answer to whatever call they made."""

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return super()._call(fn, *args, **kwargs)
        except StorageUnavailableError as exc:
            print(f"error: {mask_secrets(str(exc))}", file=sys.stderr, flush=True)
            os._exit(EXIT_STORAGE_UNAVAILABLE)  # from a server thread: no clean-up to wait for


@dataclass
class ProxyCommand:
    """This command's own keys, typed (``proxy.port=...``)."""

    proxy: ProxyConfig = field(default_factory=ProxyConfig)


def parse_args(args: Sequence[str]) -> tuple[ProxyConfig, DriverConfig]:
    """The ``proxy.*`` keys and the driver config of the ``storage*`` ones.

    Raises:
        UserError: Another argument, a bad value, or ``storage=grpc`` (a proxy needs the
            database itself).
    """
    proxy_args = [arg for arg in args if arg.startswith("proxy.")]
    storage_args = [arg for arg in args if arg.split("=")[0].split(".")[0] == "storage"]
    other = [arg for arg in args if arg not in proxy_args and arg not in storage_args]
    if other:
        raise UserError(f"unexpected argument {other[0]!r} (valid: storage=, storage.url=, "
                        "storage.outage_timeout=, proxy.host=, proxy.port=, proxy.threads=)")
    try:
        typed = OmegaConf.merge(OmegaConf.structured(ProxyCommand),
                                OmegaConf.from_dotlist(proxy_args))
    except OmegaConfBaseException as exc:
        raise UserError(describe_config_error(exc)) from None
    check_rules(typed, ProxyCommand)
    driver = compose_typed("sweep", storage_args, DriverConfig)
    check_rules(driver, DriverConfig)
    if driver.storage.backend == "grpc":
        raise UserError("storage=grpc: the proxy serves the database itself; start it with "
                        "storage=postgres (or storage=sqlite)")
    return typed.proxy, driver


def serve(args: Sequence[str]) -> None:
    """Open the database, then serve it over gRPC until the process is stopped."""
    proxy, driver = parse_args(args)
    url = storage_url(driver)
    # Heartbeats reach the database as trial attributes (mspe_sweep/sweep/grpc_storage.py):
    # the proxy's own storage needs none.
    database = build_storage(url, heartbeat_interval=None, max_retry=None, outage_timeout=None)
    timeout = driver.storage.outage_timeout
    storage = (ExitOnGiveUp(database, timeout) if timeout is not None
               else optuna.storages.get_storage(database))  # Optuna's trial cache, as advised
    shown_host = socket.gethostname() if proxy.host in ("0.0.0.0", "::", "") else proxy.host
    print(f"storage proxy: grpc://{proxy.host}:{proxy.port} -> {mask_url(url)} "
          f"({proxy.threads} threads)\n"
          f"workers: python -m mspe_sweep.run study=<name> storage=grpc "
          f"storage.url=grpc://{shown_host}:{proxy.port}", flush=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        try:
            optuna.storages.run_grpc_proxy_server(
                storage, host=proxy.host, port=proxy.port,
                thread_pool=ThreadPoolExecutor(max_workers=proxy.threads))
        except RuntimeError as exc:  # gRPC's "Failed to bind to address ..."
            raise UserError(f"proxy.host={proxy.host} proxy.port={proxy.port}: cannot listen "
                            f"there: {exc}") from None


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(serve, USAGE, argv)


if __name__ == "__main__":
    raise SystemExit(main())
