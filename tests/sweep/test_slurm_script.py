"""`launcher=slurm` without a cluster: the batch script its keys make, where the storage
password may (and may not) appear, the checks, and `launcher.dry_run=true` on the command line.
The runs on a real cluster are in test_slurm.py."""

from __future__ import annotations

import signal

import optuna
import pytest
import yaml

from mspe_sweep.config import CONFIG_DIR, REPO_ROOT
from mspe_sweep.errors import UserError
from mspe_sweep.schema import DriverConfig
from mspe_sweep.sweep.launch import INDEX_ENV, PLAN_ENV, launcher_for
from mspe_sweep.sweep.launch.local import LocalLauncher
from mspe_sweep.sweep.launch.slurm import (
    SlurmLauncher,
    SlurmSettings,
    batch_script,
    report_command,
    sbatch_command,
    submit_env,
)
from mspe_sweep.sweep.plan import Plan
from mspe_sweep.sweep.prepare import load_spec, parse_args
from mspe_sweep.sweep.worker import Worker, WorkerLimits
from mspe_sweep.validation import check_rules

PASSWORD = "s3cret-Pw"
URL = f"postgresql+psycopg://mspe:{PASSWORD}@db.example:5432/mspe"


def sbatch_lines(script: str) -> list[str]:
    return [line.removeprefix("#SBATCH ") for line in script.splitlines()
            if line.startswith("#SBATCH ")]


def make_plan(sweep, tmp_path, **launcher) -> Plan:
    driver, overrides = parse_args([f"study={sweep.TINY_STUDY}"])
    spec, _ = load_spec(driver, overrides)
    return Plan(spec=spec, run_overrides=(), storage_url=URL, storage_options={},
                tracking_backend="none", tracking_uri=None, fingerprint="f", data_source="d",
                base_config_yaml="", workers=2, launcher={"name": "slurm", **launcher})


def test_every_key_becomes_its_sbatch_option(mspe_home):
    settings = SlurmSettings(
        workers=16, partition="gpu", account="lab", qos="high", time="24:00:00",
        gpus_per_worker=1, cpus_per_worker=4, mem="16G", max_parallel=8, signal_seconds=300,
        sbatch_lines=("--constraint=a100", "#SBATCH --exclusive"),
        setup="module load cuda\nsource ~/venv/bin/activate")
    script = batch_script(settings, "zinc", command=["python", "-m", "mspe_sweep.sweep.work"])

    assert sbatch_lines(script) == [
        "--job-name=mspe-zinc", "--array=0-15%8",
        f"--output={mspe_home / 'runs' / 'zinc' / 'slurm'}/%A_%a.out", "--open-mode=append",
        f"--chdir={REPO_ROOT}", "--requeue", "--signal=B:USR1@300", "--ntasks=1",
        "--cpus-per-task=4", "--partition=gpu", "--account=lab", "--qos=high",
        "--time=24:00:00", "--mem=16G", "--gres=gpu:1", "--constraint=a100", "--exclusive"]
    assert script.startswith("#!/bin/bash\n")
    # The setup block runs before the worker, which runs in the background of the trap.
    setup = script.index("module load cuda\nsource ~/venv/bin/activate\n")
    assert setup < script.index("python -m mspe_sweep.sweep.work &\n")
    assert f"export MSPE_HOME={mspe_home}\n" in script
    assert f'{INDEX_ENV}=$(( SLURM_ARRAY_TASK_ID * per_task + slot ))' in script
    assert 'per_task=1' in script  # one worker per task by default


def test_unset_keys_add_no_option(mspe_home):
    lines = sbatch_lines(batch_script(SlurmSettings(workers=2), "tiny"))
    options = {line.partition("=")[0] for line in lines}
    assert options == {"--job-name", "--array", "--output", "--open-mode", "--chdir",
                       "--requeue", "--signal", "--ntasks", "--cpus-per-task"}
    assert "--array=0-1" in lines


def test_the_password_travels_only_in_the_plan_variable(sweep, tmp_path, monkeypatch):
    monkeypatch.delenv("MSPE_STORAGE_URL", raising=False)
    monkeypatch.setenv(INDEX_ENV, "7")  # this process's own index must not reach the tasks
    plan = make_plan(sweep, tmp_path)
    script = batch_script(SlurmSettings.from_config(plan.launcher), plan.spec.name)
    env = submit_env(plan)

    assert PASSWORD not in script
    assert not any(PASSWORD in arg for arg in sbatch_command(tmp_path / "array.sbatch"))
    assert "--export=ALL" in sbatch_command(tmp_path / "array.sbatch")
    assert [key for key, value in env.items() if PASSWORD in value] == [PLAN_ENV]
    assert Plan.from_json(env[PLAN_ENV]).storage_url == URL
    assert INDEX_ENV not in env
    assert PASSWORD not in report_command(plan)


def test_the_printed_report_command_names_a_custom_sqlite_file_and_tracking_uri(sweep,
                                                                                tmp_path):
    plan = Plan(**{**make_plan(sweep, tmp_path).__dict__, "storage_url": f"sqlite:///{tmp_path}/s.db",
                   "tracking_backend": "server", "tracking_uri": "http://mlflow:5000"})
    command = report_command(plan)
    assert f"storage=sqlite storage.url=sqlite:///{tmp_path}/s.db" in command
    assert command.endswith("tracking=server tracking.uri=http://mlflow:5000")


