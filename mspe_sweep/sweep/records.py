"""The persistent record of a study: every study and trial attribute key, read and written
with types.

These attributes outlive the code in SQLite and PostgreSQL, so the keys below never change
(``tests/data/legacy_optuna.db`` holds a study written before this module, and a test opens
it). Nothing else in the package spells a key: it reads a :class:`TrialRecord` or
:class:`StudyRecord` and writes through :class:`RunningTrial` or :class:`StudyRecord`.

Optuna's public API is used wherever it has a route; the few private uses are commented.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from typing import Any

import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.storages import RetryFailedTrialCallback
from optuna.trial import FrozenTrial, TrialState

# Trial user attributes, written by the objective (and the pruning callback).
OVERRIDES = "overrides"  # the run-config overrides that reproduce the trial with `train`
SEED = "seed"
CHECKPOINT_DIR = "checkpoint_dir"
FAIL_REASON = "fail_reason"  # set when a trial fails on its own (not retried)
INTERRUPTED = "interrupted"  # Ctrl-C / SIGTERM: retried, resuming from last.pt
MLFLOW_RUN_ID = "mlflow_run_id"
EPOCHS_PLANNED = "epochs_planned"
EPOCHS_RUN = "epochs_run"
BEST_EPOCH = "best_epoch"
STOP_REASON = "stop_reason"
NUM_PARAMS = "num_params"
TEST_METRIC = "test_metric"
DATASET_FINGERPRINT = "dataset_fingerprint"
# Trial user attributes of a confirmation trial (``<study>/confirm``), written when it is queued.
CONFIRM_CONFIG = "confirm_config"  # the configuration's key (``config_key`` of its params)
CONFIRM_SEED = "confirm_seed"  # the seed it trains with (replaces the sweep's derived seed)
CONFIRM_RANK = "confirm_rank"  # the configuration's rank in the sweep when it was selected
# Trial system attributes. ``owner`` is "<host>:<pid>:<trial number>", written by the worker
# that starts an attempt; the number matters because a retry is created as a copy of the dead
# attempt, system attrs included. The other two are Optuna's own retry link (the names its
# RetryFailedTrialCallback and RetryHeartbeatStaleTrialCallback write and read).
OWNER = "owner"
FAILED_TRIAL = "failed_trial"
RETRY_HISTORY = "retry_history"
# Study user attributes, written by the driver.
IDENTITY = "identity"  # what makes two runs of the command the same study
PARENT_RUN_ID = "mlflow_parent_run_id"
N_TRIALS = "n_trials"  # the budget of the latest run, shown by `report`
CONFIRM_STUDY = "confirm_study"  # on a sweep: the name of its confirmation study
CONFIRMS = "confirms"  # on a confirmation study: the name of the sweep it confirms
SELECTION = "confirm_selection"  # on a confirmation study: {config key: selected config}
DATA_SOURCE = "data_source"  # the study's data in words (its start-up `data:` line)
ENQUEUED = "enqueued"  # on a sweep: keys of the study file's `enqueue` entries already queued


def json_digest(value: Any, length: int) -> str:
    """The first ``length`` hex digits of the SHA-256 of ``value`` as sorted JSON: the keys
    stored in studies (identity hash, configuration and ``enqueue`` entry keys) never depend on
    dict order or on the process."""
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _retried_trial_number(trial: FrozenTrial) -> int | None:
    # Optuna marks this reader experimental; it is the documented way to follow a retry link.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        return RetryFailedTrialCallback.retried_trial_number(trial)


class TrialRecord:
    """A finished or running trial as stored (read-only view over a ``FrozenTrial``)."""

    def __init__(self, trial: FrozenTrial) -> None:
        self.trial = trial

    def _user(self, key: str, default: Any = None) -> Any:
        return self.trial.user_attrs.get(key, default)

    @property
    def number(self) -> int:
        return self.trial.number

    @property
    def state(self) -> TrialState:
        return self.trial.state

    @property
    def root_number(self) -> int:
        """The first trial of its retry chain (its own number when it is no retry)."""
        retried = _retried_trial_number(self.trial)
        return self.trial.number if retried is None else int(retried)

    @property
    def retry_history(self) -> list[int]:
        """The earlier attempts of its retry chain, oldest first."""
        return list(self.trial.system_attrs.get(RETRY_HISTORY, []))

    @property
    def owner(self) -> str:
        """``<host>:<pid>:<number>`` of the worker that started this attempt, or ''."""
        return str(self.trial.system_attrs.get(OWNER, ""))

    def retry_system_attrs(self) -> dict[str, Any]:
        """System attrs for a WAITING copy that retries this trial: Optuna's retry link
        (``failed_trial``, ``retry_history``, as its retry callbacks write it), no owner."""
        attrs = {k: v for k, v in self.trial.system_attrs.items() if k != OWNER}
        attrs[FAILED_TRIAL] = attrs.get(FAILED_TRIAL, self.trial.number)
        attrs[RETRY_HISTORY] = [*self.retry_history, self.trial.number]
        return attrs

    @property
    def overrides(self) -> list[str]:
        return list(self._user(OVERRIDES, []))

    @property
    def seed(self) -> int | None:
        return self._user(SEED)

    @property
    def checkpoint_dir(self) -> str | None:
        return self._user(CHECKPOINT_DIR) or None

    @property
    def fail_reason(self) -> str | None:
        return self._user(FAIL_REASON)

    @property
    def interrupted(self) -> bool:
        return bool(self._user(INTERRUPTED, False))

    @property
    def mlflow_run_id(self) -> str | None:
        return self._user(MLFLOW_RUN_ID)

    @property
    def epochs_planned(self) -> int | None:
        return self._user(EPOCHS_PLANNED)

    @property
    def epochs_run(self) -> int | None:
        return self._user(EPOCHS_RUN)

    @property
    def best_epoch(self) -> int | None:
        return self._user(BEST_EPOCH)

    @property
    def test_metric(self) -> float | None:
        return self._user(TEST_METRIC)

    @property
    def confirm_config(self) -> str | None:
        """The configuration key of a confirmation trial; None for any other trial."""
        return self._user(CONFIRM_CONFIG)

    @property
    def confirm_seed(self) -> int | None:
        return self._user(CONFIRM_SEED)

    @property
    def confirm_rank(self) -> int | None:
        return self._user(CONFIRM_RANK)

    @staticmethod
    def confirm_attrs(config: str, seed: int, rank: int) -> dict[str, Any]:
        """The user attrs that queue a confirmation trial (read back by the properties)."""
        return {CONFIRM_CONFIG: config, CONFIRM_SEED: seed, CONFIRM_RANK: rank}


class RunningTrial:
    """Writes the record of the trial this process runs (a live ``optuna.Trial``)."""

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial = trial

    def stored(self) -> TrialRecord:
        """The trial as stored now (Optuna's ``Trial`` exposes no system attrs)."""
        return TrialRecord(self.trial.study.get_trials(deepcopy=False)[self.trial.number])

    def claim(self, owner: str) -> None:
        """Record the worker running this attempt (see ``OWNER``)."""
        # No public route: Optuna 4 removed Trial.set_system_attr, and a user attr would be
        # copied to the user-visible attrs of every retry.
        self.trial.storage.set_trial_system_attr(self.trial._trial_id, OWNER, owner)

    def start(self, seed: int, checkpoint_dir: str) -> None:
        """A fresh attempt: its seed and directory; clears what a retried attempt left."""
        for key, value in ((SEED, seed), (CHECKPOINT_DIR, checkpoint_dir),
                           (INTERRUPTED, False), (FAIL_REASON, None)):
            self.trial.set_user_attr(key, value)

    def queued_confirmation(self) -> tuple[str, int, int] | None:
        """``(config key, seed, sweep rank)`` of a queued confirmation trial, else None."""
        attrs = self.trial.user_attrs
        if attrs.get(CONFIRM_CONFIG) is None:
            return None
        return attrs[CONFIRM_CONFIG], int(attrs[CONFIRM_SEED]), int(attrs[CONFIRM_RANK])

    def previous_mlflow_run_id(self) -> str | None:
        """The MLflow run of the attempt this one retries (Optuna copies its user attrs)."""
        return self.trial.user_attrs.get(MLFLOW_RUN_ID)

    def set_overrides(self, overrides: list[str]) -> None:
        self.trial.set_user_attr(OVERRIDES, list(overrides))

    def set_mlflow_run_id(self, run_id: str | None) -> None:
        self.trial.set_user_attr(MLFLOW_RUN_ID, run_id)

    def set_epochs_planned(self, epochs: int) -> None:
        self.trial.set_user_attr(EPOCHS_PLANNED, epochs)

    def set_epochs_run(self, epochs: int) -> None:
        self.trial.set_user_attr(EPOCHS_RUN, epochs)

    def set_interrupted(self) -> None:
        self.trial.set_user_attr(INTERRUPTED, True)

    def set_fail_reason(self, reason: str) -> None:
        self.trial.set_user_attr(FAIL_REASON, reason)

    def set_result(self, *, best_epoch: int, epochs_run: int, stop_reason: str,
                   num_params: int, test_metric: float | None, fingerprint: str) -> None:
        """The outcome of a trial that trained to the end."""
        for key, value in ((BEST_EPOCH, best_epoch), (EPOCHS_RUN, epochs_run),
                           (STOP_REASON, stop_reason), (NUM_PARAMS, num_params),
                           (TEST_METRIC, test_metric), (DATASET_FINGERPRINT, fingerprint)):
            self.trial.set_user_attr(key, value)


class StudyRecord:
    """A study's own attributes and its trials as records."""

    def __init__(self, study: optuna.Study) -> None:
        self.study = study

    def trials(self, *states: TrialState) -> list[TrialRecord]:
        """Every trial (or those in ``states``), by number."""
        found = self.study.get_trials(deepcopy=False, states=states or None)
        return [TrialRecord(trial) for trial in found]

    def trial(self, number: int) -> TrialRecord:
        return TrialRecord(self.study.get_trials(deepcopy=False)[number])

    def fail(self, trial: TrialRecord) -> None:
        """Mark a RUNNING trial that no process runs any more as FAIL.

        Raises:
            RuntimeError, optuna.exceptions.UpdateFinishedTrialError: It was already finished
                (another worker got there first).
        """
        # Study.tell would also run the sampler's after_trial (GridSampler stops the study
        # there) for a trial this process never ran; Optuna's own fail_stale_trials writes
        # the state through the storage the same way.
        self.study._storage.set_trial_state_values(trial.trial._trial_id, TrialState.FAIL)

    def set_metric_name(self, metric: str) -> None:
        """Name the objective (``val/mae``) where dashboards show it, e.g. optuna-dashboard's
        "Objective 0"; also on studies created before we named it."""
        if self.study.metric_names != [metric]:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)  # experimental since 3.2
                self.study.set_metric_names([metric])

    @property
    def identity(self) -> dict | None:
        return self.study.user_attrs.get(IDENTITY)

    def set_identity(self, identity: dict) -> None:
        self.study.set_user_attr(IDENTITY, identity)

    @property
    def parent_run_id(self) -> str | None:
        return self.study.user_attrs.get(PARENT_RUN_ID)

    def set_parent_run_id(self, run_id: str) -> None:
        self.study.set_user_attr(PARENT_RUN_ID, run_id)

    @property
    def n_trials(self) -> int | None:
        return self.study.user_attrs.get(N_TRIALS)

    def set_n_trials(self, n_trials: int) -> None:
        self.study.set_user_attr(N_TRIALS, n_trials)

    @property
    def data_source(self) -> str | None:
        return self.study.user_attrs.get(DATA_SOURCE)

    def set_data_source(self, source: str) -> None:
        if self.data_source != source:
            self.study.set_user_attr(DATA_SOURCE, source)

    @property
    def confirm_study(self) -> str | None:
        """On a sweep: the name of its confirmation study, once one was prepared."""
        return self.study.user_attrs.get(CONFIRM_STUDY)

    @property
    def confirms(self) -> str | None:
        """On a confirmation study: the name of the sweep it confirms."""
        return self.study.user_attrs.get(CONFIRMS)

    def load_linked(self, name: str) -> optuna.Study:
        """Another study of the same storage: a sweep's confirmation, or the reverse."""
        # Study has no public accessor for its storage object (only load_study's URL route,
        # which would open a second connection pool), hence _storage.
        return optuna.load_study(study_name=name, storage=self.study._storage)

    def link_confirmation(self, confirmation: optuna.Study) -> None:
        """Link this sweep and its confirmation study both ways."""
        if self.confirm_study != confirmation.study_name:
            self.study.set_user_attr(CONFIRM_STUDY, confirmation.study_name)
        if confirmation.user_attrs.get(CONFIRMS) != self.study.study_name:
            confirmation.set_user_attr(CONFIRMS, self.study.study_name)

    @property
    def selection(self) -> dict[str, dict[str, Any]]:
        """On a confirmation study: ``{config key: {rank, trial, params, seed, value}}``, every
        configuration ever selected (``rank`` and ``trial`` as in the sweep at the time)."""
        return dict(self.study.user_attrs.get(SELECTION, {}))

    def set_selection(self, selection: dict[str, dict[str, Any]]) -> None:
        self.study.set_user_attr(SELECTION, selection)

    @property
    def enqueued(self) -> list[str]:
        """Keys of the study file's ``enqueue`` entries already queued in this study."""
        return list(self.study.user_attrs.get(ENQUEUED, []))

    def set_enqueued(self, keys: list[str]) -> None:
        self.study.set_user_attr(ENQUEUED, list(keys))
