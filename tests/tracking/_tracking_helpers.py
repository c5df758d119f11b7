"""Shared values and helpers of the tracking tests (imported as ``_tracking_helpers``)."""

from __future__ import annotations

import socket

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from mspe_sweep.training import Trainer, get_optimizer, set_seed

SPEC = {
    "name": "ignored-here",
    "direction": "minimize",
    "metric": "val/mae",
    "n_trials": 10,
    "sampler": {"type": "tpe", "n_startup_trials": 5},
    "fixed": ["dataset=synthetic"],
    "params": [{"key": "training.optimizer.lr", "grammar": "tag(log, interval(1e-4, 1e-2))",
                "when": {}}],
}
BASE_YAML = "training:\n  epochs: 2\n"


def free_port() -> int:
    """A TCP port nothing listens on (at the time of the call)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fit(callbacks, epochs=2, checkpoint_dir=None, resume_from=None):
    """A real ``Trainer.fit`` of a linear model on 32 samples; returns (trainer, history)."""
    set_seed(0)
    x = torch.randn(32, 4)
    loader = DataLoader(TensorDataset(x, x.sum(dim=1)), batch_size=16)
    model = nn.Linear(4, 1)
    trainer = Trainer(model, get_optimizer(model, lr=1e-2), progress=False, device="cpu",
                      callbacks=callbacks, checkpoint_dir=checkpoint_dir)
    history = trainer.fit(loader, loader, epochs=epochs, metric_for_best="val/mae",
                          resume_from=resume_from)
    return trainer, history


def steps(client, run_id, key):
    """``[(step, value), ...]`` of a run's metric history."""
    return [(m.step, m.value) for m in client.get_metric_history(run_id, key)]
