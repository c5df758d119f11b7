"""A process that runs bare ``train_from_config`` on request (the per-trial row's peer).

Usage: ``python -m benchmarks._bare <run overrides>``; each line on stdin runs one training
run of those overrides in a fresh directory under ``$MSPE_HOME`` and answers with its wall
time in seconds on stdout. Its first answer is "ready" after a warm-up run. A process of its
own, like the study's worker, so that the runs are not slowed down by the suite's other state
(a Python heap full of other benchmarks' objects makes every garbage collection slower).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

from mspe_sweep.config import compose_run_config, mspe_home
from mspe_sweep.pipeline import train_from_config


def run_once(overrides: list[str]) -> float:
    cfg = compose_run_config(overrides)
    home = mspe_home()
    home.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="bare-", dir=home))
    try:
        start = time.perf_counter()
        train_from_config(cfg, run_dir)
        return time.perf_counter() - start
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def main() -> None:
    overrides = sys.argv[1:]
    run_once(overrides)  # lazy imports, caches, allocator
    print("ready", flush=True)
    for _ in sys.stdin:
        print(repr(run_once(overrides)), flush=True)


if __name__ == "__main__":
    main()
