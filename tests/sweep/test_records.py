"""Study and trial records: a study written before ``sweep/records.py`` still loads, reports
and resumes; and the records read what the sweep writes.

``tests/data/legacy_optuna.db`` was written by the code of commit 988383c (the study file is
``tests/data/legacy_study.yaml``): trial 0 stopped by SIGTERM at epoch 2, trial 1 its resumed
retry (COMPLETE), trials 2 and 3 pruned at epoch 1.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from mspe_sweep import report as report_module
from mspe_sweep.sweep.records import StudyRecord, TrialRecord

DATA = Path(__file__).resolve().parents[1] / "data"
LEGACY_STUDY = DATA / "legacy_study.yaml"


@pytest.fixture
def legacy_url(tmp_path) -> str:
    """A private copy of the legacy storage (opening it may migrate or write to it)."""
    db = tmp_path / "legacy_optuna.db"
    shutil.copy(DATA / "legacy_optuna.db", db)
    return f"sqlite:///{db}"


def test_legacy_trial_records_read_back(legacy_url):
    study = optuna.load_study(study_name="legacy", storage=legacy_url)
    interrupted, retry, *pruned = StudyRecord(study).trials()

    assert interrupted.state == TrialState.FAIL
    assert interrupted.interrupted is True and interrupted.fail_reason is None
    assert interrupted.root_number == 0 and interrupted.retry_history == []
    assert interrupted.owner.endswith(":0")
    assert interrupted.epochs_planned == 4 and interrupted.epochs_run is None

    assert retry.state == TrialState.COMPLETE
    assert retry.root_number == 0 and retry.retry_history == [0]
    assert retry.interrupted is False and retry.fail_reason is None
    assert retry.seed == interrupted.seed == 171340461
    assert retry.checkpoint_dir == interrupted.checkpoint_dir
    assert retry.checkpoint_dir.endswith("/runs/legacy/trial-0")
    assert (retry.best_epoch, retry.epochs_run, retry.epochs_planned) == (4, 4, 4)
    assert retry.test_metric == pytest.approx(0.15857303515076637)
    assert retry.mlflow_run_id is None  # tracking=none
    assert "training.seed=171340461" in retry.overrides
    assert retry.overrides[0] == "dataset=synthetic"

    assert [(t.state, t.epochs_run, t.root_number) for t in pruned] == [
        (TrialState.PRUNED, 1, 2), (TrialState.PRUNED, 1, 3)]
    assert [t.retry_system_attrs()["failed_trial"] for t in (interrupted, retry)] == [0, 0]
    assert retry.retry_system_attrs()["retry_history"] == [0, 1]
    assert "owner" not in retry.retry_system_attrs()


def test_legacy_study_records_read_back(legacy_url):
    record = StudyRecord(optuna.load_study(study_name="legacy", storage=legacy_url))
    assert record.n_trials == 3
    assert record.parent_run_id is None
    assert record.identity["hash"] == "d4b0f7eeca01ad4f"
    assert record.identity["run_overrides"][:2] == ["dataset=synthetic", "dataset.train_size=600"]
    assert record.trial(1).number == 1 and isinstance(record.trial(1), TrialRecord)


def test_legacy_study_reports(sweep, legacy_url, capsys):
    result = sweep.run_cli(capsys, [f"study={LEGACY_STUDY}", f"storage.url={legacy_url}",
                                    "tracking=none"], entry=report_module.main)

    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0] == "study legacy: 3/3 done (2 pruned, 1 failed), best 0.2168 (trial 1)"
    assert lines[1] == "pruning and early stopping saved 6 of 12 planned epochs (50%)"
    assert lines[2] == "best trial 1: val/mae 0.2168; reproduce with:"
    assert "training.seed=171340461" in lines[3]
    assert lines[4].endswith("/runs/legacy/trial-0")
    header = next(i for i, line in enumerate(lines) if line.startswith("rank  trial"))
    assert lines[header + 1].split()[:6] == ["1", "1", "0.2168", "0.1586", "4",
                                             "training.optimizer.lr=0.03"]


@pytest.mark.slow
def test_legacy_study_resumes(sweep, legacy_url, capsys):
    # The same study file and run overrides: the stored identity matches, so the run resumes
    # (no study.force) and adds one trial to the three finished ones.
    result = sweep.run_cli(capsys, [f"study={LEGACY_STUDY}", f"storage.url={legacy_url}",
                                    "tracking=none", "study.n_trials=4"])

    assert result.code == 0, result.err
    assert "budget:   3/4 finished trials" in result.out
    records = StudyRecord(optuna.load_study(study_name="legacy", storage=legacy_url))
    trials = records.trials()
    assert [t.number for t in trials] == [0, 1, 2, 3, 4]
    new = trials[-1]
    assert new.state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert new.root_number == 4 and new.seed not in {t.seed for t in trials[:-1]}
    assert new.checkpoint_dir.endswith("/runs/legacy/trial-4")
    assert records.n_trials == 4
    assert "study legacy: 4/4 done" in result.out
    # A study created before the objective was named gets its name on resume.
    assert optuna.load_study(study_name="legacy", storage=legacy_url).metric_names == ["val/mae"]
