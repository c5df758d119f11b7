"""Study plots and the trials table, written to files for MLflow (and anyone else) to keep.

Each plot is written twice: interactive HTML from ``optuna.visualization`` (plotly) and a
static PNG from ``optuna.visualization.matplotlib`` (plotly's own PNG export needs a browser
binary). The HTML files load plotly.js from its CDN (``include_plotlyjs="cdn"``, ~10 KB per
file instead of 3.5 MB): they need a browser with internet access, which is the viewer's
machine, not the cluster's; the PNGs are the offline fallback, and MLflow's artifact viewer
previews them directly. A plot that cannot be drawn (too few trials, a single parameter, an
error) is skipped with a log line: plotting never fails a study.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Callable

import matplotlib
import optuna
from optuna.trial import TrialState

log = logging.getLogger(__name__)

PLOTLYJS = "cdn"
# The study plots (each as HTML and PNG), as report.html embeds them.
STUDY_PLOTS = ("optimization_history", "param_importances", "parallel_coordinate",
               "intermediate_values")


def write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """``write(temp path)``, then rename it to ``path``: a reader (report.html embedding a
    PNG, an MLflow upload) never sees a half-written file when two commands of one study
    publish at once. The temp file keeps the suffix, which matplotlib reads the format from.
    """
    temp = path.with_name(f".{os.getpid()}-{path.name}")
    try:
        write(temp)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def _plots(study: optuna.Study) -> dict[str, tuple[Callable, Callable]]:
    """The plots this study can have: name -> (plotly function, matplotlib function)."""
    vis, mpl = optuna.visualization, optuna.visualization.matplotlib
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    params = {name for trial in complete for name in trial.params}
    plots: dict[str, tuple[Callable, Callable]] = {}
    if len(study.directions) != 1:
        log.info("plots: skipped (multi-objective study)")
        return plots
    if complete:
        plots["optimization_history"] = (vis.plot_optimization_history,
                                          mpl.plot_optimization_history)
    if len(complete) >= 2 and len(params) >= 2:
        plots["param_importances"] = (vis.plot_param_importances, mpl.plot_param_importances)
    else:
        log.info("plots: parameter importances skipped (%d complete trials, %d params; need "
                 "2 and 2)", len(complete), len(params))
    if len(complete) >= 2 and params:
        plots["parallel_coordinate"] = (vis.plot_parallel_coordinate,
                                        mpl.plot_parallel_coordinate)
    if any(t.intermediate_values for t in study.get_trials(deepcopy=False)):
        plots["intermediate_values"] = (vis.plot_intermediate_values,
                                        mpl.plot_intermediate_values)
    return plots


def write_study_plots(study: optuna.Study, out_dir: Path) -> list[Path]:
    """Write the study's plots (HTML + PNG) and ``trials.csv`` into ``out_dir``.

    Args:
        study: The study (any storage).
        out_dir: Created if missing; existing files of the same names are replaced.

    Returns:
        The files written, in a stable order; plots that failed are missing from the list.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, (plotly_fn, mpl_fn) in _plots(study).items():
        html, png = out_dir / f"{name}.html", out_dir / f"{name}.png"
        if _attempt(f"{name}.html", lambda: write_atomically(
                html, lambda to: _write_html(plotly_fn(study), to))):
            written.append(html)
        if _attempt(f"{name}.png", lambda: write_atomically(
                png, lambda to: _write_png(mpl_fn, study, to))):
            written.append(png)
    csv = out_dir / "trials.csv"
    if _attempt("trials.csv", lambda: write_atomically(
            csv, lambda to: study.trials_dataframe().to_csv(to, index=False))):
        written.append(csv)
    return written


def _attempt(what: str, write: Callable[[], object]) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            warnings.simplefilter("ignore", UserWarning)  # e.g. flat axes of one-value params
            write()
    except Exception as exc:  # noqa: BLE001 - a plot must never fail the study
        log.warning("plots: %s skipped: %s: %s", what, type(exc).__name__, exc)
        return False
    return True


def _write_html(figure, path: Path) -> None:
    figure.write_html(str(path), include_plotlyjs=PLOTLYJS, full_html=True)


def _write_png(mpl_fn: Callable, study: optuna.Study, path: Path) -> None:
    # The sweep is headless; Agg never needs a display and is what a worker would pick anyway.
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    result = mpl_fn(study)
    axes = result.flat[0] if hasattr(result, "flat") else result
    figure = axes.figure
    try:
        figure.savefig(path, dpi=100, bbox_inches="tight")
    finally:
        plt.close(figure)
