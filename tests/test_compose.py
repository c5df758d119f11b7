"""docker-compose.yml, Dockerfile and .env.example: structure, validation, and the services'
commands run outside Docker.

The structural tests read the file as ``docker compose config`` resolves it when the compose CLI
is installed (``docker compose`` plugin or a v2 ``docker-compose``), else as PyYAML reads it with
compose's ``${VAR:-default}`` interpolation done here, so they run without Docker as well. The
end-to-end test runs the ``mlflow`` and ``worker`` services' commands as subprocesses against
the test PostgreSQL (``.ci/run`` starts one), the worker's through the ``storage-proxy``
service's command; no Docker engine is needed for any test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
import yaml

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO / "docker-compose.yml"
TINY_STUDY = Path(__file__).resolve().parent / "data" / "tiny_study.yaml"
SERVICES = {"postgres", "storage-proxy", "mlflow", "worker", "dashboard"}
DATABASE_URL = "postgresql+psycopg://mspe:compose-test-pw@postgres:5432/mspe"
VOLUMES = {"pgdata", "mlartifacts", "mspe-home"}
# What a user's .env must provide; everything else has a default.
TEST_ENV = {"POSTGRES_PASSWORD": "compose-test-pw"}
SERVER_START_TIMEOUT_S = 120
WORKER_TIMEOUT_S = 420


# --- loading the compose file ----------------------------------------------------------------


def compose_cli() -> list[str] | None:
    """The compose CLI as an argv prefix: the docker plugin, else a v2 ``docker-compose``."""
    candidates = []
    if shutil.which("docker"):
        candidates.append(["docker", "compose"])
    for standalone in (shutil.which("docker-compose"), Path(sys.executable).with_name(
            "docker-compose")):
        if standalone and Path(standalone).is_file():
            candidates.append([str(standalone)])
    for argv in candidates:
        try:
            done = subprocess.run([*argv, "version", "--short"], capture_output=True, text=True,
                                  timeout=20, env=_compose_env({}))
        except (OSError, subprocess.SubprocessError):
            continue
        major = done.stdout.strip().lstrip("v").split(".")[0]
        if done.returncode == 0 and major.isdigit() and int(major) >= 2:
            return argv
    return None


def _compose_env(values: dict[str, str]) -> dict[str, str]:
    # Only what the CLI needs to run: no POSTGRES_* / MLFLOW_* from the caller's shell.
    keep = ("PATH", "HOME", "DOCKER_CONFIG", "TMPDIR")
    return {**{k: os.environ[k] for k in keep if k in os.environ}, **values}


def run_compose_config(cli: list[str], env: dict[str, str], tmp_path: Path,
                       *args: str) -> subprocess.CompletedProcess:
    """``<compose> config --format json`` on the repository's file, ignoring any local .env."""
    empty_env_file = tmp_path / "empty.env"
    empty_env_file.write_text("")
    return subprocess.run(
        [*cli, "--project-directory", str(REPO), "-f", str(COMPOSE_FILE), "--env-file",
         str(empty_env_file), *args, "config", "--format", "json"],
        capture_output=True, text=True, timeout=60, env=_compose_env(env))


_VAR = re.compile(r"\$\$|\$\{(\w+)(?:(:?[-?])([^}]*))?\}|\$(\w+)")


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable syntax (``$$``, ``${V}``, ``${V:-d}``, ``${V-d}``, ``${V:?e}``)."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(4)
        op, arg = match.group(2), match.group(3) or ""
        current = env.get(name)
        missing = current is None or (op is not None and op.startswith(":") and not current)
        if op and op.endswith("?") and missing:
            raise ValueError(f"required variable {name} is missing a value: {arg}")
        if op and op.endswith("-") and missing:
            return arg
        return current or ""

    return _VAR.sub(substitute, value)


def _unescape(value: Any) -> Any:
    # `config` output re-escapes `$` as `$$`; in a container it is a single `$`.
    if isinstance(value, dict):
        return {k: _unescape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unescape(v) for v in value]
    return value.replace("$$", "$") if isinstance(value, str) else value


