"""`python -m mspe_sweep.report study=<name> [storage=...]`: a study's leaderboard, its
confirmation (if one ran) and the PE answer; the study's storage is only read.

Nothing is trained. Also refreshes the study's plots in ``runs/<study>/plots/`` and its page
``runs/<study>/report.html`` and, when the study has an MLflow parent run, uploads them there.
"""

from __future__ import annotations

from typing import Sequence

from mspe_sweep.cli import run_command, split_key_value
from mspe_sweep.config import STUDIES_DIR, mspe_home
from mspe_sweep.errors import UserError
from mspe_sweep.sweep.answer import answer_study
from mspe_sweep.sweep.prepare import open_existing_study, parse_args
from mspe_sweep.sweep.plots import write_study_plots
from mspe_sweep.sweep.records import StudyRecord
from mspe_sweep.sweep.reporting import leaderboard, summary
from mspe_sweep.sweep.spec import find_study_file, read_study_file
from mspe_sweep.tracking import build_tracker, tracking_location

USAGE = """\
usage: python -m mspe_sweep.report study=<name> [storage=sqlite|postgres|grpc] [storage.url=URL]
                                   [tracking=local|server|none] [top=N]

Prints the leaderboard of an existing study from its storage without running anything, its
confirmation table (python -m mspe_sweep.confirm) and the PE answer: per PE kind and per PE
scale the trials, best and median metric (and the confirmed mean where confirmed), and
parameter importances (PED-ANOVA and fANOVA). Refreshes its plots and report.html
(runs/<study>/, and the study's MLflow parent run). top=N prints only the leaderboard.
"""


def report(args: Sequence[str]) -> str:
    """Print the summary (or the ``top=N`` leaderboard) of an existing study."""
    opts, args = split_key_value(args, ("top",))
    driver, rest = parse_args(args)
    if rest:
        raise UserError(f"unexpected argument {rest[0]!r} (valid: study=, storage=, "
                        "storage.url=, tracking=, top=)")
    top = opts.get("top")
    if top is not None and not (top.isdigit() and int(top) >= 1):
        raise UserError(f"top={top}: must be a positive integer")
    path = find_study_file(driver.study.name, STUDIES_DIR)
    declared = read_study_file(path)
    name, metric = str(declared["name"]), str(declared["metric"])
    tracking_location(driver.tracking.backend, driver.tracking.uri, mspe_home())
    _, _, study = open_existing_study(driver, name)
    record = StudyRecord(study)
    n_trials = (driver.study.n_trials or record.n_trials
                or int(declared["n_trials"]))
    runs_dir = mspe_home() / "runs" / name
    files = write_study_plots(study, runs_dir / "plots")
    answer = answer_study(study, metric, runs_dir)
    files += answer.files
    text = (leaderboard(study, metric, top=int(top)) if top
            else f"{summary(study, metric, n_trials)}\n\n{answer.text}")
    print(f"{text}\n\nreport:   {runs_dir / 'report.html'}", flush=True)
    parent = record.parent_run_id
    if parent and driver.tracking.backend != "none":
        tracker = build_tracker(driver.tracking.backend, driver.tracking.uri, mspe_home())
        tracker.finish_study(parent, files, status=None)
    return text


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(report, USAGE, argv)


if __name__ == "__main__":
    raise SystemExit(main())
