"""The worker loop: run trials against the shared storage until the study's budget is done.

Every worker (the only one, one of ``workers=N`` local processes, or one on another machine)
runs this same loop; Optuna's RDB storage is the only thing they share. Before each trial the
worker recovers crashed trials, so a crashed trial is retried with its params and resumed from
its checkpoint:

* a RUNNING trial whose owner process on THIS host is gone is failed and retried at once;
* a RUNNING trial no worker ever claimed (killed between Optuna's ``ask`` and the objective)
  is failed and retried after ``storage.grace_period`` seconds;
* any other crashed trial is failed and retried by Optuna's heartbeat check once it has been
  silent for ``storage.grace_period`` seconds.

The budget counts finished trials (COMPLETE + PRUNED). A worker starts a trial only while
finished + running trials are below it, and otherwise waits for the running ones' outcome, so
concurrent workers overshoot it only through the race between that check and Optuna's ``ask``
(at most ``workers - 1``). A worker does not finish while a trial it cannot prove alive is
still RUNNING: it waits for it to end or to become stale.

A confirmation study's worker (``WorkerLimits.queue_only``) runs its queued (WAITING) trials,
retries included, and stops when none is left and no running trial may still need a retry.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

import optuna
from optuna.storages import fail_stale_trials
from optuna.trial import FrozenTrial, TrialState

from mspe_sweep.errors import UserError
from mspe_sweep.sweep.objective import Objective
from mspe_sweep.sweep.outage import storage_settled
from mspe_sweep.sweep.records import RunningTrial, StudyRecord, TrialRecord
from mspe_sweep.sweep.reporting import budget_done, budget_line, prune_checkpoints

log = logging.getLogger(__name__)

POLL_SECONDS = 2.0
# Ctrl-C, then what stops a worker like it: SIGTERM, and USR1, the warning SLURM sends before a
# time limit or preemption (launcher=slurm asks for it).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)


@dataclass
class WorkerLimits:
    n_trials: int
    timeout: float | None
    max_consecutive_failures: int
    max_retry: int
    keep_checkpoints: int
    grace_period: float
    # Run only queued (WAITING) trials and stop when none is left: a confirmation study's
    # trials are all queued up front, and a new trial would be sampled, not confirmed.
    queue_only: bool = False


def owner_tag(trial_number: int) -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{trial_number}"


def owner_of(trial: FrozenTrial) -> tuple[str, int] | None:
    """``(host, pid)`` of the process running this attempt, or None if none has claimed it."""
    host, pid, number = (TrialRecord(trial).owner.split(":") + ["", ""])[:3]
    if not pid.isdigit() or number != str(trial.number):
        return None
    return host, int(pid)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def owned_here_and_alive(trial: FrozenTrial) -> bool:
    owner = owner_of(trial)
    return owner is not None and owner[0] == socket.gethostname() and pid_alive(owner[1])


def is_abandoned(trial: FrozenTrial, grace_period: float, settled: bool = True) -> bool:
    """A RUNNING trial no process runs: its owner on this host died (SIGKILL, OOM killer), or
    no worker claimed it within the grace period (killed between Optuna's ask and the
    objective, before its first heartbeat). Other hosts' crashes are found by heartbeat.
    Unclaimed trials are judged only once the storage has ``settled`` after an outage: their
    owner may be about to claim them (see ``mspe_sweep/sweep/outage.py``)."""
    owner = owner_of(trial)
    if owner is None:
        if not settled:
            return False
        age = datetime.now() - (trial.datetime_start or datetime.now())
        return age.total_seconds() > grace_period
    return owner[0] == socket.gethostname() and not pid_alive(owner[1])


def retry(study: optuna.Study, trial: FrozenTrial, max_retry: int) -> bool:
    """Queue a WAITING copy of a failed trial (same params); the retry resumes its checkpoint.

    Like Optuna's retry callbacks (see ``TrialRecord.retry_system_attrs``), minus the dead
    owner.
    """
    record = TrialRecord(trial)
    if len(record.retry_history) >= max_retry:  # this retry would be one too many
        log.warning("trial %d is not retried: it already was %d times (storage.max_retry)",
                    trial.number, max_retry)
        return False
    study.add_trial(optuna.trial.create_trial(
        state=TrialState.WAITING, params=trial.params, distributions=trial.distributions,
        user_attrs=trial.user_attrs, system_attrs=record.retry_system_attrs()))
    return True


def recover_abandoned_trials(study: optuna.Study, max_retry: int, grace_period: float) -> int:
    """Fail and retry the RUNNING trials no process runs any more (see ``is_abandoned``)."""
    recovered, records = 0, StudyRecord(study)
    for record in records.trials(TrialState.RUNNING):
        # Read after get_trials, which may ride an outage. Study has no public accessor for
        # its storage object (only the URL-based one of load_study), hence _storage.
        settled = storage_settled(study._storage)
        if not is_abandoned(record.trial, grace_period, settled):
            continue
        try:
            records.fail(record)
        except (RuntimeError, optuna.exceptions.UpdateFinishedTrialError):
            continue  # another worker got there first
        log.warning("trial %d: its worker (%s) is gone; retrying it from its last checkpoint",
                    record.number, record.owner or "never started")
        retry(study, records.trial(record.number).trial, max_retry)
        recovered += 1
    return recovered


def outcome(trial: FrozenTrial) -> str:
    """``COMPLETE 0.4123``, ``PRUNED at epoch 3``, ``FAIL (NonFiniteLossError: ...)``."""
    if trial.state == TrialState.COMPLETE:
        return f"COMPLETE {trial.value:.4f}"
    if trial.state == TrialState.PRUNED:
        epochs = TrialRecord(trial).epochs_run
        return f"PRUNED at epoch {'?' if epochs is None else epochs}"
    reason = TrialRecord(trial).fail_reason
    return f"{trial.state.name} ({reason})" if reason else trial.state.name


def raise_keyboard_interrupt(signum, frame) -> None:
    """SIGTERM as Ctrl-C; a second signal must not interrupt the clean-up of the first."""
    for stop in STOP_SIGNALS:
        signal.signal(stop, signal.SIG_IGN)
    raise KeyboardInterrupt(f"signal {signum}")


class Worker:
    """Runs trials of one study until its budget, its timeout or too many failures."""

    def __init__(self, study: optuna.Study, objective: Objective, limits: WorkerLimits,
                 on_trial_end: Callable[[optuna.Study], None] = lambda study: None) -> None:
        self.study = study
        self.objective = objective
        self.limits = limits
        self.on_trial_end = on_trial_end
        self.consecutive_failures = 0
        self.current_trial: int | None = None
        self._waiting_for = ""

    def run(self) -> None:
        """The loop. SIGTERM (and SLURM's warning signal, USR1) is handled like Ctrl-C: the
        running trial is queued for a retry."""
        previous = {stop: signal.signal(stop, raise_keyboard_interrupt)
                    for stop in STOP_SIGNALS[1:]}
        started = time.monotonic()
        try:
            while self._next_step(started):
                pass
        except KeyboardInterrupt:
            self._requeue_interrupted()
            raise
        finally:
            for stop, handler in previous.items():
                signal.signal(stop, handler)

    def _next_step(self, started: float) -> bool:
        limits = self.limits
        recover_abandoned_trials(self.study, limits.max_retry, limits.grace_period)
        running = self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if limits.queue_only:
            if not self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
                # Nothing queued: done, unless a running trial may crash and be queued again.
                unresolved = [t for t in running if not owned_here_and_alive(t)]
                return bool(unresolved) and self._wait("queue empty; waiting for", unresolved)
        elif (done := budget_done(self.study)) >= limits.n_trials:
            # Done, unless a trial that may have crashed elsewhere still needs a retry.
            unresolved = [t for t in running if not owned_here_and_alive(t)]
            return bool(unresolved) and self._wait("budget reached; waiting for", unresolved)
        elif done + len(running) >= limits.n_trials:
            # The last trials of the budget are running: wait for their outcome rather than
            # start one that may push the study past its budget.
            return self._wait("waiting for", running)
        if self.limits.timeout is not None and time.monotonic() - started > self.limits.timeout:
            log.info("timeout of %.0f s reached; the study continues on the next run",
                     self.limits.timeout)
            return False
        self.study.optimize(self._objective, n_trials=1, catch=(Exception,))
        self._after_trial()
        return True

    def _wait(self, what: str, trials: list[FrozenTrial]) -> bool:
        numbers = ", ".join(str(t.number) for t in trials)
        if numbers != self._waiting_for:
            log.info("%s trial(s) %s to finish or go stale", what, numbers)
            self._waiting_for = numbers
        time.sleep(POLL_SECONDS)
        fail_stale_trials(self.study)
        return True

    def _objective(self, trial: optuna.Trial) -> float:
        self._waiting_for = ""
        RunningTrial(trial).claim(owner_tag(trial.number))
        self.current_trial = trial.number
        return self.objective(trial)

    def _after_trial(self) -> None:
        trial = self.study.get_trials(deepcopy=False)[self.current_trial]
        reason = TrialRecord(trial).fail_reason
        log.info("trial %d %s | %s", trial.number, outcome(trial),
                 budget_line(self.study, self.limits.n_trials))
        prune_checkpoints(self.study, self.limits.keep_checkpoints)
        self.on_trial_end(self.study)
        if trial.state != TrialState.FAIL:
            self.consecutive_failures = 0
            return
        self.consecutive_failures += 1
        if self.consecutive_failures >= self.limits.max_consecutive_failures:
            raise UserError(
                f"study stopped after {self.consecutive_failures} consecutive failed trials "
                f"(max_consecutive_failures); last: trial {trial.number}: {reason}")

    def _requeue_interrupted(self) -> None:
        if self.current_trial is None:
            return
        trial = self.study.get_trials(deepcopy=False)[self.current_trial]
        if (trial.state == TrialState.FAIL and TrialRecord(trial).interrupted
                and retry(self.study, trial, self.limits.max_retry)):
            log.warning("trial %d interrupted; it resumes from its last checkpoint on the next "
                        "run", trial.number)
