"""``launcher=slurm``: the workers of a prepared study as ONE SLURM job array.

Each array task runs one worker (``python -m mspe_sweep.sweep.work``); the workers pull trials
from the study's storage as they free up, so there is no batch barrier. The batch script is
generated here and submitted with ``sbatch --parsable`` (not submitit: its job watcher needs
``sacct``, which clusters without accounting lack); the job is followed with ``squeue`` and
``scontrol`` only.

Secrets: the plan (with the storage password) reaches the tasks in their environment: it is set
in the environment of the ``sbatch`` process only, which ``--export=ALL`` hands to every task
(and to a requeued one). It is never in the script, on a command line or in a log file.

Preemption and time limits: the script asks for ``--requeue`` and ``--signal=B:USR1@<s>``. On
USR1 the batch shell sends the worker SIGTERM: it checkpoints, queues its trial for a resumed
retry and exits; the shell then requeues its own task (``scontrol requeue``). Whichever worker
takes the retry resumes it from the trial's ``last.pt``, so ``MSPE_HOME`` must be on a file
system every node sees (see README, "Scale out").
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

from mspe_sweep.cli import EXIT_INTERRUPTED
from mspe_sweep.config import REPO_ROOT, STUDIES_DIR, mspe_home
from mspe_sweep.errors import UserError
from mspe_sweep.schema import LauncherConfig
from mspe_sweep.sweep.launch import INDEX_ENV, PLAN_ENV, worker_command
from mspe_sweep.sweep.plan import Plan
from mspe_sweep.sweep.storage import default_storage_url
from mspe_sweep.text import mask_url

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SlurmSettings:
    """The ``launcher.*`` keys of ``configs/launcher/slurm.yaml`` (documented there)."""

    workers: int = 1
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time: str | None = None
    gpus_per_worker: int = 0
    cpus_per_worker: int = 1
    mem: str | None = None
    max_parallel: int | None = None
    signal_seconds: int = 120
    sbatch_lines: tuple[str, ...] = ()
    setup: str = ""
    log_dir: str | None = None
    dry_run: bool = False
    wait: bool = False

    @classmethod
    def from_config(cls, launcher: Mapping[str, Any]) -> SlurmSettings:
        """The settings of a ``launcher`` config section (its ranges are the schema's rules,
        checked with the rest of the driver config), with the extra lines checked.

        Raises:
            UserError: An extra line that is not an sbatch option.
        """
        values = {f.name: launcher[f.name] for f in fields(cls) if f.name in launcher}
        values["sbatch_lines"] = tuple(str(line).strip() for line in
                                       values.get("sbatch_lines") or ())
        values["setup"] = values.get("setup") or ""
        settings = cls(**values)
        for line in settings.sbatch_lines:
            if not option_of(line).startswith("-"):
                raise UserError(f"launcher.sbatch_lines: {line!r} is not an sbatch option "
                                "(e.g. '--constraint=a100' or '#SBATCH --exclusive')")
        return settings


def check_local(launcher: Mapping[str, Any]) -> None:
    """``launcher=local`` takes no batch-system key: a set one is a forgotten ``launcher=slurm``.

    Raises:
        UserError: Names the first batch-system key that is set.
    """
    defaults = SlurmSettings.from_config(dataclasses.asdict(LauncherConfig()))
    for key in (f.name for f in fields(SlurmSettings)):
        value = launcher.get(key)
        value = tuple(value or ()) if key == "sbatch_lines" else value
        if key not in ("workers", "dry_run", "wait") and value != getattr(defaults, key):
            raise UserError(f"launcher.{key}={value}: applies to launcher=slurm only "
                            f"(this is launcher={launcher['name']})")


def option_of(line: str) -> str:
    """``--exclusive`` from ``#SBATCH --exclusive`` or ``--exclusive``."""
    return line.removeprefix("#SBATCH").strip()


