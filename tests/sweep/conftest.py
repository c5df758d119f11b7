"""Helpers for the sweep driver's integration tests: study files, CLI runs, kill points.

In-process runs call ``mspe_sweep.run.main`` (fast); subprocess runs (``@pytest.mark.slow``)
start ``python -m mspe_sweep.run`` with ``OMP_NUM_THREADS=1`` and an explicit ``MSPE_HOME``.
Test modules get the helpers from the ``sweep`` fixture: ``from conftest import ...`` would be
ambiguous, since several test directories have a conftest.py and none is a package.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Sequence

import optuna
import pytest
import yaml
from process_state import preserved_process_state

import mspe_sweep.sweep.confirm as confirm_module
import mspe_sweep.sweep.work as work_module
from mspe_sweep import report as report_module
from mspe_sweep import run as run_module
from mspe_sweep.config import REPO_ROOT
from mspe_sweep.sweep.answer import Answer
from mspe_sweep.training import read_checkpoint

TINY_STUDY = Path(__file__).resolve().parents[1] / "data" / "tiny_study.yaml"


@pytest.fixture(autouse=True)
def reap_children():
    """A failing test must not leave its `python -m mspe_sweep.run` child running."""
    yield
    while Proc.started:
        Proc.started.pop().kill()


@pytest.fixture(autouse=True)
def skip_study_plots(monkeypatch):
    """Plots and the answer page take seconds per in-process run (tests/tracking/test_plots.py
    and tests/sweep/test_report_html.py cover them); the subprocess tests still write them for
    real. Returns the list of studies it was asked for."""
    calls: list[str] = []

    def fake_write_study_plots(study, out_dir):
        calls.append(study.study_name)
        return []

    def fake_answer_study(study, metric, runs_dir):
        return Answer("(the study's answer: not built in in-process tests)")

    for module in (work_module, report_module):
        monkeypatch.setattr(module, "write_study_plots", fake_write_study_plots)
    for module in (work_module, report_module, confirm_module):
        monkeypatch.setattr(module, "answer_study", fake_answer_study)
    return calls


# --- study files ------------------------------------------------------------------------------

def tiny_fixed(*changes: str) -> list[str]:
    """The tiny study's `fixed` list with ``key=value`` entries replaced or appended."""
    fixed = list(yaml.safe_load(TINY_STUDY.read_text())["fixed"])
    for change in changes:
        key = change.partition("=")[0]
        fixed = [f for f in fixed if f.partition("=")[0] != key] + [change]
    return fixed


def write_study(directory: Path, filename: str = "tiny", set_fixed: Sequence[str] = (),
                **changes) -> Path:
    """A copy of tests/data/tiny_study.yaml with top-level keys replaced and ``set_fixed``
    entries replaced in (or appended to) its ``fixed`` list; returns its path."""
    data = yaml.safe_load(TINY_STUDY.read_text())
    data.update(changes)
    data["fixed"] = tiny_fixed(*set_fixed) if set_fixed else data["fixed"]
    path = Path(directory) / f"{filename}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def load_study(name: str, url: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=url)


def study_names(url: str) -> list[str]:
    return [s.study_name for s in optuna.get_all_study_summaries(storage=url)]


# --- running the CLI --------------------------------------------------------------------------

@dataclass
class CliResult:
    code: int
    out: str
    err: str

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.startswith("error:")]


def run_cli(capsys, args: Sequence[str], entry=run_module.main) -> CliResult:
    """Run a CLI entry point in-process and capture what it printed."""
    capsys.readouterr()
    code = entry(list(args))
    out, err = capsys.readouterr()
    return CliResult(code, out, err)


def subprocess_env(home: Path) -> dict[str, str]:
    env = {**os.environ, "MSPE_HOME": str(home), "OMP_NUM_THREADS": "1",
           "PYTHONUNBUFFERED": "1"}
    env.pop("MSPE_WORKER_INDEX", None)
    env.pop("MSPE_STORAGE_URL", None)
    return env


class Proc:
    """A ``python -m <module>`` child with stdout+stderr in a file (no pipe to fill up)."""

    started: list[Proc] = []  # killed at the end of the test if still running

    def __init__(self, module: str, args: Sequence[str], home: Path, log: Path) -> None:
        self.log = log
        self._handle = open(log, "wb")
        self.popen = subprocess.Popen([sys.executable, "-m", module, *args], cwd=REPO_ROOT,
                                      env=subprocess_env(home), stdout=self._handle,
                                      stderr=subprocess.STDOUT)
        Proc.started.append(self)

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            pytest.fail(f"{self.popen.args} did not finish in {timeout} s:\n{self.output}")
        finally:
            self._handle.close()

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()
        self._handle.close()


def run_sub(module: str, args: Sequence[str], home: Path, log: Path,
            timeout: float = 300) -> tuple[int, str]:
    proc = Proc(module, args, home, log)
    code = proc.wait(timeout)
    return code, proc.output


def wait_for_checkpoint_epoch(proc: Proc, checkpoint: Path, epoch: int,
                              timeout: float = 240) -> int:
    """Poll ``checkpoint`` until it holds ``epoch`` or later; return the epoch it holds.

    The Trainer writes checkpoints atomically (temp file + rename), so a read never sees a
    half-written file. Fails the test when the process ends first or the time runs out.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            pytest.fail(f"process exited ({proc.popen.returncode}) before {checkpoint} reached "
                        f"epoch {epoch}:\n{proc.output}")
        if checkpoint.is_file():
            found = int(read_checkpoint(checkpoint)["epoch"])
            if found >= epoch:
                return found
        time.sleep(0.02)  # polling interval, not synchronisation
    proc.kill()
    pytest.fail(f"{checkpoint} did not reach epoch {epoch} in {timeout} s:\n{proc.output}")


@pytest.fixture(scope="session")
def sweep() -> SimpleNamespace:
    """The helpers of this module, for the test modules next to it."""
    return SimpleNamespace(
        TINY_STUDY=TINY_STUDY, CliResult=CliResult, Proc=Proc, load_study=load_study,
        preserved_process_state=preserved_process_state, run_cli=run_cli, run_sub=run_sub,
        sqlite_url=sqlite_url, study_names=study_names, tiny_fixed=tiny_fixed,
        wait_for_checkpoint_epoch=wait_for_checkpoint_epoch, write_study=write_study,
    )