def test_launcher_for_picks_by_name(sweep, tmp_path):
    plan = make_plan(sweep, tmp_path, wait=True, workers=3)
    slurm = launcher_for(plan)
    assert isinstance(slurm, SlurmLauncher) and not slurm.detached
    assert slurm.settings.workers == 3
    assert isinstance(launcher_for(Plan.from_json(plan.to_json().replace(
        '"name": "slurm"', '"name": "local"'))), LocalLauncher)


@pytest.mark.parametrize(("launcher", "message"), [
    ({"workers": 0}, "launcher.workers=0: must be >= 1"),
    ({"cpus_per_worker": 0}, "launcher.cpus_per_worker=0: must be >= 1"),
    ({"max_parallel": 0}, "launcher.max_parallel=0: must be >= 1"),
])
def test_bad_counts_break_the_schemas_rules(launcher, message):
    with pytest.raises(UserError, match=message):
        check_rules({"launcher": launcher}, DriverConfig)


def test_an_extra_line_must_be_an_sbatch_option():
    with pytest.raises(UserError, match="'constraint=a100' is not an sbatch option"):
        SlurmSettings.from_config({"sbatch_lines": ["constraint=a100"]})


def test_every_launcher_preset_defines_the_same_keys():
    keys = {path.stem: set(yaml.safe_load(path.read_text()))
            for path in (CONFIG_DIR / "launcher").glob("*.yaml")}
    assert set(keys) == {"local", "slurm"}
    assert keys["local"] == keys["slurm"]


def run_args(sweep, tmp_path, *extra) -> list[str]:
    return [f"study={sweep.TINY_STUDY}", "tracking=none", *extra]


def test_a_batch_key_without_launcher_slurm_is_one_error_line(sweep, tmp_path, capsys):
    result = sweep.run_cli(capsys, run_args(sweep, tmp_path, "launcher.partition=gpu"))
    assert result.code == 2
    assert result.err.strip() == ("error: launcher.partition=gpu: applies to launcher=slurm "
                                  "only (this is launcher=local)")


def test_bad_launcher_setting_fails_before_the_storage_is_opened(sweep, tmp_path, capsys,
                                                                 mspe_home):
    result = sweep.run_cli(capsys, run_args(sweep, tmp_path, "launcher=slurm",
                                            "launcher.workers=0"))
    assert result.code == 2
    assert result.error_lines == ["error: launcher.workers=0: must be >= 1"]
    assert not (mspe_home / "optuna.db").exists()


def test_trials_per_gpu_packs_workers_into_each_task(sweep, tmp_path, capsys, mspe_home):
    result = sweep.run_cli(capsys, run_args(sweep, tmp_path, "launcher=slurm",
                                            "trials_per_gpu=3", "launcher.dry_run=true"))
    assert result.code == 0, result.err
    assert "per_task=3" in result.out
    # Each worker of the array gets its own index: task * per_task + slot.
    assert (f'{INDEX_ENV}=$(( SLURM_ARRAY_TASK_ID * per_task + slot ))' in result.out)


def test_dry_run_prints_the_script_and_opens_nothing(sweep, tmp_path, capsys, mspe_home):
    # A storage nothing listens on: opening it would fail, so exit 0 proves it stayed shut.
    unreachable = f"postgresql+psycopg://mspe:{PASSWORD}@127.0.0.1:9/mspe"
    result = sweep.run_cli(capsys, run_args(
        sweep, tmp_path, "storage=postgres", f"storage.url={unreachable}", "launcher=slurm",
        "launcher.workers=3", "launcher.time=01:00:00", "launcher.dry_run=true"))

    assert result.code == 0, result.err
    expected = batch_script(SlurmSettings(workers=3, time="01:00:00"), "tiny")
    assert result.out == expected + "\n"
    assert PASSWORD not in result.out + result.err
    assert not mspe_home.exists()  # no storage, no dataset, no run directory, no log folder


def test_dry_run_still_checks_the_storage_url(sweep, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MSPE_STORAGE_URL", raising=False)
    result = sweep.run_cli(capsys, run_args(sweep, tmp_path, "storage=postgres",
                                            "launcher=slurm", "launcher.dry_run=true"))
    assert result.code == 2
    assert result.error_lines[0].startswith("error: storage=postgres needs a PostgreSQL URL")
    assert result.out == ""


def test_usr1_stops_a_worker_like_sigterm(tmp_path):
    """SLURM's warning signal interrupts the running trial (KeyboardInterrupt, as SIGTERM
    does); afterwards the process's own USR1 handler is back."""
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'usr1.db'}")

    def objective(trial):
        signal.raise_signal(signal.SIGUSR1)  # the default action would end this process
        return 0.0

    limits = WorkerLimits(n_trials=1, timeout=None, max_consecutive_failures=3, max_retry=1,
                          keep_checkpoints=1, grace_period=60)
    before = signal.getsignal(signal.SIGUSR1)
    with pytest.raises(KeyboardInterrupt, match=f"signal {int(signal.SIGUSR1)}"):
        Worker(study, objective, limits).run()
    assert signal.getsignal(signal.SIGUSR1) == before
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.FAIL]
