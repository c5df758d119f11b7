"""Phase 3 of a study run: one worker's loop over the study's trials, from its :class:`Plan`.

``work`` runs in the process the user started (``workers=1``) or in each worker process a
launcher started: ``python -m mspe_sweep.sweep.work``, with the plan and the worker's index in
its environment (see :mod:`mspe_sweep.sweep.launch`).
"""

from __future__ import annotations

import itertools
import logging
import os
import time

import optuna
from optuna.trial import TrialState

from mspe_sweep.cli import run_command
from mspe_sweep.config import mspe_home
from mspe_sweep.errors import StorageUnavailableError, UserError
from mspe_sweep.sweep.answer import Answer, answer_study
from mspe_sweep.sweep.confirm import ConfirmObjective, publish_confirmation
from mspe_sweep.sweep.factories import build_pruner, study_sampler
from mspe_sweep.sweep.launch import INDEX_ENV, PLAN_ENV, launcher_for
from mspe_sweep.sweep.objective import Objective
from mspe_sweep.sweep.plan import Plan
from mspe_sweep.sweep.plots import write_study_plots
from mspe_sweep.sweep.records import StudyRecord
from mspe_sweep.sweep.reporting import quiet_libraries, quiet_trial_logs, track_progress
from mspe_sweep.sweep.storage import build_storage
from mspe_sweep.sweep.worker import Worker, WorkerLimits
from mspe_sweep.tracking import Tracker, build_tracker

log = logging.getLogger(__name__)

USAGE = """\
usage: python -m mspe_sweep.sweep.work   (started by `python -m mspe_sweep.run workers=N`)

Runs one worker of a prepared study: the plan and the worker's index come in the environment
variables MSPE_WORKER_PLAN and MSPE_WORKER_INDEX.
"""


def worker_limits(plan: Plan) -> WorkerLimits:
    spec, storage = plan.spec, plan.storage_options
    return WorkerLimits(n_trials=spec.n_trials, timeout=spec.timeout,
                        max_consecutive_failures=spec.max_consecutive_failures,
                        max_retry=storage["max_retry"], keep_checkpoints=spec.keep_checkpoints,
                        grace_period=storage["grace_period"], queue_only=bool(plan.confirms))


def open_tracking(plan: Plan, study: optuna.Study, tracker: Tracker) -> str | None:
    """Open the study's parent run (created once; its id is kept in the study by ``prepare``'s
    process); returns its id, or None without tracking. A confirmation's run is the
    ``confirm`` run nested under its sweep's parent run, in the sweep's experiment."""
    within, tags = None, None
    if plan.confirms:
        within, tags = (plan.confirms, plan.confirms_run), {"mspe.phase": "confirm"}
    return tracker.start_study(plan.spec.name, StudyRecord(study).parent_run_id,
                               plan.spec.to_dict(), plan.base_config_yaml, within=within,
                               tags=tags)


def work(plan: Plan, study: optuna.Study, tracker: Tracker, parent_run_id: str | None) -> None:
    """Run trials of the study until its budget, its timeout or too many failures."""
    kind = ConfirmObjective if plan.confirms else Objective
    objective = kind(plan.spec, plan.overrides, plan.runs_dir, tracker=tracker, data=plan.data)
    worker = Worker(study, objective, worker_limits(plan),
                    on_trial_end=lambda study: track_progress(tracker, parent_run_id, study))
    worker.run()


def open_study(plan: Plan, worker: int) -> optuna.Study:
    """The prepared study, with this worker's own sampler seed."""
    spec = plan.spec
    study = optuna.load_study(study_name=spec.name, storage=reopen_storage(plan),
                              pruner=build_pruner(spec.pruner))
    study.sampler = study_sampler(spec.sampler, spec.seed, spec.params, worker=worker,
                                  existing_trials=len(study.get_trials(deepcopy=False)))
    return study


def reopen_storage(plan: Plan, poll_seconds: float = 5.0) -> optuna.storages.BaseStorage:
    """The storage ``prepare`` opened and checked, opened again by a worker.

    A failure here is the database being away (a restart, or a requeued batch task that
    starts during one), not a mistake: like any storage call, the worker waits for it up to
    ``storage.outage_timeout`` (one warning line), then gives up with exit code 3.

    Raises:
        StorageUnavailableError: Still unreachable after ``storage.outage_timeout``.
        UserError: Unreachable, with the outage ride-through turned off (``null``).
    """
    timeout = plan.storage_options.get("outage_timeout")
    deadline = time.monotonic() + (timeout or 0)
    for attempt in itertools.count():
        try:
            return build_storage(plan.storage_url, **plan.storage_options)
        except UserError as exc:
            if timeout is None:
                raise
            if time.monotonic() >= deadline:
                raise StorageUnavailableError(
                    f"{exc} (for {timeout} s: storage.outage_timeout); run the command again "
                    "once the database is back") from None
            if attempt == 0:
                log.warning("the study's database is unreachable; this worker waits up to "
                            "%s s for it (storage.outage_timeout)", timeout)
            time.sleep(min(poll_seconds, max(0.0, deadline - time.monotonic())))
    raise AssertionError("unreachable")


def work_in_this_process(plan: Plan, worker: int) -> None:
    """A launched worker: open what ``prepare`` created, then ``work``. After a detached
    launch (a batch job) no driver waits for the workers, so each publishes the study's
    results when it ends; the last one to end finishes the parent run."""
    study = open_study(plan, worker)
    tracker = build_tracker(plan.tracking_backend, plan.tracking_uri, mspe_home())
    parent = open_tracking(plan, study, tracker)
    work(plan, study, tracker, parent)
    if launcher_for(plan).detached:
        publish_results(plan, study, tracker, parent, "FINISHED", with_plots=True)


def publish_results(plan: Plan, study: optuna.Study, tracker: Tracker, parent: str | None,
                    status: str, with_plots: bool) -> Answer:
    """The study's plots and trials CSV (``runs/<study>/plots/``, when trials ran) and its
    answer (``report.html``; see :mod:`~mspe_sweep.sweep.answer`), also on the parent run,
    which ends only when no trial is running: with several drivers or workers on one study
    (machines, a job array, ``docker compose --scale``), the last one to finish ends it. A
    confirmation publishes its table and the answer of the study it confirms.

    Returns:
        The answer, whose text the driver prints.
    """
    if plan.confirms:
        answer = publish_confirmation(plan, study, tracker)
        files = answer.files
    else:
        files = write_study_plots(study, plan.runs_dir / "plots") if with_plots else []
        answer = answer_study(study, plan.spec.metric, plan.runs_dir)
        files = [*files, *answer.files]
    track_progress(tracker, parent, study)
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    tracker.finish_study(parent, files, status=None if running and status == "FINISHED"
                         else status)
    return answer


def main() -> int:
    """The worker process's entry point (exit codes as ``python -m mspe_sweep.run``)."""
    plan, index = os.environ.get(PLAN_ENV), os.environ.get(INDEX_ENV, "0")

    def body(args: list[str]) -> None:
        if plan is None:
            raise SystemExit(USAGE.rstrip())
        work_in_this_process(Plan.from_json(plan), int(index))

    with quiet_libraries(), quiet_trial_logs():
        return run_command(body, USAGE, [])


if __name__ == "__main__":
    raise SystemExit(main())
