"""The study's answer to "which lr, warmup and PE settings win": its confirmation (when one
ran), the PE answer, their plots and ``report.html``, as ``report`` and the end of a run or a
confirmation publish them."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import optuna

from mspe_sweep.sweep.confirm_table import (
    Confirmation,
    build_confirmation,
    format_confirmation,
)
from mspe_sweep.sweep.pe_answer import build_pe_answer, format_pe_answer
from mspe_sweep.sweep.plots import STUDY_PLOTS
from mspe_sweep.sweep.records import StudyRecord
from mspe_sweep.sweep.report_html import publish_answer

log = logging.getLogger(__name__)


@dataclass
class Answer:
    """What :func:`answer_study` found and wrote.

    Attributes:
        text: The confirmation table (if confirmed) and the PE answer, as printed.
        files: The plots and ``report.html`` written, for the study's MLflow run.
        confirmation: The confirmation's table, or None when the study has none.
    """

    text: str
    files: list[Path] = field(default_factory=list)
    confirmation: Confirmation | None = None


def linked_confirmation(sweep: optuna.Study, metric: str) -> Confirmation | None:
    """The table of the sweep's confirmation study, or None when it has none."""
    name = StudyRecord(sweep).confirm_study
    if name is None:
        return None
    return build_confirmation(sweep, StudyRecord(sweep).load_linked(name), metric)


def answer_study(sweep: optuna.Study, metric: str, runs_dir: Path) -> Answer:
    """Build the sweep's answer and write it: plots in ``runs_dir/plots``, the page
    ``runs_dir/report.html`` (the study plots already there embedded first, whichever command
    wrote them). Never raises for a plot or the page: they are logged and left out of
    ``files``."""
    confirmation = linked_confirmation(sweep, metric)
    answer = build_pe_answer(sweep, metric, confirmation)
    source = StudyRecord(sweep).data_source
    files = publish_answer(sweep, metric, runs_dir, confirmation=confirmation, answer=answer,
                           data_note=f"data: {source}" if source else None,
                           extra_pngs=[png for name in STUDY_PLOTS
                                       if (png := runs_dir / "plots" / f"{name}.png").is_file()])
    parts = [format_confirmation(confirmation)] if confirmation else []
    return Answer("\n\n".join([*parts, format_pe_answer(answer)]), files, confirmation)
