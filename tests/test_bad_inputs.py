"""The front door: every bad input to the five commands is exit 2 and one `error:` line
naming the key or file, with no traceback, no dataset built, no run directory and no study
written. Timing: the error comes well before a cache-hit dataset load would have finished."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import pytest
import torch
import yaml

from mspe_sweep import confirm, evaluate, pipeline, report, run, train
from mspe_sweep.config import compose_run_config
from mspe_sweep.training.checkpoint import FORMAT_VERSION

TINY_STUDY = Path(__file__).resolve().parent / "data" / "tiny_study.yaml"
COMMANDS = {"train": train.main, "run": run.main, "evaluate": evaluate.main,
            "report": report.main, "confirm": confirm.main}


def _study_file(directory: Path, filename: str, text: str | bytes | None = None, **changes) -> str:
    """A study file: the tiny study with top-level changes, or the given raw content."""
    path = directory / f"{filename}.yaml"
    if text is None:
        data = {**yaml.safe_load(TINY_STUDY.read_text()), **changes}
        text = yaml.safe_dump(data, sort_keys=False)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(path)


def _checkpoint(directory: Path, config: str) -> str:
    path = directory / "bad.pt"
    torch.save({"config": config, "model": {}, "epoch": 1, "format_version": FORMAT_VERSION}, path)
    return str(path)


def _tiny_params(**params) -> dict:
    return {**yaml.safe_load(TINY_STUDY.read_text())["params"], **params}


# (command, args(tmp_path) -> list[str], fragments the error line must contain)
CASES = [
    # --- train --------------------------------------------------------------------------
    ("train", lambda d: ["training.epochs=0"], ["training.epochs=0"]),
    ("train", lambda d: ["training.batch_size=-4"], ["training.batch_size=-4"]),
    ("train", lambda d: ["training.optimizer.lr=-1"], ["training.optimizer.lr"]),
    ("train", lambda d: ["training.optimizer.lr=nan"], ["training.optimizer.lr", "finite"]),
    ("train", lambda d: ["training.optimizer.type=lion"], ["training.optimizer.type", "adamw"]),
    ("train", lambda d: ["training.scheduler.type=cyclic"], ["training.scheduler.type"]),
    ("train", lambda d: ["training.loss=hinge"], ["training.loss", "mae"]),
    ("train", lambda d: ["training.monitor=val/acc"], ["training.monitor", "val/mae"]),
    ("train", lambda d: ["device=tpu"], ["device=tpu"]),
    ("train", lambda d: ["training.optimizer=adam"], ["training.optimizer.type=adam"]),
    ("train", lambda d: ["model=gat"], ["model=gat", "graph_transformer"]),
    ("train", lambda d: ["pe=rwse", "model=5"], ["model=5", "graph_transformer"]),
    ("train", lambda d: ["training.epoch=3"], ["training.epoch"]),
    ("train", lambda d: ["training.epochs=abc"], ["training.epochs"]),
    ("train", lambda d: ["training.epochs"], ["training.epochs", "key=value"]),
    ("train", lambda d: ["pe.dim=0"], ["pe.dim=0"]),
    ("train", lambda d: ["model.heads=3"], ["model.heads=3"]),
    ("train", lambda d: ["dataset.train_size=0"], ["dataset.train_size"]),
    ("train", lambda d: ["training.scheduler.min_lr=1"], ["training.scheduler.min_lr"]),
    ("train", lambda d: [f"resume={d}/none.pt"], ["resume=", "none.pt"]),
    ("train", lambda d: ["--cfg", "hydra"], ["--cfg"]),
    ("train", lambda d: ["--verbose"], ["--verbose"]),
    # --- run ----------------------------------------------------------------------------
    ("run", lambda d: [], ["study=<name>"]),
    ("run", lambda d: ["study=no_such_study"], ["no_such_study"]),
    ("run", lambda d: [f"study={d}/missing.yaml"], ["/missing.yaml:", "no such file"]),
    ("run", lambda d: [f"study={d}"], ["is a directory"]),
    ("run", lambda d: [f"study={_study_file(d, 'y', 'name: [unclosed')}"], ["y.yaml", "YAML"]),
    ("run", lambda d: [f"study={_study_file(d, 'dup', 'name: a' + chr(10) + 'name: b')}"],
     ["dup.yaml", "name"]),
    ("run", lambda d: [f"study={_study_file(d, 'bin', bytes(range(256)))}"], ["bin.yaml"]),
    ("run", lambda d: [f"study={_study_file(d, 'long', name='x' * 600)}"], ["long.yaml", "name"]),
    ("run", lambda d: [f"study={_study_file(d, 'gram', params=_tiny_params(pe='choice(a,'))}"],
     ["gram.yaml", "pe"]),
    ("run", lambda d: [f"study={_study_file(d, 'neg', params=_tiny_params(**{'training.optimizer.lr': 'interval(-1, 1)'}))}"],  # noqa: E501
     ["neg.yaml", "training.optimizer.lr"]),
    ("run", lambda d: [f"study={_study_file(d, 'ok')}", "training.batch_size=-4"],
     ["training.batch_size=-4"]),
    ("run", lambda d: [f"study={_study_file(d, 'ok')}", "training.epochs=0"],
     ["training.epochs=0"]),
    ("run", lambda d: [f"study={_study_file(d, 'ok')}", "training.optimizer=adam"],
     ["training.optimizer.type=adam"]),
    ("run", lambda d: [f"study={_study_file(d, 'ok')}", "storage=postgres",
                       "storage.url=mysql://u:s3cret@db/x"], ["mysql://u:***@db/x"]),
    ("run", lambda d: [f"study={_study_file(d, 'ok')}", "tracking=local",
                       "tracking.uri=http://h:5000"], ["tracking.uri"]),
    ("run", lambda d: [f"study={_study_file(d, 'ok')}", "study.n_trials=0"], ["study.n_trials"]),
    ("run", lambda d: [f"study={_study_file(d, 'ok')}", "workers=0"], ["workers=0"]),
    ("run", lambda d: [f"study={_study_file(d, 'ok')}", "storage.heartbeat_interval=0"],
     ["storage.heartbeat_interval=0", ">= 1"]),
    ("run", lambda d: [f"study={_study_file(d, 'ok')}", "launcher.dry_run=true",
                       "tracking=local", "tracking.uri=http://h:5000"], ["tracking.uri"]),
    ("run", lambda d: [f"study={_study_file(d, 'ok')}", "--cfg", "all"], ["--cfg"]),
    # --- evaluate -----------------------------------------------------------------------
    ("evaluate", lambda d: [], ["checkpoint=<path>"]),
    ("evaluate", lambda d: [f"checkpoint={d}/none.pt"], ["none.pt"]),
    ("evaluate", lambda d: [f"checkpoint={_checkpoint(d, 'training: {epochs: 0}')}",
                            "split=dev"], ["split=dev"]),
    ("evaluate", lambda d: [f"checkpoint={_checkpoint(d, 'training: {epochs: 0}')}"],
     ["bad.pt", "training.epochs=0"]),
    ("evaluate", lambda d: [f"checkpoint={_checkpoint(d, 'training: {optimizer: {lr: -1}}')}"],
     ["bad.pt", "training.optimizer.lr"]),
    ("evaluate", lambda d: [f"checkpoint={_checkpoint(d, 'device: tpu')}"], ["bad.pt", "device"]),
    ("evaluate", lambda d: [f"checkpoint={_checkpoint(d, 'training: {epoch: 3}')}"],
     ["bad.pt", "training.epoch"]),
    ("evaluate", lambda d: [f"checkpoint={_checkpoint(d, 'device: cpu')}", "device=tpu"],
     ["device=tpu"]),
    ("evaluate", lambda d: ["checkpoint=x.pt", "pe=lap"], ["pe=lap"]),
    # --- report -------------------------------------------------------------------------
    ("report", lambda d: [], ["study=<name>"]),
    ("report", lambda d: ["study=zinc_quick", "storage=postgres",
                          "storage.url=mysql://u:s3cret@db/x"], ["mysql://u:***@db/x"]),
    ("report", lambda d: ["study=zinc_quick", "tracking=local", "tracking.uri=ftp://h/x"],
     ["tracking.uri"]),
    ("report", lambda d: ["study=zinc_quick", "top=0"], ["top"]),
    # --- confirm ------------------------------------------------------------------------
    ("confirm", lambda d: [], ["study=<name>"]),
    ("confirm", lambda d: [f"study={_study_file(d, 'ok')}", "confirm.top_k=0"],
     ["confirm.top_k=0", ">= 1"]),
    ("confirm", lambda d: [f"study={_study_file(d, 'ok')}", "confirm.seeds=1"],
     ["confirm.seeds=1", ">= 2"]),
    ("confirm", lambda d: [f"study={_study_file(d, 'ok')}", "confirm.top=3"], ["confirm.top"]),
    ("confirm", lambda d: [f"study={_study_file(d, 'ok')}", "confirm=5"],
     ["confirm=5", "confirm.top_k=5"]),
    ("confirm", lambda d: [f"study={_study_file(d, 'ok')}", "launcher=5"],
     ["launcher=5", "local, slurm"]),
    ("confirm", lambda d: [f"study={_study_file(d, 'ok')}"], ["no study named 'tiny'"]),
    ("confirm", lambda d: [f"study={_study_file(d, 'ok')}", "study.n_trials=9"],
     ["study.n_trials=9", "confirm.seeds"]),
    ("run", lambda d: [f"study={_study_file(d, 'ok')}", "confirm.top_k=2"],
     ["confirm.top_k=2", "mspe_sweep.confirm"]),
]


@pytest.fixture
def no_dataset(monkeypatch):
    """Fails the test if any code path builds a dataset."""
    built = []
    monkeypatch.setattr(pipeline, "get_dataset", lambda *a, **k: built.append(a) or 1 / 0)
    return built


@pytest.mark.parametrize(("command", "make_args", "fragments"), CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_bad_input_is_one_error_line_and_nothing_written(command, make_args, fragments, tmp_path,
                                                          mspe_home, capsys, no_dataset):
    args = make_args(tmp_path)
    capsys.readouterr()
    code = COMMANDS[command](args)
    out, err = capsys.readouterr()
    lines = err.rstrip("\n").splitlines()
    assert code == 2, (args, out, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), (args, err)
    assert "Traceback" not in out + err and "s3cret" not in out + err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert not no_dataset
    assert not (mspe_home / "runs").exists() and not (mspe_home / "optuna.db").exists()


def test_the_table_covers_forty_cases_across_every_command():
    assert len(CASES) >= 40
    assert {case[0] for case in CASES} == set(COMMANDS)


@pytest.mark.slow
def test_errors_come_well_before_a_cache_hit_dataset_load(mspe_home, capsys):
    """Time to the error vs. loading the default offline set from its warm cache, side by side
    in one process (machines are shared and noisy: a ratio, medians of 3 rounds)."""
    cfg = compose_run_config(["dataset=zinc_rdkit"])
    pipeline.build_dataset(cfg).get_splits()  # build the cache once (not timed)

    def cache_hit() -> float:
        start = time.perf_counter()
        pipeline.build_dataset(cfg).get_splits()
        return time.perf_counter() - start

    def to_error(args) -> float:
        start = time.perf_counter()
        assert train.main(args) == 2
        return time.perf_counter() - start

    errors, loads = [], []
    for _ in range(3):
        loads.append(cache_hit())
        errors.append(to_error(["dataset=zinc_rdkit", "training.batch_size=-4"]))
        errors.append(to_error(["dataset=zinc_rdkit", "training.optimizer.lr=nan"]))
    capsys.readouterr()
    ratio = statistics.median(errors) / statistics.median(loads)
    print(f"time to error / cache-hit load = {ratio:.2f}")
    assert ratio < 0.5, (errors, loads)