def log_dir(settings: SlurmSettings, study_name: str) -> Path:
    """Where the tasks' logs go: ``launcher.log_dir``, or ``runs/<study>/slurm`` under
    ``MSPE_HOME`` (a shared file system on a multi-node cluster)."""
    if settings.log_dir:
        return Path(settings.log_dir).expanduser().resolve()
    return mspe_home() / "runs" / study_name / "slurm"


def sbatch_options(settings: SlurmSettings, study_name: str) -> list[str]:
    """The ``#SBATCH`` options of the job array, in the order the script lists them."""
    limit = f"%{settings.max_parallel}" if settings.max_parallel else ""
    options = [
        f"--job-name=mspe-{study_name}",
        f"--array=0-{settings.workers - 1}{limit}",
        f"--output={log_dir(settings, study_name) / '%A_%a.out'}",
        "--open-mode=append",  # a requeued task adds to its log instead of replacing it
        f"--chdir={REPO_ROOT}",
        "--requeue",
        f"--signal=B:USR1@{settings.signal_seconds}",
        "--ntasks=1",
        f"--cpus-per-task={settings.cpus_per_worker}",
    ]
    named = (("partition", settings.partition), ("account", settings.account),
             ("qos", settings.qos), ("time", settings.time), ("mem", settings.mem))
    options += [f"--{key}={value}" for key, value in named if value not in (None, "")]
    if settings.gpus_per_worker:
        options.append(f"--gres=gpu:{settings.gpus_per_worker}")
    return options + [option_of(line) for line in settings.sbatch_lines]


# The body after the #SBATCH lines and the setup block. The worker runs in the background so
# that this shell can take USR1 (bash runs a trap only between commands, and `wait` is
# interruptible where a foreground command is not).
WORKER_BLOCK = """\
export MSPE_HOME={home}
per_task={per_task}   # trials_per_gpu: workers sharing this task's GPUs
threads=$(( ${{SLURM_CPUS_PER_TASK:-1}} / per_task ))
export OMP_NUM_THREADS=$(( threads > 0 ? threads : 1 ))
echo "mspe: task ${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}} (job $SLURM_JOB_ID," \\
  "restart ${{SLURM_RESTART_COUNT:-0}}) on $(hostname), $per_task worker(s)"

# The plan, with the storage password, comes in the environment (${plan_env}); each worker
# of the array has its own index (its sampler seed).
workers=()
for slot in $(seq 0 $(( per_task - 1 ))); do
  {index_env}=$(( SLURM_ARRAY_TASK_ID * per_task + slot )) {command} &
  workers+=($!)
done
requeue=0
# USR1: warned before the time limit or preempted. Each worker checkpoints, queues its
# trial for a resumed retry and exits ({interrupted}); then this task goes back to the queue.
trap 'requeue=1; kill -TERM "${{workers[@]}}" 2>/dev/null' USR1
code=0
for worker in "${{workers[@]}}"; do
  while :; do
    wait "$worker"
    status=$?
    kill -0 "$worker" 2>/dev/null || break
  done
  if [ "$code" = 0 ]; then code=$status; fi   # the first failure's code
done
if [ "$requeue" = 1 ] && [ "$code" = {interrupted} ]; then
  echo "mspe: requeueing task ${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}}"
  scontrol requeue "$SLURM_JOB_ID"
fi
exit "$code"
"""


def batch_script(settings: SlurmSettings, study_name: str,
                 command: Sequence[str] | None = None, per_task: int = 1) -> str:
    """The job array's batch script: ``#SBATCH`` options, the setup block, the workers.

    Args:
        settings: The launcher settings.
        study_name: The study (job name and log directory).
        command: The worker's command line (default: :func:`worker_command`).
        per_task: Workers per array task (``trials_per_gpu``): they share the task's GPUs
            and CPUs, as Ray Tune's fractional GPUs do.
    """
    lines = ["#!/bin/bash",
             f"# mspe-sweep: the workers of study {study_name!r}, one per array task.",
             *(f"#SBATCH {option}" for option in sbatch_options(settings, study_name)), ""]
    if settings.setup.strip():
        lines += ["# launcher.setup", settings.setup.rstrip(), ""]
    body = WORKER_BLOCK.format(
        home=shlex.quote(str(mspe_home())), index_env=INDEX_ENV, plan_env=PLAN_ENV,
        command=shlex.join(command or worker_command()), interrupted=EXIT_INTERRUPTED,
        per_task=per_task)
    return "\n".join(lines) + "\n" + body


