"""Plots of the PE answer, each as a static PNG (matplotlib, Agg) and interactive HTML (plotly).

- ``pe_kinds``: the validation metric of COMPLETE trials per PE kind (box + jittered points),
  with each kind's best confirmed mean and 95% interval overlaid when a confirmation exists;
- ``lr_warmup``: the median metric per (log-binned learning rate, warmup epochs) cell;
- ``confirm_curves``: the learning curves of every confirmed configuration's seeds (one colour
  per configuration, the sweep's original seed dashed).

As in :mod:`mspe_sweep.sweep.plots`, the HTML loads plotly.js from its CDN and a plot that
cannot be drawn is skipped with a log line: plotting never fails a study or a report. The
PNGs are drawn on a bare ``matplotlib.figure.Figure`` (Agg canvas), so the process-wide
pyplot backend and state are left alone.
"""

from __future__ import annotations

import logging
import math
import statistics
import warnings
from collections.abc import Callable
from functools import partial
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import optuna

from mspe_sweep.sweep.pe_answer import PeAnswer, trial_kind
from mspe_sweep.sweep.plots import PLOTLYJS, write_atomically
from mspe_sweep.sweep.reporting import finite_complete, format_value

if TYPE_CHECKING:
    from mspe_sweep.sweep.confirm_table import Confirmation

log = logging.getLogger(__name__)

LR_PARAM = "training.optimizer.lr"
WARMUP_PARAM = "training.scheduler.warmup_epochs"
LR_BINS_PER_DECADE = 3
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
          "#7f7f7f", "#bcbd22", "#17becf")


def write_answer_plots(study: optuna.Study, answer: PeAnswer, out_dir: Path,
                       confirmation: Confirmation | None = None) -> list[Path]:
    """Write the PE-answer plots (PNG + HTML each) into ``out_dir``.

    Args:
        study: The sweep study.
        answer: Its PE answer (gives the kinds' order and the metric's name).
        out_dir: Created if missing, e.g. ``runs/<study>/plots``.
        confirmation: The study's confirmation, if any (error bars and learning curves).

    Returns:
        The files written; a plot that could not be drawn is missing (and logged).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    plots = {"pe_kinds": lambda: _kinds_data(study, answer),
             "lr_warmup": lambda: _heatmap_data(study)}
    if confirmation is not None:  # a study without one simply has no curves to show
        plots["confirm_curves"] = lambda: _curves_data(confirmation)
    drawers = {"pe_kinds": (_kinds_png, _kinds_html), "lr_warmup": (_heat_png, _heat_html),
               "confirm_curves": (_curves_png, _curves_html)}
    for name, gather in plots.items():
        data = _attempt(name, gather)
        if not data:
            continue
        png_fn, html_fn = drawers[name]
        for path, draw in ((out_dir / f"{name}.png", png_fn),
                           (out_dir / f"{name}.html", html_fn)):
            write = partial(write_atomically, path, partial(draw, data, answer.metric))
            if _attempt(path.name, write) is not None:
                written.append(path)
    return written


def _attempt(what: str, fn: Callable[[], object]) -> object | None:
    """``fn()``, or None when it raised or had nothing to draw (logged either way)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            result = fn()
    except Exception as exc:  # noqa: BLE001 - a plot must never fail the study
        log.warning("answer plots: %s skipped: %s: %s", what, type(exc).__name__, exc)
        return None
    if isinstance(result, str):  # the reason there is nothing to draw
        log.debug("answer plots: %s skipped: %s", what, result)
        return None
    return True if result is None else result


# --- (a) metric by PE kind ----------------------------------------------------------------


def _kinds_data(study, answer: PeAnswer) -> dict | str:
    values: dict[str, list[float]] = {row.kind: [] for row in answer.kinds}
    for trial in finite_complete(study.get_trials(deepcopy=False)):
        values.setdefault(trial_kind(trial), []).append(trial.value)
    values = {kind: v for kind, v in values.items() if v}
    if not values:
        return "no COMPLETE trials"
    confirmed = {row.kind: row.confirmed for row in answer.kinds
                 if row.confirmed is not None and row.kind in values}
    return {"values": values, "confirmed": confirmed}


