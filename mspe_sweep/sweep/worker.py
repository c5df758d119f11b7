"""The worker loop: run trials against the shared storage until the study's budget is done.

Every worker (the only one, one of ``workers=N`` local processes, or one on another machine)
runs this same loop; Optuna's RDB storage is the only thing they share. Before each trial the
worker recovers crashed trials, so a crashed trial is retried with its params and resumed from
its checkpoint:

* a RUNNING trial whose owner process on THIS host is gone is failed and retried at once;
* any other crashed trial is failed and retried by Optuna's heartbeat check once it has been
  silent for ``storage.grace_period`` seconds.

The budget counts finished trials (COMPLETE + PRUNED) and is checked before each trial, so
concurrent workers overshoot it by at most ``workers - 1``. A worker does not finish while a
trial it cannot prove alive is still RUNNING: it waits for it to end or to become stale.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from dataclasses import dataclass
from typing import Callable

import optuna
from optuna.storages import RetryFailedTrialCallback, fail_stale_trials
from optuna.trial import FrozenTrial, TrialState

from mspe_sweep.errors import UserError
from mspe_sweep.sweep.objective import ATTR_FAIL_REASON, ATTR_INTERRUPTED, Objective
from mspe_sweep.sweep.reporting import budget_done, budget_line, prune_checkpoints

log = logging.getLogger(__name__)

ATTR_OWNER = "owner"
POLL_SECONDS = 2.0


@dataclass
class WorkerLimits:
    n_trials: int
    timeout: float | None
    max_consecutive_failures: int
    max_retry: int
    keep_checkpoints: int


def owner_tag() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_is_dead(trial: FrozenTrial) -> bool:
    """True when the trial's owner process ran on this host and no longer exists."""
    host, _, pid = str(trial.system_attrs.get(ATTR_OWNER, "")).rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def retry(study: optuna.Study, trial: FrozenTrial, max_retry: int) -> None:
    """Queue a WAITING copy of a failed trial (same params); the retry resumes its checkpoint."""
    RetryFailedTrialCallback(max_retry=max_retry)(study, trial)


def recover_dead_trials(study: optuna.Study, max_retry: int) -> int:
    """Fail and retry RUNNING trials whose local owner died (SIGKILL, OOM killer, power cut)."""
    recovered = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not owner_is_dead(trial):
            continue
        try:
            study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        except (RuntimeError, optuna.exceptions.UpdateFinishedTrialError):
            continue  # another worker got there first
        log.warning("trial %d: its worker (%s) died; retrying it from its last checkpoint",
                    trial.number, trial.system_attrs.get(ATTR_OWNER))
        retry(study, study._storage.get_trial(trial._trial_id), max_retry)
        recovered += 1
    return recovered


def unresolved_running(study: optuna.Study) -> list[FrozenTrial]:
    """RUNNING trials not owned by a live process on this host (possibly crashed elsewhere)."""
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if str(t.system_attrs.get(ATTR_OWNER, "")).rpartition(":")[0] != socket.gethostname()
            or owner_is_dead(t)]


def outcome(trial: FrozenTrial) -> str:
    """``COMPLETE 0.4123``, ``PRUNED at epoch 3``, ``FAIL (NonFiniteLossError: ...)``."""
    if trial.state == TrialState.COMPLETE:
        return f"COMPLETE {trial.value:.4f}"
    if trial.state == TrialState.PRUNED:
        return f"PRUNED at epoch {trial.user_attrs.get('epochs_run', '?')}"
    reason = trial.user_attrs.get(ATTR_FAIL_REASON)
    return f"{trial.state.name} ({reason})" if reason else trial.state.name


def raise_keyboard_interrupt(signum, frame) -> None:
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

    def run(self) -> None:
        """The loop. SIGTERM is handled like Ctrl-C: the running trial is queued for a retry."""
        signal.signal(signal.SIGTERM, raise_keyboard_interrupt)
        started = time.monotonic()
        try:
            while self._next_step(started):
                pass
        except KeyboardInterrupt:
            self._requeue_interrupted()
            raise

    def _next_step(self, started: float) -> bool:
        recover_dead_trials(self.study, self.limits.max_retry)
        if budget_done(self.study) >= self.limits.n_trials:
            waiting_for = unresolved_running(self.study)
            if not waiting_for:
                return False
            log.info("budget reached; waiting for trial(s) %s to finish or go stale",
                     ", ".join(str(t.number) for t in waiting_for))
            time.sleep(POLL_SECONDS)
            fail_stale_trials(self.study)
            return True
        if self.limits.timeout is not None and time.monotonic() - started > self.limits.timeout:
            log.info("timeout of %.0f s reached; the study continues on the next run",
                     self.limits.timeout)
            return False
        self.study.optimize(self._objective, n_trials=1, catch=(Exception,))
        self._after_trial()
        return True

    def _objective(self, trial: optuna.Trial) -> float:
        self.study._storage.set_trial_system_attr(trial._trial_id, ATTR_OWNER, owner_tag())
        self.current_trial = trial.number
        return self.objective(trial)

    def _after_trial(self) -> None:
        trial = self.study.get_trials(deepcopy=False)[self.current_trial]
        reason = trial.user_attrs.get(ATTR_FAIL_REASON)
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
        if trial.state == TrialState.FAIL and trial.user_attrs.get(ATTR_INTERRUPTED):
            retry(self.study, trial, self.limits.max_retry)
            log.warning("trial %d interrupted; it resumes from its last checkpoint on the next "
                        "run", trial.number)
