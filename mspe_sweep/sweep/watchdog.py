"""Hang-safe trials: ``study.trial_timeout`` and ``study.epoch_timeout``.

A hung data loader, NCCL or CUDA call cannot be interrupted by a flag: only killing the
process that makes it frees the GPU. So when either limit is set, each trial's training
(``train_from_config``) runs in a child process of the worker, and the worker watches it:

* The child is ``python -m mspe_sweep.sweep.trial_process`` (a fresh interpreter: forking a
  worker that has torch, Optuna's heartbeat and MLflow threads loaded is unsafe), in a session
  of its own, so its process group holds it and its data-loader workers. It gets its job (the
  composed config, run directory, checkpoint to resume) over a socket pair and receives no
  signal from the terminal; a thread kills its whole group within a second of the worker's
  death (``kill -9``), so a crashed worker leaves nothing on the GPU.
* Everything else stays in the worker: the Optuna trial (ask/tell, ``owner``, heartbeats),
  the pruner, the MLflow run and the per-epoch lines. The child relays each Trainer hook
  (``on_train_epoch_end``, ``on_eval_epoch_end``, ...) with its arguments and a snapshot of
  the trainer's counters (``trial_process.TRAINER_STATE``) and waits for the worker's answer,
  so the worker's callbacks see the same calls, in the same order, as in-process. A callback
  that raises there (the pruner's ``TrialPruned``, a database outage) ends the child at that point,
  exactly where the Trainer would have stopped: its ``last.pt`` is already written. The
  child's log records are handled by the worker's loggers; its result or exception (pickled;
  one that cannot be is rebuilt as ``TrialProcessError("<Type>: <message>")``) comes back the
  same way, so a trial's reason reads as in-process.
* ``trial_timeout`` counts from the child's start; ``epoch_timeout`` is the longest the child
  may go without progress: from its start to the end of its imports, then to each epoch's end
  (the last window also covers the final test evaluation). On either, the worker sends
  SIGTERM to the child's process group, then SIGKILL after :data:`KILL_GRACE_S`, and the
  trial ends FAIL with the reason ``timeout after 3600s`` or ``no epoch finished within
  600s``: a failure of its own, so it is not retried, counts toward
  ``max_consecutive_failures`` and its checkpoints go as a failed trial's do. The worker
  goes on with the next trial.
* A child that dies of something else (the OOM killer, a segfault) fails its trial the same
  way (``trial process killed by SIGKILL``): the worker survives to record why. Ctrl-C,
  SIGTERM or SLURM's warning signal reach the worker only; it kills the child and requeues
  the trial as today, which resumes from ``last.pt``.

With neither limit set nothing here runs: trials train in the worker's process, as before.
The price of the child is its start-up (imports; seconds per trial) and one socket round trip
per Trainer hook.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from mspe_sweep.sweep import trial_process
from mspe_sweep.sweep.launch import PLAN_ENV
from mspe_sweep.sweep.trial_process import TRAINER_STATE
from mspe_sweep.training.trainer import call_hooks

log = logging.getLogger(__name__)

# What the child runs (``module:function``, called like ``train_from_config``); tests swap in
# a training that hangs.
TRAIN_TARGET = "mspe_sweep.pipeline:train_from_config"
KILL_GRACE_S = 5.0  # SIGTERM, then SIGKILL
POLL_S = 1.0  # how often a silent child is checked for having died
STOP_RACE_S = 2.0  # see TrialProcess._death


class TrialProcessError(Exception):
    """The trial's process ended without a result or an exception of its own; the message
    is the trial's fail reason."""


class TrialTimeout(TrialProcessError):
    """``study.trial_timeout`` or ``study.epoch_timeout`` ran out."""


