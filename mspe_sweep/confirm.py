"""`python -m mspe_sweep.confirm study=<name> [confirm.top_k=3] [confirm.seeds=4] ...`: re-train
a study's best configurations over new seeds, and say which one wins with error bars.
"""

from __future__ import annotations

from typing import Sequence

from mspe_sweep.cli import run_command
from mspe_sweep.sweep.driver import run_confirmation
from mspe_sweep.sweep.reporting import quiet_libraries

USAGE = """\
usage: python -m mspe_sweep.confirm study=<name> [confirm.top_k=3] [confirm.seeds=4]
                                    [driver keys] [run overrides]

Takes the top_k best distinct configurations of the study (finished or still running) and
re-trains each with new seeds until it has `seeds` of them (the study's own trial is one and is
not re-run); no pruning, early stopping as configured. The runs form the study <name>/confirm
in the same storage: running the command again resumes it, and workers=N, storage=postgres and
launcher=slurm work as for `python -m mspe_sweep.run`. Give the same run overrides as the
study's run (the identity guard checks them). At the end: per configuration the mean, std and
95% interval over seeds, the single-seed value that selected it and the gap between them, and
whether it is distinguishable from the best; also in runs/<name>/confirmation.csv,
runs/<name>/report.html, `python -m mspe_sweep.report` and MLflow (a `confirm` run under the
study's parent run; its trial runs are tagged mspe.confirm.config, mspe.confirm.rank and
mspe.seed).
examples:
  python -m mspe_sweep.confirm study=zinc_quick
  python -m mspe_sweep.confirm study=zinc confirm.top_k=5 storage=postgres workers=4
"""


def main(argv: Sequence[str] | None = None) -> int:
    with quiet_libraries():
        return run_command(run_confirmation, USAGE, argv)


if __name__ == "__main__":
    raise SystemExit(main())
