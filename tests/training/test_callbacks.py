"""Callback order, should_stop, exception propagation and cleanup."""

from __future__ import annotations

import pytest
from _training_helpers import regression_loaders, tiny_mlp

from mspe_sweep.training import Callback, Trainer, get_optimizer, utils


class Recorder(Callback):
    def __init__(self):
        self.events = []

    def on_fit_start(self, trainer):
        self.events.append("fit_start")

    def on_train_epoch_end(self, trainer, epoch, metrics):
        self.events.append(f"train_end {epoch} lr={'lr' in metrics}")

    def on_checkpoint_saved(self, trainer, path, kind):
        assert path.is_file()
        self.events.append(f"saved {kind}")

    def on_eval_epoch_end(self, trainer, epoch, metrics):
        assert (trainer.checkpoint_dir / "last.pt").is_file()
        assert trainer.epoch == epoch and "lr" not in metrics
        self.events.append(f"eval_end {epoch}")

    def on_fit_end(self, trainer, history):
        self.events.append(f"fit_end {trainer.stop_reason} {len(history['epoch'])}")


def _trainer(tmp_path, callbacks, lr=1e-2):
    model = tiny_mlp()
    return Trainer(model, get_optimizer(model, lr=lr), device="cpu", progress=True,
                   checkpoint_dir=tmp_path, callbacks=callbacks)


def test_hook_order(tmp_path):
    recorder = Recorder()
    train, val = regression_loaders()
    _trainer(tmp_path, [recorder], lr=0.0).fit(train, val, epochs=2)
    # lr 0: epoch 2 does not improve, so no best.pt that epoch
    assert recorder.events == [
        "fit_start",
        "train_end 1 lr=True", "saved best", "saved last", "eval_end 1",
        "train_end 2 lr=True", "saved last", "eval_end 2",
        "fit_end completed 2",
    ]


def test_validation_recorded_comes_before_bookkeeping_and_checkpoints(tmp_path):
    class Early(Recorder):
        def on_validation_recorded(self, trainer, epoch, metrics):
            assert trainer.epoch == epoch and trainer.history["epoch"][-1] == epoch
            assert metrics == trainer.last_val_metrics and "lr" not in metrics
            self.events.append(f"recorded {epoch} best={trainer.best_epoch}")

    recorder = Early()
    train, val = regression_loaders()
    _trainer(tmp_path, [recorder], lr=0.0).fit(train, val, epochs=2)
    assert recorder.events == [
        "fit_start",
        "train_end 1 lr=True", "recorded 1 best=None", "saved best", "saved last", "eval_end 1",
        "train_end 2 lr=True", "recorded 2 best=1", "saved last", "eval_end 2",
        "fit_end completed 2",
    ]


def test_should_stop_ends_fit_normally(tmp_path):
    class StopAfterFirst(Callback):
        def on_eval_epoch_end(self, trainer, epoch, metrics):
            trainer.should_stop = True

    recorder = Recorder()
    train, val = regression_loaders()
    trainer = _trainer(tmp_path, [StopAfterFirst(), recorder])
    history = trainer.fit(train, val, epochs=5)
    assert history["epoch"] == [1] and trainer.stop_reason == "callback"
    assert recorder.events[-1] == "fit_end callback 1"


def test_callback_exception_propagates_and_cleanup_runs(tmp_path, monkeypatch):
    class Pruned(Exception):
        pass

    class Pruner(Callback):
        def on_eval_epoch_end(self, trainer, epoch, metrics):
            raise Pruned(f"pruned at {epoch}")

    closed = []
    original_close = utils.ProgressDisplay.close

    def close(display):
        closed.append(True)
        original_close(display)

    monkeypatch.setattr(utils.ProgressDisplay, "close", close)
    recorder = Recorder()
    train, val = regression_loaders()
    trainer = _trainer(tmp_path, [Pruner(), recorder])
    with pytest.raises(Pruned, match="pruned at 1"):
        trainer.fit(train, val, epochs=3)
    assert closed == [True] and trainer.progress_display is None
    assert not any(event.startswith("fit_end") for event in recorder.events)
    assert (tmp_path / "last.pt").is_file() and trainer.epoch == 1


def test_duck_typed_callbacks_need_only_some_hooks(tmp_path):
    class OnlyFitEnd:
        called = False

        def on_fit_end(self, trainer, history):
            OnlyFitEnd.called = True

    train, val = regression_loaders()
    _trainer(tmp_path, [OnlyFitEnd()]).fit(train, val, epochs=1)
    assert OnlyFitEnd.called
