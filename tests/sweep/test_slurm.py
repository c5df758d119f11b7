"""`launcher=slurm` on a real single-node SLURM (`.ci/start-slurm.sh` starts one): the dry run's
script as sbatch reads it, a 2-task array finishing a study on PostgreSQL, and a task warned
with USR1 mid-trial: requeued, its trial resumed from its checkpoint, the budget met exactly.

Each test prints what happened (job ids, tasks, which trials each task ran): run with ``-s``
for the transcript.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from sqlalchemy.engine import make_url

from mspe_sweep.config import REPO_ROOT
from mspe_sweep.training import read_checkpoint

pytestmark = pytest.mark.slurm


@pytest.fixture(scope="session")
def slurm() -> None:
    """A SLURM controller that answers; `.ci/run` starts one (``SLURM_CONF`` names it)."""
    reason = None
    if shutil.which("sbatch") is None:
        reason = "no SLURM client commands (apt-get install slurm-wlm; .ci/start-slurm.sh DIR)"
    else:
        answer = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True,
                                timeout=30, check=False)
        if answer.returncode != 0:
            reason = f"no SLURM reachable ({' '.join(answer.stderr.split())}); start one " \
                     "with .ci/start-slurm.sh DIR and `source DIR/env`"
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"{reason}: .ci/run must start SLURM")
        pytest.skip(reason)


def run_driver(args: list[str], home: Path, storage_url: str | None = None,
               timeout: float = 300) -> tuple[int, str]:
    """``python -m mspe_sweep.run`` with the storage URL in its environment, as the README
    recommends (so it is on no command line)."""
    env = {**os.environ, "MSPE_HOME": str(home), "OMP_NUM_THREADS": "1",
           "PYTHONUNBUFFERED": "1"}
    env.pop("MSPE_WORKER_INDEX", None)
    env.pop("MSPE_STORAGE_URL", None)
    if storage_url:
        env["MSPE_STORAGE_URL"] = storage_url
    done = subprocess.run([sys.executable, "-m", "mspe_sweep.run", *args], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)
    return done.returncode, done.stdout + done.stderr


def job_id_of(output: str) -> str:
    found = re.search(r"^slurm: +job (\d+),", output, re.MULTILINE)
    assert found, output
    return found.group(1)


def wait_for_array(job_id: str, timeout: float) -> None:
    """Until squeue lists no pending or running task of the array."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listed = subprocess.run(["squeue", "-h", "-r", "-j", job_id, "-o", "%i"],
                                capture_output=True, text=True, check=False).stdout
        if not listed.strip():
            return
        time.sleep(1)  # polling interval, not synchronisation
    subprocess.run(["scancel", job_id], check=False)
    pytest.fail(f"job array {job_id} still running after {timeout} s")


def task_logs(home: Path, study: str, job_id: str) -> dict[str, str]:
    """``{"12_0": <log text>, ...}``: each task's log (every attempt of a requeued one)."""
    logs = home / "runs" / study / "slurm"
    return {path.stem: path.read_text() for path in sorted(logs.glob(f"{job_id}_*.out"))}


def trials_by_task(logs: dict[str, str]) -> dict[str, list[int]]:
    return {task: [int(n) for n in re.findall(r"^trial (\d+) (?:COMPLETE|PRUNED)", text,
                                              re.MULTILINE)]
            for task, text in logs.items()}


def slurm_daemon_logs() -> str:
    """slurmctld's and slurmd's own logs, where this machine's configuration names them."""
    config = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True,
                            check=False).stdout
    paths = re.findall(r"^Slurm(?:ctld|d)LogFile\s*=\s*(\S+)", config, re.MULTILINE)
    return "".join(Path(p).read_text(errors="replace") for p in paths if Path(p).is_file())


def test_dry_run_script_is_accepted_by_sbatch(slurm, sweep, tmp_path, capsys, mspe_home):
    result = sweep.run_cli(capsys, [f"study={sweep.TINY_STUDY}", "launcher=slurm",
                                    "launcher.workers=3", "launcher.max_parallel=2",
                                    "launcher.time=00:30:00", "launcher.cpus_per_worker=1",
                                    "launcher.dry_run=true"])
    assert result.code == 0, result.err
    # sbatch wants the log folder to exist; --test-only validates and submits nothing.
    (mspe_home / "runs" / "tiny" / "slurm").mkdir(parents=True)
    script = tmp_path / "dry_run.sbatch"
    script.write_text(result.out)
    checked = subprocess.run(["sbatch", "--test-only", str(script)], capture_output=True,
                             text=True, check=False)
    assert checked.returncode == 0, checked.stderr
    assert re.search(r"Job \d+ to start at", checked.stderr), checked.stderr
    print(f"\n{result.out}sbatch --test-only: {checked.stderr.strip()}")