def _kinds_png(data: dict, metric: str, path: Path) -> None:
    from matplotlib.figure import Figure  # imported when a plot is drawn

    kinds = list(data["values"])
    fig = Figure(figsize=(1.6 * len(kinds) + 3, 4.5))
    ax = fig.subplots()
    ax.boxplot([data["values"][k] for k in kinds], positions=range(len(kinds)), widths=0.5,
               showfliers=False)
    rng = np.random.default_rng(0)  # fixed jitter: the same study draws the same picture
    for i, kind in enumerate(kinds):
        ys = data["values"][kind]
        ax.scatter(i + rng.uniform(-0.15, 0.15, len(ys)), ys, s=14, alpha=0.6, color=COLORS[0],
                   label="trial" if i == 0 else None)
    label = "confirmed mean ± 95% CI"
    for i, kind in enumerate(kinds):
        stats = data["confirmed"].get(kind)
        if stats is not None:
            ax.errorbar(i + 0.3, stats.mean, yerr=_half_width(stats), fmt="D", color=COLORS[3],
                        capsize=4, label=label)
            label = None  # one legend entry for all the error bars
    ax.set_xticks(range(len(kinds)), kinds)
    ax.set_xlabel("positional encoding")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} of COMPLETE trials by PE kind")
    ax.legend(loc="best", fontsize="small")
    fig.savefig(path, dpi=100, bbox_inches="tight")


def _kinds_html(data: dict, metric: str, path: Path) -> None:
    import plotly.graph_objects as go

    fig = go.Figure()
    for kind, ys in data["values"].items():
        fig.add_trace(go.Box(y=ys, name=kind, boxpoints="all", jitter=0.4, pointpos=0,
                             marker_color=COLORS[0], showlegend=False))
    if data["confirmed"]:
        kinds = list(data["confirmed"])
        stats = [data["confirmed"][k] for k in kinds]
        fig.add_trace(go.Scatter(
            x=kinds, y=[s.mean for s in stats], mode="markers", name="confirmed mean ± 95% CI",
            marker={"symbol": "diamond", "size": 10, "color": COLORS[3]},
            error_y={"type": "data", "array": [_half_width(s) for s in stats]}))
    fig.update_layout(title=f"{metric} of COMPLETE trials by PE kind",
                      xaxis_title="positional encoding", yaxis_title=metric)
    fig.write_html(str(path), include_plotlyjs=PLOTLYJS, full_html=True)


def _half_width(stats) -> float:
    """The interval's half-width; 0 for a single seed (no interval to draw)."""
    return 0.0 if stats.n < 2 or math.isnan(stats.high) else stats.high - stats.mean


# --- (b) lr x warmup ----------------------------------------------------------------------


def _heatmap_data(study) -> dict | str:
    trials = [t for t in finite_complete(study.get_trials(deepcopy=False))
              if LR_PARAM in t.params and WARMUP_PARAM in t.params]
    if not trials:
        return f"needs COMPLETE trials that searched both {LR_PARAM} and {WARMUP_PARAM}"
    lrs = np.log10([t.params[LR_PARAM] for t in trials])
    lo = math.floor(lrs.min() * LR_BINS_PER_DECADE) / LR_BINS_PER_DECADE
    hi = math.ceil(lrs.max() * LR_BINS_PER_DECADE) / LR_BINS_PER_DECADE
    edges = np.arange(lo, hi + 1e-9, 1 / LR_BINS_PER_DECADE)
    if len(edges) < 2:  # every lr the same power of 10^(1/3): one bin around it
        edges = np.array([lo, lo + 1 / LR_BINS_PER_DECADE])
    warmups = sorted({t.params[WARMUP_PARAM] for t in trials})
    cells: dict[tuple[int, int], list[float]] = {}
    for trial, lr in zip(trials, lrs):
        col = min(int(np.searchsorted(edges, lr, side="right")) - 1, len(edges) - 2)
        cells.setdefault((warmups.index(trial.params[WARMUP_PARAM]), col), []).append(trial.value)
    z = np.full((len(warmups), len(edges) - 1), np.nan)
    n = np.zeros_like(z, dtype=int)
    for (row, col), values in cells.items():
        z[row, col], n[row, col] = statistics.median(values), len(values)
    labels = [f"{10 ** a:.2g}-{10 ** b:.2g}" for a, b in pairwise(edges)]
    return {"z": z, "n": n, "lr_labels": labels, "warmups": [str(w) for w in warmups]}


def _heat_title(metric: str) -> str:
    return f"median {metric} of COMPLETE trials per lr bin x warmup (n = trials per cell)"