def sbatch_command(script_path: Path) -> list[str]:
    """The ``sbatch`` command line (it carries no secret: the plan is in its environment)."""
    return ["sbatch", "--parsable", "--export=ALL", str(script_path)]


def submit_env(plan: Plan) -> dict[str, str]:
    """The environment of the ``sbatch`` process, which every task of the array inherits."""
    env = {key: value for key, value in os.environ.items() if key != INDEX_ENV}
    env.update({PLAN_ENV: plan.to_json(), "MSPE_HOME": str(mspe_home())})
    return env


def require(command: str) -> None:
    if shutil.which(command) is None:
        raise UserError(f"launcher=slurm: `{command}` not found; run the command on a machine "
                        "that can submit SLURM jobs (a login node)")


def submit(plan: Plan, settings: SlurmSettings) -> tuple[str, Path]:
    """Write the batch script next to the tasks' logs and submit it.

    Returns:
        The array's job id and the script's path.

    Raises:
        UserError: ``sbatch`` is missing or refused the job (its message, one line).
    """
    require("sbatch")
    logs = log_dir(settings, plan.spec.name)
    logs.mkdir(parents=True, exist_ok=True)  # SLURM does not create a log's directory
    script = logs / "array.sbatch"
    script.write_text(batch_script(settings, plan.spec.name, per_task=plan.trials_per_gpu))
    done = subprocess.run(sbatch_command(script), env=submit_env(plan), capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        reason = " ".join(done.stderr.split()) or f"exit code {done.returncode}"
        raise UserError(f"sbatch refused the job array ({script}): {reason}")
    # --parsable prints "<job id>" or "<job id>;<cluster>".
    return done.stdout.strip().split(";")[0], script


def report_command(plan: Plan) -> str:
    """The ``report`` command for this study. A SQLite path and the tracking URI are spelled
    out; a database server's URL, which holds a password, is left to ``$MSPE_STORAGE_URL``
    as it came to ``run``."""
    path = plan.spec.path
    study = path.stem if path.resolve().parent == STUDIES_DIR.resolve() else str(path)
    scheme = plan.storage_url.partition(":")[0].partition("+")[0]
    backend = {"postgresql": "postgres", "grpc": "grpc"}.get(scheme, "sqlite")
    words = [f"study={study}", f"storage={backend}"]
    if (backend == "grpc"  # a proxy's address holds no password
            or backend == "sqlite" and plan.storage_url != default_storage_url(mspe_home())):
        words.append(f"storage.url={plan.storage_url}")
    words.append(f"tracking={plan.tracking_backend}")
    if plan.tracking_uri and plan.tracking_backend != "none":
        words.append(f"tracking.uri={mask_url(plan.tracking_uri)}")
    return shlex.join(["python", "-m", "mspe_sweep.report", *words])


class SlurmLauncher:
    """One job array of ``launcher.workers`` tasks (see :class:`~.launch.Launcher`).

    Without ``launcher.wait`` it returns once the array is submitted (:attr:`detached`); the
    tasks report to the study's storage and tracking on their own.
    """

    def __init__(self, settings: SlurmSettings) -> None:
        self.settings = settings
        self.detached = not settings.wait

    def launch(self, plan: Plan) -> int:
        job_id, script = submit(plan, self.settings)
        logs = log_dir(self.settings, plan.spec.name)
        print("\n".join([
            f"slurm:    job {job_id}, {self.settings.workers} task(s), script {script}",
            f"logs:     {logs}/{job_id}_<task>.out",
            f"watch:    squeue -j {job_id}",
            f"report:   {report_command(plan)}",
        ]), flush=True)
        if self.detached:
            return 0
        from mspe_sweep.sweep.launch.slurm_watch import follow

        return follow(plan, job_id, logs)
