"""The confirmation phase: a sweep's top-k configurations re-trained over new seeds.

``python -m mspe_sweep.confirm study=<name> [confirm.top_k=3] [confirm.seeds=4]``. A sweep's
best trial is one seed's draw, and the best of many close draws is biased towards luck; the
confirmation measures each selected configuration over ``confirm.seeds`` seeds.

It is an Optuna study of its own in the sweep's storage, ``<name>/confirm``, linked to the sweep
both ways (study user attrs), holding one queued (WAITING) trial per (configuration, new seed).
Its workers are the sweep's own (:mod:`mspe_sweep.sweep.work`), running queued trials only and
without pruning, so resume, crash retry from checkpoints, several workers and machines, SIGTERM
safety and the identity guard all carry over. The sweep and its confirmation may run at the
same time.

Seeds: the sweep's trial is the configuration's first seed and is not re-run; the others are
derived from the study seed and the configuration's key, so a rerun queues nothing twice and a
larger ``confirm.seeds`` (or ``confirm.top_k``) queues only what is missing.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Mapping, Sequence

import optuna
from optuna.trial import TrialState

from mspe_sweep.config import mspe_home
from mspe_sweep.errors import UserError
from mspe_sweep.pipeline import build_dataset
from mspe_sweep.sweep.answer import Answer, answer_study
from mspe_sweep.sweep.confirm_table import config_ranks, write_csv
from mspe_sweep.sweep.factories import ComponentSpec, derive_seed
from mspe_sweep.sweep.objective import Objective
from mspe_sweep.sweep.plan import Plan
from mspe_sweep.sweep.prepare import (
    Sweep,
    build_plan,
    check_locations,
    load_spec,
    open_existing_study,
    parse_args,
    study_identity,
)
from mspe_sweep.sweep.records import RunningTrial, StudyRecord, TrialRecord
from mspe_sweep.sweep.reporting import ranked
from mspe_sweep.sweep.storage import create_study_once
from mspe_sweep.tracking import Tracker, build_tracker

log = logging.getLogger(__name__)

SUFFIX = "/confirm"


def confirmation_name(study_name: str) -> str:
    """The confirmation study of a sweep: ``<study>/confirm``."""
    return f"{study_name}{SUFFIX}"


def confirm_seeds(study_seed: int, key: str, original_seed: int, seeds: int) -> list[int]:
    """The ``seeds - 1`` new seeds of a configuration: its sweep trial's seed is the first.

    Derived from the study seed and the configuration's key, never equal to the original's;
    asking for more seeds later extends the same list.
    """
    found: list[int] = []
    index = 0
    while len(found) < seeds - 1:
        index += 1
        seed = derive_seed(study_seed, "confirm", key, index)
        if seed != original_seed and seed not in found:
            found.append(seed)
    return found


def select_configs(study: optuna.Study, top_k: int, study_seed: int,
                   selected: Mapping[str, dict] | None = None) -> dict[str, dict]:
    """The configurations to confirm: ``selected`` (an earlier run's choice, kept: its seeds
    are what the table measures, so a rerun while the sweep still runs never swaps them), then
    the sweep's best distinct configurations not selected yet, until there are ``top_k``.

    Returns:
        ``{config key: {"rank", "trial", "params", "seed", "value"}}``: the rank among the
        sweep's distinct configurations when selected, and the best COMPLETE trial with these
        params (the draw that got them selected), its seed and value.
    """
    chosen = dict(selected or {})
    for key, (rank, trial) in config_ranks(study).items():
        if len(chosen) >= top_k:
            break
        if key in chosen:
            continue
        record = TrialRecord(trial)
        # Trials written before seeds were recorded: the seed the objective derived.
        seed = record.seed if record.seed is not None else derive_seed(study_seed,
                                                                       record.root_number)
        chosen[key] = {"rank": rank, "trial": trial.number, "params": dict(trial.params),
                       "seed": int(seed), "value": trial.value}
    return chosen


def queue_trials(confirmation: optuna.Study, selection: Mapping[str, Mapping], seeds: int,
                 study_seed: int) -> int:
    """Queue a WAITING trial for every (configuration, new seed) the study does not have yet,
    in any state: a crashed one is retried by the workers, one that failed on its own is not
    re-run. Returns how many were queued."""
    have = {(r.confirm_config, r.confirm_seed) for r in StudyRecord(confirmation).trials()}
    queued = 0
    for key, chosen in sorted(selection.items(), key=lambda item: item[1]["rank"]):
        for seed in confirm_seeds(study_seed, key, chosen["seed"], seeds):
            if (key, seed) in have:
                continue
            confirmation.enqueue_trial(
                dict(chosen["params"]),
                user_attrs=TrialRecord.confirm_attrs(key, seed, chosen["rank"]))
            queued += 1
    return queued


def check_same_runs(sweep: optuna.Study, identity: dict, force: bool) -> None:
    """New seeds must train what the sweep trained: the same data, run overrides and space.

    Raises:
        UserError: The command line's identity differs from the sweep's (without
            ``study.force``, which only warns: the table then mixes two kinds of runs).
    """
    stored = StudyRecord(sweep).identity
    if stored is None or stored.get("hash") == identity["hash"]:
        return
    details = []
    for key in (k for k in identity if k != "hash" and stored.get(k) != identity[k]):
        if key == "run_overrides":
            before, now = stored.get(key) or [], identity[key]
            missing = [o for o in before if o not in now]
            extra = [o for o in now if o not in before]
            parts = ([f"missing {' '.join(missing)}"] if missing else []) + (
                [f"extra {' '.join(extra)}"] if extra else [])
            details.append(f"run overrides: {', '.join(parts) or 'in another order'}")
        else:
            details.append(f"{key} differs")
    message = (f"this command line does not match the runs of study {sweep.study_name!r} "
               f"({'; '.join(details)}): give the run overrides its `python -m mspe_sweep.run` "
               "had")
    if not force:
        raise UserError(f"{message} (or study.force=true to confirm anyway)")
    log.warning("study.force=true: %s; confirming anyway, so its seeds and the new ones "
                "train different things", message)


def prepare_confirmation(args: Sequence[str]) -> Sweep | None:
    """Validate, select the configurations, create ``<study>/confirm`` once and queue its
    trials: the confirmation's phase 1, as :func:`~mspe_sweep.sweep.prepare.prepare` is the
    sweep's. None with ``launcher.dry_run=true``.

    Raises:
        UserError: A mistake on the command line, no such sweep in the storage, a sweep whose
            identity differs from the command line's (the trials would not be comparable), or
            a sweep without a COMPLETE trial.
    """
    budget = ("a confirmation runs confirm.top_k configurations x confirm.seeds seeds; "
              "study.n_trials and study.timeout are the study's (python -m mspe_sweep.run)")
    driver, run_overrides = parse_args(args, refused={"study.n_trials": budget,
                                                      "study.timeout": budget})
    spec, base_cfg = load_spec(driver, run_overrides)
    name, seeds = confirmation_name(spec.name), driver.confirm.seeds
    if not check_locations(driver, name):
        return None
    url, storage, sweep = open_existing_study(driver, spec.name)
    tracker = build_tracker(driver.tracking.backend, driver.tracking.uri, mspe_home())
    dataset = build_dataset(base_cfg, with_pe=False)
    check_same_runs(sweep, study_identity(spec, dataset.fingerprint, run_overrides),
                    driver.study.force)
    if not ranked(sweep):
        raise UserError(f"study {spec.name!r} has no COMPLETE trial to confirm yet (python -m "
                        f"mspe_sweep.report study={driver.study.name} shows its state)")
    confirmation = create_study_once(storage, name, spec.direction,
                                     optuna.samplers.RandomSampler(seed=spec.seed),
                                     optuna.pruners.NopPruner())
    StudyRecord(sweep).link_confirmation(confirmation)
    record = StudyRecord(confirmation)
    selection = select_configs(sweep, driver.confirm.top_k, spec.seed, record.selection)
    if selection != record.selection:
        record.set_selection(selection)
    queued = queue_trials(confirmation, selection, seeds, spec.seed)
    total = len({(r.confirm_config, r.confirm_seed) for r in record.trials()
                 if r.confirm_config in selection})
    record.set_n_trials(total)
    record.set_metric_name(spec.metric)
    kept = len(selection) - driver.confirm.top_k
    print(f"confirm:  {len(selection)} configuration(s) of {spec.name}"
          + (f" ({kept} more than top_k: selected by an earlier run, kept)" if kept > 0 else "")
          + f" x {seeds} seeds (the sweep's trial is one): {total} trials, {queued} queued now",
          flush=True)
    # Queued trials only, so the sampler never draws; nothing is pruned.
    confirm_spec = dataclasses.replace(spec, name=name, n_trials=total,
                                       sampler=ComponentSpec("random"),
                                       pruner=ComponentSpec("none"))
    plan = build_plan(confirm_spec, driver, run_overrides, url, dataset, base_cfg,
                      confirms=spec.name, confirms_run=StudyRecord(sweep).parent_run_id)
    return Sweep(plan=plan, study=confirmation, tracker=tracker)


def confirmed_sweep(confirmation: optuna.Study) -> optuna.Study:
    """The sweep a confirmation study confirms, from the same storage."""
    record = StudyRecord(confirmation)
    return record.load_linked(record.confirms)


def publish_confirmation(plan: Plan, confirmation: optuna.Study, tracker: Tracker) -> Answer:
    """The answer of the study it confirms (its ``report.html`` now with the confirmation) and
    the table as ``runs/<study>/confirmation.csv``, also on that study's parent run; the
    answer's files include the CSV, for the confirmation's own run."""
    answer = answer_study(confirmed_sweep(confirmation), plan.spec.metric, plan.runs_dir.parent)
    if answer.confirmation is not None:
        csv = write_csv(answer.confirmation, plan.runs_dir.parent / "confirmation.csv")
        answer.files.insert(0, csv)
    if plan.confirms_run:
        tracker.finish_study(plan.confirms_run, answer.files, status=None)
    return answer


def duplicate_of(trial: optuna.Trial) -> int | None:
    """An earlier trial queued for the same (configuration, seed) that is not over, or None.

    Two ``confirm`` commands started at the same moment both see a pair missing and both
    queue it (storages have no compare-and-set); the later copy is then skipped when a worker
    takes it. A FAIL predecessor does not count: its retry is the pair's next attempt.
    """
    pair = RunningTrial(trial).queued_confirmation()[:2]
    for other in StudyRecord(trial.study).trials(TrialState.WAITING, TrialState.RUNNING,
                                                 TrialState.COMPLETE):
        if other.number < trial.number and (other.confirm_config,
                                             other.confirm_seed) == pair:
            return other.number
    return None


class ConfirmObjective(Objective):
    """The sweep's objective for a queued confirmation trial: its seed is the queued one, and
    its tracking run (``confirm-<n>``) is tagged with the configuration's key, sweep rank and
    seed."""

    def __call__(self, trial: optuna.Trial) -> float:
        if RunningTrial(trial).queued_confirmation() is None:
            # Two workers raced for the last queued trial and Optuna created a new one for the
            # loser: it has nothing to confirm.
            raise optuna.TrialPruned("not a queued confirmation trial (another worker took "
                                     "the last one)")
        twin = duplicate_of(trial)
        if twin is not None:
            raise optuna.TrialPruned(f"the same configuration and seed as trial {twin} "
                                     "(queued twice by two confirm commands at once)")
        return super().__call__(trial)

    def trial_seed(self, trial: optuna.Trial, root: int) -> int:
        return RunningTrial(trial).queued_confirmation()[1]

    def run_tags(self, trial: optuna.Trial) -> dict[str, str | None]:
        key, seed, rank = RunningTrial(trial).queued_confirmation()
        return {**super().run_tags(trial), "mspe.phase": "confirm", "mspe.confirm.config": key,
                "mspe.confirm.rank": str(rank), "mspe.seed": str(seed)}

    def run_name(self, trial: optuna.Trial) -> str:
        return f"confirm-{trial.number}"
