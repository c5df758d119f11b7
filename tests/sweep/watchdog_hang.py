"""A real training that hangs, for tests/sweep/test_watchdog.py (see watchdog_targets.py).

Its own module because it imports torch on import, as the real target's module does: the
trial process's imports then end before its epoch window starts.
"""

from __future__ import annotations

import os
from pathlib import Path

from watchdog_targets import HangAt

from mspe_sweep.pipeline import train_from_config


def hang_in_epoch(cfg, run_dir: Path, *, callbacks=(), resume_from=None):
    """Real training whose epoch ``WATCHDOG_HANG_EPOCH`` never finishes."""
    hang = HangAt(int(os.environ["WATCHDOG_HANG_EPOCH"]))
    return train_from_config(cfg, run_dir, callbacks=[*callbacks, hang],
                             resume_from=resume_from)
