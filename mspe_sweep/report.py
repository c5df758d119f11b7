"""`python -m mspe_sweep.report study=<name> [storage=...]`: a study's leaderboard, read-only.

Nothing is trained. Also refreshes the study's plots in ``runs/<study>/plots/`` and, when the
study has an MLflow parent run, uploads them there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import optuna

from mspe_sweep.cli import run_command, split_key_value
from mspe_sweep.config import STUDIES_DIR, mspe_home
from mspe_sweep.errors import UserError
from mspe_sweep.sweep.prepare import parse_args, storage_options, storage_url
from mspe_sweep.sweep.plots import write_study_plots
from mspe_sweep.sweep.records import StudyRecord
from mspe_sweep.sweep.reporting import leaderboard, summary
from mspe_sweep.sweep.spec import find_study_file, read_study_file
from mspe_sweep.sweep.storage import build_storage
from mspe_sweep.text import mask_url
from mspe_sweep.tracking import build_tracker, tracking_location

USAGE = """\
usage: python -m mspe_sweep.report study=<name> [storage=sqlite|postgres|grpc] [storage.url=URL]
                                   [tracking=local|server|none] [top=N]

Prints the leaderboard of an existing study from its storage without running anything, and
refreshes its plots (runs/<study>/plots/ and the study's MLflow parent run).
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

    def missing(where: object, others: str = "") -> UserError:
        return UserError(f"no study named {name!r} in {where} (run it first: python -m "
                         f"mspe_sweep.run study={driver.study.name}{others})")

    url = storage_url(driver)
    tracking_location(driver.tracking.backend, driver.tracking.uri, mspe_home())
    if driver.storage.backend == "sqlite":
        db = Path(url.partition(":///")[2])
        if not db.is_file():  # reading must not create an empty database
            raise missing(db)
    storage = build_storage(url, **storage_options(driver))
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        others = ", ".join(sorted(optuna.get_all_study_names(storage))) or "none"
        raise missing(mask_url(url), f"; studies there: {others}") from None
    record = StudyRecord(study)
    n_trials = (driver.study.n_trials or record.n_trials
                or int(declared["n_trials"]))
    text = leaderboard(study, metric, top=int(top)) if top else summary(study, metric, n_trials)
    print(text, flush=True)
    files = write_study_plots(study, mspe_home() / "runs" / name / "plots")
    parent = record.parent_run_id
    if parent and driver.tracking.backend != "none":
        tracker = build_tracker(driver.tracking.backend, driver.tracking.uri, mspe_home())
        tracker.finish_study(parent, files, status=None)
    return text


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(report, USAGE, argv)


if __name__ == "__main__":
    raise SystemExit(main())
