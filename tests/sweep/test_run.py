"""`python -m mspe_sweep.run` end to end, in-process: validation, pruning, resume, identity,
self-failing trials, secrets, the report, and reproducing a trial with `train`."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from sqlalchemy.engine import make_url

import mspe_sweep.sweep.work as work_module
from mspe_sweep import report as report_module
from mspe_sweep.config import STUDIES_DIR
from mspe_sweep.sweep.driver import run_study
from mspe_sweep.train import train

DRIVER_PREFIXES = ("study", "storage", "tracking", "workers", "trials_per_gpu")
TINY_STUDY = Path(__file__).resolve().parents[1] / "data" / "tiny_study.yaml"


def states(study: optuna.Study) -> list[TrialState]:
    return [t.state for t in study.get_trials(deepcopy=False)]


def finished(study: optuna.Study) -> int:
    return sum(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states(study))


def stored_studies(db: Path) -> list[str]:
    """Study names in an Optuna SQLite file, read without creating or migrating anything."""
    if not db.exists():
        return []
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        if not conn.execute("SELECT name FROM sqlite_master WHERE name = 'studies'").fetchall():
            return []
        return [row[0] for row in conn.execute("SELECT study_name FROM studies")]


def driver_keys_in(overrides: list[str]) -> list[str]:
    return [o for o in overrides
            if o.partition("=")[0].lstrip("+~").split(".", 1)[0] in DRIVER_PREFIXES]


# --- 1. validation errors: exit 2, one line naming file and key, nothing in the storage --------

VALIDATION_CASES = {
    # id: (study file changes, extra command-line args, substrings of the one error line)
    "unknown-study-key": ({"foo": 1}, [], ["{path}", "unknown key", "foo"]),
    "bad-grammar": ({"params": {"training.optimizer.lr": "interval(1e-4"}}, [],
                    ["{path}", "params.training.optimizer.lr", "cannot parse"]),
    "inverted-range": ({"params": {"training.optimizer.lr": "interval(1e-2, 1e-4)"}}, [],
                       ["{path}", "params.training.optimizer.lr", "inverted"]),
    "log-range-touching-0": (
        {"params": {"training.optimizer.lr": "tag(log, interval(0, 1e-2))"}}, [],
        ["{path}", "params.training.optimizer.lr", "above 0"]),
    "searched-and-fixed": ({"set_fixed": ["training.optimizer.lr=0.1"]}, [],
                           ["{path}", "params.training.optimizer.lr", "`fixed`"]),
    "searched-and-on-command-line": ({}, ["training.optimizer.lr=0.1"],
                                     ["{path}", "params.training.optimizer.lr",
                                      "command line"]),
    "searched-group-on-command-line": ({}, ["pe=rwse"], ["{path}", "params.pe", "command line"]),
    "key-not-in-config": ({"params": {"training.optimizer.lrr": "interval(1e-4, 1e-2)"}}, [],
                          ["{path}", "params.training.optimizer.lrr", "no such key",
                           "training.optimizer.lr"]),
    "unknown-sampler": ({"sampler": "bogus"}, [], ["{path}", "sampler", "bogus", "tpe"]),
    "unknown-pruner": ({"pruner": "bogus"}, [], ["{path}", "pruner", "bogus", "median"]),
    "unknown-pruner-argument": ({"pruner": {"type": "median", "n_startup": 1}}, [],
                                ["{path}", "pruner", "n_startup", "n_startup_trials"]),
    "unknown-metric": ({"metric": "val/bogus"}, [], ["{path}", "metric", "val/bogus",
                                                      "val/mae"]),
    "bad-run-override": ({}, ["training.epoch=3"], ["{path}", "training.epoch"]),
    "unknown-group-option": ({}, ["model=bogus"], ["model=bogus", "graph_transformer"]),
    "n-trials-0": ({}, ["study.n_trials=0"], ["study.n_trials"]),
    "workers-0": ({}, ["workers=0"], ["workers"]),
    "trials-per-gpu-0": ({}, ["trials_per_gpu=0"], ["trials_per_gpu"]),
    "unknown-driver-key": ({}, ["study.n_trial=3"], ["study.n_trial"]),
    # The study file's `timeout` must be > 0 and its seed a valid sampler seed; the same
    # settings given on the command line must be checked as strictly.
    "timeout-0": ({}, ["study.timeout=0"], ["study.timeout"]),
    "timeout-negative": ({}, ["study.timeout=-5"], ["study.timeout"]),
    "seed-negative": ({}, ["study.seed=-1"], ["study.seed"]),
    "bad-storage-scheme": ({}, ["storage.url=mysql://u@h/db"], ["storage.url", "mysql"]),
}


@pytest.mark.parametrize("case", list(VALIDATION_CASES), ids=list(VALIDATION_CASES))
def test_validation_error_is_one_line_exit_2_and_writes_nothing(sweep, case, tmp_path,
                                                                 capsys, mspe_home):
    changes, extra, expected = VALIDATION_CASES[case]
    path = sweep.write_study(tmp_path, **changes)
    db = tmp_path / "optuna.db"
    storage = [] if any(a.startswith("storage.url=") for a in extra) else [
        f"storage.url={sweep.sqlite_url(db)}"]

    result = sweep.run_cli(capsys, [f"study={path}", "tracking=none", *storage, *extra])

    assert result.code == 2, result
    assert result.err.count("\n") == 1 and result.err.startswith("error: "), result.err
    for text in expected:
        assert text.format(path=path) in result.err, (text, result.err)
    assert result.out == ""  # not even the start-up lines
    assert stored_studies(db) == []
    assert stored_studies(mspe_home / "optuna.db") == []
    assert not (mspe_home / "runs").exists()


def test_unknown_study_name_lists_the_available_studies(sweep, capsys, mspe_home):
    result = sweep.run_cli(capsys, ["study=no_such_study", "tracking=none"])

    assert result.code == 2
    assert result.err.count("\n") == 1 and "no_such_study" in result.err
    available = sorted(p.stem for p in STUDIES_DIR.glob("*.yaml"))
    assert available and all(name in result.err for name in available)
    assert not mspe_home.exists() or not any(mspe_home.iterdir())


def test_missing_study_argument_is_one_line(sweep, capsys):
    result = sweep.run_cli(capsys, ["tracking=none"])
    assert result.code == 2
    assert result.err.count("\n") == 1 and "study=<name>" in result.err


def test_postgres_storage_without_a_url_is_an_error_not_a_local_sqlite_study(
        sweep, capsys, mspe_home, monkeypatch):
    # On a machine where MSPE_STORAGE_URL was forgotten, `storage=postgres` must not quietly
    # run a private SQLite study next to the shared one.
    monkeypatch.delenv("MSPE_STORAGE_URL", raising=False)
    result = sweep.run_cli(capsys, [f"study={TINY_STUDY}", "tracking=none", "storage=postgres",
                                    "study.n_trials=1"])
    assert result.code == 2, result.out
    assert result.err.count("\n") == 1 and result.err.startswith("error: ")
    assert "storage.url" in result.err and "MSPE_STORAGE_URL" in result.err
    assert stored_studies(mspe_home / "optuna.db") == []


# --- 2. pruning -------------------------------------------------------------------------------

def test_median_pruner_prunes_bad_trials_and_deletes_their_checkpoints(sweep, tmp_path,
                                                                       capsys, mspe_home):
    path = sweep.write_study(
        tmp_path, n_trials=4,
        pruner={"type": "median", "n_startup_trials": 1, "n_warmup_steps": 1},
        set_fixed=["training.epochs=4", "pe=none"],
        params={"training.optimizer.lr": "choice(1e-5, 3e-2)"})

    result = sweep.run_cli(capsys, [f"study={path}", "tracking=none",
                                    "training.deterministic=true"])

    assert result.code == 0, result.err
    study = sweep.load_study("tiny", sweep.sqlite_url(mspe_home / "optuna.db"))
    trials = study.get_trials(deepcopy=False)
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert pruned, [(t.number, t.state, t.params) for t in trials]
    assert trials[0].state == TrialState.COMPLETE  # n_startup_trials=1: nothing to compare yet
    assert any(t.params["training.optimizer.lr"] == 1e-5 for t in pruned)
    for trial in pruned:
        epochs_run = trial.user_attrs["epochs_run"]
        assert 1 <= epochs_run < 4
        assert max(trial.intermediate_values) == epochs_run  # reported up to where it stopped
        run_dir = Path(trial.user_attrs["checkpoint_dir"])
        assert not list(run_dir.glob("*.pt")), run_dir
        assert f"trial {trial.number} PRUNED at epoch {epochs_run}" in result.err
    for trial in complete:
        assert trial.user_attrs["epochs_run"] == 4
        assert (Path(trial.user_attrs["checkpoint_dir"]) / "best.pt").is_file()
    assert finished(study) == 4


def test_only_the_best_keep_checkpoints_trials_keep_their_checkpoints(sweep, tmp_path, capsys,
                                                                       mspe_home):
    path = sweep.write_study(tmp_path, n_trials=3, keep_checkpoints=1)

    result = sweep.run_cli(capsys, [f"study={path}", "tracking=none"])

    assert result.code == 0, result.err
    study = sweep.load_study("tiny", sweep.sqlite_url(mspe_home / "optuna.db"))
    kept = {t.number for t in study.trials
            if list(Path(t.user_attrs["checkpoint_dir"]).glob("*.pt"))}
    assert kept == {study.best_trial.number}
    for trial in study.trials:  # the small files stay: what each trial was and what it got
        assert (Path(trial.user_attrs["checkpoint_dir"]) / "results.json").is_file()


# --- 3. resume continues the count ------------------------------------------------------------

def test_rerun_continues_the_trial_count_and_a_finished_study_returns_quickly(sweep, capsys,
                                                                             mspe_home):
    args = [f"study={TINY_STUDY}", "tracking=none"]
    url = sweep.sqlite_url(mspe_home / "optuna.db")

    first = sweep.run_cli(capsys, [*args, "study.n_trials=2"])
    assert first.code == 0, first.err
    assert [t.number for t in sweep.load_study("tiny", url).trials] == [0, 1]

    second = sweep.run_cli(capsys, [*args, "study.n_trials=4"])
    assert second.code == 0, second.err
    assert "budget:   2/4 finished trials" in second.out
    study = sweep.load_study("tiny", url)
    assert [t.number for t in study.trials] == [0, 1, 2, 3]
    assert states(study) == [TrialState.COMPLETE] * 4
    assert len({t.user_attrs["checkpoint_dir"] for t in study.trials}) == 4
    assert len({t.user_attrs["seed"] for t in study.trials}) == 4

    started = time.monotonic()
    third = sweep.run_cli(capsys, [*args, "study.n_trials=4"])
    elapsed = time.monotonic() - started
    assert third.code == 0, third.err
    assert elapsed < 15, elapsed
    assert len(sweep.load_study("tiny", url).trials) == 4
    assert "study tiny: 4/4 done (0 pruned, 0 failed)" in third.out
    best = study.best_trial
    assert f"best trial {best.number}: val/mae {best.value:.4f}" in third.out
    assert "rank  trial  val/mae" in third.out


# --- 7. identity guard ------------------------------------------------------------------------

def test_changed_run_override_is_refused_unless_forced(sweep, capsys, mspe_home):
    args = [f"study={TINY_STUDY}", "tracking=none", "study.n_trials=1"]
    url = sweep.sqlite_url(mspe_home / "optuna.db")
    assert sweep.run_cli(capsys, args).code == 0

    # Driver keys are not part of the identity: changing them resumes silently.
    same = sweep.run_cli(capsys, [*args, "storage.heartbeat_interval=60", "study.timeout=600"])
    assert same.code == 0, same.err

    changed = sweep.run_cli(capsys, [*args, "training.batch_size=8"])
    assert changed.code == 2
    assert changed.err.count("\n") == 1 and changed.err.startswith("error: ")
    assert "identity" in changed.err and "study.force=true" in changed.err
    assert "run_overrides" in changed.err and "training.batch_size=8" in changed.err
    assert len(sweep.load_study("tiny", url).trials) == 1

    forced = sweep.run_cli(capsys, [f"study={TINY_STUDY}", "tracking=none", "study.n_trials=2",
                                    "training.batch_size=8", "study.force=true"])
    assert forced.code == 0, forced.err
    trials = sweep.load_study("tiny", url).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    assert "training.batch_size=8" not in trials[0].user_attrs["overrides"]
    assert "training.batch_size=8" in trials[1].user_attrs["overrides"]
    # The forced run's identity is now the stored one: it resumes without force.
    assert sweep.run_cli(capsys, [f"study={TINY_STUDY}", "tracking=none", "study.n_trials=2",
                                  "training.batch_size=8"]).code == 0


# --- 8. secrets -------------------------------------------------------------------------------

def test_unreachable_postgres_error_masks_the_password(sweep, tmp_path, capsys):
    path = sweep.write_study(tmp_path)
    result = sweep.run_cli(capsys, [f"study={path}", "tracking=none",
                                    "storage.url=postgresql+psycopg://user:s3cret@127.0.0.1:1/db"])
    assert result.code == 2
    assert result.err.count("\n") == 1 and result.err.startswith("error: ")
    assert "user:***@127.0.0.1:1/db" in result.err
    assert "s3cret" not in result.err + result.out


@pytest.mark.postgres
def test_wrong_postgres_password_is_exit_2_and_masked(sweep, postgres_url, tmp_path, capsys):
    url = make_url(postgres_url).set(password="wr0ng-pa55word")
    text = url.render_as_string(hide_password=False)
    result = sweep.run_cli(capsys, [f"study={sweep.write_study(tmp_path)}", "tracking=none",
                                    "storage=postgres", f"storage.url={text}"])
    assert result.code == 2
    assert result.err.count("\n") == 1 and result.err.startswith("error: ")
    assert ":***@" in result.err
    assert "wr0ng-pa55word" not in result.err + result.out


@pytest.mark.postgres
def test_live_postgres_run_never_prints_the_password(sweep, postgres_url, tmp_path, capsys):
    password = make_url(postgres_url).password
    assert password
    name = f"tiny-pg-{uuid.uuid4().hex[:8]}"
    path = sweep.write_study(tmp_path, name=name, n_trials=1)
    try:
        result = sweep.run_cli(capsys, [f"study={path}", "tracking=none", "storage=postgres",
                                        f"storage.url={postgres_url}"])
        assert result.code == 0, result.err
        assert "storage:  postgresql+psycopg://" in result.out and ":***@" in result.out
        assert password not in result.out + result.err
        study = sweep.load_study(name, postgres_url)
        assert states(study) == [TrialState.COMPLETE]
        stored = json.dumps([study.user_attrs, study.trials[0].user_attrs,
                             study.trials[0].system_attrs], default=str)
        assert password not in stored
        assert not driver_keys_in(study.trials[0].user_attrs["overrides"])
    finally:
        if name in sweep.study_names(postgres_url):
            optuna.delete_study(study_name=name, storage=postgres_url)


# --- 9. trials that fail on their own ---------------------------------------------------------

SELF_FAILING = {
    # concat PE leaves the atom embedding 8 - 8 = 0 channels: the model refuses at build time.
    "model-build": ({"set_fixed": ["model.hidden_dim=8", "pe.dim=8", "pe=rwse"],
                     "params": {"training.optimizer.lr": "tag(log, interval(1e-4, 1e-2))"}},
                    "UserError: model:"),
    # lr 1e8 makes the training loss non-finite within the first epoch.
    "non-finite-loss": ({"params": {"training.optimizer.lr": "tag(log, interval(1e8, 1e9))"}},
                        "NonFiniteLossError"),
}


@pytest.mark.parametrize("case", list(SELF_FAILING), ids=list(SELF_FAILING))
def test_self_failing_trials_are_not_retried_and_stop_the_study(sweep, case, tmp_path,
                                                                capsys, mspe_home):
    changes, reason = SELF_FAILING[case]
    path = sweep.write_study(tmp_path, n_trials=5, max_consecutive_failures=2, **changes)

    result = sweep.run_cli(capsys, [f"study={path}", "tracking=none"])

    assert result.code == 2
    assert len(result.error_lines) == 1, result.err
    assert result.err.rstrip("\n").splitlines()[-1] == result.error_lines[0]
    assert "2 consecutive failed trials" in result.error_lines[0]
    assert "max_consecutive_failures" in result.error_lines[0]
    assert "Traceback" not in result.err
    study = sweep.load_study("tiny", sweep.sqlite_url(mspe_home / "optuna.db"))
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.FAIL] * 2  # no WAITING retries
    for trial in trials:
        assert reason in trial.user_attrs["fail_reason"], trial.user_attrs
        assert trial.user_attrs["interrupted"] is False
        assert "failed_trial" not in trial.system_attrs
        assert f"trial {trial.number} FAIL ({reason}" in result.err


# --- 10. report -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def finished_tiny(sweep, tmp_path_factory):
    """The tiny study, 2 deterministic trials, run once for the read-only tests below."""
    root = tmp_path_factory.mktemp("finished_tiny")
    url = sweep.sqlite_url(root / "optuna.db")
    with pytest.MonkeyPatch.context() as mp, sweep.preserved_process_state():
        mp.setenv("MSPE_HOME", str(root / "home"))
        mp.setattr(work_module, "write_study_plots", lambda study, out_dir: [])
        result = run_study([f"study={TINY_STUDY}", "tracking=none", "study.n_trials=2",
                            f"storage.url={url}", "training.deterministic=true"])
    assert result.complete == 2
    return url


def test_report_prints_the_leaderboard(sweep, finished_tiny, capsys, skip_study_plots):
    result = sweep.run_cli(capsys, [f"study={TINY_STUDY}", f"storage.url={finished_tiny}"],
                           entry=report_module.main)

    assert result.code == 0, result.err
    study = sweep.load_study("tiny", finished_tiny)
    lines = result.out.splitlines()
    assert lines[0].startswith("study tiny: 2/")  # the budget: the study file's n_trials
    assert lines[0].endswith(f"best {study.best_value:.4f} (trial {study.best_trial.number})")
    header = next(i for i, line in enumerate(lines) if line.startswith("rank  trial"))
    end = lines.index("", header)  # the answer follows the leaderboard
    rows = [line.split() for line in lines[header + 1:end]]
    ranked = sorted(study.trials, key=lambda t: t.value)
    assert [row[1] for row in rows] == [str(t.number) for t in ranked]
    assert [row[2] for row in rows] == [f"{t.value:.4f}" for t in ranked]
    assert [row[3] for row in rows] == [f"{t.user_attrs['test_metric']:.4f}" for t in ranked]

    assert skip_study_plots == ["tiny"]  # the report refreshes the study's plots

    top = sweep.run_cli(capsys, [f"study={TINY_STUDY}", f"storage.url={finished_tiny}",
                                 "top=1"], entry=report_module.main)
    assert top.code == 0
    assert top.out.splitlines()[:3] == [*lines[header:header + 2], ""]  # the best trial
    assert top.out.splitlines()[-1].endswith("runs/tiny/report.html")


@pytest.mark.parametrize(("args", "fragment"), [
    (["study=no_such_study"], "no_such_study"),  # no study file: lists the available ones
    (["study=zinc"], "no study named 'zinc'"),  # a study file, but never run
    ([f"study={TINY_STUDY}", "top=abc"], "top=abc"),
    ([f"study={TINY_STUDY}", "top=0"], "top=0"),  # "must be a positive integer"
    ([f"study={TINY_STUDY}", "training.epochs=3"], "training.epochs=3"),
], ids=["no-file", "never-run", "top-not-a-number", "top-0", "run-override"])
def test_report_errors_are_exit_2_and_one_line(sweep, args, fragment, finished_tiny, capsys):
    result = sweep.run_cli(capsys, [*args, f"storage.url={finished_tiny}"],
                           entry=report_module.main)
    assert result.code == 2
    assert result.err.count("\n") == 1 and result.err.startswith("error: "), result.err
    assert fragment in result.err
    assert result.out == ""


def test_report_of_a_missing_study_lists_the_studies_there(sweep, finished_tiny, capsys):
    result = sweep.run_cli(capsys, ["study=zinc", f"storage.url={finished_tiny}"],
                           entry=report_module.main)
    assert result.code == 2
    assert result.err.rstrip().endswith("; studies there: tiny)"), result.err


def test_report_of_a_never_run_study_creates_no_storage(sweep, tmp_path, capsys, mspe_home):
    # `report` only reads the study storage: asking about a study that does not exist must
    # not create the (default) SQLite database as a side effect.
    result = sweep.run_cli(capsys, ["study=zinc"], entry=report_module.main)
    assert result.code == 2
    assert not (mspe_home / "optuna.db").exists()


# --- 12. a trial's recorded overrides reproduce it --------------------------------------------

def test_train_with_a_trials_overrides_reproduces_its_value(sweep, finished_tiny, capsys):
    study = sweep.load_study("tiny", finished_tiny)
    best = study.best_trial
    overrides = best.user_attrs["overrides"]
    assert not driver_keys_in(overrides)
    assert f"training.seed={best.user_attrs['seed']}" in overrides
    assert "training.deterministic=true" in overrides

    result = train(overrides)

    assert result.best_value == best.value
    assert result.best_epoch == best.user_attrs["best_epoch"]
    assert result.test_metrics["test/mae"] == best.user_attrs["test_metric"]
