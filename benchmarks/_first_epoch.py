"""Runs ``python -m <module> [args]`` and notes the wall-clock time its first epoch starts.

Usage: ``MSPE_BENCH_MARK=<file> python -m benchmarks._first_epoch mspe_sweep.run study=...``

The first call of ``Trainer.train_epoch`` in the process writes ``time.time()`` to the file
named by ``$MSPE_BENCH_MARK``; the command then carries on as usual, or, with
``MSPE_BENCH_EXIT_AT_FIT=<n>``, exits at once when the n-th ``Trainer.fit`` starts (the suite
needs the first trials' start times only). The suite's start-up row compares the marked moment
with the time the process was started. The trainer module is imported here first, which
changes no cost: the command imports it (and torch) anyway.
"""

from __future__ import annotations

import os
import runpy
import sys
import time

from mspe_sweep.training.trainer import Trainer

_original = Trainer.train_epoch
_original_fit = Trainer.fit
_fits = []


def _marked(self, loader):
    mark = os.environ.get("MSPE_BENCH_MARK")
    if mark and not os.path.exists(mark):
        with open(mark, "w") as f:
            f.write(repr(time.time()))
    return _original(self, loader)


def _counted_fit(self, *args, **kwargs):
    _fits.append(1)
    if len(_fits) == int(os.environ.get("MSPE_BENCH_EXIT_AT_FIT", "0")):
        sys.stdout.flush()
        os._exit(0)
    return _original_fit(self, *args, **kwargs)


if __name__ == "__main__":
    Trainer.train_epoch = _marked
    Trainer.fit = _counted_fit
    module, sys.argv = sys.argv[1], sys.argv[1:]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
