"""The trial process of a watched trial: ``python -m mspe_sweep.sweep.trial_process FD PID``.

The other half of :mod:`mspe_sweep.sweep.watchdog` (read that first). It receives one job
from the worker over the socket ``FD`` (the composed config, run directory, checkpoint to
resume, the worker's log levels and what to run), trains, relays every Trainer hook and log
record to the worker, sends back the result or the exception, and exits. A thread kills its
process group once the worker (``PID``) is gone. Standard library only until the job's
training is imported.
"""

from __future__ import annotations

import importlib
import logging
import os
import pickle
import signal
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

# The Trainer's hooks (``mspe_sweep.training.Callback``), each relayed by ``HookRelay``, and
# the trainer counters sent with each call (what the worker's callbacks may read).
HOOKS = ("on_fit_start", "on_train_epoch_end", "on_validation_recorded", "on_eval_epoch_end",
         "on_checkpoint_saved", "on_fit_end")
TRAINER_STATE = ("epoch", "global_step", "best_metric", "best_epoch", "should_stop",
                 "stop_reason")
PARENT_POLL_S = 0.5  # how often the worker's being alive is checked


class _Sender:
    """Sends to the worker from any thread of the child (never from its forked loaders)."""

    def __init__(self, conn: Connection) -> None:
        self.conn, self.lock, self.pid = conn, threading.Lock(), os.getpid()

    def __call__(self, message: Any) -> None:
        if os.getpid() == self.pid:
            with self.lock:
                self.conn.send(message)


class HookRelay:
    """The child's one Trainer callback: each hook goes to the worker, which answers."""

    def __init__(self, send: _Sender) -> None:
        self.send = send

    def _relay(self, hook: str, trainer, *args: Any) -> None:
        self.send(("hook", hook, args, {k: getattr(trainer, k, None) for k in TRAINER_STATE}))
        _, trainer.should_stop = self.send.conn.recv()

    def on_fit_start(self, trainer) -> None:
        self._relay("on_fit_start", trainer)

    def on_train_epoch_end(self, trainer, epoch: int, metrics: dict) -> None:
        self._relay("on_train_epoch_end", trainer, epoch, metrics)

    def on_validation_recorded(self, trainer, epoch: int, metrics: dict) -> None:
        self._relay("on_validation_recorded", trainer, epoch, metrics)

    def on_eval_epoch_end(self, trainer, epoch: int, metrics: dict) -> None:
        self._relay("on_eval_epoch_end", trainer, epoch, metrics)

    def on_checkpoint_saved(self, trainer, path: Path, kind: str) -> None:
        self._relay("on_checkpoint_saved", trainer, path, kind)

    def on_fit_end(self, trainer, history: dict) -> None:
        self._relay("on_fit_end", trainer, history)


class _LogRelay(logging.Handler):
    def __init__(self, send: _Sender) -> None:
        super().__init__()
        self.send = send

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = dict(vars(record), msg=record.getMessage(), args=None, exc_info=None)
            if record.exc_info:
                data["exc_text"] = logging.Formatter().formatException(record.exc_info)
            self.send(("log", data))
        except Exception:  # noqa: BLE001 - logging must not break training
            self.handleError(record)


def _die_with_parent(parent: int) -> None:
    """Kill this process group (the child and its loader workers) once the worker is gone.

    A thread, not ``PR_SET_PDEATHSIG``: that signal would end this process only, leaving its
    loader workers behind. The thread runs while the main thread waits in C code that lets
    go of the GIL (torch's CUDA calls, a data-loader queue, a sleep)."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        os.killpg(os.getpgrp(), signal.SIGKILL)

    threading.Thread(target=watch, name="watch-worker", daemon=True).start()


def _error_message(exc: BaseException) -> tuple:
    try:
        pickled: bytes | None = pickle.dumps(exc)
        pickle.loads(pickled)
    except Exception:  # noqa: BLE001 - the worker gets the text instead
        pickled = None
    trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return ("error", pickled, type(exc).__name__, str(exc), trace)


def main(argv: Sequence[str]) -> None:
    """The child: one training, then ``os._exit`` (nothing of the worker's to tear down)."""
    fd, parent = int(argv[0]), int(argv[1])
    _die_with_parent(parent)
    # The worker may have been ignoring these. SLURM's warning (USR1) is the worker's to act on.
    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, signal.SIG_DFL)
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    send = _Sender(Connection(fd))
    code = 1
    try:
        job = send.conn.recv()
        levels = job["log_levels"]
        logging.root.setLevel(levels.pop(""))
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        logging.root.handlers[:] = [_LogRelay(send)]
        module, _, function = job["target"].partition(":")
        train = getattr(importlib.import_module(module), function)
        send(("ready",))
        resume = job["resume_from"]
        result = train(job["cfg"], Path(job["run_dir"]), callbacks=[HookRelay(send)],
                       resume_from=None if resume is None else Path(resume))
        send(("done", result))
        code = 0
    except BaseException as exc:  # noqa: BLE001 - everything goes to the worker
        try:
            send(_error_message(exc))
        except OSError:
            pass  # the worker is gone
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    main(sys.argv[1:])
