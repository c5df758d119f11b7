"""MLflow back-ends for the tracking tests: one real ``mlflow server`` per test session, and a
fresh local SQLite store per test (copied from a template migrated once per session, because
creating MLflow's schema takes ~8 s)."""

from __future__ import annotations

import contextlib

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from _tracking_helpers import free_port
from mlflow.tracking import MlflowClient

from mspe_sweep.tracking import build_tracker

SERVER_START_TIMEOUT_S = 90


@dataclass
class MlflowEnv:
    server_uri: str
    template_db: Path


@pytest.fixture(scope="session")
def mlflow_env(tmp_path_factory):
    """Start the server, migrate a template SQLite store meanwhile, wait for /health."""
    root = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
           "--workers", "1", "--backend-store-uri", f"sqlite:///{root / 'server.db'}",
           "--artifacts-destination", str(root / "server-artifacts")]
    log_file = open(root / "server.log", "wb")
    server = subprocess.Popen(cmd, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                              start_new_session=True)
    template = root / "template.db"
    MlflowClient(tracking_uri=f"sqlite:///{template}").search_experiments()
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    try:
        while not _healthy(uri):
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start: {(root / 'server.log').read_text()}")
            time.sleep(0.25)
        yield MlflowEnv(uri, template)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        log_file.close()


def _healthy(uri: str) -> bool:
    try:
        return requests.get(f"{uri}/health", timeout=1).ok
    except requests.RequestException:
        return False


@dataclass
class Backend:
    """A tracking back-end for one test: ``build()`` gives a tracker, ``client`` reads back."""

    name: str
    uri: str | None
    home: Path
    tracking_uri: str

    def build(self, **kwargs):
        return build_tracker(self.name, self.uri, self.home, **kwargs)

    @property
    def client(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.tracking_uri)


@pytest.fixture(params=["local", "server"])
def backend(request, mlflow_env, mspe_home) -> Backend:
    """Each test runs against the local SQLite store and against the server."""
    if request.param == "server":
        return Backend("server", mlflow_env.server_uri, mspe_home, mlflow_env.server_uri)
    mspe_home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(mlflow_env.template_db, mspe_home / "mlflow.db")
    return Backend("local", None, mspe_home, f"sqlite:///{(mspe_home / 'mlflow.db').resolve()}")


@pytest.fixture
def study_name() -> str:
    """A study name unique in the session (the server is shared by all tests)."""
    return f"study-{uuid.uuid4().hex[:8]}"


class Proxy:
    """A TCP forwarder to the server whose stop/start simulates a tracking outage."""

    def __init__(self, target_port: int) -> None:
        self.target_port, self.port = target_port, free_port()
        self.listener: socket.socket | None = None
        self.conns: list[socket.socket] = []

    def start(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def stop(self) -> None:
        if self.listener is None:
            return
        self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close() won't
        self.listener.close()
        self.listener = None
        for conn in self.conns:
            # shutdown wakes the pipe threads blocked in recv(), so in-flight requests fail
            # at once instead of waiting for the client's read timeout.
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        self.conns.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self.conns += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


@pytest.fixture
def proxy(mlflow_env):
    """A started :class:`Proxy` in front of the session's server."""
    forwarder = Proxy(int(mlflow_env.server_uri.rsplit(":", 1)[1]))
    forwarder.start()
    yield forwarder
    if forwarder.listener is not None:
        forwarder.stop()
