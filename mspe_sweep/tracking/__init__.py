"""Everything MLflow: one experiment per study, a parent run per study, a child run per trial.

``tracking/`` owns MLflow (through ``MlflowClient`` only: safe with several worker processes;
never the fluent global-run API) and does not import Optuna: the sweep passes plain values.

    tracker = build_tracker(cfg.tracking.backend, cfg.tracking.uri, mspe_home())
    parent_id = tracker.start_study(spec.name, stored_parent_id, spec.to_dict(), base_yaml)
    run = tracker.start_trial(n, params, fixed_overrides, overrides, tags, retry_of_run_id,
                              data=DataRecord(name, source, fingerprint, sizes))
    run.log_history(checkpoint["history"])            # only when resuming from last.pt
    Trainer(..., callbacks=[run.callback(), pruning, ...]).fit(...)
    run.finish("COMPLETE", value=..., test_metric={"test/mae": ...}, best_epoch=...,
               artifacts={"config.yaml": ..., "best.pt": ...})
    tracker.update_study(parent_id, {"value": ..., "trial": ..., "params": ..., ...})
    tracker.finish_study(parent_id, write_study_plots(study, out_dir))

**Names.** Experiment = study name, tagged ``mlflow.experimentKind=custom_model_development``
(MLflow 3.17's UI then opens the runs table). Parent run = study name, tags ``mspe.role=parent``,
``mspe.study``; params ``study.<field>`` and ``space.<key>`` (the search grammar); artifacts
``study_spec.json``, ``base_config.yaml``, ``plots/*``. Child run ``trial-<n>``: tags
``mlflow.parentRunId``, ``mspe.role=trial``, ``mspe.study``, ``mspe.trial``, ``mspe.overrides``
(shell-quoted: ``python -m mspe_sweep.train <that>`` reproduces the trial), ``mspe.state``
(RUNNING, COMPLETE, PRUNED, FAIL, INTERRUPTED, CRASHED), ``mlflow.source.git.commit``, the
caller's tags, ``mspe.retry_of`` / ``mspe.retried_by``; params = the fixed overrides under
their config key (``training.epochs``; no ``fixed.`` prefix, so a key is one UI column whether
sampled or fixed) overlaid with the sampled params (sampled wins). Metrics, step = epoch:
``train/<k>``, ``val/<k>``, ``lr``, ``epoch_seconds``, ``graphs_per_second``; at the end
``best/<study metric>`` (``best/val/mae``), ``best/test/<k>``, ``best/epoch``. Parent metrics:
``best/value``, ``best/<metric>``, ``best/trial``, ``trials/<count>`` (step = finished trials).

**Parent status follows the study**: RUNNING from ``start_study`` (re-opened on every run of
the command) until ``finish_study`` sets FINISHED (or KILLED). With several worker processes
only the driver should call ``finish_study``, after all workers ended.

**Concurrent start.** Workers normally pass the parent id the driver stored. Two processes
that find no parent at once each create one, re-list, keep the oldest and delete their own.
A duplicate survives only if a process lists before the other's run (with an earlier client
clock) is visible; it is then a second, harmless parent run of the same study. Both log the
study's params; the one whose insert collides re-reads them and logs what is still missing.

**Tracking outages** never fail a trial or the study (see ``guard.py``): MLflow's HTTP retries
and timeouts are lowered unless set by the user (``MLFLOW_HTTP_REQUEST_MAX_RETRIES=2``,
``..._BACKOFF_FACTOR=1``, ``..._BACKOFF_JITTER=0``, ``..._TIMEOUT=10``); the first failure logs
one warning, then calls are skipped and re-tried at most every 60 s (10 s for the local store).
Backfilled after recovery, within the same process: the epochs' metrics of trials still running
(held in memory), the creation of runs whose trial started during the outage, the parent run,
the best-so-far (the next ``update_study`` writes the current one), and the final status,
metrics and artifacts of trials that end after recovery. Lost: anything of a trial that ended
(or a study that finished) while tracking was down, so such a run may stay RUNNING in MLflow;
and everything held in memory by a process that exits during the outage. Optuna's storage and
``runs/<study>/trial-<n>/`` keep all of it regardless.
"""

from mspe_sweep.tracking.base import DataRecord, Tracker, TrialRun
from mspe_sweep.tracking.factory import BACKENDS, build_tracker, tracking_location

__all__ = ["build_tracker", "tracking_location", "DataRecord", "Tracker", "TrialRun",
           "BACKENDS"]
