"""One trial = one MLflow child run: per-epoch metrics from a Trainer callback, final state.

Per-epoch metrics are sent as ONE ``log_batch`` request per epoch: train metrics are held from
``on_train_epoch_end`` and validation metrics from ``on_validation_recorded`` until
``on_eval_epoch_end``, or until ``finish`` when a callback raised first (e.g. a pruner). The
logger keeps no reference to the Trainer: everything it logs arrives as hook arguments.
Metrics that could not be sent (tracking down) stay in memory (up to :data:`MAX_PENDING`
values) and go out with the next successful request of this run, so an outage that ends before
the trial does loses no epoch.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

from mlflow.entities import Metric, Param, RunTag

from mspe_sweep.tracking import names
from mspe_sweep.tracking.base import DataRecord, TrialRun, check_state
from mspe_sweep.training import Callback

if TYPE_CHECKING:
    from mspe_sweep.tracking.tracker import MlflowTracker

log = logging.getLogger("mspe_sweep.tracking")

MAX_PENDING = 200_000


@dataclass
class OpenEpoch:
    """An epoch's metrics, held until they are sent in one request."""

    epoch: int
    train: dict[str, float]
    val: dict[str, float] = field(default_factory=dict)  # empty until validation is recorded


class MlflowLogger(Callback):
    """Trainer callback of an :class:`MlflowTrialRun` (built by ``TrialRun.callback()``).

    It reads nothing from the trainer: each hook's ``epoch`` and ``metrics`` are what it logs.
    """

    def __init__(self, run: MlflowTrialRun) -> None:
        self.run = run

    def on_train_epoch_end(self, trainer, epoch: int, metrics: dict[str, float]) -> None:
        self.run.open_epoch = OpenEpoch(epoch, dict(metrics))

    def on_validation_recorded(self, trainer, epoch: int, metrics: dict[str, float]) -> None:
        held = self.run.open_epoch
        if held is not None and held.epoch == epoch:
            held.val = dict(metrics)

    def on_eval_epoch_end(self, trainer, epoch: int, metrics: dict[str, float]) -> None:
        self.run.close_epoch(epoch, metrics)


