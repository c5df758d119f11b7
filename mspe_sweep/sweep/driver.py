"""From the command line to a running study: parse, validate, open storage, start workers.

Everything here happens before the first trial; any mistake is a one-line ``UserError`` and
nothing has been written to the storage yet.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import optuna
from optuna.trial import TrialState
from omegaconf import DictConfig, OmegaConf

from mspe_sweep.config import (
    STUDIES_DIR,
    to_yaml,
    compose_run_config,
    compose_typed,
    group_options,
    mspe_home,
)
from mspe_sweep.errors import UserError
from mspe_sweep.pipeline import build_dataset
from mspe_sweep.schema import DriverConfig
from mspe_sweep.sweep.factories import build_pruner, build_sampler
from mspe_sweep.sweep.launcher import launch_workers, worker_index
from mspe_sweep.sweep.objective import Objective, derive_seed
from mspe_sweep.sweep.plots import write_study_plots
from mspe_sweep.sweep.records import StudyRecord
from mspe_sweep.sweep.reporting import (
    best_trial,
    budget_done,
    counts,
    summary,
    track_progress,
)
from mspe_sweep.sweep.spec import StudySpec, find_study_file, load_study
from mspe_sweep.sweep.storage import (
    build_storage,
    create_study_once,
    default_storage_url,
)
from mspe_sweep.sweep.worker import Worker, WorkerLimits
from mspe_sweep.text import mask_url
from mspe_sweep.tracking import Tracker, build_tracker
from mspe_sweep.training import get_metrics

log = logging.getLogger(__name__)

DRIVER_KEYS = ("study", "storage", "tracking", "workers", "trials_per_gpu")


@dataclass
class Sweep:
    """A validated, opened study and everything a worker needs to run its trials."""

    driver: DictConfig
    spec: StudySpec
    run_overrides: list[str]
    storage_url: str
    study: optuna.Study
    base_cfg: DictConfig
    data_source: str
    fingerprint: str
    tracker: Tracker

    @property
    def runs_dir(self) -> Path:
        return mspe_home() / "runs" / self.spec.name

    def objective(self, tracker: Tracker) -> Objective:
        return Objective(self.spec, [*self.spec.fixed, *self.run_overrides], self.runs_dir,
                         tracker=tracker, fingerprint=self.fingerprint)


def is_driver_override(arg: str) -> bool:
    key = arg.partition("=")[0].lstrip("+~")
    return key.split(".", 1)[0] in DRIVER_KEYS


def parse_args(args: Sequence[str]) -> tuple[DictConfig, list[str]]:
    """Split arguments into the driver config and the run-config overrides (in order).

    ``study=<name>`` picks ``studies/<name>.yaml``; ``study.n_trials=5`` and friends override
    the study file's driver settings.
    """
    driver_args = [a for a in args if is_driver_override(a)]
    run_overrides = [a for a in args if not is_driver_override(a)]
    driver_args = [f"study.name={a.partition('=')[2]}" if a.startswith("study=") else a
                   for a in driver_args]
    driver = compose_typed("sweep", driver_args, DriverConfig)
    if not driver.study.name:
        studies = ", ".join(sorted(p.stem for p in STUDIES_DIR.glob("*.yaml")))
        raise UserError(f"study=<name> is required (studies/: {studies})")
    if driver.workers < 1 or driver.trials_per_gpu < 1:
        raise UserError("workers and trials_per_gpu must be >= 1")
    return driver, run_overrides


def load_spec(driver: DictConfig, run_overrides: Sequence[str]) -> tuple[StudySpec, DictConfig]:
    """Read and validate the study file against the composed base run config."""
    path = find_study_file(driver.study.name, STUDIES_DIR)
    spec_fixed = _fixed_of(path)
    try:
        cfg = compose_run_config([*spec_fixed, *run_overrides])
    except UserError as exc:
        raise UserError(f"{path} fixed + command line: {exc}") from None
    known_metrics = {f"val/{name}" for name in get_metrics("regression").names} | {"val/loss"}
    spec = load_study(path, cfg=cfg, groups=group_options(), known_metrics=known_metrics,
                      cli_overrides=run_overrides, compose=compose_run_config)
    changes = {key: driver.study[key] for key in ("n_trials", "timeout", "seed")
               if driver.study[key] is not None}
    if changes.get("n_trials", 1) < 1:
        raise UserError(f"study.n_trials={changes['n_trials']}: must be >= 1")
    if changes.get("timeout", 1) <= 0:
        raise UserError(f"study.timeout={changes['timeout']}: must be a number of seconds > 0")
    spec = dataclasses.replace(spec, **changes)
    # Samplers take numpy seeds (0 <= seed < 2**32); each local worker adds its index.
    if not 0 <= spec.seed < 2**31:
        where = "study.seed" if "seed" in changes else f"{path}: seed"
        raise UserError(f"{where}={spec.seed}: must be between 0 and 2**31 - 1")
    return spec, cfg


def _fixed_of(path: Path) -> list[str]:
    # `fixed` is needed to compose the config that load_study validates the rest against.
    loaded = OmegaConf.load(path)
    fixed = loaded.get("fixed", []) if isinstance(loaded, DictConfig) else []
    return [str(item) for item in fixed] if OmegaConf.is_list(fixed) else []


def study_identity(spec: StudySpec, fingerprint: str, run_overrides: Sequence[str]) -> dict:
    """What makes two runs of the command the same study (driver keys excluded)."""
    payload = {
        "space": spec.fingerprint_payload(),
        "seed": spec.seed,
        "metric": spec.metric,
        "direction": spec.direction,
        "dataset": fingerprint,
        "run_overrides": [*spec.fixed, *run_overrides],
    }
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode())
    return {"hash": digest.hexdigest()[:16], **payload}


def check_identity(study: optuna.Study, identity: dict, force: bool) -> None:
    """Store the identity on a new study; refuse to resume one whose identity changed."""
    record = StudyRecord(study)
    stored = record.identity
    if stored is None or force:
        record.set_identity(identity)
        return
    if stored.get("hash") == identity["hash"]:
        return
    changed = [k for k in identity if k != "hash" and stored.get(k) != identity[k]]
    detail = "; ".join(f"{k}: {stored.get(k)!r} -> {identity[k]!r}" for k in changed)
    raise UserError(f"study {study.study_name!r} exists with a different identity ({detail}); "
                    "use a new study name, or study.force=true to resume anyway")


def open_sweep(args: Sequence[str]) -> Sweep:
    """Validate everything, open the storage, create (or load) the study exactly once."""
    # Everything that can be wrong is checked before the storage is opened, and the storage
    # (a wrong password) and tracking before the dataset is built and the study created.
    driver, run_overrides = parse_args(args)
    spec, base_cfg = load_spec(driver, run_overrides)
    sampler = build_sampler(spec.sampler, spec.seed, spec.params, worker=worker_index() or 0)
    pruner = build_pruner(spec.pruner)
    url, storage = open_storage(driver)
    tracker = build_tracker(driver.tracking.backend, driver.tracking.uri, mspe_home())
    dataset = build_dataset(base_cfg, with_pe=False)  # its fingerprint never depends on PE
    study = create_study_once(storage, spec.name, spec.direction, sampler, pruner)
    existing = len(study.get_trials(deepcopy=False))
    if existing:
        # A resumed run must not replay the first run's random draws: seed by progress.
        study.sampler = build_sampler(spec.sampler, derive_seed(spec.seed, existing),
                                      spec.params, worker=worker_index() or 0)
    check_identity(study, study_identity(spec, dataset.fingerprint, run_overrides),
                   driver.study.force)
    if worker_index() is None:
        StudyRecord(study).set_n_trials(spec.n_trials)  # what `report` shows as the budget
    return Sweep(driver=driver, spec=spec, run_overrides=run_overrides, storage_url=url,
                 study=study, base_cfg=base_cfg, data_source=dataset.source,
                 fingerprint=dataset.fingerprint, tracker=tracker)


def open_storage(driver: DictConfig) -> tuple[str, optuna.storages.RDBStorage]:
    """The storage URL (unmasked: print it only through ``mask_url``) and the storage."""
    backend, url = driver.storage.backend, driver.storage.url
    if backend == "sqlite":
        url = url or default_storage_url(mspe_home())
        if not url.startswith("sqlite:"):
            raise UserError(f"storage=sqlite: storage.url={mask_url(url)} is not a sqlite:/// "
                            "URL (use storage=postgres for PostgreSQL)")
    elif not (url or "").startswith("postgresql"):
        raise UserError("storage=postgres needs a PostgreSQL URL: export MSPE_STORAGE_URL or "
                        "pass storage.url (see configs/storage/postgres.yaml)")
    return url, build_storage(url, heartbeat_interval=driver.storage.heartbeat_interval,
                              grace_period=driver.storage.grace_period,
                              max_retry=driver.storage.max_retry)


def startup_lines(sweep: Sweep, done: int) -> str:
    spec = sweep.spec
    return "\n".join([
        f"study:    {spec.name} ({spec.path}) {spec.direction} {spec.metric}",
        f"storage:  {mask_url(sweep.storage_url)}",
        f"data:     {sweep.data_source}",
        f"budget:   {done}/{spec.n_trials} finished trials"
        + (f", timeout {spec.timeout:.0f} s" if spec.timeout else ""),
        f"sampler:  {spec.sampler.to_dict()}",
        f"pruner:   {spec.pruner.to_dict()}",
        f"workers:  {sweep.driver.workers}",
        f"MSPE_HOME: {mspe_home()}",
    ])

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


def run_study(args: Sequence[str]) -> StudyResult:
    """Run (or resume) a study until its budget: in this process, or in ``workers`` children."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # we print our own per-trial lines
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # read when MLflow is imported
    sweep = open_sweep(args)
    # The start-up lines name the data; per-trial data, PE-cache and model lines would only
    # repeat it, once per trial.
    for name in ("mspe_sweep.pipeline", "mspe_sweep.training", "mspe_sweep.dataset"):
        logging.getLogger(name).setLevel(logging.WARNING)
    spec, driver, index = sweep.spec, sweep.driver, worker_index()
    if index is None:
        print(startup_lines(sweep, budget_done(sweep.study)), flush=True)
    tracker, parent = open_tracking(sweep, publish=index is None)
    limits = WorkerLimits(n_trials=spec.n_trials, timeout=spec.timeout,
                          max_consecutive_failures=spec.max_consecutive_failures,
                          max_retry=driver.storage.max_retry,
                          keep_checkpoints=spec.keep_checkpoints,
                          grace_period=driver.storage.grace_period)
    trials_before = len(sweep.study.get_trials(deepcopy=False))
    status = "KILLED"
    try:
        if index is not None or driver.workers == 1:
            worker = Worker(sweep.study, sweep.objective(tracker), limits,
                            on_trial_end=lambda study: track_progress(tracker, parent, study))
            worker.run()
        else:
            code = launch_workers(args, driver.workers, driver.trials_per_gpu)
            if code:
                raise UserError(f"a worker exited with code {code}; its messages are above")
        status = "FINISHED"
    finally:
        if index is None:
            ran = len(sweep.study.get_trials(deepcopy=False)) > trials_before
            publish_results(sweep, tracker, parent, status, with_plots=ran)
    if index is None:
        print(summary(sweep.study, spec.metric, spec.n_trials), flush=True)
    return study_result(sweep.study, spec.n_trials)


