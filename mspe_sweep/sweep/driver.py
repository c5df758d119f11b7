"""``run_study``: one run of ``python -m mspe_sweep.run``, phase by phase.

1. :func:`~mspe_sweep.sweep.prepare.prepare`: parse, validate, open the storage and create the
   study once; any mistake is a one-line ``UserError`` before anything is written.
2. :mod:`~mspe_sweep.sweep.launch` (``workers > 1``): start the workers and wait for them;
   with one worker, this process is the worker.
3. :func:`~mspe_sweep.sweep.work.work`: one worker's loop over the study's trials.

Around them, this process alone speaks for the study: the start-up lines, the study's MLflow
parent run (opened before the workers start, finished after they end) and the summary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import optuna
from optuna.trial import TrialState

from mspe_sweep.cli import EXIT_STORAGE_UNAVAILABLE
from mspe_sweep.config import mspe_home
from mspe_sweep.errors import StorageUnavailableError, WorkerFailed
from mspe_sweep.sweep.confirm import confirmed_sweep, prepare_confirmation
from mspe_sweep.sweep.answer import Answer
from mspe_sweep.sweep.confirm_table import Confirmation, build_confirmation
from mspe_sweep.sweep.launch import launcher_for
from mspe_sweep.sweep.prepare import Sweep, prepare
from mspe_sweep.sweep.records import StudyRecord
from mspe_sweep.sweep.reporting import (
    best_trial,
    budget_done,
    counts,
    quiet_trial_logs,
    summary,
)
from mspe_sweep.sweep.work import open_tracking, publish_results, work
from mspe_sweep.text import mask_url
from mspe_sweep.tracking import tracking_location


@dataclass
class StudyResult:
    """The state of a study after a run of the command."""

    study_name: str
    n_trials: int
    complete: int
    pruned: int
    failed: int
    best_trial: int | None
    best_value: float | None
    best_params: dict


def study_result(study: optuna.Study, n_trials: int) -> StudyResult:
    c = counts(study)
    best = best_trial(study)
    return StudyResult(
        study_name=study.study_name, n_trials=n_trials, complete=c[TrialState.COMPLETE],
        pruned=c[TrialState.PRUNED], failed=c[TrialState.FAIL],
        best_trial=best.number if best else None, best_value=best.value if best else None,
        best_params=dict(best.params) if best else {},
    )


def startup_lines(sweep: Sweep) -> str:
    plan, spec = sweep.plan, sweep.plan.spec
    return "\n".join([
        f"study:    {spec.name} ({spec.path}) {spec.direction} {spec.metric}",
        f"storage:  {mask_url(plan.storage_url)}",
        f"data:     {plan.data_source}",
        f"budget:   {budget_done(sweep.study)}/{spec.n_trials} finished trials"
        + (f", timeout {spec.timeout:.0f} s" if spec.timeout else ""),
        f"sampler:  {spec.sampler.to_dict()}",
        f"pruner:   {spec.pruner.to_dict()}",
        f"workers:  {plan.workers}",
        f"MSPE_HOME: {mspe_home()}",
    ])


def run_study(args: Sequence[str]) -> StudyResult | None:
    """Run (or resume) a study until its budget: in this process, or in ``workers`` children.

    Returns None for ``launcher.dry_run=true`` (nothing ran); with ``launcher=slurm`` (no
    ``launcher.wait``), the study as it was when its job array was submitted.
    """
    sweep = prepare(args)
    if sweep is None:
        return None
    answer = drive(sweep)
    if answer is not None:
        print(summary(sweep.study, sweep.plan.spec.metric, sweep.plan.spec.n_trials),
              flush=True)
        print(f"\n{answer.text}", flush=True)
    return study_result(sweep.study, sweep.plan.spec.n_trials)


def run_confirmation(args: Sequence[str]) -> Confirmation | None:
    """Confirm a study's best configurations over seeds (``python -m mspe_sweep.confirm``):
    prepare ``<study>/confirm``, run its queued trials, print the table. None for
    ``launcher.dry_run=true``; with a detached launcher, the table as it was at submission."""
    sweep = prepare_confirmation(args)
    if sweep is None:
        return None
    answer = drive(sweep)
    if answer is None:  # submitted to run detached: the table as it is now
        return build_confirmation(confirmed_sweep(sweep.study), sweep.study,
                                  sweep.plan.spec.metric)
    print(answer.text, flush=True)
    return answer.confirmation


def drive(sweep: Sweep) -> Answer | None:
    """Phases 2 and 3 of a prepared study (a sweep or a confirmation), with its parent run
    and results around them; returns the study's answer, or None when the workers were
    submitted to run detached (they publish it)."""
    plan, study = sweep.plan, sweep.study
    with quiet_trial_logs():
        print(startup_lines(sweep), flush=True)
        parent = publish_parent_run(sweep)
        launcher = launcher_for(plan)
        if launcher.detached:  # submitted; its tasks report to the study and publish it
            launcher.launch(plan)
            return None
        trials_before = len(study.get_trials(deepcopy=False))
        status, database_down = "KILLED", False
        try:
            if plan.workers == 1 and plan.launcher["name"] == "local":
                work(plan, study, sweep.tracker, parent)
            else:
                code = launcher.launch(plan)
                if code == EXIT_STORAGE_UNAVAILABLE:
                    raise StorageUnavailableError(
                        "a worker gave up waiting for the study's database "
                        "(storage.outage_timeout); its messages are above")
                if code:
                    raise WorkerFailed(code)
            status = "FINISHED"
        except StorageUnavailableError:
            database_down = True  # nothing can be read or published; the error says what to do
            raise
        finally:
            if not database_down:
                ran = len(study.get_trials(deepcopy=False)) > trials_before
                answer = publish_results(plan, study, sweep.tracker, parent, status,
                                         with_plots=ran)
    return answer


def publish_parent_run(sweep: Sweep) -> str | None:
    """Open the study's parent run and keep its id in the study, for the workers to find."""
    parent = open_tracking(sweep.plan, sweep.study, sweep.tracker)
    record = StudyRecord(sweep.study)
    if parent and parent != record.parent_run_id:
        record.set_parent_run_id(parent)
    backend = sweep.plan.tracking_backend
    if backend != "none":
        used, _ = tracking_location(backend, sweep.plan.tracking_uri, mspe_home())
        print(f"tracking: {backend} {mask_url(used)}", flush=True)
    return parent
