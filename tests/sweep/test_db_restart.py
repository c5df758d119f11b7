"""PostgreSQL restarted and stopped under a running study: the study rides through, or, past
``storage.outage_timeout``, stops cleanly (exit 3) and the next run resumes the trial.

The server is a private throwaway cluster (``initdb`` into a temp directory, a free port),
started once per session with the binaries in ``MSPE_TEST_PG_BIN`` (``.ci/run`` exports it),
so stopping it disturbs no other test or user of the shared test server.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from optuna.trial import TrialState

from mspe_sweep.training import read_checkpoint

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

EPOCHS = 3
# 600 training graphs: an epoch takes about a second, so outages land inside a trial.
RUN_ARGS = ["tracking=none", "storage=postgres", "dataset.train_size=600",
            "storage.heartbeat_interval=2", "storage.grace_period=6"]


class PrivatePostgres:
    """A PostgreSQL cluster of its own (trust auth, no fsync) that a test may stop at will."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.as_postgres = os.geteuid() == 0  # the server refuses to run as root
        self.dir = Path(tempfile.mkdtemp(prefix="mspe-restart-pg."))
        if self.as_postgres:
            shutil.chown(self.dir, "postgres")
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        self._run("initdb", "-D", str(self.dir / "data"), "-U", "postgres", "--auth=trust")

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin_dir / tool), *args]
        if self.as_postgres:
            command = ["su", "postgres", "-s", "/bin/sh", "-c", shlex.join(command)]
        subprocess.run(command, check=True, capture_output=True, timeout=60)

    def _pg_ctl(self, action: str) -> float:
        """Runs ``pg_ctl <action>`` and waits for it; returns the seconds it took."""
        options = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c max_connections=100")
        started = time.monotonic()
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-o", options,
                  "-l", str(self.dir / "log"), "-m", "fast", "-w", action)
        return time.monotonic() - started

    def start(self) -> float:
        return self._pg_ctl("start")

    def stop(self) -> float:
        return self._pg_ctl("stop")

    def restart(self) -> float:
        return self._pg_ctl("restart")

    def is_up(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False
        return True

    def remove(self) -> None:
        if self.is_up():
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def private_postgres(postgres_url):
    """A private server; needs the PostgreSQL binaries ``.ci/run`` uses (MSPE_TEST_PG_BIN)."""
    bin_dir = os.environ.get("MSPE_TEST_PG_BIN")
    if not bin_dir or not (Path(bin_dir) / "pg_ctl").is_file():
        reason = "MSPE_TEST_PG_BIN (the directory of initdb and pg_ctl) is not set"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}: .ci/run must export it")
        pytest.skip(f"{reason}; .ci/run exports it")
    server = PrivatePostgres(Path(bin_dir))
    server.start()
    yield server
    server.remove()


@pytest.fixture
def db(private_postgres):
    """The private server, up at the start and the end of each test."""
    if not private_postgres.is_up():
        private_postgres.start()
    yield private_postgres
    if not private_postgres.is_up():
        private_postgres.start()


def restart_study(sweep, directory: Path, n_trials: int, epochs: int = EPOCHS
                  ) -> tuple[Path, str]:
    name = f"restart-{uuid.uuid4().hex[:8]}"
    path = sweep.write_study(directory, name=name, n_trials=n_trials,
                             set_fixed=[f"training.epochs={epochs}"])
    return path, name


def outage_lines(output: str) -> tuple[list[str], list[str]]:
    lines = output.splitlines()
    return ([line for line in lines if "is unreachable" in line],
            [line for line in lines if "is reachable again" in line])