def open_tracking(sweep: Sweep, publish: bool) -> tuple[Tracker, str | None]:
    """The tracker and the study's parent run (created once; its id kept in the study)."""
    tracking, tracker = sweep.driver.tracking, sweep.tracker
    record = StudyRecord(sweep.study)
    stored = record.parent_run_id
    parent = tracker.start_study(sweep.spec.name, stored, sweep.spec.to_dict(),
                                 to_yaml(sweep.base_cfg))
    if publish and parent and parent != stored:
        record.set_parent_run_id(parent)
    if publish and tracking.backend != "none":
        print(f"tracking: {tracking.backend} {mask_url(str(tracking.uri))}", flush=True)
    return tracker, parent


def publish_results(sweep: Sweep, tracker: Tracker, parent: str | None, status: str,
                    with_plots: bool) -> None:
    """Plots and the trials CSV in ``runs/<study>/plots/`` (when trials ran), and on the
    parent run, which ends only when no trial is running: with several drivers on one study
    (machines, or ``docker compose --scale``), the last one to finish ends it.
    """
    files = write_study_plots(sweep.study, sweep.runs_dir / "plots") if with_plots else []
    track_progress(tracker, parent, sweep.study)
    running = sweep.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    tracker.finish_study(parent, files, status=None if running and status == "FINISHED"
                         else status)
