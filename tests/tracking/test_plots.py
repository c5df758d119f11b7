"""Study plots (``mspe_sweep.sweep.plots``) for tiny in-memory studies; and their upload."""

from __future__ import annotations

import optuna
import pytest
from _tracking_helpers import BASE_YAML, SPEC

from mspe_sweep.sweep import plots
from mspe_sweep.sweep.plots import write_study_plots


ALL_PLOTS = ["optimization_history", "param_importances", "parallel_coordinate",
             "intermediate_values"]


def tiny_study(n_trials: int, two_params: bool = True) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))

    def objective(trial):
        lr = trial.suggest_float("training.optimizer.lr", 1e-4, 1e-1, log=True)
        pe = trial.suggest_categorical("pe", ["rwse", "lap"]) if two_params else "rwse"
        value = lr * (2 if pe == "lap" else 1)
        for epoch in range(1, 4):
            trial.report(value * (4 - epoch), step=epoch)
        if trial.number == 3:
            raise optuna.TrialPruned()
        return value

    study.optimize(objective, n_trials=n_trials)
    return study


@pytest.fixture(scope="module")
def ten_trials():
    return tiny_study(10)


def test_all_plots_and_the_csv_are_written(ten_trials, tmp_path):
    files = write_study_plots(ten_trials, tmp_path / "plots")
    expected = [f"{name}.{ext}" for name in ALL_PLOTS for ext in ("html", "png")]
    assert [f.name for f in files] == [*expected, "trials.csv"]
    assert all(f.parent == tmp_path / "plots" and f.stat().st_size > 0 for f in files)
    assert (tmp_path / "plots" / "optimization_history.png").read_bytes()[:4] == b"\x89PNG"
    assert "cdn.plot.ly" in (tmp_path / "plots" / "param_importances.html").read_text()
    assert len((tmp_path / "plots" / "trials.csv").read_text().splitlines()) == 11


def test_too_few_trials_or_params_skip_importances(tmp_path):
    names = [f.name for f in write_study_plots(tiny_study(1), tmp_path / "one")]
    assert names == ["optimization_history.html", "optimization_history.png",
                     "intermediate_values.html", "intermediate_values.png", "trials.csv"]
    names = [f.name for f in write_study_plots(tiny_study(3, two_params=False), tmp_path / "p")]
    assert "param_importances.html" not in names and "parallel_coordinate.png" in names
    empty = optuna.create_study()
    assert [f.name for f in write_study_plots(empty, tmp_path / "empty")] == ["trials.csv"]


def test_a_failing_plot_is_skipped_with_a_warning(ten_trials, tmp_path, monkeypatch, caplog):
    def broken(study):
        raise RuntimeError("no luck")

    monkeypatch.setattr(optuna.visualization, "plot_parallel_coordinate", broken)
    names = [f.name for f in write_study_plots(ten_trials, tmp_path)]
    assert "parallel_coordinate.html" not in names and "parallel_coordinate.png" in names
    assert "parallel_coordinate.html skipped: RuntimeError: no luck" in caplog.text
    assert plots.PLOTLYJS == "cdn"


def test_finish_study_uploads_plots_and_ends_the_parent(backend, study_name, ten_trials,
                                                        tmp_path):
    tracker = backend.build()
    parent = tracker.start_study(study_name, None, SPEC, BASE_YAML)
    files = write_study_plots(ten_trials, tmp_path)
    tracker.finish_study(parent, files)
    client = backend.client
    uploaded = sorted(a.path for a in client.list_artifacts(parent, "plots"))
    assert uploaded == sorted(f"plots/{f.name}" for f in files)
    assert client.get_run(parent).info.status == "FINISHED"
