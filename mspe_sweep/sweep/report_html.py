"""``report.html``: one self-contained page answering "which lr, warmup and PE settings win".

The page holds the leaderboard, the confirmation (seeds, error bars, tests against the winner,
the measured selection bias), the PE answer's tables, the parameter importances and the PNG
plots, embedded as base64 data URIs. It needs no network and no JavaScript, so it can be
attached to a paper's supplement or opened from an MLflow artifact as it is. Every text is
escaped; every table has an ``id`` (``leaderboard``, ``confirmation``, ``pe-kinds``,
``pe-scales``, ``importances``).

:func:`publish_answer` is the one entry point: it builds the PE answer, writes its plots and
the page, and returns every file written (for the caller to upload to MLflow).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Sequence
from datetime import datetime, timezone
from html import escape
from pathlib import Path

import optuna

from mspe_sweep.sweep.answer_plots import write_answer_plots
from mspe_sweep.sweep.pe_answer import (
    PeAnswer,
    build_pe_answer,
    importances_table,
    kinds_table,
    scales_table,
)
from mspe_sweep.sweep.confirm_table import (
    Confirmation,
    confirmation_table,
    selection_bias,
    test_sentence,
)
from mspe_sweep.sweep.plots import write_atomically
from mspe_sweep.sweep.reporting import Table, format_params, leaderboard_table

log = logging.getLogger(__name__)

REPORT_NAME = "report.html"
CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1a1a1a;
       max-width: 1250px; margin: 2em auto; padding: 0 1.5em; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { margin-top: 1.8em; font-size: 1.2em;
     border-bottom: 1px solid #ccc; padding-bottom: 0.2em; } h3 { font-size: 1.02em; }
.meta { color: #555; } .data-note { background: #fff4ce; border: 1px solid #e0b800;
        padding: 0.6em 0.9em; margin: 1em 0; font-weight: 600; }
table { border-collapse: collapse; margin: 0.6em 0 1em; font-size: 0.92em; }
th, td { border: 1px solid #d5d5d5; padding: 0.25em 0.55em; text-align: left;
         vertical-align: top; }
th { background: #f1f3f5; } tr:nth-child(even) td { background: #fafafa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.params { font-family: ui-monospace, monospace; font-size: 0.9em; max-width: 38em; }
figure { margin: 1.2em 0; } figure img { max-width: 100%; border: 1px solid #e5e5e5; }
figcaption { color: #555; font-size: 0.9em; } .empty { color: #777; font-style: italic; }
"""
_NUMERIC = set("0123456789.-+eE±[], ()n=%")


def _table_html(table: Table, table_id: str, empty: str) -> str:
    if not table.rows:
        return f'<p class="empty" id="{table_id}-empty">{escape(empty)}</p>'
    head = "".join(f"<th>{escape(h)}</th>" for h in table.header)
    body = []
    for row in table.rows:
        cells = []
        for header, cell in zip(table.header, row):
            cls = "params" if header == "params" else (
                "num" if cell and set(cell) <= _NUMERIC else "")
            attr = f' class="{cls}"' if cls else ""
            cells.append(f"<td{attr}>{escape(cell)}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (f'<table id="{table_id}" class="data"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table>")


def _figure_html(png: Path) -> str:
    data = base64.b64encode(png.read_bytes()).decode("ascii")
    name = escape(png.stem.replace("_", " "))
    return (f'<figure><img alt="{name}" src="data:image/png;base64,{data}">'
            f"<figcaption>{name} ({escape(png.name)})</figcaption></figure>")


