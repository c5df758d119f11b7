"""Phase 1 of a study run: from the command line to a created study and its :class:`Plan`.

Parse, validate, open the storage and create (or load) the study, once, in the process the
user started. Any mistake is a one-line ``UserError`` raised before anything is written to the
storage: everything that can be wrong is checked before the storage is opened, and the storage
(a wrong password) and tracking before the dataset is built and the study created.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import optuna
from omegaconf import DictConfig, OmegaConf

from mspe_sweep.config import (
    STUDIES_DIR,
    compose_run_config,
    compose_typed,
    group_options,
    mspe_home,
    to_yaml,
)
from mspe_sweep.dataset import GraphDataset
from mspe_sweep.errors import UserError
from mspe_sweep.pipeline import build_dataset
from mspe_sweep.schema import DriverConfig
from mspe_sweep.sweep.enqueue import enqueue_known
from mspe_sweep.sweep.factories import build_pruner, build_sampler, study_sampler
from mspe_sweep.sweep.launch import check_launcher, dry_run
from mspe_sweep.sweep.plan import Plan
from mspe_sweep.sweep.records import StudyRecord, json_digest
from mspe_sweep.sweep.spec import StudySpec, find_study_file, load_study
from mspe_sweep.sweep.storage import build_storage, create_study_once, default_storage_url
from mspe_sweep.text import mask_url
from mspe_sweep.validation import check_rules
from mspe_sweep.tracking import Tracker, build_tracker, tracking_location
from mspe_sweep.training import get_metrics

DRIVER_KEYS = ("study", "storage", "tracking", "launcher", "confirm", "workers",
               "trials_per_gpu")
# study.<key>= replaces the file's
CLI_STUDY_SETTINGS = ("n_trials", "timeout", "seed", "trial_timeout", "epoch_timeout")


@dataclass
class Sweep:
    """A prepared study: the plan, and the study and tracker this process opened for it."""

    plan: Plan
    study: optuna.Study
    tracker: Tracker


def is_driver_override(arg: str) -> bool:
    key = arg.partition("=")[0].lstrip("+~")
    return key.split(".", 1)[0] in DRIVER_KEYS


def parse_args(args: Sequence[str], refused: Mapping[str, str] | None = None
               ) -> tuple[DictConfig, list[str]]:
    """Split arguments into the driver config and the run-config overrides (in order).

    ``study=<name>`` picks ``studies/<name>.yaml``; ``study.n_trials=5`` and friends override
    the study file's driver settings. ``refused`` maps driver keys (or sections) the command
    does not use to the reason, so that they are an error rather than silently ignored.
    """
    for arg in args:
        key = arg.partition("=")[0].lstrip("+~")
        for prefix, why in (refused or {}).items():
            if key == prefix or key.startswith(f"{prefix}."):
                raise UserError(f"{arg}: {why}")
    driver_args = [a for a in args if is_driver_override(a)]
    run_overrides = [a for a in args if not is_driver_override(a)]
    driver_args = [f"study.name={a.partition('=')[2]}" if a.startswith("study=") else a
                   for a in driver_args]
    driver = compose_typed("sweep", driver_args, DriverConfig)
    if not driver.study.name:
        studies = ", ".join(sorted(p.stem for p in STUDIES_DIR.glob("*.yaml")))
        raise UserError(f"study=<name> is required (studies/: {studies})")
    check_rules(driver, DriverConfig)  # workers, storage.* and launcher.* ranges
    check_launcher(driver.launcher)
    return driver, run_overrides


def load_spec(driver: DictConfig, run_overrides: Sequence[str]) -> tuple[StudySpec, DictConfig]:
    """The validated study (command-line settings applied) and its composed base run config."""
    # The spec's checks and the base config compose the same overrides: compose them once.
    compose = functools.cache(lambda overrides: compose_run_config(list(overrides)))
    known_metrics = {f"val/{name}" for name in get_metrics("regression").names} | {"val/loss"}
    settings = {key: driver.study[key] for key in CLI_STUDY_SETTINGS
                if driver.study[key] is not None}
    spec = load_study(find_study_file(driver.study.name, STUDIES_DIR),
                      compose=lambda overrides: compose(tuple(overrides)), groups=group_options(),
                      known_metrics=known_metrics, cli_overrides=run_overrides,
                      cli_settings=settings)
    return spec, compose((*spec.fixed, *run_overrides))


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
    return {"hash": json_digest(payload, 16), **payload}


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


def storage_url(driver: DictConfig) -> str:
    """The storage URL the driver config names (unmasked: print it only through ``mask_url``)."""
    backend, url = driver.storage.backend, driver.storage.url
    if backend == "sqlite":
        url = url or default_storage_url(mspe_home())
        if not url.startswith("sqlite:"):
            raise UserError(f"storage=sqlite: storage.url={mask_url(url)} is not a sqlite:/// "
                            "URL (use storage=postgres for PostgreSQL)")
    elif backend == "grpc":
        if not url or not url.startswith("grpc://"):
            given = f"storage.url={mask_url(url)} is not" if url else "needs"
            raise UserError(f"storage=grpc {given} the storage proxy's address: export "
                            "MSPE_STORAGE_URL or pass storage.url=grpc://<host>:<port> (python "
                            "-m mspe_sweep.storage_proxy runs one; configs/storage/grpc.yaml)")
    elif not url:
        raise UserError("storage=postgres needs a PostgreSQL URL: export MSPE_STORAGE_URL or "
                        "pass storage.url (see configs/storage/postgres.yaml)")
    elif not url.startswith("postgresql"):
        raise UserError(f"storage=postgres: storage.url={mask_url(url)} is not a PostgreSQL URL "
                        "(postgresql+psycopg://...; see configs/storage/postgres.yaml)")
    return url


def storage_options(driver: DictConfig) -> dict[str, Any]:
    """The ``build_storage`` keyword arguments of the driver config's ``storage`` section."""
    return {"heartbeat_interval": driver.storage.heartbeat_interval,
            "grace_period": driver.storage.grace_period, "max_retry": driver.storage.max_retry,
            "outage_timeout": driver.storage.outage_timeout}


