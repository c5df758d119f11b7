"""Per-epoch metrics from a real ``Trainer.fit``, final states and artifacts of trial runs."""

from __future__ import annotations

import mlflow
import pytest
import torch
from _tracking_helpers import BASE_YAML, SPEC, fit, steps
from torch import nn

from mspe_sweep.training import Callback, Trainer

EPOCH_KEYS = {"train/loss", "train/mae", "train/mse", "train/rmse", "lr", "epoch_seconds",
              "graphs_per_second", "val/loss", "val/mae", "val/mse", "val/rmse"}


def open_trial(backend, study_name, number=0):
    tracker = backend.build()
    tracker.start_study(study_name, None, SPEC, BASE_YAML)
    return tracker, tracker.start_trial(number, {"training.optimizer.lr": 0.01}, [], [], {})


def test_callback_logs_one_batch_per_epoch_with_step_epoch(backend, study_name):
    tracker, run = open_trial(backend, study_name)
    calls = []
    original = tracker.client.log_batch
    tracker.client.log_batch = lambda *a, **kw: (calls.append(kw), original(*a, **kw))[1]
    _, history = fit([run.callback()])
    assert len([c for c in calls if c.get("metrics")]) == 2
    client = backend.client
    assert set(client.get_run(run.run_id).data.metrics) == EPOCH_KEYS
    assert steps(client, run.run_id, "val/mae") == list(zip([1, 2], history["val/mae"]))
    assert [s for s, _ in steps(client, run.run_id, "graphs_per_second")] == [1, 2]
    assert steps(client, run.run_id, "lr") == list(zip([1, 2], history["train/lr"]))


def test_resumed_trial_backfills_history_without_duplicates(backend, study_name, tmp_path):
    fit([], epochs=2, checkpoint_dir=tmp_path)
    checkpoint = torch.load(tmp_path / "last.pt", weights_only=True)
    _, run = open_trial(backend, study_name, number=1)
    run.log_history(checkpoint["history"])
    _, history = fit([run.callback()], epochs=4, checkpoint_dir=tmp_path,
                     resume_from=tmp_path / "last.pt")
    got = steps(backend.client, run.run_id, "val/mae")
    assert got == list(zip([1, 2, 3, 4], history["val/mae"]))
    assert [s for s, _ in steps(backend.client, run.run_id, "graphs_per_second")] == [1, 2, 3, 4]


class Prune(Callback):
    def on_eval_epoch_end(self, trainer, epoch, metrics):
        if epoch == 2:
            raise RuntimeError("pruned")


def test_epoch_ended_by_a_raising_callback_is_logged_at_finish(backend, study_name):
    _, run = open_trial(backend, study_name)
    with pytest.raises(RuntimeError):
        fit([Prune(), run.callback()], epochs=3)
    run.finish("PRUNED", value=0.9, reason="pruned at epoch 2")
    client = backend.client
    assert [s for s, _ in steps(client, run.run_id, "val/mae")] == [1, 2]
    assert [s for s, _ in steps(client, run.run_id, "train/loss")] == [1, 2]
    got = client.get_run(run.run_id)
    assert got.info.status == "KILLED" and got.data.tags["mspe.state"] == "PRUNED"
    assert got.data.tags["mspe.reason"] == "pruned at epoch 2"


class FailAfterTraining(Callback):
    def on_train_epoch_end(self, trainer, epoch, metrics):
        if epoch == 2:
            raise RuntimeError("failed before validation")


def test_epoch_ended_before_its_validation_logs_train_metrics_only(backend, study_name):
    _, run = open_trial(backend, study_name)
    with pytest.raises(RuntimeError):
        fit([run.callback(), FailAfterTraining()], epochs=3)
    run.finish("FAIL", reason="failed before validation")
    client = backend.client
    assert [s for s, _ in steps(client, run.run_id, "train/loss")] == [1, 2]
    assert [s for s, _ in steps(client, run.run_id, "val/mae")] == [1]


def test_logger_holds_no_trainer(backend, study_name):
    _, run = open_trial(backend, study_name)
    with pytest.raises(RuntimeError):
        fit([Prune(), run.callback()], epochs=3)
    held = run.open_epoch
    assert held.epoch == 2 and set(held.val) == {"loss", "mae", "mse", "rmse"}
    assert not any(isinstance(v, Trainer) for v in (*vars(held).values(), *vars(run).values()))


def test_final_states_metrics_and_artifacts(backend, study_name, tmp_path):
    tracker = backend.build()
    tracker.start_study(study_name, None, SPEC, BASE_YAML)
    config, best = tmp_path / "resolved.yaml", tmp_path / "best.pt"
    config.write_text(BASE_YAML)
    torch.save({"model": nn.Linear(4, 1).state_dict(), "blob": torch.randn(5000)}, best)
    artifacts = {"config.yaml": config, "best.pt": best}
    runs = {state: tracker.start_trial(n, {}, [], [], {})
            for n, state in enumerate(["COMPLETE", "PRUNED", "FAIL", "INTERRUPTED"])}
    runs["COMPLETE"].finish("COMPLETE", value=0.25, test_metric={"test/mae": 0.3, "rmse": 0.4},
                            best_epoch=7, artifacts=artifacts)
    runs["PRUNED"].finish("PRUNED", value=0.9, artifacts=artifacts)
    runs["FAIL"].finish("FAIL", reason="x" * 6000, artifacts=artifacts)
    runs["INTERRUPTED"].finish("INTERRUPTED")
    runs["COMPLETE"].finish("FAIL", reason="second call is ignored")

    client = backend.client
    got = {state: client.get_run(run.run_id) for state, run in runs.items()}
    assert {s: r.info.status for s, r in got.items()} == {
        "COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED", "INTERRUPTED": "KILLED"}
    assert {s: r.data.tags["mspe.state"] for s, r in got.items()} == {s: s for s in got}
    assert got["COMPLETE"].data.metrics == {"best/val/mae": 0.25, "best/test/mae": 0.3,
                                            "best/test/rmse": 0.4, "best/epoch": 7.0}
    assert len(got["FAIL"].data.tags["mspe.fail_reason"]) == 5000
    listing = {s: sorted(a.path for a in client.list_artifacts(r.info.run_id))
               for s, r in got.items()}
    assert listing["COMPLETE"] == ["checkpoints", "config.yaml"]
    assert listing["PRUNED"] == listing["FAIL"] == ["config.yaml"]
    assert listing["INTERRUPTED"] == []

    run_id = runs["COMPLETE"].run_id
    fetched = client.download_artifacts(run_id, "checkpoints/best.pt", str(tmp_path / "a"))
    assert open(fetched, "rb").read() == best.read_bytes()
    fetched = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="checkpoints/best.pt", dst_path=str(tmp_path / "b"),
        tracking_uri=backend.tracking_uri)
    assert open(fetched, "rb").read() == best.read_bytes()
    assert torch.load(fetched, weights_only=True)["blob"].shape == (5000,)
    config_path = client.download_artifacts(run_id, "config.yaml", str(tmp_path / "c"))
    assert open(config_path).read() == BASE_YAML
