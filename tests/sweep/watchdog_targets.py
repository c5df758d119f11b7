"""Trainings that tests/sweep/test_watchdog.py runs in a watched trial's child process.

Each is called like ``train_from_config(cfg, run_dir, callbacks=..., resume_from=...)``; the
tests name one in ``watchdog.TRAIN_TARGET`` and put this directory on the child's
``PYTHONPATH``. Environment: ``WATCHDOG_PIDS`` (a file each process of the child's group
appends its pid to), ``WATCHDOG_HANG_EPOCH`` (the epoch ``watchdog_hang:hang_in_epoch`` never finishes).
No torch here, so these start in a fraction of a second.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace


@dataclass
class FakeResult:
    """What the objective reads of a ``TrainResult``."""

    best_value: float
    best_epoch: int
    epochs_run: int
    stop_reason: str = "completed"
    num_params: int = 1
    test_metrics: dict = field(default_factory=dict)
    fingerprint: str = "fake"


def _note_pid(pid: int) -> None:
    with open(os.environ["WATCHDOG_PIDS"], "a") as out:
        out.write(f"{pid}\n")


def sleep_forever(cfg, run_dir: Path, *, callbacks=(), resume_from=None):
    """A hang with a "data-loader worker": a grandchild in the same process group."""
    loader = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
    _note_pid(os.getpid())
    _note_pid(loader.pid)
    while True:
        time.sleep(3600)


def sleep_forever_ignoring_sigterm(cfg, run_dir: Path, *, callbacks=(), resume_from=None):
    """A hang that SIGTERM does not end (like a call stuck in a driver): SIGKILL must."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sleep_forever(cfg, run_dir)


def fake_training(cfg, run_dir: Path, *, callbacks=(), resume_from=None):
    """``cfg.training.epochs`` instant epochs through the Trainer hooks (val ``mae`` = 100 lr
    / epoch), with checkpoints; trial-0 (its run dir) hangs after its first epoch."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text("fake: true\n")
    trainer = SimpleNamespace(epoch=0, global_step=0, best_metric=None, best_epoch=None,
                              should_stop=False, stop_reason=None)

    def call(hook: str, *args) -> None:
        for callback in callbacks:
            getattr(callback, hook)(trainer, *args)

    call("on_fit_start")
    lr = float(cfg.training.optimizer.lr)
    for epoch in range(1, cfg.training.epochs + 1):
        value = lr * 100 / epoch
        call("on_train_epoch_end", epoch, {"loss": value, "lr": lr, "epoch_seconds": 0.01,
                                           "samples_per_second": 1000.0})
        trainer.epoch, trainer.best_metric, trainer.best_epoch = epoch, value, epoch
        call("on_validation_recorded", epoch, {"mae": value, "loss": value})
        for kind in ("best", "last"):
            (run_dir / f"{kind}.pt").write_bytes(b"fake checkpoint")
            call("on_checkpoint_saved", run_dir / f"{kind}.pt", kind)
        call("on_eval_epoch_end", epoch, {"mae": value, "loss": value})
        if run_dir.name == "trial-0":
            sleep_forever(cfg, run_dir)
    call("on_fit_end", {"epoch": list(range(1, trainer.epoch + 1))})
    return FakeResult(best_value=trainer.best_metric, best_epoch=trainer.epoch,
                      epochs_run=trainer.epoch)


class HangAt:
    """A Trainer callback that never returns once the training of ``epoch`` is done."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, epoch: int, metrics: dict) -> None:
        if epoch == self.epoch:
            _note_pid(os.getpid())
            while True:
                time.sleep(3600)


class Unpicklable(Exception):
    def __reduce__(self):
        raise TypeError("not picklable")


def raise_value_error(cfg, run_dir: Path, *, callbacks=(), resume_from=None):
    raise ValueError(f"bad value in {run_dir.name}")


def raise_unpicklable(cfg, run_dir: Path, *, callbacks=(), resume_from=None):
    raise Unpicklable("cannot travel")


def exit_silently(cfg, run_dir: Path, *, callbacks=(), resume_from=None):
    os._exit(3)


def die_by_sigkill(cfg, run_dir: Path, *, callbacks=(), resume_from=None):
    os.kill(os.getpid(), signal.SIGKILL)