class MlflowTrialRun(TrialRun):
    """A child run ``trial-<n>`` under the study's parent run (created by the tracker).

    Args:
        tracker: The tracker that opened the study.
        number: The Optuna trial number.
        params: Run params (``names.trial_params``).
        tags: Run tags (without ``mlflow.parentRunId``, added once the parent is known).
        retry_of: Run id of the crashed attempt this trial retries, or None.
        data: The trial's data, logged once as the run's dataset input.
        name: The run's name (default ``trial-<number>``).
    """

    def __init__(self, tracker: MlflowTracker, number: int, params: dict[str, str],
                 tags: dict[str, str], retry_of: str | None,
                 data: DataRecord | None = None, name: str | None = None) -> None:
        self.tracker, self.guard, self.client = tracker, tracker.guard, tracker.client
        self.name = name or f"trial-{number}"
        self.params, self.tags, self.retry_of, self.data = params, tags, retry_of, data
        self.run_id: str | None = None
        self.pending: list[Metric] = []
        self.open_epoch: OpenEpoch | None = None
        self.finished = False
        self._params_logged = False
        self._retry_marked = retry_of is None
        self.ensure_run()

    def ensure_run(self) -> bool:
        """Create the run (and log params, mark a retried run) if not done yet; False if down."""
        if self.run_id is None:
            if not self.tracker.ensure_study():
                return False
            tags = {**self.tags, "mlflow.parentRunId": self.tracker.parent_run_id}
            ok, run = self.guard.call(f"create run {self.name}", self.client.create_run,
                                      self.tracker.experiment_id, run_name=self.name, tags=tags)
            if not ok:
                return False
            self.run_id = run.info.run_id
        # Re-tried after an outage only: a rejected value would be rejected again.
        if not self._params_logged:
            ok, _ = self.guard.call(f"log params of {self.name}", self._log_params)
            self._params_logged = ok or not self.guard.is_down
        if not self._retry_marked:
            ok, _ = self.guard.call(f"mark {self.retry_of} crashed", self.tracker.mark_crashed,
                                    self.retry_of, self.run_id)
            self._retry_marked = ok or not self.guard.is_down
        return True

    def _log_params(self) -> None:
        items = [Param(k, v) for k, v in self.params.items()]
        for start in range(0, len(items), names.MAX_PARAMS_PER_BATCH):
            chunk = items[start:start + names.MAX_PARAMS_PER_BATCH]
            self.client.log_batch(self.run_id, params=chunk)
        if self.data is not None:
            self.client.log_inputs(self.run_id, datasets=[names.dataset_input(self.data)])

    def callback(self) -> Callback:
        return MlflowLogger(self)

    def close_epoch(self, epoch: int, val: Mapping[str, float]) -> None:
        """Log one epoch: the held train metrics plus ``val`` in one request."""
        held = self.open_epoch
        train = held.train if held is not None and held.epoch == epoch else {}
        self.open_epoch = None
        stamp = names.now_ms()
        self.log_metrics([Metric(k, v, stamp, epoch)
                          for k, v in names.epoch_metrics(train, val).items()],
                         what=f"log epoch {epoch} of {self.name}")

    def log_history(self, history: Mapping[str, list]) -> None:
        stamp = names.now_ms()
        self.log_metrics([Metric(k, v, stamp, step)
                          for k, v, step in names.history_metrics(history)],
                         what=f"backfill history of {self.name}")

    def log_metrics(self, metrics: list[Metric], what: str) -> bool:
        """Queue ``metrics`` and send everything queued (chunks of 1000); False if not sent."""
        self.pending.extend(metrics)
        if len(self.pending) > MAX_PENDING:
            log.debug("dropping %d unsent metric values", len(self.pending) - MAX_PENDING)
            del self.pending[:len(self.pending) - MAX_PENDING]
        if not self.pending or not self.ensure_run():
            return not self.pending
        while self.pending:
            chunk = self.pending[:names.MAX_METRICS_PER_BATCH]
            ok, _ = self.guard.call(what, self.client.log_batch, self.run_id, metrics=chunk)
            if not ok:
                return False
            del self.pending[:len(chunk)]
        return True

    def finish(self, state: str, *, value: float | None = None,
               test_metric: Mapping[str, float] | None = None, best_epoch: int | None = None,
               reason: str | None = None, artifacts: Mapping[str, Path] | None = None) -> None:
        """Log final metrics, tags and artifacts, then set the run's status (idempotent).

        Args:
            state: ``COMPLETE`` (run FINISHED), ``PRUNED`` (KILLED), ``FAIL`` (FAILED) or
                ``INTERRUPTED`` (KILLED); also the ``mspe.state`` tag.
            value: The trial's value (best monitored metric) -> ``best/<metric>``.
            test_metric: Test metrics at the best epoch (``{"test/mae": 0.3}``) ->
                ``best/test/mae``.
            best_epoch: -> metric ``best/epoch``.
            reason: Why it failed (``mspe.fail_reason``, cut to 5000 chars) or stopped
                (``mspe.reason``).
            artifacts: ``{artifact name: local file}``; ``*.pt`` files go under
                ``checkpoints/`` and only for COMPLETE trials, others at the run's root.
        """
        status = check_state(state)
        if self.finished:
            return
        self.finished = True
        if self.open_epoch is not None:  # an epoch ended by a raising callback (e.g. pruning)
            # Its validation metrics if they were recorded before the raise, else train only.
            self.close_epoch(self.open_epoch.epoch, self.open_epoch.val)
        if not self.ensure_run():
            return
        stamp = names.now_ms()
        finals = names.final_metrics(self.tracker.metric, value, test_metric, best_epoch)
        if not self.log_metrics([Metric(k, v, stamp, best_epoch or 0) for k, v in finals.items()],
                                what=f"log final metrics of {self.name}"):
            return
        tags = [RunTag("mspe.state", state)]
        if reason:
            key, limit = (("mspe.fail_reason", names.FAIL_REASON_CHARS) if state == "FAIL"
                          else ("mspe.reason", names.MAX_TAG_VALUE))
            tags.append(RunTag(key, names.truncate(reason, limit)))
        self.guard.call(f"tag {self.name}", self.client.log_batch, self.run_id, tags=tags)
        for name, path in (artifacts or {}).items():
            if Path(name).suffix == ".pt" and state != "COMPLETE":
                continue
            self.guard.call(f"upload {name} of {self.name}", self._upload, name, Path(path))
        self.guard.call(f"end {self.name}", self.client.set_terminated, self.run_id, status)

    def _upload(self, name: str, path: Path) -> None:
        if not path.is_file():
            log.warning("MLflow: artifact %s of %s: no file %s; skipped", name, self.name, path)
            return
        target = Path(name)
        folder = "checkpoints" if target.suffix == ".pt" else None
        if target.parent != Path("."):
            folder = "/".join(p for p in (folder, target.parent.as_posix()) if p)
        if target.name == path.name:
            self.client.log_artifact(self.run_id, str(path), folder)
            return
        with tempfile.TemporaryDirectory(prefix="mspe-artifact-") as tmp:
            renamed = Path(tmp) / target.name
            shutil.copyfile(path, renamed)
            self.client.log_artifact(self.run_id, str(renamed), folder)