@pytest.mark.slow
@pytest.mark.postgres
def test_two_tasks_share_a_study_on_postgres(slurm, sweep, tmp_path, postgres_url):
    name = f"tiny-slurm-{uuid.uuid4().hex[:8]}"
    path = sweep.write_study(tmp_path, name=name, set_fixed=["pe=none"],
                             params={"training.optimizer.lr": "tag(log, interval(1e-4, 1e-2))"})
    home = tmp_path / "home"
    # As it would leak: inside the URL (or the plan, which holds the URL). The bare password
    # may be a common word (CI's is in its temp directories' names).
    secret = f":{make_url(postgres_url).password}@"
    try:
        # Two tasks of two workers each (trials_per_gpu=2: they share a task's GPUs).
        code, output = run_driver([f"study={path}", "storage=postgres", "tracking=none",
                                   "launcher=slurm", "launcher.workers=2", "launcher.wait=true",
                                   "trials_per_gpu=2", "study.n_trials=4"], home, postgres_url)
        study = optuna.load_study(study_name=name, storage=postgres_url)
        job_id = job_id_of(output)
        logs = task_logs(home, name, job_id)
        ran = trials_by_task(logs)
        print(f"\njob array {job_id}: trials per task {ran}\n{output}")

        assert code == 0, output
        assert f"watch:    squeue -j {job_id}" in output
        assert f"report:   python -m mspe_sweep.report study={path} storage=postgres" in output
        assert re.search(rf"slurm job {job_id}: 2 RUNNING", output), output
        assert "slurm job" in output and "no task left" in output
        trials = study.get_trials(deepcopy=False)
        finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
        assert len(finished) == len(trials)  # nothing failed, nothing left running
        assert 4 <= len(finished) <= 7  # the budget; at most workers - 1 over it
        assert sorted(logs) == [f"{job_id}_0", f"{job_id}_1"]
        assert all(ran.values()), ran  # both tasks ran trials ...
        assert sorted(sum(ran.values(), [])) == [t.number for t in trials]  # ... once each
        assert len({t.system_attrs["owner"].rsplit(":", 1)[0] for t in trials}) >= 2
        assert all("2 worker(s)" in log for log in logs.values()), logs

        script = (home / "runs" / name / "slurm" / "array.sbatch").read_text()
        for where, text in [("batch script", script), ("task logs", "".join(logs.values())),
                            ("driver output", output), ("SLURM's logs", slurm_daemon_logs())]:
            assert secret not in text, where
    finally:
        optuna.delete_study(study_name=name, storage=postgres_url)


EPOCHS = 5


@pytest.mark.slow
@pytest.mark.postgres
def test_usr1_requeues_the_task_and_its_trial_resumes(slurm, sweep, tmp_path, postgres_url):
    name = f"tiny-usr1-{uuid.uuid4().hex[:8]}"
    # 600 training graphs make an epoch long enough (~1 s) that the signal lands mid-trial.
    path = sweep.write_study(tmp_path, name=name, n_trials=2,
                             set_fixed=["pe=none", f"training.epochs={EPOCHS}",
                                        "dataset.train_size=600"],
                             params={"training.optimizer.lr": "tag(log, interval(1e-4, 1e-2))"})
    home = tmp_path / "home"
    last = home / "runs" / name / "trial-0" / "last.pt"
    job_id = None
    try:
        code, output = run_driver([f"study={path}", "storage=postgres", "tracking=none",
                                   "launcher=slurm", "launcher.workers=1"], home, postgres_url)
        assert code == 0, output  # submitted, not waited for
        job_id = job_id_of(output)
        deadline = time.monotonic() + 240
        while not (last.is_file() and int(read_checkpoint(last)["epoch"]) >= 2):
            assert time.monotonic() < deadline, task_logs(home, name, job_id)
            time.sleep(0.05)  # polling interval, not synchronisation
        subprocess.run(["scancel", "--batch", "--signal=USR1", f"{job_id}_0"], check=True)
        signalled_at = int(read_checkpoint(last)["epoch"])
        wait_for_array(job_id, timeout=300)

        log = task_logs(home, name, job_id)[f"{job_id}_0"]
        print(f"\njob array {job_id}, task {job_id}_0, USR1 at epoch {signalled_at} of trial 0:"
              f"\n{log}")
        study = optuna.load_study(study_name=name, storage=postgres_url)
        trials = study.get_trials(deepcopy=False)
        assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE,
                                             TrialState.COMPLETE], log
        interrupted, retry, _ = trials
        assert interrupted.user_attrs["interrupted"] is True
        assert retry.system_attrs["failed_trial"] == 0
        assert retry.params == interrupted.params
        assert f"mspe: requeueing task {job_id}_0" in log
        assert re.search(rf"task {job_id}_0 \(job \d+, restart 1\)", log), log
        resumed = re.search(r"trial 1 resumes trial-0 from its epoch-(\d+) checkpoint", log)
        assert resumed and int(resumed.group(1)) >= signalled_at, log
        assert retry.user_attrs["epochs_run"] == EPOCHS
        assert sorted(retry.intermediate_values) == list(range(1, EPOCHS + 1))
    finally:
        if job_id:
            subprocess.run(["scancel", job_id], check=False)
        optuna.delete_study(study_name=name, storage=postgres_url)
