"""One Optuna trial = one composed run config trained by ``train_from_config``.

Shaped like optuna-examples' ``pytorch_simple.py`` (suggest, build, train, report, return the
validation value), with crash retry and checkpoint resume as in ``pytorch_checkpoint.py``: a
retried trial trains in its original trial's directory and continues from its ``last.pt``.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Sequence

import optuna

from mspe_sweep.config import compose_run_config
from mspe_sweep.errors import StorageUnavailableError
from mspe_sweep.pipeline import CONFIG_FILE, TrainResult, train_from_config
from mspe_sweep.sweep.callbacks import EpochProgress, PruningCallback
from mspe_sweep.sweep.factories import derive_seed
from mspe_sweep.sweep.records import RunningTrial
from mspe_sweep.sweep.space import suggest, to_overrides
from mspe_sweep.sweep.spec import StudySpec
from mspe_sweep.sweep.watchdog import fail_reason, watched_training
from mspe_sweep.tracking import DataRecord, Tracker, TrialRun
from mspe_sweep.training import read_checkpoint

log = logging.getLogger(__name__)


class Objective:
    """Callable passed to ``study.optimize``.

    Args:
        spec: The validated study.
        run_overrides: Study ``fixed`` overrides then command-line run overrides (later wins).
        runs_dir: ``$MSPE_HOME/runs/<study>``; trial ``n`` trains in ``trial-<n>/``.
        tracker: Where each trial is logged (a no-op ``Tracker`` for ``tracking=none``).
        data: The study's data: its fingerprint is tagged on every trial's run, and the whole
            record is the run's dataset input.
    """

    def __init__(self, spec: StudySpec, run_overrides: Sequence[str], runs_dir: Path,
                 tracker: Tracker | None = None, data: DataRecord | None = None) -> None:
        self.spec = spec
        self.run_overrides = list(run_overrides)
        self.runs_dir = runs_dir
        self.tracker = tracker or Tracker()
        self.data = data

    def trial_seed(self, trial: optuna.Trial, root: int) -> int:
        """The trial's ``training.seed``, from the study seed and ``root``, the first trial of
        its retry chain: a retry keeps the original's seed."""
        return derive_seed(self.spec.seed, root)

    def run_tags(self, trial: optuna.Trial) -> dict[str, str | None]:
        """Extra tags of the trial's tracking run (None values are left out)."""
        return {"mspe.dataset_fingerprint": self.data.fingerprint if self.data else None}

    def run_name(self, trial: optuna.Trial) -> str | None:
        """The trial's tracking run name; None: the tracker's ``trial-<n>``."""
        return None

    def trial_overrides(self, trial: optuna.Trial, root: int) -> list[str]:
        """The run-config overrides that define this trial (and reproduce it with ``train``).

        ``root`` is the first trial of its retry chain: a retry keeps the original's seed.
        """
        sampled = to_overrides(suggest(trial, self.spec))
        mode = "min" if self.spec.direction == "minimize" else "max"
        seed = self.trial_seed(trial, root)
        return [*self.run_overrides, *sampled, f"training.seed={seed}",
                f"training.monitor={self.spec.metric}", f"training.monitor_mode={mode}"]

    def __call__(self, trial: optuna.Trial) -> float:
        record = RunningTrial(trial)
        root = record.stored().root_number
        run_dir = self.runs_dir / f"trial-{root}"
        # A retry carries the dead attempt's user attrs (Optuna copies them): read, then reset.
        retry_of = record.previous_mlflow_run_id() if root != trial.number else None
        run = TrialRun()
        try:
            record.start(self.trial_seed(trial, root), str(run_dir))
            overrides = self.trial_overrides(trial, root)
            record.set_overrides(overrides)
            fixed = [o for o in overrides if o.partition("=")[0] not in trial.params]
            run = self.tracker.start_trial(trial.number, trial.params, fixed, overrides,
                                           self.run_tags(trial), retry_of_run_id=retry_of,
                                           data=self.data, run_name=self.run_name(trial))
            record.set_mlflow_run_id(run.run_id)
            result = self._train(trial, overrides, run_dir, run, resuming=root != trial.number)
            self._record(record, result, run, run_dir)
        except optuna.TrialPruned as exc:
            run.finish("PRUNED", reason=str(exc))
            shutil.rmtree(run_dir, ignore_errors=True)
            raise
        except StorageUnavailableError:
            # The database stayed down: the trial stays RUNNING (nothing can be written), its
            # last.pt stays, and the next run retries it from there (see sweep/outage.py).
            run.finish("INTERRUPTED", reason="database unreachable; retried on the next run")
            raise
        except KeyboardInterrupt:
            # Ctrl-C or SIGTERM: last.pt stays; the worker queues a retry that resumes from it.
            record.set_interrupted()
            run.finish("INTERRUPTED", reason="interrupted; retried on the next run")
            raise
        except Exception as exc:
            reason = fail_reason(exc)[:1000]
            record.set_fail_reason(reason)
            run.finish("FAIL", reason=reason)
            raise
        return result.best_value

    def _record(self, record: RunningTrial, result: TrainResult, run: TrialRun,
                run_dir: Path) -> None:
        """The finished trial's outcome, on the Optuna trial and its tracking run."""
        test_key = "test/" + self.spec.metric.split("/", 1)[-1]
        record.set_result(best_epoch=result.best_epoch, epochs_run=result.epochs_run,
                          stop_reason=result.stop_reason, num_params=result.num_params,
                          test_metric=result.test_metrics.get(test_key),
                          fingerprint=result.fingerprint)
        run.finish("COMPLETE", value=result.best_value, test_metric=result.test_metrics,
                   best_epoch=result.best_epoch,
                   artifacts={"config.yaml": run_dir / CONFIG_FILE,
                              "best.pt": run_dir / "best.pt"})

    def _train(self, trial: optuna.Trial, overrides: list[str], run_dir: Path, run: TrialRun,
               resuming: bool) -> TrainResult:
        # The sweep prints its own per-epoch lines; the Trainer's display stays off.
        cfg = compose_run_config([*overrides, "training.progress=false"])
        RunningTrial(trial).set_epochs_planned(cfg.training.epochs)
        pruning = PruningCallback(trial, self.spec.metric)
        resume_from = run_dir / "last.pt"
        if resuming and resume_from.is_file():
            checkpoint = read_checkpoint(resume_from)
            log.info("trial %d resumes %s from its epoch-%d checkpoint", trial.number,
                     run_dir.name, checkpoint["epoch"])
            run.log_history(checkpoint.get("history", {}))
            pruning.replay(checkpoint.get("history", {}))
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned on resume at epoch {checkpoint['epoch']}")
        else:
            if resuming:
                log.warning("trial %d: no checkpoint of %s on this machine (it crashed "
                            "elsewhere); training it from epoch 1", trial.number, run_dir.name)
            shutil.rmtree(run_dir, ignore_errors=True)
            resume_from = None
        # Logging and progress come before pruning, which may raise at the epoch's end.
        callbacks = [run.callback(),
                     EpochProgress(trial.number, self.spec.metric, cfg.training.epochs), pruning]
        # With study.trial_timeout / epoch_timeout: in a child process the worker can kill.
        train = watched_training(self.spec.trial_timeout, self.spec.epoch_timeout)
        return (train or train_from_config)(cfg, run_dir, callbacks=callbacks,
                                            resume_from=resume_from)
