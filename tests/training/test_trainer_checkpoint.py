"""Checkpoints: contents, weights_only loading, atomic writes, errors, exact resume."""

from __future__ import annotations

import os

import pytest
import torch
from _training_helpers import regression_loaders, tiny_mlp
from torch import nn

import mspe_sweep.training.checkpoint as checkpoint_module
import mspe_sweep.training.trainer as trainer_module
from mspe_sweep.errors import UserError
from mspe_sweep.training import (
    Callback,
    CheckpointError,
    Trainer,
    get_optimizer,
    get_scheduler,
    read_checkpoint,
    set_seed,
)

REQUIRED_KEYS = {
    "model", "optimizer", "scheduler", "epoch", "global_step", "best_metric", "best_epoch",
    "metrics", "history", "rng", "early_stopping", "scaler", "config", "format_version",
}


def make_trainer(tmp_path, model=None, **kwargs):
    model = model if model is not None else tiny_mlp()
    optimizer = get_optimizer(model, lr=1e-2)
    kwargs.setdefault("progress", False)
    return Trainer(model, optimizer, device="cpu", checkpoint_dir=tmp_path / "ckpt", **kwargs)


def test_fit_writes_last_and_best_loadable_with_weights_only(tmp_path):
    train, val = regression_loaders()
    trainer = make_trainer(tmp_path, config="training:\n  lr: 0.01\n")
    trainer.fit(train, val, epochs=2, early_stopping=5)

    last_path = tmp_path / "ckpt" / "last.pt"
    raw = torch.load(last_path, weights_only=True)  # nothing pickled beyond tensors/primitives
    assert REQUIRED_KEYS <= set(raw)
    ckpt = read_checkpoint(last_path)
    assert ckpt["epoch"] == 2 and ckpt["global_step"] == trainer.global_step
    assert ckpt["config"] == "training:\n  lr: 0.01\n"
    assert ckpt["metrics"] == trainer.last_val_metrics and set(ckpt["metrics"]) >= {"loss", "mae"}
    assert ckpt["history"] == trainer.history and ckpt["history"]["epoch"] == [1, 2]
    assert ckpt["early_stopping"]["patience"] == 5
    best = read_checkpoint(tmp_path / "ckpt" / "best.pt")
    assert best["epoch"] == trainer.best_epoch and best["best_metric"] == trainer.best_metric
    assert not [p for p in os.listdir(tmp_path / "ckpt") if p.endswith(".tmp")]


def test_no_checkpoint_dir_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    train, val = regression_loaders()
    model = tiny_mlp()
    Trainer(model, get_optimizer(model), device="cpu", progress=False).fit(train, val, 1)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("failure", ["torch.save", "os.replace"])
def test_crash_while_writing_keeps_old_checkpoint(tmp_path, monkeypatch, failure):
    trainer = make_trainer(tmp_path)
    path = tmp_path / "ckpt" / "last.pt"
    trainer.epoch = 1
    trainer.save_checkpoint(path)

    def torn_save(obj, handle, *args, **kwargs):
        handle.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("disk full")

    def failing_replace(src, dst):
        raise OSError("killed before rename")

    if failure == "torch.save":
        monkeypatch.setattr(checkpoint_module.torch, "save", torn_save)
    else:
        monkeypatch.setattr(checkpoint_module.os, "replace", failing_replace)
    trainer.epoch = 2
    with pytest.raises(OSError):
        trainer.save_checkpoint(path)
    monkeypatch.undo()

    assert read_checkpoint(path)["epoch"] == 1
    assert sorted(os.listdir(path.parent)) == ["last.pt"]  # no temp file left behind


def test_shape_mismatch_names_key_and_shapes(tmp_path):
    trainer = make_trainer(tmp_path)
    path = trainer.save_checkpoint(tmp_path / "small.pt")
    wide = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.0), nn.Linear(16, 1))
    other = make_trainer(tmp_path, model=wide)
    with pytest.raises(CheckpointError) as info:
        other.load_checkpoint(path)
    message = str(info.value)
    assert str(path) in message and "'0.weight'" in message
    assert "(8, 4)" in message and "(16, 4)" in message
    assert isinstance(info.value, UserError)


def test_corrupt_missing_and_foreign_files(tmp_path):
    trainer = make_trainer(tmp_path)
    good = trainer.save_checkpoint(tmp_path / "good.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a checkpoint at all" * 10)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)

    for path in (truncated, garbage, tmp_path / "missing.pt", foreign):
        with pytest.raises(CheckpointError, match=str(path.name)):
            trainer.load_checkpoint(path)


class StopAt(Callback):
    """Simulates a crash (or a pruner) by raising after ``epoch``'s checkpoints are written."""

    def __init__(self, epoch):
        self.epoch = epoch
        self.last_pt_epoch = None

    def on_eval_epoch_end(self, trainer, epoch, metrics):
        if epoch == self.epoch:
            self.last_pt_epoch = read_checkpoint(trainer.checkpoint_dir / "last.pt")["epoch"]
            raise KeyboardInterrupt("simulated kill")


