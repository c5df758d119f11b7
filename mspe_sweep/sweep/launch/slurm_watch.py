"""``launcher.wait=true``: follow a submitted job array until its last task has ended.

Only ``squeue`` and ``scontrol`` are used (no ``sacct``: clusters without accounting lack it).
The progress lines are the workers' own: each trial that finishes is printed with the study's
budget line, read from the study's storage; each change in the tasks' states is printed too.
"""

from __future__ import annotations

import logging
import subprocess
import time
from collections import Counter
from pathlib import Path

import optuna
from optuna.trial import TrialState

from mspe_sweep.errors import UserError
from mspe_sweep.sweep.plan import Plan
from mspe_sweep.sweep.reporting import budget_line
from mspe_sweep.sweep.storage import build_storage
from mspe_sweep.sweep.worker import outcome

log = logging.getLogger(__name__)

POLL_SECONDS = 5.0
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def task_states(job_id: str) -> dict[str, str]:
    """``{"12_0": "RUNNING", ...}`` for the array's tasks that are still pending or running.

    Raises:
        UserError: ``squeue`` failed for another reason than a job it no longer knows.
    """
    done = subprocess.run(["squeue", "-h", "-r", "-j", job_id, "-o", "%i|%T"],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        if "Invalid job id" in done.stderr:  # ended longer ago than MinJobAge
            return {}
        raise UserError(f"squeue -j {job_id} failed: {' '.join(done.stderr.split())}")
    rows = (line.split("|", 1) for line in done.stdout.splitlines() if "|" in line)
    return {task: state for task, state in rows}


def exit_codes(job_id: str) -> dict[str, tuple[str, int]]:
    """``{"12_0": ("COMPLETED", 0), ...}``: the ended tasks ``scontrol`` still remembers."""
    done = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True,
                          text=True, check=False)
    codes = {}
    for line in done.stdout.splitlines():
        fields = dict(item.split("=", 1) for item in line.split() if "=" in item)
        if "ArrayTaskId" in fields and "ExitCode" in fields:
            task = f"{fields.get('ArrayJobId', job_id)}_{fields['ArrayTaskId']}"
            codes[task] = (fields.get("JobState", "?"), int(fields["ExitCode"].split(":")[0]))
    return codes


def summarise(states: dict[str, str]) -> str:
    """``2 RUNNING, 1 PENDING`` (or ``no task left``)."""
    counts = Counter(states.values())
    return ", ".join(f"{n} {state}" for state, n in counts.most_common()) or "no task left"


def follow(plan: Plan, job_id: str, logs: Path) -> int:
    """Print progress until the array's tasks have all ended.

    Returns:
        0 when every task ended well (or ``scontrol`` forgot them), else the first task's
        non-zero exit code (its log is named in a warning).
    """
    study = optuna.load_study(study_name=plan.spec.name,
                              storage=build_storage(plan.storage_url, **plan.storage_options))
    seen = {t.number for t in study.get_trials(deepcopy=False, states=FINISHED)}
    last_states = ""
    try:
        while True:
            states = task_states(job_id)
            if summarise(states) != last_states:
                last_states = summarise(states)
                log.info("slurm job %s: %s", job_id, last_states)
            for trial in study.get_trials(deepcopy=False, states=FINISHED):
                if trial.number not in seen:
                    seen.add(trial.number)
                    log.info("trial %d %s | %s", trial.number, outcome(trial),
                             budget_line(study, plan.spec.n_trials))
            if not states:
                break
            time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        # Only the watching stops: the tasks are SLURM's now.
        log.warning("stopped following job %s; it keeps running (scancel %s stops it)",
                    job_id, job_id)
        raise
    failed = {task: code for task, (state, code) in exit_codes(job_id).items() if code}
    for task, code in sorted(failed.items()):
        log.warning("task %s exited with code %d; its log: %s/%s.out", task, code, logs, task)
    return next(iter(failed.values()), 0)
