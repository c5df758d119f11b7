"""The storage-tier benchmark's quick run: every tier runs, and behind the proxy PostgreSQL
sees no more connections than the proxy's pool, however many workers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

REPO_ROOT = Path(__file__).resolve().parents[2]
PROXY_POOL = 6  # build_storage's PostgreSQL pool: pool_size 2 + max_overflow 4


@pytest.mark.slow
@pytest.mark.postgres
def test_quick_run_compares_the_three_tiers(postgres_url):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "benchmarks.storage_scale", "--quick",
                           "--postgres-url", postgres_url], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    header = next(line for line in lines if line.startswith("| workers"))
    columns = [cell.strip() for cell in header.strip("|").split("|")]
    assert columns == ["workers", "sqlite trials/s", "postgres trials/s",
                       "postgres PG connections", "grpc trials/s", "grpc PG connections"]
    rows = {}
    for line in lines[lines.index(header) + 2:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[int(cells[0])] = dict(zip(columns[1:], cells[1:]))
    assert sorted(rows) == [2, 4], done.stdout
    for n_workers, row in rows.items():
        assert not any(cell.endswith("*") for cell in row.values()), done.stdout  # no errors
        assert all(float(row[f"{tier} trials/s"]) > 0 for tier in ("sqlite", "postgres", "grpc"))
        # Direct: every worker holds at least one connection; behind the proxy: its pool only.
        assert int(row["postgres PG connections"]) >= n_workers, done.stdout
        assert 1 <= int(row["grpc PG connections"]) <= PROXY_POOL, done.stdout
    password = make_url(postgres_url).password
    assert not password or password not in done.stdout + done.stderr