def _seeded_run(tmp_path, epochs=4, callbacks=(), resume_from=None):
    """Build everything from seed 0 (like a retried worker would) and fit."""
    set_seed(0, deterministic=True)
    train, val = regression_loaders(batch_size=12, shuffle=True)  # sampler draws from torch RNG
    model = tiny_mlp(dropout=0.3)
    optimizer = get_optimizer(model, lr=1e-2)
    scheduler = get_scheduler(optimizer, "cosine_warmup", total_epochs=epochs, warmup_epochs=1,
                              steps_per_epoch=len(train))
    trainer = Trainer(model, optimizer, scheduler, device="cpu", progress=False,
                      checkpoint_dir=tmp_path, callbacks=list(callbacks))
    history = trainer.fit(train, val, epochs, metric_for_best="mae", early_stopping=10,
                          resume_from=resume_from)
    return trainer, history


TIMING_KEYS = {"train/epoch_seconds", "train/samples_per_second"}


def _assert_same_run(a, b):
    (trainer_a, history_a), (trainer_b, history_b) = a, b
    for key, tensor in trainer_a.model.state_dict().items():
        assert torch.equal(tensor, trainer_b.model.state_dict()[key]), key
    assert {k: v for k, v in history_a.items() if k not in TIMING_KEYS} == {
        k: v for k, v in history_b.items() if k not in TIMING_KEYS
    }
    assert (trainer_a.best_metric, trainer_a.best_epoch, trainer_a.global_step) == (
        trainer_b.best_metric, trainer_b.best_epoch, trainer_b.global_step
    )


def test_resume_is_bit_exact(tmp_path, restore_determinism):
    full = _seeded_run(tmp_path / "full")

    stop = StopAt(2)
    with pytest.raises(KeyboardInterrupt):
        _seeded_run(tmp_path / "resumed", callbacks=[stop])
    assert stop.last_pt_epoch == 2  # last.pt was written before on_eval_epoch_end

    resumed = _seeded_run(tmp_path / "resumed", resume_from=tmp_path / "resumed" / "last.pt")
    assert resumed[1]["epoch"] == [1, 2, 3, 4]  # the FULL history
    assert resumed[0].stop_reason == "completed" and resumed[0].epoch == 4
    _assert_same_run(full, resumed)


def test_resume_without_rng_restore_diverges(tmp_path, monkeypatch, restore_determinism):
    """Control for the test above: the global torch RNG (shuffle + dropout) must be restored."""
    full = _seeded_run(tmp_path / "full")
    with pytest.raises(KeyboardInterrupt):
        _seeded_run(tmp_path / "resumed", callbacks=[StopAt(2)])
    monkeypatch.setattr(trainer_module, "restore_rng_state", lambda state: None)
    resumed = _seeded_run(tmp_path / "resumed", resume_from=tmp_path / "resumed" / "last.pt")
    assert not torch.equal(full[0].model[0].weight, resumed[0].model[0].weight)


def test_resume_of_finished_run_trains_nothing(tmp_path, restore_determinism):
    trainer, history = _seeded_run(tmp_path, epochs=2)
    again, again_history = _seeded_run(tmp_path, epochs=2, resume_from=tmp_path / "last.pt")
    assert again_history == history and again.global_step == trainer.global_step


def test_resume_of_early_stopped_run_stays_stopped(tmp_path):
    train, val = regression_loaders()
    model = tiny_mlp()
    first = Trainer(model, get_optimizer(model, lr=0.0), device="cpu", progress=False,
                    checkpoint_dir=tmp_path)
    first.fit(train, val, epochs=10, early_stopping=1)
    assert first.stop_reason == "early_stopping" and first.epoch == 2

    model = tiny_mlp()
    again = Trainer(model, get_optimizer(model, lr=0.0), device="cpu", progress=False)
    history = again.fit(train, val, epochs=10, early_stopping=1,
                        resume_from=tmp_path / "last.pt")
    assert again.stop_reason == "early_stopping" and history["epoch"] == [1, 2]
    assert again.global_step == first.global_step


def test_evaluation_only_trainer_loads_and_evaluates(tmp_path):
    train, val = regression_loaders()
    trainer = make_trainer(tmp_path)
    trainer.fit(train, val, epochs=1)
    expected = trainer.eval_epoch(val)

    evaluator = Trainer(tiny_mlp(), optimizer=None, device="cpu", progress=False)
    ckpt = evaluator.load_checkpoint(tmp_path / "ckpt" / "last.pt")
    assert ckpt["epoch"] == 1 and evaluator.eval_epoch(val) == expected
    with pytest.raises(ValueError, match="no optimizer"):
        evaluator.train_epoch(train)


def test_optimizer_state_that_does_not_fit_is_a_checkpoint_error(tmp_path):
    trainer = make_trainer(tmp_path)
    path = trainer.save_checkpoint(tmp_path / "one_group.pt")
    model = tiny_mlp()
    single_group = torch.optim.SGD([{"params": list(model.parameters())}], lr=0.1)
    other = Trainer(model, single_group, device="cpu", progress=False)
    with pytest.raises(CheckpointError, match="optimizer state does not fit"):
        other.load_checkpoint(path)
