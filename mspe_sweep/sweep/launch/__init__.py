"""Phase 2 of a study run: start the workers of a prepared study and wait for them.

A launcher starts ``plan.workers`` processes of ``python -m mspe_sweep.sweep.work`` (see
:func:`worker_command`), each with the plan and its worker index in its environment
(:func:`worker_env`): the plan holds the storage password, which must not appear on a command
line (``ps`` shows those to every user; a process's environment is readable by its user only).
Two launchers implement :class:`Launcher`: :class:`~mspe_sweep.sweep.launch.local.LocalLauncher`
(processes on this machine) and :class:`~mspe_sweep.sweep.launch.slurm.SlurmLauncher` (a SLURM
job array, ``launcher=slurm``).
"""

from __future__ import annotations

import shlex
import sys
from typing import TYPE_CHECKING, Any, Mapping, Protocol

if TYPE_CHECKING:
    from mspe_sweep.sweep.plan import Plan

PLAN_ENV = "MSPE_WORKER_PLAN"
INDEX_ENV = "MSPE_WORKER_INDEX"
WORKER_MODULE = "mspe_sweep.sweep.work"


class Launcher(Protocol):
    """Starts the workers of a prepared study.

    Attributes:
        detached: True when ``launch`` returns once the workers are submitted (a batch job),
            not when they end; the workers themselves then publish the study's results.
    """

    detached: bool

    def launch(self, plan: Plan) -> int:
        """Run ``plan.workers`` workers until each has finished.

        Ctrl-C / SIGTERM must reach the workers as SIGTERM (each then queues its running trial
        for a resumed retry) and be re-raised as ``KeyboardInterrupt``.

        Returns:
            0 when every worker succeeded, else the first non-zero exit code.
        """


def worker_command() -> list[str]:
    """The command line of a worker process (it carries no arguments)."""
    return [sys.executable, "-m", WORKER_MODULE]


def worker_env(plan: Plan, index: int) -> dict[str, str]:
    """The environment variables that hand a worker its plan and its index."""
    return {PLAN_ENV: plan.to_json(), INDEX_ENV: str(index)}


def launcher_for(plan: Plan) -> Launcher:
    """The launcher ``launcher=`` names: local processes, or a SLURM job array."""
    if plan.launcher["name"] == "slurm":
        from mspe_sweep.sweep.launch.slurm import SlurmLauncher, SlurmSettings

        return SlurmLauncher(SlurmSettings.from_config(plan.launcher))
    from mspe_sweep.sweep.launch.local import LocalLauncher

    return LocalLauncher()


def check_launcher(launcher: Mapping[str, Any]) -> None:
    """Raise ``UserError`` for ``launcher.*`` settings that cannot work (before any work)."""
    from mspe_sweep.sweep.launch.slurm import SlurmSettings, check_local

    if launcher["name"] == "slurm":
        SlurmSettings.from_config(launcher)
    else:
        check_local(launcher)


def dry_run(launcher: Mapping[str, Any], study_name: str, trials_per_gpu: int = 1) -> str:
    """What ``launcher.dry_run=true`` prints: the batch script, or the local worker command."""
    from mspe_sweep.sweep.launch.slurm import SlurmSettings, batch_script

    if launcher["name"] == "slurm":
        return batch_script(SlurmSettings.from_config(launcher), study_name,
                            per_task=trials_per_gpu)
    return (f"# {launcher['workers']} worker process(es), the plan in ${PLAN_ENV}:\n"
            f"{shlex.join(worker_command())}")