def test_a_study_rides_through_a_restart_and_a_15_s_outage(sweep, db, tmp_path):
    path, name = restart_study(sweep, tmp_path, n_trials=4)
    home = tmp_path / "home"
    runs = home / "runs" / name
    args = [f"study={path}", f"storage.url={db.url}", "workers=2", *RUN_ARGS]
    timings: dict[str, float] = {}
    started = time.monotonic()
    proc = sweep.Proc("mspe_sweep.run", args, home, tmp_path / "run.log")

    # A fast restart while the first two trials train.
    sweep.wait_for_checkpoint_epoch(proc, runs / "trial-0" / "last.pt", 1)
    timings["restart_at"] = time.monotonic() - started
    timings["restart_s"] = db.restart()

    # A stop of about 15 s while one of the last two trials trains.
    trial, epoch = wait_for_any_epoch(sweep, proc, [runs / "trial-2", runs / "trial-3"], 1)
    timings["stop_at"] = time.monotonic() - started
    stopped = time.monotonic()
    db.stop()
    time.sleep(max(0.0, 15 - (time.monotonic() - stopped)))
    trained_meanwhile = int(read_checkpoint(trial / "last.pt")["epoch"]) - epoch
    timings["outage_s"] = time.monotonic() - stopped + db.start()
    code = proc.wait(timeout=300)
    timings["total_s"] = time.monotonic() - started
    output = proc.output
    print(f"restart test timings: {timings}")

    assert code == 0, output
    assert "Traceback" not in output and "error:" not in output, output
    assert trained_meanwhile >= 1, f"no epoch of {trial.name} trained during the outage"
    gone, back = outage_lines(output)
    assert 1 <= len(gone) == len(back) <= 4, output  # one line each way, per worker and outage
    assert "storage.outage_timeout" in gone[0]
    trials = sweep.load_study(name, db.url).trials
    states = [t.state for t in trials]
    assert not {TrialState.RUNNING, TrialState.WAITING, TrialState.FAIL} & set(states), states
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert 4 <= len(finished) <= 5, states  # two workers: at most one trial over the budget


def wait_for_any_epoch(sweep, proc, run_dirs: list[Path], epoch: int,
                       timeout: float = 240) -> tuple[Path, int]:
    """The first of ``run_dirs`` whose ``last.pt`` holds ``epoch`` or later, and that epoch."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            pytest.fail(f"the run ended ({proc.popen.returncode}) too early:\n{proc.output}")
        for run_dir in run_dirs:
            last = run_dir / "last.pt"
            if last.is_file() and (found := int(read_checkpoint(last)["epoch"])) >= epoch:
                return run_dir, found
        time.sleep(0.05)
    pytest.fail(f"no checkpoint in {run_dirs} reached epoch {epoch}:\n{proc.output}")


def test_an_outage_past_the_timeout_exits_3_and_the_next_run_resumes(sweep, db, tmp_path):
    epochs = 5
    path, name = restart_study(sweep, tmp_path, n_trials=1, epochs=epochs)
    home = tmp_path / "home"
    last = home / "runs" / name / "trial-0" / "last.pt"
    args = [f"study={path}", f"storage.url={db.url}", *RUN_ARGS]
    proc = sweep.Proc("mspe_sweep.run", [*args, "storage.outage_timeout=5"], home,
                      tmp_path / "gave-up.log")
    sweep.wait_for_checkpoint_epoch(proc, last, 1)
    db.stop()
    stopped = time.monotonic()
    code = proc.wait(timeout=120)
    gave_up_after = time.monotonic() - stopped
    output = proc.output
    db.start()
    print(f"exit-3 test: gave up {gave_up_after:.1f} s after the stop")

    assert code == 3, output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "storage.outage_timeout=5" in errors[0], output
    assert "Traceback" not in output
    assert len(outage_lines(output)[0]) == 1
    epoch = int(read_checkpoint(last)["epoch"])  # intact: it loads
    assert 1 <= epoch < epochs
    assert [t.state for t in sweep.load_study(name, db.url).trials] == [TrialState.RUNNING]

    code, output = sweep.run_sub("mspe_sweep.run", args, home, tmp_path / "resumed.log")

    assert code == 0, output
    assert f"trial 1 resumes trial-0 from its epoch-{epoch} checkpoint" in output
    trials = sweep.load_study(name, db.url).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert trials[1].system_attrs["failed_trial"] == 0
    assert trials[1].params == trials[0].params
    assert trials[1].user_attrs["epochs_run"] == epochs
