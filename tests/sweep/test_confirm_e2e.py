"""End to end, as a user runs it: a 6-trial study, then ``confirm top_k=2 seeds=3`` killed
mid-trial (SIGKILL) and run again. Exactly 2 x 2 new trials end COMPLETE, the sweep's own
trials are not re-run, the killed one resumes from its checkpoint, and the table has 2 rows
of 3 seeds, in the output, the CSV, ``report`` and MLflow."""

from __future__ import annotations

import csv

import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from mspe_sweep.sweep.records import StudyRecord, TrialRecord

pytestmark = pytest.mark.slow


def test_confirm_survives_a_kill_and_confirms_each_seed_once(tmp_path, sweep):
    home = tmp_path / "home"
    study_file = sweep.write_study(tmp_path, n_trials=6, set_fixed=["training.epochs=3"])
    args = [f"study={study_file}", "tracking=local"]
    code, out = sweep.run_sub("mspe_sweep.run", args, home, tmp_path / "run.log", timeout=400)
    assert code == 0, out
    confirm_args = [*args, "confirm.top_k=2", "confirm.seeds=3"]
    proc = sweep.Proc("mspe_sweep.confirm", confirm_args, home, tmp_path / "confirm-1.log")
    sweep.wait_for_checkpoint_epoch(proc, home / "runs/tiny/confirm/trial-1/last.pt", 1)
    proc.kill()
    code, out = sweep.run_sub("mspe_sweep.confirm", confirm_args, home,
                              tmp_path / "confirm-2.log", timeout=400)
    assert code == 0, out
    assert "0 queued now" in out and "resumes trial-1 from its epoch-" in out

    url = sweep.sqlite_url(home / "optuna.db")
    study, confirmation = sweep.load_study("tiny", url), sweep.load_study("tiny/confirm", url)
    records = StudyRecord(confirmation).trials()
    complete = [r for r in records if r.state == TrialState.COMPLETE]
    assert len(complete) == 4
    assert [r.state for r in records].count(TrialState.FAIL) == 1  # the killed attempt
    pairs = {(r.confirm_config, r.confirm_seed) for r in complete}
    assert len(pairs) == 4 and len({key for key, _ in pairs}) == 2
    selection = StudyRecord(confirmation).selection
    original_seeds = {TrialRecord(study.trials[c["trial"]]).seed for c in selection.values()}
    assert original_seeds.isdisjoint(seed for _, seed in pairs)  # the originals not re-run
    assert all(r.seed == r.confirm_seed for r in complete)  # trained with the queued seed

    rows = list(csv.DictReader((home / "runs/tiny/confirmation.csv").open()))
    assert [row["n"] for row in rows] == ["3", "3"]
    assert sorted(row["sweep_rank"] for row in rows) == ["1", "2"]
    assert "confirmation of tiny" in out and "winner" in out

    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tiny")
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    parent = StudyRecord(study).parent_run_id
    confirm_run = [r for r in runs if r.info.run_name == "confirm"]
    assert len(confirm_run) == 1
    assert confirm_run[0].data.tags["mlflow.parentRunId"] == parent
    confirm_trials = [r for r in runs if r.data.tags.get("mspe.phase") == "confirm"
                      and r.data.tags.get("mspe.role") == "trial"]
    finished = [r for r in confirm_trials if r.info.status == "FINISHED"]
    assert len(finished) == 4
    assert {r.data.tags["mlflow.parentRunId"] for r in confirm_trials} == \
        {confirm_run[0].info.run_id}
    assert {(r.data.tags["mspe.confirm.config"], int(r.data.tags["mspe.seed"]))
            for r in finished} == pairs
    parent_files = {f.path for f in client.list_artifacts(parent, "plots")}
    assert "plots/confirmation.csv" in parent_files

    assert {r.info.run_name for r in finished} == {f"confirm-{r.number}" for r in complete}
    page = (home / "runs/tiny/report.html").read_text()
    assert 'id="confirmation"' in page and "optimization_history.png" in page  # both kept

    code, out = sweep.run_sub("mspe_sweep.report", args, home, tmp_path / "report.log")
    assert code == 0 and "confirmation of tiny" in out, out