def _heat_png(data: dict, metric: str, path: Path) -> None:
    from matplotlib.figure import Figure  # imported when a plot is drawn

    z, n = data["z"], data["n"]
    fig = Figure(figsize=(1.3 * z.shape[1] + 3, 0.7 * z.shape[0] + 2.5))
    ax = fig.subplots()
    image = ax.imshow(np.ma.masked_invalid(z), aspect="auto", cmap="viridis_r", origin="lower")
    low, high = np.nanmin(z), np.nanmax(z)
    for (row, col), value in np.ndenumerate(z):
        if not math.isnan(value):
            # viridis_r is bright (yellow) at the low end: dark text there, white elsewhere.
            bright = high == low or (value - low) / (high - low) < 0.5
            ax.text(col, row, f"{value:.3g}\nn={n[row, col]}", ha="center", va="center",
                    fontsize=8, color="black" if bright else "white")
    ax.set_xticks(range(len(data["lr_labels"])), data["lr_labels"], rotation=30, ha="right")
    ax.set_yticks(range(len(data["warmups"])), data["warmups"])
    ax.set_xlabel(f"{LR_PARAM} (log bins)")
    ax.set_ylabel(WARMUP_PARAM)
    ax.set_title(_heat_title(metric), fontsize=10)
    fig.colorbar(image, ax=ax, label=f"median {metric}")
    fig.savefig(path, dpi=100, bbox_inches="tight")


def _heat_html(data: dict, metric: str, path: Path) -> None:
    import plotly.graph_objects as go

    text = [[f"n={c}" if c else "" for c in row] for row in data["n"]]
    z = [[None if math.isnan(v) else v for v in row] for row in data["z"]]
    fig = go.Figure(go.Heatmap(z=z, x=data["lr_labels"], y=data["warmups"], text=text,
                               texttemplate="%{z:.3g}<br>%{text}", colorscale="Viridis",
                               reversescale=True, colorbar={"title": f"median {metric}"}))
    fig.update_layout(title=_heat_title(metric), xaxis_title=f"{LR_PARAM} (log bins)",
                      yaxis_title=WARMUP_PARAM, yaxis_type="category")
    fig.write_html(str(path), include_plotlyjs=PLOTLYJS, full_html=True)


# --- (c) learning curves of the confirmed configs -----------------------------------------


def _curves_data(confirmation) -> list | str:
    series = []
    for index, config in enumerate(confirmation.configs):
        # The last segment of each key keeps the legend readable (lr=0.0013 warmup_epochs=5).
        label = f"#{index + 1} " + " ".join(f"{k.rsplit('.', 1)[-1]}={format_value(v)}"
                                            for k, v in config.params.items())
        for run in config.runs:
            if run.curve:
                epochs = sorted(run.curve)
                series.append((index, label, run, epochs, [run.curve[e] for e in epochs]))
    return series or "the confirmed runs have no learning curves"


def _curves_title(metric: str) -> str:
    return f"{metric} per epoch of the confirmed configurations (dashed: the sweep's own seed)"


def _curves_png(series: list, metric: str, path: Path) -> None:
    from matplotlib.figure import Figure  # imported when a plot is drawn

    fig = Figure(figsize=(9, 5))
    ax = fig.subplots()
    labelled: set[int] = set()
    for index, label, run, epochs, values in series:
        ax.plot(epochs, values, color=COLORS[index % len(COLORS)],
                linestyle="--" if run.original else "-", linewidth=1.2,
                label=None if index in labelled else label)
        labelled.add(index)
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_title(_curves_title(metric), fontsize=10)
    ax.legend(loc="best", fontsize="x-small")
    fig.savefig(path, dpi=100, bbox_inches="tight")


def _curves_html(series: list, metric: str, path: Path) -> None:
    import plotly.graph_objects as go

    fig = go.Figure()
    labelled: set[int] = set()
    for index, label, run, epochs, values in series:
        fig.add_trace(go.Scatter(
            x=epochs, y=values, mode="lines", legendgroup=str(index), name=label,
            showlegend=index not in labelled, hovertext=f"seed {run.seed}, trial {run.trial}",
            line={"color": COLORS[index % len(COLORS)],
                  "dash": "dash" if run.original else "solid"}))
        labelled.add(index)
    fig.update_layout(title=_curves_title(metric), xaxis_title="epoch", yaxis_title=metric)
    fig.write_html(str(path), include_plotlyjs=PLOTLYJS, full_html=True)