def open_storage(driver: DictConfig) -> tuple[str, optuna.storages.BaseStorage]:
    """The storage URL (unmasked: print it only through ``mask_url``) and the storage."""
    url = storage_url(driver)
    return url, build_storage(url, **storage_options(driver))


def check_locations(driver: DictConfig, name: str) -> bool:
    """Check the storage URL and the tracking URI before anything opens; False (after printing
    what would be launched for the study ``name``) with ``launcher.dry_run=true``."""
    storage_url(driver)  # checked, not opened
    # A tracking URI the backend cannot use is a mistake too: found before the storage opens.
    tracking_location(driver.tracking.backend, driver.tracking.uri, mspe_home())
    if driver.launcher.dry_run:
        print(dry_run(driver.launcher, name, driver.trials_per_gpu), flush=True)
        return False
    return True


def open_checked(driver: DictConfig, name: str, base_cfg: DictConfig
                 ) -> tuple[str, optuna.storages.BaseStorage, Tracker, GraphDataset] | None:
    """Open what a checked command line names: the storage URL (unmasked), the storage, the
    tracker and the dataset (without PE: its fingerprint never depends on them); the storage
    (a wrong password) before the dataset is built. None with ``launcher.dry_run=true``."""
    if not check_locations(driver, name):
        return None
    url, storage = open_storage(driver)
    tracker = build_tracker(driver.tracking.backend, driver.tracking.uri, mspe_home())
    return url, storage, tracker, build_dataset(base_cfg, with_pe=False)


def open_existing_study(driver: DictConfig, name: str
                        ) -> tuple[str, optuna.storages.BaseStorage, optuna.Study]:
    """The storage URL (unmasked), storage and study ``name``, which must exist already.

    Raises:
        UserError: No such study (the message lists the studies in the storage); a SQLite
            file that does not exist is not created.
    """
    url = storage_url(driver)

    def missing(where: object, others: str = "") -> UserError:
        return UserError(f"no study named {name!r} in {where} (run it first: python -m "
                         f"mspe_sweep.run study={driver.study.name}{others})")

    if driver.storage.backend == "sqlite":
        db = Path(url.partition(":///")[2])
        if not db.is_file():  # reading must not create an empty database
            raise missing(db)
    storage = build_storage(url, **storage_options(driver))
    try:
        return url, storage, optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        others = ", ".join(sorted(optuna.get_all_study_names(storage))) or "none"
        raise missing(mask_url(url), f"; studies there: {others}") from None


def build_plan(spec: StudySpec, driver: DictConfig, run_overrides: Sequence[str], url: str,
               dataset: GraphDataset, base_cfg: DictConfig, **fields: Any) -> Plan:
    """The plan of a prepared study; ``fields`` sets further :class:`Plan` fields."""
    return Plan(spec=spec, run_overrides=tuple(run_overrides), storage_url=url,
                storage_options=storage_options(driver),
                tracking_backend=driver.tracking.backend, tracking_uri=driver.tracking.uri,
                fingerprint=dataset.fingerprint, data_source=dataset.source,
                data_name=dataset.name,
                data_sizes={split: table.num_graphs for split, table in dataset.tables.items()},
                base_config_yaml=to_yaml(base_cfg), workers=driver.launcher.workers,
                trials_per_gpu=driver.trials_per_gpu,
                launcher=OmegaConf.to_container(driver.launcher), **fields)


def prepare(args: Sequence[str]) -> Sweep | None:
    """Validate everything, open the storage, create (or load) the study exactly once.

    Returns:
        The prepared sweep; None with ``launcher.dry_run=true``, which stops after the checks
        and prints what would be launched (the batch script), opening and creating nothing.
    """
    driver, run_overrides = parse_args(args, refused={
        "confirm": "confirm.* keys are for python -m mspe_sweep.confirm"})
    spec, base_cfg = load_spec(driver, run_overrides)
    sampler = build_sampler(spec.sampler, spec.seed, spec.params)
    pruner = build_pruner(spec.pruner)
    opened = open_checked(driver, spec.name, base_cfg)
    if opened is None:
        return None
    url, storage, tracker, dataset = opened
    study = create_study_once(storage, spec.name, spec.direction, sampler, pruner)
    existing = len(study.get_trials(deepcopy=False))
    if existing:
        study.sampler = study_sampler(spec.sampler, spec.seed, spec.params,
                                      existing_trials=existing, worker=0)
    check_identity(study, study_identity(spec, dataset.fingerprint, run_overrides),
                   driver.study.force)
    StudyRecord(study).set_n_trials(spec.n_trials)  # what `report` shows as the budget
    StudyRecord(study).set_metric_name(spec.metric)
    StudyRecord(study).set_data_source(dataset.source)  # for report.html's data line
    queued = enqueue_known(study, spec)  # the study file's warm start, once per study
    if queued:
        print(f"enqueued: {queued} known configuration(s) from the study file", flush=True)
    plan = build_plan(spec, driver, run_overrides, url, dataset, base_cfg)
    return Sweep(plan=plan, study=study, tracker=tracker)
