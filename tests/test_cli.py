"""The command lines: `python -m mspe_sweep.{train,run,evaluate,report}`: help, unknown options,
train -> evaluate, evaluate's errors, and `train resume=<last.pt>`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from process_state import preserved_process_state

from mspe_sweep import evaluate as evaluate_module
from mspe_sweep import pipeline
from mspe_sweep import report as report_module
from mspe_sweep import run as run_module
from mspe_sweep import train as train_module
from mspe_sweep.config import DRIVER_GROUPS, REPO_ROOT, compose_run_config, group_options, to_yaml
from mspe_sweep.train import train
from mspe_sweep.training import Callback, read_checkpoint

COMMANDS = {"train": train_module, "run": run_module, "evaluate": evaluate_module,
            "report": report_module}
# A run of a few seconds: the tiny study's fixed settings.
TINY_RUN = ["dataset=synthetic", "model.hidden_dim=32", "model.num_layers=1", "pe=rwse",
            "pe.dim=8", "training.epochs=2", "training.batch_size=16",
            "training.scheduler.warmup_epochs=0", "training.deterministic=true"]

def cli(capsys, module, args) -> tuple[int, str, str]:
    capsys.readouterr()
    code = module.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *fragments: str, alone: bool = True) -> None:
    """Exit 2 and one ``error:`` line naming ``fragments``; ``alone``: nothing else on stderr
    (errors found before any work starts), else it is the last line after progress logs."""
    assert code == 2, err
    lines = err.rstrip("\n").splitlines()
    assert [line for line in lines if line.startswith("error: ")] == lines[-1:], err
    assert len(lines) == 1 or not alone, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[-1], (fragment, err)


# --- --help and unknown options ---------------------------------------------------------------

HELP_GROUPS = {"train": group_options(),
               "run": {**group_options(), **group_options(DRIVER_GROUPS)},
               "evaluate": {}, "report": group_options(DRIVER_GROUPS)}
HELP_KEYS = {"train": ["resume=<last.pt>"], "run": ["study=<name>", "workers=N"],
             "evaluate": ["checkpoint=<path>", "split=test|val|train", "dataset.root=",
                          "device="],
             "report": ["study=<name>", "storage.url=", "top=N"]}


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_exits_0_and_lists_the_options(command, flag, capsys):
    code, out, err = cli(capsys, COMMANDS[command], [flag])
    assert code == 0
    assert out.startswith(f"usage: python -m mspe_sweep.{command} ")
    listed = dict(re.findall(r"\b(\w+)=((?:\w+\|)+\w+)", out))
    for group, options in HELP_GROUPS[command].items():
        assert set(listed.get(group, "").split("|")) == set(options), (group, out)
    for key in HELP_KEYS[command]:
        assert key in out, (key, out)


@pytest.mark.parametrize("command", list(COMMANDS))
def test_unknown_option_is_exit_2_and_one_line(command, capsys, mspe_home):
    code, out, err = cli(capsys, COMMANDS[command], ["study=tiny", "--foo"])
    assert_one_line_error(code, err, "--foo", "--help")
    assert out == ""
    assert not mspe_home.exists()


def test_train_bad_override_is_exit_2_and_one_line(capsys, mspe_home):
    code, _, err = cli(capsys, train_module, [*TINY_RUN, "training.epoch=3"])
    assert_one_line_error(code, err, "training.epoch")
    assert not (mspe_home / "runs").exists()


def test_train_resume_of_a_missing_checkpoint_is_exit_2(capsys, tmp_path):
    code, _, err = cli(capsys, train_module, [*TINY_RUN, f"resume={tmp_path / 'last.pt'}"])
    assert_one_line_error(code, err, str(tmp_path / "last.pt"))


# --- evaluate ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """One tiny training run (best.pt, last.pt, results.json) shared by the evaluate tests."""
    home = tmp_path_factory.mktemp("trained")
    with pytest.MonkeyPatch.context() as mp, preserved_process_state():
        mp.setenv("MSPE_HOME", str(home))
        return Path(train(TINY_RUN).run_dir)


def test_evaluate_reproduces_the_runs_val_metrics_from_best_pt(trained_run, capsys):
    results = json.loads((trained_run / "results.json").read_text())
    code, out, err = cli(capsys, evaluate_module,
                         [f"checkpoint={trained_run / 'best.pt'}", "split=val"])
    assert code == 0, err
    assert f"(epoch {results['best_epoch']})" in out
    printed = dict(re.findall(r"^(val/\w+) (\S+)$", out, flags=re.M))
    assert "val/mae" in printed and set(printed) <= set(results["val_metrics"]), printed
    for key, value in printed.items():
        assert abs(float(value) - results["val_metrics"][key]) <= 1e-6, key


def rewrite_checkpoint(source: Path, target: Path, **config_changes) -> Path:
    """A copy of a checkpoint whose stored run config has ``section.key`` values changed."""
    checkpoint = torch.load(source, weights_only=True)
    config = yaml.safe_load(checkpoint["config"])
    for dotted, value in config_changes.items():
        section, key = dotted.split("__")
        config[section][key] = value
    checkpoint["config"] = yaml.safe_dump(config)
    torch.save(checkpoint, target)
    return target


def _missing(run: Path, tmp: Path) -> Path:
    return tmp / "nope" / "best.pt"


def _garbage(payload: bytes):
    def make(run: Path, tmp: Path) -> Path:
        path = tmp / "garbage.pt"
        path.write_bytes(payload)
        return path
    return make


def _truncated(run: Path, tmp: Path) -> Path:
    data = (run / "best.pt").read_bytes()
    path = tmp / "truncated.pt"
    path.write_bytes(data[: len(data) // 2])
    return path


def _other_width(run: Path, tmp: Path) -> Path:
    return rewrite_checkpoint(run / "best.pt", tmp / "width.pt", model__hidden_dim=48)


def _other_depth(run: Path, tmp: Path) -> Path:
    return rewrite_checkpoint(run / "best.pt", tmp / "depth.pt", model__num_layers=2)


def _no_config(run: Path, tmp: Path) -> Path:
    checkpoint = torch.load(run / "best.pt", weights_only=True)
    checkpoint["config"] = None
    torch.save(checkpoint, tmp / "noconfig.pt")
    return tmp / "noconfig.pt"


BAD_CHECKPOINTS = {"missing": (_missing, "not found"),
                   "garbage-text": (_garbage(b"not a checkpoint\n" * 64), "cannot read"),
                   # Garbage that starts like a pickle: 7 % of random 4 KiB files do.
                   "garbage-pickle-pop": (_garbage(b"a"), "cannot read"),
                   "garbage-pickle-memo": (_garbage(b"\x80\x02h\x07."), "cannot read"),
                   "truncated": (_truncated, "cannot read"),
                   "other-model-width": (_other_width, "shape mismatch"),
                   "other-model-depth": (_other_depth, "missing"),
                   "no-config": (_no_config, "no run config")}


@pytest.mark.parametrize("case", list(BAD_CHECKPOINTS))
def test_evaluate_bad_checkpoint_is_exit_2_and_one_line(case, trained_run, tmp_path, capsys):
    make, fragment = BAD_CHECKPOINTS[case]
    path = make(trained_run, tmp_path)
    code, out, err = cli(capsys, evaluate_module, [f"checkpoint={path}"])  # no traceback
    # Rebuilding data and model comes first and logs a line: the error is the last line.
    assert_one_line_error(code, err, str(path), fragment, alone=case.startswith(
        ("missing", "garbage", "truncated", "no-config")))
    assert "test/mae" not in out


@pytest.mark.parametrize(("args", "fragment"), [([], "checkpoint=<path>"),
                                                (["split=bogus"], "split=bogus"),
                                                (["epochs=3"], "epochs=3")])
def test_evaluate_bad_arguments_are_exit_2(args, fragment, trained_run, capsys):
    checkpoint = [f"checkpoint={trained_run / 'best.pt'}"] if args else []
    code, _, err = cli(capsys, evaluate_module, [*checkpoint, *args])
    assert_one_line_error(code, err, fragment)


# --- train resume=<last.pt> -------------------------------------------------------------------

class InterruptAt(Callback):
    """Stops a fit the way Ctrl-C would, right after ``epoch``'s checkpoints were written."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_eval_epoch_end(self, trainer, epoch, metrics) -> None:
        if epoch == self.epoch:
            raise KeyboardInterrupt


