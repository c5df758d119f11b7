"""Storage tiers under many workers: trials/s and PostgreSQL connections, side by side.

Usage (from the repository root):

    python -m benchmarks.storage_scale            # 4, 16 and 64 workers, 10 s each
    python -m benchmarks.storage_scale --quick    # 2 and 4 workers, 2 s each (a smoke test)
    python -m benchmarks.storage_scale --workers 8,32 --seconds 20 --postgres-url URL

N worker processes run tiny trials (two suggested floats, a sum of squares: the storage is
all there is to measure) of one study against each tier:

    sqlite    sqlite:///<tmp>/bench.db, one machine (storage=sqlite)
    postgres  PostgreSQL directly (storage=postgres)
    grpc      PostgreSQL behind `python -m mspe_sweep.storage_proxy` (storage=grpc)

Each worker opens its storage with ``build_storage`` and the storage settings a sweep's workers
use (heartbeats every 30 s, the outage wrapper), waits until every worker is ready, then runs
trials for ``--seconds``. Workers are forked from a server process that imported Optuna once
(no torch), so 64 of them start in seconds. Reported per tier: finished trials per second (all
workers, from the start signal to the last worker's end) and the peak number of PostgreSQL
connections the tier held meanwhile (``pg_stat_activity``, polled every 20 ms, counting the
connections tagged with this run's application_name: the workers' or the proxy's).

PostgreSQL comes from ``--postgres-url``, else $MSPE_TEST_POSTGRES_URL or $MSPE_STORAGE_URL;
without one only sqlite runs. The run works in a schema of its own, dropped at the end.
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import optuna
import sqlalchemy
from sqlalchemy.engine import make_url

from mspe_sweep.schema import StorageConfig
from mspe_sweep.sweep.storage import build_storage

# What a sweep's worker passes to build_storage: the storage.* defaults (schema.py).
STORAGE_OPTIONS = {key: value for key, value in dataclasses.asdict(StorageConfig()).items()
                   if key not in ("backend", "url")}
TIERS = ("sqlite", "postgres", "grpc")
START_TIMEOUT_S = 300
POLL_S = 0.02


def objective(trial: optuna.Trial) -> float:
    return trial.suggest_float("x", -1, 1) ** 2 + trial.suggest_float("y", -1, 1) ** 2


def worker(url: str, study_name: str, index: int, seconds: float, ready, go, results) -> None:
    """One worker: open the storage, report ready, run trials for ``seconds`` after ``go``."""
    try:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = build_storage(url, **STORAGE_OPTIONS)
        study = optuna.load_study(study_name=study_name, storage=storage,
                                  sampler=optuna.samplers.RandomSampler(seed=index))
    except Exception as exc:  # noqa: BLE001 - reported in the table
        ready.put(index)
        results.put((index, 0, f"{type(exc).__name__}: {exc}"))
        return
    ready.put(index)
    go.wait()
    finished, error, deadline = 0, "", time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            study.optimize(objective, n_trials=1)
            finished += 1
    except Exception as exc:  # noqa: BLE001 - reported in the table
        error = f"{type(exc).__name__}: {exc}"
    results.put((index, finished, error))


@dataclass
class Result:
    trials_per_s: float
    peak_connections: int | None
    error: str = ""


class ConnectionCounter:
    """Counts the PostgreSQL connections that carry ``application_name``."""

    def __init__(self, engine: sqlalchemy.Engine, application_name: str) -> None:
        # Autocommit: inside one transaction pg_stat_activity would repeat its first snapshot.
        self._connection = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        self._query = sqlalchemy.text(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = :name")
        self._name = application_name

    def count(self) -> int:
        return int(self._connection.execute(self._query, {"name": self._name}).scalar())

    def close(self) -> None:
        self._connection.close()


def close(storage: optuna.storages.BaseStorage) -> None:
    """Let go of a storage's connections: the parent's must not count as the workers'."""
    if hasattr(storage, "engine"):
        storage.engine.dispose()
    elif hasattr(storage, "close"):
        storage.close()