def load_compose(tmp_path: Path, env: dict[str, str] | None = None,
                 profiles: tuple[str, ...] = ("dashboard",)) -> dict:
    """The compose model as containers would see it (all profiles given, ``$$`` unescaped)."""
    env = {**TEST_ENV, **(env or {})}
    cli = compose_cli()
    if cli is None:
        model = interpolate(yaml.safe_load(COMPOSE_FILE.read_text()), env)
        model["services"] = {name: svc for name, svc in model["services"].items()
                             if not svc.get("profiles") or set(svc["profiles"]) & set(profiles)}
        return model
    args = [arg for profile in profiles for arg in ("--profile", profile)]
    done = run_compose_config(cli, env, tmp_path, *args)
    assert done.returncode == 0, done.stderr
    return _unescape(json.loads(done.stdout))


def ports(service: dict) -> list[tuple[str, str, str]]:
    """``(host_ip, published, target)`` for short (``ip:host:container``) or long syntax."""
    out = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            out.append((port.get("host_ip", ""), str(port.get("published", "")),
                        str(port["target"])))
        else:
            parts = str(port).split(":")
            out.append((parts[0] if len(parts) == 3 else "", parts[-2] if len(parts) > 1 else "",
                        parts[-1]))
    return out


def mounts(service: dict, model: dict) -> list[tuple[str, str, str]]:
    """``(type, source, target)`` of a service's volumes, short or long syntax."""
    out = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            out.append((volume["type"], str(volume.get("source", "")), volume["target"]))
        else:
            source, target = str(volume).split(":")[:2]
            kind = "volume" if source in model.get("volumes", {}) else "bind"
            out.append((kind, source, target))
    return out


def command(service: dict) -> list[str]:
    cmd = service["command"]
    return cmd.split() if isinstance(cmd, str) else [str(part) for part in cmd]


def flag(argv: list[str], name: str) -> str | None:
    """The value of ``--name=value`` or ``--name value`` in an argv list, '' for a bare flag."""
    for i, arg in enumerate(argv):
        if arg == name:
            nxt = argv[i + 1] if i + 1 < len(argv) else ""
            return "" if nxt.startswith("--") else nxt
        if arg.startswith(name + "="):
            return arg.partition("=")[2]
    return None


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> dict:
    return load_compose(tmp_path_factory.mktemp("compose"))


# --- validation with the compose CLI ---------------------------------------------------------


@pytest.fixture(scope="module")
def cli() -> list[str]:
    argv = compose_cli()
    if argv is None:
        pytest.skip("no compose CLI: neither the `docker compose` plugin nor a v2 "
                    "`docker-compose` is installed (only needed to validate docker-compose.yml)")
    return argv


def test_compose_config_validates_and_interpolates(cli, tmp_path):
    done = run_compose_config(cli, {**TEST_ENV, "STUDY": "zinc_quick"}, tmp_path,
                              "--profile", "dashboard")
    assert done.returncode == 0, done.stderr
    resolved = _unescape(json.loads(done.stdout))
    assert set(resolved["services"]) == SERVICES
    worker = resolved["services"]["worker"]
    assert "study=zinc_quick" in command(worker)
    assert worker["environment"]["MSPE_STORAGE_URL"] == "grpc://storage-proxy:13000"
    proxy = resolved["services"]["storage-proxy"]
    assert proxy["environment"]["MSPE_STORAGE_URL"] == DATABASE_URL


def test_compose_config_refuses_a_missing_password(cli, tmp_path):
    done = run_compose_config(cli, {}, tmp_path)
    assert done.returncode != 0
    assert "POSTGRES_PASSWORD" in done.stderr


def test_dashboard_only_with_its_profile(cli, tmp_path):
    done = run_compose_config(cli, TEST_ENV, tmp_path)
    assert done.returncode == 0, done.stderr
    assert set(json.loads(done.stdout)["services"]) == SERVICES - {"dashboard"}


# --- structure ---------------------------------------------------------------------------------


def test_services_and_named_volumes(model):
    assert set(model["services"]) == SERVICES
    assert VOLUMES <= set(model["volumes"])
    services = model["services"]
    expected = {("postgres", "pgdata", "/var/lib/postgresql/data"),
                ("mlflow", "mlartifacts", "/mlartifacts"),
                ("worker", "mspe-home", "/data/mspe")}
    for name, volume, target in expected:
        assert ("volume", volume, target) in mounts(services[name], model), name