RESUME_RUN = [*TINY_RUN, "training.epochs=4"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    home = tmp_path_factory.mktemp("uninterrupted")
    with pytest.MonkeyPatch.context() as mp, preserved_process_state():
        mp.setenv("MSPE_HOME", str(home))
        return train(RESUME_RUN).to_dict()


def interrupted_run(home: Path) -> Path:
    """A 4-epoch run stopped after epoch 2: ``last.pt`` at epoch 2, no results yet."""
    run_dir = home / "runs" / "train" / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        pipeline.train_from_config(compose_run_config(RESUME_RUN), run_dir,
                                   callbacks=[InterruptAt(2)])
    assert read_checkpoint(run_dir / "last.pt")["epoch"] == 2
    assert not (run_dir / "results.json").exists()
    return run_dir / "last.pt"


def assert_same_run(resumed: dict, full: dict) -> None:
    assert resumed["epochs_run"] == 4
    assert resumed["history"]["epoch"] == [1, 2, 3, 4]
    assert resumed["history"]["val/mae"] == full["history"]["val/mae"]
    assert resumed["best_value"] == full["best_value"]
    assert resumed["best_epoch"] == full["best_epoch"]
    assert resumed["test_metrics"] == full["test_metrics"]


def test_train_resume_continues_an_interrupted_run(uninterrupted, capsys, mspe_home):
    last = interrupted_run(mspe_home)
    code, out, err = cli(capsys, train_module, [*RESUME_RUN, f"resume={last}"])
    assert code == 0, err
    assert f"run directory: {last.parent}" in out
    assert_same_run(json.loads((last.parent / "results.json").read_text()), uninterrupted)


def test_train_resume_alone_continues_with_the_checkpoints_config(uninterrupted, capsys,
                                                                   mspe_home, monkeypatch):
    # `--help` says "resume an interrupted run with resume=<last.pt>": the checkpoint carries
    # its run config, so nothing else should be needed. Fail fast (instead of building the
    # default ZINC data set for a minute) if resume composes some other config.
    last = interrupted_run(mspe_home)
    real_get_dataset = pipeline.get_dataset

    def checkpoint_dataset_only(name, **kwargs):
        assert name == "synthetic", (
            f"train resume={last.name} built dataset={name}, not the checkpoint's synthetic")
        return real_get_dataset(name, **kwargs)

    monkeypatch.setattr(pipeline, "get_dataset", checkpoint_dataset_only)
    code, out, err = cli(capsys, train_module, [f"resume={last}"])
    assert code == 0, err
    assert_same_run(json.loads((last.parent / "results.json").read_text()), uninterrupted)


# --- train -> evaluate, as commands -----------------------------------------------------------

def run_command(module: str, args: list[str], home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "MSPE_HOME": str(home), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_train_then_evaluate_as_commands(tmp_path):
    home = tmp_path / "home"
    trained = run_command("mspe_sweep.train", TINY_RUN, home)
    assert trained.returncode == 0, trained.stderr
    run_dir = Path(re.search(r"^run directory: (.+)$", trained.stdout, flags=re.M).group(1))
    assert run_dir.parent == home / "runs" / "train"
    results = json.loads((run_dir / "results.json").read_text())

    evaluated = run_command("mspe_sweep.evaluate", [f"checkpoint={run_dir / 'best.pt'}"], home)

    assert evaluated.returncode == 0, evaluated.stderr
    assert f"(epoch {results['best_epoch']})" in evaluated.stdout
    printed = dict(re.findall(r"^(test/\w+) (\S+)$", evaluated.stdout, flags=re.M))
    assert "test/mae" in printed
    for key, value in printed.items():
        assert abs(float(value) - results["test_metrics"][key]) <= 1e-6, (key, value)


# --- --cfg job: Hydra's "show me the config" ---------------------------------------------------

def test_train_cfg_job_prints_the_validated_config_and_runs_nothing(capsys, mspe_home):
    code, out, err = cli(capsys, train_module, ["--cfg", "job", "training.epochs=3", "pe=lap"])
    assert code == 0, err
    shown = yaml.safe_load(out)
    assert shown["training"]["epochs"] == 3 and shown["pe"]["name"] == "lap"
    assert shown == yaml.safe_load(to_yaml(compose_run_config(["training.epochs=3",
                                                                "pe=lap"])))
    assert not mspe_home.exists()


def test_run_cfg_job_prints_base_config_and_space_without_storage(capsys, mspe_home):
    code, out, err = cli(capsys, run_module, ["study=zinc_quick", "--cfg=job",
                                               "training.epochs=3"])
    assert code == 0, err
    config, _, space = out.partition("# search space")
    assert yaml.safe_load(config)["training"]["epochs"] == 3
    assert yaml.safe_load(config)["dataset"]["name"] == "zinc_rdkit"  # the study's fixed
    params = yaml.safe_load(space.partition("\n")[2])["params"]
    assert params["pe"] == "choice(none, lap, rwse, multiscale)"
    assert params["pe.rwse.steps"]["when"] == {"pe": ["rwse", "multiscale"]}
    assert not mspe_home.exists()


def test_a_failed_worker_adds_a_note_not_a_second_error_line(capsys):
    from mspe_sweep.cli import run_command
    from mspe_sweep.errors import WorkerFailed

    def body(args):
        print("error: study stopped after 5 consecutive failed trials", file=sys.stderr)
        raise WorkerFailed(2)

    assert run_command(body, "usage", []) == 2
    err = capsys.readouterr().err.splitlines()
    assert [line for line in err if line.startswith("error:")] == [err[0]]
    assert err[-1] == "stopped: a worker exited with code 2; its error is above"