def run_tier(context, url: str, n_workers: int, seconds: float,
             counter: ConnectionCounter | None) -> Result:
    """``n_workers`` workers on a fresh study at ``url``; trials/s and peak connections."""
    study_name = f"bench-{uuid.uuid4().hex[:8]}"
    storage = build_storage(url, max_retry=None)
    optuna.create_study(study_name=study_name, storage=storage)
    close(storage)
    ready, results, go = context.Queue(), context.Queue(), context.Event()
    processes = [context.Process(target=worker, daemon=True,
                                 args=(url, study_name, i, seconds, ready, go, results))
                 for i in range(n_workers)]
    for process in processes:
        process.start()
    peak = 0
    try:
        for _ in processes:
            ready.get(timeout=START_TIMEOUT_S)
        started = time.monotonic()
        go.set()
        done: list[tuple[int, int, str]] = []
        while len(done) < n_workers:
            if counter:
                peak = max(peak, counter.count())
            while not results.empty():
                done.append(results.get())
            if len(done) < n_workers:
                time.sleep(POLL_S)
        elapsed = time.monotonic() - started
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
    errors = sorted({error for _, _, error in done if error})
    total = sum(finished for _, finished, _ in done)
    return Result(total / elapsed, peak if counter else None, "; ".join(errors))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_proxy(url: str, log: Path) -> tuple[subprocess.Popen, str]:
    """``python -m mspe_sweep.storage_proxy`` on a free loopback port, once it listens."""
    port = free_port()
    env = {**os.environ, "MSPE_STORAGE_URL": url, "OMP_NUM_THREADS": "1"}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "mspe_sweep.storage_proxy",
                                 "storage=postgres", f"proxy.port={port}"], env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the storage proxy exited:\n{log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, f"grpc://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"the storage proxy did not listen in {START_TIMEOUT_S} s")


def bench_schema(base_url: str, tag: str) -> tuple[str, sqlalchemy.Engine]:
    """A fresh schema for this run and a URL that works in it and tags its connections."""
    url = make_url(base_url)
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    admin = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    with admin.begin() as connection:
        connection.execute(sqlalchemy.text(f'CREATE SCHEMA "{tag}"'))
    tagged = url.update_query_dict({"options": f"-csearch_path={tag}", "application_name": tag})
    return tagged.render_as_string(hide_password=False), admin


def table(rows: dict[int, dict[str, Result]], tiers: list[str]) -> str:
    """One markdown table: a row per worker count, trials/s and connections per tier."""
    header = ["workers"]
    for tier in tiers:
        header.append(f"{tier} trials/s")
        if tier != "sqlite":
            header.append(f"{tier} PG connections")
    lines = ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
    errors = []
    for n_workers, results in rows.items():
        cells = [str(n_workers)]
        for tier in tiers:
            result = results[tier]
            mark = "*" if result.error else ""
            cells.append(f"{result.trials_per_s:.1f}{mark}")
            if tier != "sqlite":
                cells.append(str(result.peak_connections))
            if result.error:
                errors.append(f"* {tier}, {n_workers} workers: {result.error[:300]}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines + errors)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="4,16,64", help="comma-separated worker counts")
    parser.add_argument("--seconds", type=float, default=10.0, help="trial time per run")
    parser.add_argument("--quick", action="store_true", help="2 and 4 workers, 2 s: a smoke test")
    parser.add_argument("--tiers", default=",".join(TIERS))
    parser.add_argument("--postgres-url", default=os.environ.get("MSPE_TEST_POSTGRES_URL")
                        or os.environ.get("MSPE_STORAGE_URL"))
    args = parser.parse_args(argv)
    counts = [2, 4] if args.quick else [int(n) for n in args.workers.split(",")]
    seconds = 2.0 if args.quick else args.seconds
    tiers = [tier for tier in args.tiers.split(",") if tier in TIERS]
    if not args.postgres_url or not args.postgres_url.startswith("postgresql"):
        print("no PostgreSQL URL (--postgres-url or $MSPE_TEST_POSTGRES_URL): sqlite only")
        tiers = [tier for tier in tiers if tier == "sqlite"]

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["optuna", "mspe_sweep.sweep.storage",
                                    "mspe_sweep.sweep.grpc_storage"])
    tag = f"bench_{uuid.uuid4().hex[:8]}"
    rows: dict[int, dict[str, Result]] = {n: {} for n in counts}
    with tempfile.TemporaryDirectory() as tmp:
        pg_url = admin = proxy = counter = None
        try:
            if set(tiers) & {"postgres", "grpc"}:
                pg_url, admin = bench_schema(args.postgres_url, tag)
                counter = ConnectionCounter(admin, tag)
            for tier in tiers:
                if tier == "grpc":  # started now: its connections count for this tier only
                    proxy, grpc_url = start_proxy(pg_url, Path(tmp) / "proxy.log")
                for n_workers in counts:
                    if tier == "sqlite":
                        url = f"sqlite:///{tmp}/bench-{n_workers}.db"
                        result = run_tier(context, url, n_workers, seconds, None)
                    elif tier == "postgres":
                        result = run_tier(context, pg_url, n_workers, seconds, counter)
                    else:
                        result = run_tier(context, grpc_url, n_workers, seconds, counter)
                    rows[n_workers][tier] = result
                    print(f"{tier:8s} {n_workers:3d} workers: {result.trials_per_s:7.1f} "
                          f"trials/s, peak PostgreSQL connections {result.peak_connections}"
                          + (f" ({result.error[:200]})" if result.error else ""), flush=True)
        finally:
            if proxy is not None:
                proxy.terminate()
                proxy.wait(timeout=30)
            if counter is not None:
                counter.close()
            if admin is not None:
                with admin.begin() as connection:
                    connection.execute(sqlalchemy.text(f'DROP SCHEMA "{tag}" CASCADE'))
                admin.dispose()
    print(f"\n{seconds:g} s of trials per run; {os.cpu_count()} CPUs\n")
    print(table(rows, tiers))


if __name__ == "__main__":
    main()
