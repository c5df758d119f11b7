"""The MLflow UI shows a finished study as a person sees it: headless Chromium, driven through
chromedriver's W3C WebDriver HTTP API with plain ``urllib`` (no selenium dependency).

A plain ``chromium --dump-dom`` renders the runs table, but nested runs are folded under the
study's parent run, so the trial rows only appear after a click on the parent's expander.
The screenshot is kept under ``tmp_path`` and copied to ``$MSPE_UI_SCREENSHOT_DIR`` if set.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import optuna
import pytest
from _tracking_helpers import free_port
from mlflow.tracking import MlflowClient

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
TINY_STUDY = Path(__file__).resolve().parents[1] / "data" / "tiny_study.yaml"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--disable-sync",
                  "--disable-quic", "--window-size=1600,1000"]
# The expander button of a parent run in the "Run Name" cell of the runs table.
EXPANDER = 'button[data-component-id*="runnamecellrenderer"]'
PAGE_TIMEOUT_S = 90

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()),
                       reason="needs /usr/bin/chromium and /usr/bin/chromedriver "
                              "(apt-get install chromium chromium-driver)"),
]


class WebDriver:
    """A minimal W3C WebDriver client for one chromedriver session."""

    def __init__(self, port: int, user_data_dir: Path) -> None:
        self.base = f"http://127.0.0.1:{port}"
        args = [*CHROMIUM_FLAGS, f"--user-data-dir={user_data_dir}"]
        caps = {"browserName": "chrome",
                "goog:chromeOptions": {"binary": str(CHROMIUM), "args": args}}
        reply = self._call("POST", "/session", {"capabilities": {"alwaysMatch": caps}})
        self.session = f"/session/{reply['sessionId']}"

    def _call(self, method: str, path: str, body: dict | None = None):
        data = json.dumps(body if body is not None else {}).encode() if method == "POST" else None
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.loads(response.read())["value"]
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"webdriver {method} {path}: {exc.read()[:500]!r}") from None

    def get(self, url: str) -> None:
        self._call("POST", f"{self.session}/url", {"url": url})

    def source(self) -> str:
        return self._call("GET", f"{self.session}/source")

    def click(self, css: str) -> bool:
        """Click the first element matching ``css``; False when there is none yet."""
        found = self._call("POST", f"{self.session}/elements",
                           {"using": "css selector", "value": css})
        if not found:
            return False
        element = next(iter(found[0].values()))
        self._call("POST", f"{self.session}/element/{element}/click")
        return True

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self._call("GET", f"{self.session}/screenshot")))

    def quit(self) -> None:
        self._call("DELETE", self.session)


@pytest.fixture
def browser(tmp_path):
    port = free_port()
    log = open(tmp_path / "chromedriver.log", "wb")
    driver_proc = subprocess.Popen([str(CHROMEDRIVER), f"--port={port}"], stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=1)
            break
        except OSError:
            if driver_proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"chromedriver did not start: {(tmp_path / 'chromedriver.log')}")
            time.sleep(0.2)
    driver = None
    try:
        driver = WebDriver(port, tmp_path / "chromium-profile")
        yield driver
    finally:
        if driver is not None:
            driver.quit()
        os.killpg(driver_proc.pid, signal.SIGTERM)
        driver_proc.wait(timeout=15)
        log.close()


@pytest.fixture
def finished_study(mlflow_env, mspe_home, tmp_path):
    """A 3-trial study run by the sweep CLI against the session's server: (name, study)."""
    name = f"ui-{uuid.uuid4().hex[:6]}"
    study_file = tmp_path / f"{name}.yaml"
    study_file.write_text(re.sub(r"^name: .*$", f"name: {name}", TINY_STUDY.read_text(),
                                 flags=re.MULTILINE))
    done = subprocess.run(
        [sys.executable, "-m", "mspe_sweep.run", f"study={study_file}", "tracking=server",
         f"tracking.uri={mlflow_env.server_uri}"],
        env={**os.environ, "MSPE_HOME": str(mspe_home)}, cwd=tmp_path, capture_output=True,
        text=True, timeout=420)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{mspe_home / 'optuna.db'}")
    return name, study


def test_runs_table_shows_the_trials_of_a_finished_study(mlflow_env, finished_study, browser,
                                                         tmp_path):
    name, study = finished_study
    client = MlflowClient(tracking_uri=mlflow_env.server_uri)
    experiment = client.get_experiment_by_name(name)
    trial_names = [f"trial-{t.number}" for t in study.trials]
    assert len(trial_names) == 3

    browser.get(f"{mlflow_env.server_uri}/#/experiments/{experiment.experiment_id}/runs")
    deadline = time.monotonic() + PAGE_TIMEOUT_S
    while not browser.click(EXPANDER):  # the table rendered the parent run, folded
        assert time.monotonic() < deadline, "the runs table never showed an expandable run"
        time.sleep(0.5)
    while not all(f">{trial}<" in (page := browser.source()) for trial in trial_names):
        assert time.monotonic() < deadline, f"trial rows never appeared: {trial_names}"
        time.sleep(0.5)
    screenshot = tmp_path / "mlflow-runs.png"
    browser.screenshot(screenshot)
    if os.environ.get("MSPE_UI_SCREENSHOT_DIR"):
        target = Path(os.environ["MSPE_UI_SCREENSHOT_DIR"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, target / screenshot.name)

    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f">{name}<" in page  # the parent run, named after the study
    assert "Run Name" in page

    runs = {run.info.run_name: run for run in client.search_runs([experiment.experiment_id])}
    parent = runs[name]
    for trial in study.trials:
        run = runs[f"trial-{trial.number}"]
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.params["pe"] == trial.params["pe"]
        assert float(run.data.params["training.optimizer.lr"]) == pytest.approx(
            trial.params["training.optimizer.lr"])
        assert run.data.params["training.epochs"] == "2"
        history = client.get_metric_history(run.info.run_id, "val/mae")
        assert [m.step for m in history] == [1, 2]
        assert run.data.metrics["best/val/mae"] == pytest.approx(trial.value)
