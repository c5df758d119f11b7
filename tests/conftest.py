"""Shared test set-up: markers, CPU thread limits, and a private MSPE_HOME per test."""

from __future__ import annotations

import os

import pytest
import torch
from process_state import preserved_process_state

# Tests run on a 2-core machine next to other processes: one intra-op thread keeps timings
# stable and makes CPU runs bit-reproducible.
torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA (no GPU on this machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def restore_process_state():
    """Undo what an in-process CLI run changes process-wide (logging, torch determinism), so
    every test sees the process as pytest set it up."""
    with preserved_process_state():
        yield


@pytest.fixture(autouse=True)
def mspe_home(tmp_path, monkeypatch):
    """Every test gets its own MSPE_HOME so no state leaks between tests or into the repo."""
    home = tmp_path / "mspe_home"
    monkeypatch.setenv("MSPE_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def postgres_url():
    """URL of the PostgreSQL server `.ci/run` starts; tests using it are marked `postgres`."""
    url = os.environ.get("MSPE_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("CI"):
            pytest.fail("MSPE_TEST_POSTGRES_URL is not set: .ci/run must start PostgreSQL")
        pytest.skip("no PostgreSQL: set MSPE_TEST_POSTGRES_URL (.ci/run starts a server)")
    return url
