"""MLflow at the study level: experiment, parent run, child-run creation, study summary."""

from __future__ import annotations

import json
import logging
import re
import shlex
from pathlib import Path
from typing import Any, Mapping, Sequence

from mlflow.entities import Metric, Param, Run, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from mspe_sweep.tracking import names
from mspe_sweep.tracking.base import DataRecord, Tracker
from mspe_sweep.tracking.guard import Guard
from mspe_sweep.tracking.trial import MlflowTrialRun

log = logging.getLogger("mspe_sweep.tracking")

KIND_TAG = ("mlflow.experimentKind", "custom_model_development")
PARENT_FILTER = "tags.`mspe.role` = 'parent'"


class MlflowTracker(Tracker):
    """Tracking through an :class:`MlflowClient` (SQLite store or server), behind a
    :class:`~mspe_sweep.tracking.guard.Guard`: no method raises because MLflow is down.

    Args:
        client: The client.
        guard: The circuit breaker all calls go through.
        artifact_root: Local directory for a new experiment's artifacts (SQLite backend), or
            None (the server decides).
    """

    def __init__(self, client: MlflowClient, guard: Guard, artifact_root: Path | None) -> None:
        self.client, self.guard, self.artifact_root = client, guard, artifact_root
        self.study: dict[str, Any] | None = None
        self.metric = "value"
        self.experiment_id: str | None = None
        self.parent_run_id: str | None = None

    def start_study(self, study_name: str, parent_run_id: str | None, spec: Mapping[str, Any],
                    base_config_yaml: str, within: tuple[str, str | None] | None = None,
                    tags: Mapping[str, str] | None = None) -> str | None:
        """Get or create the experiment (named after the study) and its parent run.

        The parent is ``parent_run_id`` if that run exists, else the study's oldest run tagged
        ``mspe.role=parent``, else a new run named after the study (with ``tags``). With
        ``within=(experiment, run_id)`` the study lives in that experiment, and a new parent
        run is named after the study's last path segment (``zinc/confirm`` -> ``confirm``)
        and nested under ``run_id`` (when not None), so the UI folds it, and its trials, under
        that run. Params ``study.*`` and
        ``space.*`` (only keys not yet logged: params are immutable), artifacts
        ``study_spec.json`` and ``base_config.yaml``; status set to RUNNING.

        Returns:
            The parent run id, or None when tracking is down (it is created later, lazily).
        """
        self.study = {"name": study_name, "requested": parent_run_id, "spec": dict(spec),
                      "base": base_config_yaml, "within": within, "tags": dict(tags or {})}
        self.metric = str(spec.get("metric") or "value")
        self.experiment_id = self.parent_run_id = None
        self.ensure_study()
        return self.parent_run_id

    def ensure_study(self) -> bool:
        """Open the study now if ``start_study`` could not; False while tracking is down."""
        if self.parent_run_id is not None:
            return True
        if self.study is None:  # start_study was never called in this process
            return False
        ok, _ = self.guard.call(f"open study {self.study['name']}", self._open_study)
        return ok

    def _open_study(self) -> None:
        name, spec, within = self.study["name"], self.study["spec"], self.study["within"]
        experiment_id = self._experiment(within[0] if within else name)
        parent = self._parent(experiment_id, name, self.study["requested"])
        new = names.study_params(spec)
        try:
            run = self._log_new_params(parent, new)
        except MlflowException as exc:
            if exc.error_code not in ("BAD_REQUEST", "INVALID_PARAMETER_VALUE"):
                raise
            # Workers opening the study at once log the same params: the slower one's insert
            # hits the rows the faster one just wrote (BAD_REQUEST: UNIQUE constraint failed;
            # INVALID_PARAMETER_VALUE: it wrote another value). Once more, with what is there.
            run = self._log_new_params(parent, new)
        clash = sorted(k for k, v in new.items() if run.data.params.get(k, v) != v)
        if clash:
            log.warning("MLflow: study %s changed %s since its parent run was created; the "
                        "run keeps the old params (study_spec.json has the new spec)", name,
                        ", ".join(clash))
        self.client.log_text(parent, json.dumps(spec, indent=2, sort_keys=True, default=str),
                             "study_spec.json")
        self.client.log_text(parent, self.study["base"], "base_config.yaml")
        if run.info.status != "RUNNING":
            self.client.update_run(parent, status="RUNNING")
        self.experiment_id, self.parent_run_id = experiment_id, parent

    def _log_new_params(self, run_id: str, params: Mapping[str, str]) -> Run:
        """Log those of ``params`` the run does not have yet (params are immutable)."""
        run = self.client.get_run(run_id)
        missing = [Param(k, v) for k, v in params.items() if k not in run.data.params]
        for start in range(0, len(missing), names.MAX_PARAMS_PER_BATCH):
            self.client.log_batch(run_id,
                                  params=missing[start:start + names.MAX_PARAMS_PER_BATCH])
        return run

    def _experiment(self, name: str) -> str:
        experiment = self.client.get_experiment_by_name(name)
        if experiment is None:
            location = None
            if self.artifact_root is not None:
                safe = re.sub(r"[^A-Za-z0-9._-]", "_", name)
                location = (self.artifact_root / safe).resolve().as_uri()
            try:
                return self.client.create_experiment(name, artifact_location=location,
                                                     tags=dict([KIND_TAG]))
            except MlflowException as exc:  # another worker created it first
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                experiment = self.client.get_experiment_by_name(name)
        if experiment.lifecycle_stage == "deleted":
            log.warning("MLflow: restoring the deleted experiment %r", name)
            self.client.restore_experiment(experiment.experiment_id)
        if experiment.tags.get(KIND_TAG[0]) != KIND_TAG[1]:
            self.client.set_experiment_tag(experiment.experiment_id, *KIND_TAG)
        return experiment.experiment_id

    def _parent(self, experiment_id: str, name: str, requested: str | None) -> str:
        if requested:
            try:
                run = self.client.get_run(requested)
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                    raise
                run = None
            if run is not None and run.info.lifecycle_stage == "active":
                return requested
            log.warning("MLflow: parent run %s of study %s is gone; using another", requested,
                        name)
        found = self._parents(experiment_id, name)
        if found:
            return found[0]
        tags = {**self.study["tags"], "mspe.role": "parent", "mspe.study": name,
                "mspe.metric": self.metric}
        if names.git_commit():
            tags["mlflow.source.git.commit"] = names.git_commit()
        run_name, within = name, self.study["within"]
        if within:
            run_name = name.rsplit("/", 1)[-1]
            if within[1]:
                tags["mlflow.parentRunId"] = within[1]
        mine = self.client.create_run(experiment_id, run_name=run_name, tags=tags).info.run_id
        # Race guard: workers that started at once each created a parent; all keep the oldest.
        winner = self._parents(experiment_id, name)[0]
        if winner != mine:
            self.client.delete_run(mine)
        return winner

    def _parents(self, experiment_id: str, name: str) -> list[str]:
        runs = self.client.search_runs([experiment_id], PARENT_FILTER, max_results=100,
                                       order_by=["attributes.start_time ASC"])
        runs = [r for r in runs if r.data.tags.get("mspe.study") == name]
        return [r.info.run_id for r in sorted(runs, key=lambda r: (r.info.start_time,
                                                                   r.info.run_id))]

    def start_trial(self, trial_number: int, params: Mapping[str, Any],
                    fixed_overrides: Sequence[str], overrides: Sequence[str],
                    tags: Mapping[str, str], retry_of_run_id: str | None = None,
                    data: DataRecord | None = None,
                    run_name: str | None = None) -> MlflowTrialRun:
        """Create the child run ``trial-<n>`` (see the package docstring for params and tags).

        Args:
            trial_number: The Optuna trial number.
            params: Sampled params by config key (``{"training.optimizer.lr": 1e-3}``).
            fixed_overrides: The trial's other run overrides; logged as params by their key.
            overrides: All run overrides of the trial (``mspe.overrides`` tag).
            tags: Extra tags (e.g. ``{"mspe.dataset_fingerprint": ...}``).
            retry_of_run_id: The run of the crashed attempt this trial retries: if still
                RUNNING it is set FAILED, ``mspe.state=CRASHED``, ``mspe.retried_by=<new id>``.
            data: The trial's data, logged as the run's dataset input (``context=training``).
            run_name: The run's name instead of ``trial-<n>``.
        """
        if self.study is None:
            raise RuntimeError("Tracker.start_study must be called before start_trial")
        run_tags = {"mspe.role": "trial", "mspe.study": self.study["name"],
                    "mspe.trial": str(trial_number), "mspe.state": "RUNNING",
                    "mspe.overrides": shlex.join(overrides)}
        if names.git_commit():
            run_tags["mlflow.source.git.commit"] = names.git_commit()
        if retry_of_run_id:
            run_tags["mspe.retry_of"] = retry_of_run_id
        run_tags.update({names.clean_key(k): str(v) for k, v in tags.items() if v is not None})
        run_tags = {k: names.truncate(v, names.MAX_TAG_VALUE) for k, v in run_tags.items()}
        return MlflowTrialRun(self, trial_number, names.trial_params(params, fixed_overrides),
                              run_tags, retry_of_run_id, data, name=run_name)

    def mark_crashed(self, run_id: str, new_run_id: str) -> None:
        """End a crashed attempt's run (if still RUNNING) and point it at its retry."""
        run = self.client.get_run(run_id)
        tags = [RunTag("mspe.retried_by", new_run_id)]
        if run.info.status == "RUNNING":
            tags.append(RunTag("mspe.state", "CRASHED"))
        self.client.log_batch(run_id, tags=tags)
        if run.info.status == "RUNNING":
            self.client.set_terminated(run_id, "FAILED")

    def update_study(self, parent_run_id: str | None, best: Mapping[str, Any]) -> None:
        """Record the best-so-far after a trial.

        Args:
            parent_run_id: The parent run (None: this tracker's).
            best: ``value`` -> metrics ``best/value`` and ``best/<metric>``; ``trial`` ->
                tag ``mspe.best_trial`` and metric ``best/trial``; ``params`` -> tag
                ``mspe.best_params`` (JSON); ``finished`` (count) is the metrics' step; any
                other number (``complete``, ``pruned``, ``failed``) -> ``trials/<key>``.
        """
        run_id = parent_run_id or (self.parent_run_id if self.ensure_study() else None)
        if run_id is None:
            return
        step, stamp = int(best.get("finished") or 0), names.now_ms()
        values: dict[str, float] = {}
        tags = []
        if best.get("value") is not None:
            values.update({"best/value": best["value"], f"best/{self.metric}": best["value"]})
            tags.append(RunTag("mspe.best_value", repr(float(best["value"]))))
        if best.get("trial") is not None:
            values["best/trial"] = best["trial"]
            tags.append(RunTag("mspe.best_trial", str(best["trial"])))
        if best.get("params") is not None:
            text = json.dumps(best["params"], sort_keys=True, default=str)
            tags.append(RunTag("mspe.best_params", names.truncate(text, names.MAX_TAG_VALUE)))
        for key, item in best.items():
            if key not in ("value", "trial", "params") and isinstance(item, (int, float)):
                values[f"trials/{key}"] = item
        metrics = [Metric(names.clean_key(k), float(v), stamp, step) for k, v in values.items()]
        self.guard.call("update study summary", self.client.log_batch, run_id, metrics=metrics,
                        tags=tags)

    def finish_study(self, parent_run_id: str | None, files: Sequence[Path], *,
                     status: str | None = "FINISHED") -> None:
        """Upload ``files`` (plots, ``trials.csv``) under ``plots/``; set the parent's status.

        Args:
            parent_run_id: The parent run (None: this tracker's).
            files: Local files to upload.
            status: ``FINISHED``, ``KILLED`` when the study was interrupted, or None to leave
                the parent RUNNING (other drivers are still running trials of the study).
        """
        run_id = parent_run_id or (self.parent_run_id if self.ensure_study() else None)
        if run_id is None:
            return
        for path in files:
            self.guard.call(f"upload {Path(path).name}", self.client.log_artifact, run_id,
                            str(path), "plots")
        if status is not None:
            self.guard.call("end the parent run", self.client.set_terminated, run_id, status)