def fail_reason(exc: BaseException) -> str:
    """A failed trial's reason: ``<Type>: <message>``, or the message of a watchdog error."""
    if isinstance(exc, TrialProcessError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _seconds(value: float) -> str:
    return f"{int(value)}s" if float(value).is_integer() else f"{value}s"


class Limits:
    """The two clocks of a watched trial (seconds; None = unlimited)."""

    def __init__(self, trial_timeout: float | None, epoch_timeout: float | None) -> None:
        self.trial_timeout, self.epoch_timeout = trial_timeout, epoch_timeout

    def overrun(self, started: float, progress: float, now: float) -> str | None:
        """The fail reason if a clock ran out, else None."""
        if self.trial_timeout is not None and now - started >= self.trial_timeout:
            return f"timeout after {_seconds(self.trial_timeout)}"
        if self.epoch_timeout is not None and now - progress >= self.epoch_timeout:
            return f"no epoch finished within {_seconds(self.epoch_timeout)}"
        return None

    def time_left(self, started: float, progress: float, now: float) -> float:
        left = [POLL_S]
        if self.trial_timeout is not None:
            left.append(started + self.trial_timeout - now)
        if self.epoch_timeout is not None:
            left.append(progress + self.epoch_timeout - now)
        return max(0.0, min(left))


def watched_training(trial_timeout: float | None,
                     epoch_timeout: float | None) -> Callable[..., Any] | None:
    """``train_from_config`` run in a watched child process, or None when no limit is set
    (the caller then trains in its own process)."""
    if trial_timeout is None and epoch_timeout is None:
        return None
    limits = Limits(trial_timeout, epoch_timeout)

    def train(cfg, run_dir: Path, *, callbacks: Sequence = (), resume_from: Path | None = None):
        return train_watched(cfg, run_dir, limits, callbacks=callbacks, resume_from=resume_from)

    return train


class TrainerView:
    """What the worker's callbacks see of the child's Trainer: its counters at the hook."""

    def __init__(self) -> None:
        for name in TRAINER_STATE:
            setattr(self, name, None)
        self.should_stop = False


def train_watched(cfg, run_dir: Path, limits: Limits, *, callbacks: Sequence = (),
                  resume_from: Path | None = None):
    """Train in a child process under ``limits``; returns its ``TrainResult``.

    Raises:
        TrialTimeout: A limit ran out (the child's process group is killed).
        TrialProcessError: The child died without a word, or its exception does not unpickle.
        Exception: The child's own exception, or one a callback raised here.
    """
    child = TrialProcess()
    try:
        child.conn.send({"cfg": cfg, "run_dir": str(run_dir), "target": TRAIN_TARGET,
                         "resume_from": None if resume_from is None else str(resume_from),
                         "log_levels": _log_levels()})
        return child.follow(list(callbacks), limits)
    finally:
        child.stop()


class TrialProcess:
    """The worker's side of one child: start, follow, stop."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        # The plan holds the storage password; the child never opens the storage.
        env = {k: v for k, v in os.environ.items() if k not in (PLAN_ENV, "MSPE_STORAGE_URL")}
        if "torch" in sys.modules:  # the child's intra-op threads = this process's
            env["OMP_NUM_THREADS"] = str(sys.modules["torch"].get_num_threads())
        with theirs:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", trial_process.__name__, str(theirs.fileno()),
                 str(os.getpid())],
                pass_fds=(theirs.fileno(),), start_new_session=True, env=env)
        self.pid = self.popen.pid
        self.conn = Connection(ours.detach())
        self.finished = False  # it sent its result or exception and is exiting

    def follow(self, callbacks: list, limits: Limits):
        started = progress = time.monotonic()
        view = TrainerView()
        while True:
            now = time.monotonic()
            reason = limits.overrun(started, progress, now)
            if reason:
                log.warning("trial process %d: %s; stopping it", self.pid, reason)
                raise TrialTimeout(reason)
            if not self.conn.poll(limits.time_left(started, progress, now)):
                if self._exited():  # its data-loader workers may still hold the socket
                    raise self._death()
                continue
            try:
                message = self.conn.recv()
            except EOFError:
                raise self._death() from None
            kind = message[0]
            if kind == "log":
                record = logging.makeLogRecord(message[1])
                logger = logging.getLogger(record.name)
                if logger.isEnabledFor(record.levelno):
                    logger.handle(record)
            elif kind == "ready":
                progress = time.monotonic()
            elif kind == "hook":
                _, hook, args, state = message
                vars(view).update(state)
                call_hooks(callbacks, hook, view, *args)  # an exception ends the child
                self.conn.send(("ok", bool(view.should_stop)))
                if hook == "on_eval_epoch_end":
                    progress = time.monotonic()
            elif kind == "done":
                self.finished = True
                return message[1]
            else:
                self.finished = True
                raise _rebuild(*message[1:])

    def _exited(self) -> bool:
        """Whether the child ended, without reaping it: its pid, hence its process group id,
        cannot be reused while it is a zombie."""
        if self.popen.returncode is not None:
            return True
        try:
            return os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        except ChildProcessError:
            return True

    def _wait_exit(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while not self._exited():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def _death(self) -> TrialProcessError:
        """The child died without a word (OOM killer, segfault, ``os._exit``): its trial's
        failure. Stopped by a signal that may have come to the whole process tree (``scancel``,
        systemd), it waits a moment first, so that the worker's own stop (requeue) wins."""
        self._wait_exit(KILL_GRACE_S)
        try:
            info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            info = None
        if info is None:
            return TrialProcessError("trial process ended without a result")
        if info.si_code == os.CLD_EXITED:
            return TrialProcessError(f"trial process exited with code {info.si_status} "
                                     "without a result")
        if info.si_status in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            time.sleep(STOP_RACE_S)
        return TrialProcessError(f"trial process killed by {signal.Signals(info.si_status).name}")

    def _signal_group(self, signum: int) -> None:
        try:
            os.killpg(self.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self) -> None:
        """End the child and everything in its process group; reap it."""
        try:
            if not (self.finished and self._wait_exit(KILL_GRACE_S)) and not self._exited():
                self._signal_group(signal.SIGTERM)
                self._wait_exit(KILL_GRACE_S)
        finally:
            self._signal_group(signal.SIGKILL)  # a stuck leader, or its loader workers
            try:
                self.popen.wait(timeout=KILL_GRACE_S)
            except subprocess.TimeoutExpired:
                log.warning("trial process %d does not die (stuck in the kernel?); it may "
                            "still hold its GPU", self.pid)
            self.conn.close()


def _log_levels() -> dict[str, int]:
    """The levels set in this process ('' = root), for the child to filter alike."""
    levels = {"": logging.root.level}
    for name, logger in logging.root.manager.loggerDict.items():
        if isinstance(logger, logging.Logger) and logger.level != logging.NOTSET:
            levels[name] = logger.level
    return levels


def _rebuild(pickled: bytes | None, kind: str, text: str, trace: str) -> BaseException:
    log.debug("trial process failed:\n%s", trace)
    if pickled is not None:
        try:
            return pickle.loads(pickled)
        except Exception as exc:  # noqa: BLE001 - any unpickling problem: use the text
            log.debug("cannot unpickle the trial process's %s: %s", kind, exc)
    return TrialProcessError(f"{kind}: {text}")
