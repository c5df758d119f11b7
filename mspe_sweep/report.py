"""`python -m mspe_sweep.report study=<name> [storage=...]`: a study's leaderboard, read-only."""

from __future__ import annotations

from typing import Sequence

from mspe_sweep.cli import run_command
from mspe_sweep.sweep.driver import report_study

USAGE = """\
usage: python -m mspe_sweep.report study=<name> [storage=sqlite|postgres] [storage.url=URL]
                                   [top=N]

Prints the leaderboard of an existing study from its storage without running anything.
"""


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(report_study, USAGE, argv)


if __name__ == "__main__":
    raise SystemExit(main())
