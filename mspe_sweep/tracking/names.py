"""Pure helpers that turn sweep values into MLflow params, tags and metric names.

Nothing here talks to MLflow; everything is a plain function of its arguments (except
:func:`git_commit`, which asks ``git`` once per process).
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

if TYPE_CHECKING:
    from mlflow.entities import DatasetInput

    from mspe_sweep.tracking.base import DataRecord

# Limits of MLflow 3.17 (mlflow/utils/validation.py).
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000
MAX_PARAMS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000
FAIL_REASON_CHARS = 5000

# Keys of the Trainer's train epoch dict that are not "train/<k>" metrics in MLflow.
TRAIN_KEY_NAMES = {
    "lr": "lr",
    "epoch_seconds": "epoch_seconds",
    "samples_per_second": "graphs_per_second",
}
_BAD_KEY_CHARS = re.compile(r"[^A-Za-z0-9_\-./: ]")
_REPO_ROOT = Path(__file__).resolve().parents[2]


def now_ms() -> int:
    """Wall-clock time in milliseconds, MLflow's timestamp unit."""
    return int(time.time() * 1000)


def clean_key(key: str) -> str:
    """A param/metric/tag key MLflow accepts (other characters become ``_``)."""
    return _BAD_KEY_CHARS.sub("_", key)


def truncate(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, marked with ``...`` when cut."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def param_value(value: Any) -> str:
    """A param value as MLflow stores it: strings as is, other values as JSON (or ``str``)."""
    if isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, sort_keys=True)
        except (TypeError, ValueError):
            text = str(value)
    return truncate(text, MAX_PARAM_VALUE)


def parse_override(override: str) -> tuple[str, str] | None:
    """``"training.optimizer.lr=0.001"`` -> ``("training.optimizer.lr", "0.001")``.

    Hydra's ``+``/``++`` prefixes are dropped; a deletion (``~key``) or a string without ``=``
    gives None.
    """
    key, sep, value = override.partition("=")
    if not sep or key.startswith("~"):
        return None
    return clean_key(key.lstrip("+")), value


def trial_params(params: Mapping[str, Any], fixed_overrides: Iterable[str]) -> dict[str, str]:
    """Params of a trial run: the fixed overrides under their own key, then the sampled params.

    A fixed override is logged under its config key (``training.epochs``), not under a
    ``fixed.`` prefix, so a key is one column in the MLflow UI whether a study samples or fixes
    it. A sampled param wins over a fixed override of the same key (the sampled value is the
    one the trial ran with, as the sampled overrides come last).
    """
    out: dict[str, str] = {}
    for override in fixed_overrides:
        parsed = parse_override(str(override))
        if parsed is not None:
            out[parsed[0]] = truncate(parsed[1], MAX_PARAM_VALUE)
    for key, value in params.items():
        out[clean_key(str(key))] = param_value(value)
    return out


# Spec fields that belong to one run of the command (`study.n_trials=...` may grow the budget
# on resume, `enqueue` may gain entries); MLflow params are immutable, so they stay out of the
# parent's params. The current values are in the parent's study_spec.json artifact.
PER_RUN_KEYS = ("n_trials", "timeout", "trial_timeout", "epoch_timeout", "path", "enqueue")


def study_params(spec: Mapping[str, Any]) -> dict[str, str]:
    """Flattened parent-run params from a study spec dict (``StudySpec.to_dict()``).

    Nested dicts become dotted ``study.<a>.<b>`` keys; the search space (``params``: a list of
    dicts with ``key`` and ``grammar``) becomes ``space.<key>`` = the grammar string (plus the
    ``when`` condition if any); other lists are JSON strings.
    """
    out: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for key, item in value.items():
                walk(f"{prefix}.{key}", item)
        elif value is not None:
            out[clean_key(prefix)] = param_value(value)

    for key, value in spec.items():
        if key in PER_RUN_KEYS:
            continue
        if key == "params" and isinstance(value, list):
            for item in value:
                if isinstance(item, Mapping) and "key" in item:
                    text = str(item.get("grammar", item.get("distribution")))
                    if item.get("when"):
                        text += f" when {json.dumps(item['when'], sort_keys=True)}"
                    out[clean_key(f"space.{item['key']}")] = truncate(text, MAX_PARAM_VALUE)
        else:
            walk(f"study.{key}", value)
    return out


def epoch_metrics(train: Mapping[str, float], val: Mapping[str, float]) -> dict[str, float]:
    """MLflow metric names for one epoch from the Trainer's bare-key epoch dicts.

    ``loss``/metrics -> ``train/<k>`` and ``val/<k>``; ``lr``, ``epoch_seconds`` stay bare and
    ``samples_per_second`` becomes ``graphs_per_second``.
    """
    out = {}
    for key, value in train.items():
        out[TRAIN_KEY_NAMES.get(key, f"train/{key}")] = value
    out.update({f"val/{key}": value for key, value in val.items()})
    return {clean_key(k): float(v) for k, v in out.items() if _is_number(v)}


def history_metrics(history: Mapping[str, list]) -> list[tuple[str, float, int]]:
    """``(name, value, epoch)`` triples for a Trainer history (``epoch``, ``train/<k>``, ...)."""
    epochs = list(history.get("epoch", []))
    out = []
    for key, values in history.items():
        if key == "epoch":
            continue
        stage, _, bare = key.partition("/")
        name = TRAIN_KEY_NAMES.get(bare, key) if stage == "train" else key
        for epoch, value in zip(epochs, values):
            if _is_number(value):
                out.append((clean_key(name), float(value), int(epoch)))
    return out


def final_metrics(metric: str, value: float | None, test_metric: Mapping[str, float] | None,
                  best_epoch: int | None) -> dict[str, float]:
    """Final metrics of a trial: ``best/<metric>`` (e.g. ``best/val/mae``), ``best/test/<k>``
    for each test metric (given as ``test/mae`` or ``mae``), and ``best/epoch``."""
    out: dict[str, float] = {}
    if value is not None and _is_number(value):
        out[f"best/{metric}"] = float(value)
    for key, item in (test_metric or {}).items():
        if item is not None and _is_number(item):
            bare = key.split("/", 1)[1] if key.startswith("test/") else key
            out[f"best/test/{bare}"] = float(item)
    if best_epoch is not None:
        out["best/epoch"] = float(best_epoch)
    return {clean_key(k): v for k, v in out.items()}


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The checkout's ``HEAD`` commit, else ``$MSPE_GIT_COMMIT`` (set in Docker images, which
    carry no ``.git``), else None."""
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=_REPO_ROOT, capture_output=True,
                              text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    if done.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}", commit):
        return commit
    return os.environ.get("MSPE_GIT_COMMIT") or None


def dataset_input(data: DataRecord) -> DatasetInput:
    """MLflow's dataset input for a trial's data: what fills the runs table's Dataset column.

    The fingerprint is the digest (runs on the same data share it); the split sizes and the
    source line form the profile shown in the run's Inputs section.
    """
    from mlflow.entities import Dataset, DatasetInput, InputTag

    profile = json.dumps({"splits": dict(data.sizes), "source": data.source}, sort_keys=True)
    dataset = Dataset(name=data.name, digest=data.fingerprint[:36], source_type="local",
                      source=json.dumps({"mspe_sweep.dataset": data.name}), profile=profile)
    return DatasetInput(dataset, tags=[InputTag("mlflow.data.context", "training")])