def test_healthchecks_gate_the_start_order(model):
    services = model["services"]
    pg_check = " ".join(services["postgres"]["healthcheck"]["test"])
    # TCP (-h): the image's init-time server listens on the socket only.
    assert "pg_isready" in pg_check and "-h 127.0.0.1" in pg_check
    assert "/health" in " ".join(services["mlflow"]["healthcheck"]["test"])
    assert services["mlflow"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    worker_deps = services["worker"]["depends_on"]
    assert {name: dep["condition"] for name, dep in worker_deps.items()} == {
        "storage-proxy": "service_healthy", "mlflow": "service_healthy"}
    proxy = services["storage-proxy"]
    assert proxy["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "13000" in " ".join(proxy["healthcheck"]["test"])


def test_ports_are_bound_to_loopback_by_default(model):
    published = {name: ports(svc) for name, svc in model["services"].items()}
    assert ("127.0.0.1", "5000", "5000") in published["mlflow"]
    assert published["worker"] == []
    for name, bindings in published.items():
        for host_ip, _, target in bindings:
            assert host_ip == "127.0.0.1", f"{name}: port {target} is not bound to 127.0.0.1"


def test_ports_can_be_exposed_on_purpose(tmp_path):
    exposed = load_compose(tmp_path, {"MLFLOW_BIND": "10.0.0.5", "MLFLOW_PORT": "5500",
                                      "STORAGE_PROXY_BIND": "10.0.0.5"})
    assert ports(exposed["services"]["mlflow"]) == [("10.0.0.5", "5500", "5000")]
    assert ports(exposed["services"]["storage-proxy"]) == [("10.0.0.5", "13000", "13000")]


def test_worker_runs_the_sweep_on_a_gpu(model):
    worker = model["services"]["worker"]
    argv = command(worker)
    assert argv[:3] == ["python", "-m", "mspe_sweep.run"]
    assert {"study=zinc", "storage=grpc", "tracking=server"} <= set(argv)
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert len(devices) == 1
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert str(devices[0]["count"]) == "1"
    env = worker["environment"]
    assert env["MSPE_HOME"] == "/data/mspe"
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert env["MSPE_STORAGE_URL"] == "grpc://storage-proxy:13000"
    assert "compose-test-pw" not in json.dumps(worker)  # the proxy holds the password
    assert "container_name" not in worker  # a fixed name would break --scale


def test_storage_proxy_stands_between_the_workers_and_postgres(model):
    from mspe_sweep.storage_proxy import parse_args

    proxy = model["services"]["storage-proxy"]
    argv = command(proxy)
    assert argv[:3] == ["python", "-m", "mspe_sweep.storage_proxy"]
    settings, driver = parse_args(argv[3:])  # every key exists and is valid
    assert driver.storage.backend == "postgres" and settings.host == "0.0.0.0"
    worker_url = model["services"]["worker"]["environment"]["MSPE_STORAGE_URL"]
    assert worker_url == f"grpc://storage-proxy:{settings.port}"
    assert [target for _, _, target in ports(proxy)] == [str(settings.port)]
    assert proxy["environment"]["MSPE_STORAGE_URL"] == DATABASE_URL  # not on the command line
    assert "deploy" not in proxy  # no GPU
    assert proxy["image"] == model["services"]["worker"]["image"]  # the same Optuna both ends


def test_mlflow_server_serves_artifacts_with_security_middleware(model):
    mlflow = model["services"]["mlflow"]
    argv = command(mlflow)
    assert argv[:2] == ["mlflow", "server"]
    assert flag(argv, "--serve-artifacts") == ""
    assert flag(argv, "--artifacts-destination") == "/mlartifacts"
    assert int(flag(argv, "--workers")) >= 1
    # Workers call http://mlflow:5000: the Host header the middleware must accept.
    assert "mlflow:5000" in flag(argv, "--allowed-hosts").split(",")
    assert "*" not in flag(argv, "--allowed-hosts").split(",")
    assert flag(argv, "--cors-allowed-origins") not in (None, "", "*")
    assert flag(argv, "--x-frame-options") in ("SAMEORIGIN", "DENY")
    assert flag(argv, "--disable-security-middleware") is None
    assert flag(argv, "--backend-store-uri") is None  # from the environment: not in `ps`
    store = mlflow["environment"]["MLFLOW_BACKEND_STORE_URI"]
    optuna_db = model["services"]["storage-proxy"]["environment"]["MSPE_STORAGE_URL"].rsplit(
        "/", 1)[1]
    # Optuna and MLflow both keep an `alembic_version` table: they need separate databases.
    assert store.startswith("postgresql+psycopg://") and store.rsplit("/", 1)[1] != optuna_db


@pytest.mark.slow  # importing mlflow's CLI takes seconds
def test_mlflow_flags_exist_in_the_installed_mlflow(model):
    from mlflow.cli import server

    known = {opt for param in server.params for opt in param.opts}
    used = {arg.partition("=")[0] for arg in command(model["services"]["mlflow"])
            if arg.startswith("--")}
    assert used <= known, f"unknown mlflow server options: {sorted(used - known)}"


def test_postgres_init_creates_the_mlflow_database(model):
    postgres = model["services"]["postgres"]
    init = [(source, target) for kind, source, target in mounts(postgres, model)
            if target.startswith("/docker-entrypoint-initdb.d/")]
    assert len(init) == 1
    script = Path(init[0][0])
    script = script if script.is_absolute() else REPO / script
    store_db = model["services"]["mlflow"]["environment"]["MLFLOW_BACKEND_STORE_URI"]
    sql = re.sub(r"--[^\n]*", "", script.read_text())
    assert f"CREATE DATABASE {store_db.rsplit('/', 1)[1]};" in sql


def test_dockerfile_stages_match_the_compose_targets(model):
    dockerfile = (REPO / "Dockerfile").read_text()
    stages = set(re.findall(r"^FROM\s+\S+\s+AS\s+(\w+)", dockerfile, re.MULTILINE | re.IGNORECASE))
    targets = {svc["build"]["target"] for svc in model["services"].values() if "build" in svc}
    assert targets == {"worker", "mlflow", "dashboard"} and targets <= stages
    assert re.search(r"^COPY \. \.$", dockerfile, re.MULTILINE)
    assert "pip install --no-deps -e ." in dockerfile


def test_mlflow_image_matches_the_client_version():
    import mlflow

    pinned = re.search(r"^ARG MLFLOW_VERSION=(\S+)$", (REPO / "Dockerfile").read_text(),
                       re.MULTILINE).group(1)
    assert pinned.split(".")[:2] == mlflow.__version__.split(".")[:2]


def test_dockerignore_keeps_secrets_and_state_out_of_the_image():
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()}
    assert {".env", ".git", ".venv", "mspe_home"} <= ignored
    assert not {"configs", "studies", "mspe_sweep"} & ignored


def test_env_example_documents_every_variable_without_secrets():
    text = COMPOSE_FILE.read_text()
    used = {m.group(1) or m.group(4) for m in _VAR.finditer(text) if m.group(0) != "$$"}
    example = dict(line.split("=", 1) for line in (REPO / ".env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    assert used <= set(example), f"missing from .env.example: {sorted(used - set(example))}"
    assert example["POSTGRES_PASSWORD"] == "change-me"


# --- the services' commands, outside Docker --------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _replace_flags(argv: list[str], values: dict[str, str]) -> list[str]:
    out = [arg for arg in argv if arg.partition("=")[0] not in values]
    return out + [f"{name}={value}" for name, value in values.items()]


def _with_schema(url: str, schema: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}options={quote(f'-csearch_path={schema}')}"


@pytest.fixture
def pg_schemas(postgres_url):
    """Two fresh schemas in the test database (CI's user may not CREATE DATABASE); dropped."""
    import psycopg

    tag = uuid.uuid4().hex[:8]
    names = {"optuna": f"e2e_{tag}_optuna", "mlflow": f"e2e_{tag}_mlflow"}
    conninfo = postgres_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for name in names.values():
            conn.execute(f'CREATE SCHEMA "{name}"')
    yield {key: _with_schema(postgres_url, name) for key, name in names.items()}
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for name in names.values():
            conn.execute(f'DROP SCHEMA "{name}" CASCADE')


@pytest.fixture
def compose_mlflow_server(model, pg_schemas, tmp_path):
    """The mlflow service's command on a free loopback port, its store in PostgreSQL."""
    service = model["services"]["mlflow"]
    port = _free_port()
    argv = _replace_flags(command(service)[1:], {
        "--host": "127.0.0.1", "--port": str(port), "--workers": "1",
        "--artifacts-destination": str(tmp_path / "mlartifacts")})
    env = {**os.environ, **service["environment"],
           "MLFLOW_BACKEND_STORE_URI": pg_schemas["mlflow"]}
    log_path = tmp_path / "mlflow-server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "mlflow", *argv], env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    try:
        while True:
            try:
                if requests.get(f"{uri}/health", timeout=1).ok:
                    break
            except requests.RequestException:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start:\n{log_path.read_text()[-4000:]}")
            time.sleep(0.5)
        yield uri, tmp_path / "mlartifacts"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture
def compose_storage_proxy(model, pg_schemas, tmp_path):
    """The storage-proxy service's command on a free loopback port, in front of the test
    database; returns the address the worker uses instead of grpc://storage-proxy:13000."""
    service = model["services"]["storage-proxy"]
    port = _free_port()
    argv = [arg for arg in command(service)[1:] if not arg.startswith("proxy.")]
    argv += ["proxy.host=127.0.0.1", f"proxy.port={port}"]
    env = {**os.environ, **service["environment"], "MSPE_STORAGE_URL": pg_schemas["optuna"]}
    log_path = tmp_path / "storage-proxy.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, *argv], env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    try:
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"storage proxy did not start:\n{log_path.read_text()[-4000:]}")
            time.sleep(0.3)
        yield f"grpc://127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)


@pytest.mark.slow
@pytest.mark.postgres
def test_compose_commands_run_a_study_outside_docker(model, compose_mlflow_server, pg_schemas,
                                                     compose_storage_proxy, mspe_home, tmp_path):
    import optuna
    from mlflow.tracking import MlflowClient

    uri, artifacts_dir = compose_mlflow_server
    api = f"{uri}/api/2.0/mlflow/experiments/search?max_results=1"
    # The security middleware is on, with the compose file's Host allow-list.
    assert requests.get(api, headers={"Host": "mlflow:5000"}, timeout=10).status_code == 200
    assert requests.get(api, headers={"Host": "evil.example:5000"}, timeout=10).status_code == 403
    assert requests.get(uri, timeout=10).headers.get("X-Frame-Options") == "SAMEORIGIN"

    name = f"compose-e2e-{uuid.uuid4().hex[:6]}"
    study_file = tmp_path / f"{name}.yaml"
    study_file.write_text(re.sub(r"^name: .*$", f"name: {name}", TINY_STUDY.read_text(),
                                 flags=re.MULTILINE))
    worker = model["services"]["worker"]
    argv = [f"study={study_file}" if arg.startswith("study=") else arg
            for arg in command(worker)[1:]]
    argv.append("study.n_trials=2")
    env = {**os.environ, **worker["environment"], "MSPE_HOME": str(mspe_home),
           "MSPE_STORAGE_URL": compose_storage_proxy, "MLFLOW_TRACKING_URI": uri}
    done = subprocess.run([sys.executable, *argv], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=WORKER_TIMEOUT_S)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "compose-test-pw" not in done.stdout + done.stderr

    study = optuna.load_study(study_name=name, storage=pg_schemas["optuna"])
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(name)
    assert experiment is not None and experiment.artifact_location.startswith("mlflow-artifacts:")
    runs = {run.info.run_name: run for run in client.search_runs([experiment.experiment_id])}
    assert {"trial-0", "trial-1"} <= set(runs)
    for trial in study.trials:
        run = runs[f"trial-{trial.number}"]
        assert run.info.status == "FINISHED"
        assert float(run.data.params["training.optimizer.lr"]) == pytest.approx(
            trial.params["training.optimizer.lr"])
        assert run.data.metrics["best/val/mae"] == pytest.approx(trial.value)
        assert "compose-test-pw" not in json.dumps(run.data.params)
    # Artifacts went over HTTP to the server's --artifacts-destination.
    assert any(path.is_file() for path in artifacts_dir.rglob("*"))


@pytest.mark.slow
@pytest.mark.postgres
def test_dashboard_command_serves_the_storage(model, pg_schemas, tmp_path):
    pytest.importorskip("optuna_dashboard", reason="optuna-dashboard is not installed here "
                        "(the dashboard image installs it)")
    import optuna

    optuna.create_study(study_name="dash", storage=pg_schemas["optuna"])
    service = model["services"]["dashboard"]
    port = _free_port()
    script = command(service)[-1].replace("--host 0.0.0.0", "--host 127.0.0.1").replace(
        "--port 8080", f"--port {port}")
    env = {**os.environ, **service["environment"], "MSPE_STORAGE_URL": pg_schemas["optuna"]}
    proc = subprocess.Popen(["sh", "-c", script], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                reply = requests.get(f"http://127.0.0.1:{port}/api/studies", timeout=2)
                break
            except requests.RequestException:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.5)
        assert "dash" in reply.text
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