def write_report_html(path: Path, *, study_name: str, metric: str, leaderboard: Table,
                      confirmation: Confirmation | None, answer: PeAnswer,
                      plot_pngs: Sequence[Path] = (), data_note: str | None = None,
                      notes: Sequence[str] = ()) -> Path:
    """Write the self-contained report page.

    Args:
        path: The file to write (its directory is created).
        study_name: The sweep's name.
        metric: The study metric (``val/mae``).
        leaderboard: The leaderboard rows (:func:`leaderboard_table`).
        confirmation: The confirmation, or None when none ran.
        answer: The PE answer (:func:`build_pe_answer`).
        plot_pngs: PNG files to embed, in order; missing files are skipped.
        data_note: Shown as a banner, e.g. that the data is the offline set.
        notes: Extra caveats, listed with the PE answer's notes.

    Returns:
        ``path``.
    """
    states = ", ".join(f"{n} {s.lower()}" for s, n in answer.states.items()) or "no trials"
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [f"<h1>{escape(study_name)}: which lr, warmup and PE settings win</h1>",
             (f'<p class="meta">metric {escape(metric)} ({escape(answer.direction)}); '
              f"trials: {escape(states)}; generated {stamp}</p>")]
    if data_note:
        parts.append(f'<div class="data-note" id="data-note">{escape(data_note)}</div>')
    parts += ["<h2>Leaderboard (single seed per trial)</h2>",
              _table_html(leaderboard, "leaderboard", "no COMPLETE trials yet")]
    parts.append("<h2>Confirmation over seeds</h2>")
    if confirmation is None:
        parts.append('<p class="empty" id="confirmation-empty">No confirmation has run '
                     f"(python -m mspe_sweep.confirm study={escape(study_name)}).</p>")
    else:
        winner = confirmation.winner
        if winner is not None:
            params = escape(format_params(winner.params))
            label = "Confirmed winner" if winner.val.n >= 2 else "Best so far (one seed only)"
            parts.append(f"<p><b>{label}:</b> <code>{params}"
                         f"</code>: {escape(metric)} {escape(winner.val.format())} over "
                         f"{winner.val.n} seed(s).</p>")
        parts += [f"<p>{escape(test_sentence(confirmation))}</p>",
                  _table_html(confirmation_table(confirmation), "confirmation",
                              "no configuration confirmed yet"),
                  f'<p id="selection-bias">{escape(selection_bias(confirmation))}</p>']
    parts += ["<h2>The PE answer</h2>", "<h3>By positional-encoding kind (best first)</h3>",
              _table_html(kinds_table(answer), "pe-kinds", "no trials"),
              "<h3>By PE scale parameter within a kind</h3>",
              _table_html(scales_table(answer), "pe-scales", "no PE scale parameter searched"),
              "<h3>Parameter importances (PED-ANOVA and fANOVA, COMPLETE trials)</h3>",
              _table_html(importances_table(answer), "importances", "no importances")]
    all_notes = [*answer.notes, *notes]
    if all_notes:
        items = "".join(f"<li>{escape(note)}</li>" for note in all_notes)
        parts.append(f'<h3>Notes</h3><ul id="notes">{items}</ul>')
    figures = [_figure_html(png) for png in plot_pngs if Path(png).is_file()]
    if figures:
        parts += ["<h2>Plots</h2>", *figures]
    page = ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{escape(study_name)}: report</title><style>{CSS}</style></head>"
            f"<body>\n{chr(10).join(parts)}\n</body></html>\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda to: to.write_text(page, encoding="utf-8"))
    return path




def publish_answer(study: optuna.Study, metric: str, runs_dir: Path, *,
                   confirmation: Confirmation | None = None, data_note: str | None = None,
                   answer: PeAnswer | None = None, extra_pngs: Sequence[Path] = (),
                   top: int = 10) -> list[Path]:
    """Write the PE-answer plots into ``runs_dir/plots`` and the page ``runs_dir/report.html``.

    Args:
        study: The sweep study.
        metric: Its metric (``val/mae``).
        runs_dir: The study's run directory, ``$MSPE_HOME/runs/<study>``.
        confirmation: Its confirmation, if one ran.
        data_note: A banner for the page, e.g. that the data is the offline set.
        answer: The PE answer if already built (``build_pe_answer``), to avoid computing the
            importances twice.
        extra_pngs: More PNGs to embed first (e.g. the study plots' optimization history).
        top: Leaderboard rows.

    Returns:
        Every file written (plots, then ``report.html``). A plot or the page that cannot be
        written is logged and missing from the list: publishing never fails a study.
    """
    if answer is None:
        answer = build_pe_answer(study, metric, confirmation)
    files = write_answer_plots(study, answer, runs_dir / "plots", confirmation)
    pngs = [*extra_pngs, *(f for f in files if f.suffix == ".png")]
    try:
        files.append(write_report_html(
            runs_dir / REPORT_NAME, study_name=study.study_name, metric=metric,
            leaderboard=leaderboard_table(study, metric, top), confirmation=confirmation,
            answer=answer, plot_pngs=pngs, data_note=data_note))
    except Exception:  # logged with its traceback: a finished study must not fail here
        log.exception("report: %s not written", runs_dir / REPORT_NAME)
    return files
