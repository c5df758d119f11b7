"""Trainer: fit/history shape, epoch metrics, batches, hooks, stepping, AMP, errors."""

from __future__ import annotations

import math

import pytest
import torch
from _training_helpers import regression_loaders, regression_tensors, tiny_mlp
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from mspe_sweep.training import (
    NonFiniteLossError,
    Trainer,
    get_optimizer,
    get_scheduler,
    set_seed,
)


def make_trainer(model=None, lr=1e-2, **kwargs):
    model = model if model is not None else tiny_mlp()
    kwargs.setdefault("progress", False)
    return Trainer(model, get_optimizer(model, lr=lr), device="cpu", **kwargs)


def test_fit_history_shape_and_counters():
    set_seed(0)
    train, val = regression_loaders(batch_size=8)  # 48 rows -> 6 steps per epoch
    trainer = make_trainer()
    history = trainer.fit(train, val, epochs=2)

    metric_keys = ["loss", "mae", "mse", "rmse"]
    expected = (
        ["epoch"]
        + [f"train/{k}" for k in metric_keys + ["lr", "epoch_seconds", "samples_per_second"]]
        + [f"val/{k}" for k in metric_keys]
    )
    assert sorted(history) == sorted(expected)
    assert all(len(values) == 2 for values in history.values())
    assert history["epoch"] == [1, 2]
    assert trainer.epoch == 2 and trainer.global_step == 12
    assert trainer.stop_reason == "completed"
    best = min(history["val/loss"])
    assert trainer.best_metric == best
    assert trainer.best_epoch == history["val/loss"].index(best) + 1
    assert all(isinstance(v, float) for v in history["train/samples_per_second"])


def test_eval_metrics_are_over_the_whole_epoch_not_batch_means():
    # 10 rows in batches of 3 -> sizes 3, 3, 3, 1: per-batch means would differ.
    x, y = regression_tensors(10)
    loader = DataLoader(TensorDataset(x, y), batch_size=3)
    trainer = make_trainer(loss_fn=nn.MSELoss())
    result = trainer.eval_epoch(loader)

    with torch.no_grad():
        err = trainer.model(x).reshape(-1) - y
    assert result["loss"] == pytest.approx(err.pow(2).mean().item(), rel=1e-6)
    assert result["mae"] == pytest.approx(err.abs().mean().item(), rel=1e-6)
    assert result["rmse"] == pytest.approx(err.pow(2).mean().sqrt().item(), rel=1e-6)
    batch_rmse = [err[i : i + 3].pow(2).mean().sqrt().item() for i in range(0, 10, 3)]
    assert result["rmse"] != pytest.approx(sum(batch_rmse) / 4, rel=1e-3)


def test_eval_loss_is_exactly_the_row_weighted_mean_of_the_batch_losses():
    x, y = regression_tensors(10)
    loader = DataLoader(TensorDataset(x, y), batch_size=3)  # rows 3, 3, 3, 1
    trainer = make_trainer(loss_fn=nn.MSELoss())
    total = 0.0
    with torch.no_grad():
        for xb, yb in loader:
            total += nn.MSELoss()(trainer.model(xb).reshape(-1), yb).item() * len(yb)
    assert trainer.eval_epoch(loader)["loss"] == total / 10


def test_the_loop_changes_nothing_on_the_trainer():
    train, _ = regression_loaders(batch_size=10)  # 5 micro-batches
    trainer = make_trainer(accumulation_steps=2)
    before = dict(vars(trainer))
    trainer.train_epoch(train)
    assert vars(trainer) == before
    assert trainer.global_step == trainer.loop.global_step == 3
    assert not any(value is trainer for value in vars(trainer.loop).values())


def test_train_epoch_keys_lr_and_throughput():
    train, _ = regression_loaders(batch_size=16)
    trainer = make_trainer(lr=0.05)
    result = trainer.train_epoch(train)
    assert result["lr"] == 0.05
    assert result["epoch_seconds"] > 0
    assert result["samples_per_second"] == pytest.approx(48 / result["epoch_seconds"])


def test_targets_with_trailing_dim_and_flat_predictions():
    x, y = regression_tensors(12)
    loader = DataLoader(TensorDataset(x, y.unsqueeze(1)), batch_size=4)  # y [B, 1]
    model = nn.Sequential(nn.Linear(4, 1), nn.Flatten(0))  # pred [B]
    trainer = make_trainer(model)
    assert math.isfinite(trainer.train_epoch(loader)["loss"])
    assert trainer.predict(loader).shape == (12,)


# PyG's import scripts a few functions with torch.jit, which torch 2.13 deprecates.
@pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:DeprecationWarning")
def test_pyg_batches_count_graphs():
    from torch_geometric.data import Data
    from torch_geometric.loader import DataLoader as PygLoader

    gen = torch.Generator().manual_seed(0)
    graphs = []
    for i in range(10):
        n = 3 + i % 3
        ring = torch.arange(n)
        edge_index = torch.stack([ring, (ring + 1) % n])
        graphs.append(Data(x=torch.randn(n, 4, generator=gen), edge_index=edge_index,
                           y=torch.randn(1, generator=gen)))

    class MeanPoolRegressor(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 1)

        def forward(self, batch):
            h = self.lin(batch.x)  # [num_nodes, 1]
            pooled = torch.zeros(batch.num_graphs, 1).index_add_(0, batch.batch, h)
            counts = torch.bincount(batch.batch, minlength=batch.num_graphs).unsqueeze(1)
            return pooled / counts  # [num_graphs, 1] vs y [num_graphs]

    loader = PygLoader(graphs, batch_size=4)
    trainer = make_trainer(MeanPoolRegressor())
    history = trainer.fit(loader, loader, epochs=1)
    assert history["train/samples_per_second"][0] * history["train/epoch_seconds"][0] == (
        pytest.approx(10)
    )
    assert trainer.global_step == 3
    assert trainer.predict(loader).shape == (10, 1)


def test_metric_for_best_accepts_both_spellings_and_rejects_unknown():
    train, val = regression_loaders()
    bests = []
    for name in ("mae", "val/mae"):
        set_seed(0)
        trainer = make_trainer()
        history = trainer.fit(train, val, epochs=2, metric_for_best=name)
        assert trainer.best_metric == min(history["val/mae"])
        bests.append(trainer.best_metric)
    assert bests[0] == bests[1]

    for bad in ("accuracy", "train/mae"):
        with pytest.raises(ValueError, match="val/mae") as info:
            make_trainer().fit(train, val, epochs=1, metric_for_best=bad)
        assert bad in str(info.value)


def test_maximized_metric_tracks_largest_value():
    train, val = regression_loaders()
    trainer = make_trainer(lr=0.05)
    history = trainer.fit(train, val, epochs=3, metric_for_best="mae", minimize_metric=False)
    assert trainer.best_metric == max(history["val/mae"])


def test_early_stopping_ends_fit():
    train, val = regression_loaders()
    # lr 0: the val loss never changes, so only epoch 1 counts as an improvement.
    trainer = make_trainer(lr=0.0)
    history = trainer.fit(train, val, epochs=10, early_stopping=2)
    assert trainer.stop_reason == "early_stopping"
    assert history["epoch"] == [1, 2, 3]
    assert trainer.epoch == 3 and trainer.best_epoch == 1


def test_non_finite_loss_raises_before_any_step():
    x, y = regression_tensors(8)
    x[5, 0] = float("nan")  # second batch of 4
    loader = DataLoader(TensorDataset(x, y), batch_size=4)
    model = tiny_mlp()
    trainer = make_trainer(model, accumulation_steps=2)  # both batches form one step
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, batch 2.*optimizer step 1"):
        trainer.fit(loader, loader, epochs=1)
    assert trainer.global_step == 0
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_log_hooks_steps_and_prefixes():
    train, val = regression_loaders(batch_size=12)  # 4 optimizer steps per epoch
    trainer = make_trainer(log_every=2)
    calls = []
    trainer.add_log_hook(lambda metrics, step, prefix: calls.append((prefix, step, metrics)))
    trainer.fit(train, val, epochs=2)

    assert [(p, s) for p, s, _ in calls] == [
        ("train", 2), ("train", 4), ("val", 4), ("train", 6), ("train", 8), ("val", 8)
    ]
    assert set(calls[0][2]) == {"loss", "lr"}
    assert set(calls[2][2]) == {"loss", "mae", "mse", "rmse"}


def test_gradient_accumulation_steps_leftover_group():
    train, _ = regression_loaders(batch_size=10)  # 48 rows -> 5 micro-batches
    trainer = make_trainer(accumulation_steps=2)
    trainer.train_epoch(train)
    assert trainer.global_step == 3  # 2 + 2 + a leftover group of 1


def test_grad_clip_bounds_the_update():
    train, _ = regression_loaders(batch_size=48)  # one step
    model = tiny_mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    trainer = Trainer(model, optimizer, device="cpu", grad_clip=1e-3, progress=False)
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    trainer.train_epoch(train)
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert (after - before).norm() <= 1e-3 + 1e-7


def test_step_interval_scheduler_is_stepped_per_optimizer_step():
    train, val = regression_loaders(batch_size=12)  # 4 steps per epoch
    model = tiny_mlp()
    optimizer = get_optimizer(model, lr=1.0)
    scheduler = get_scheduler(optimizer, "cosine_warmup", total_epochs=3, warmup_epochs=1,
                              steps_per_epoch=4)
    trainer = Trainer(model, optimizer, scheduler, device="cpu", progress=False)
    history = trainer.fit(train, val, epochs=2)
    assert scheduler.last_epoch == 8
    # epoch 1's last step used t=3: warmup 4/5 of the base lr
    assert history["train/lr"][0] == pytest.approx(4 / 5)


def test_epoch_interval_scheduler_is_stepped_per_epoch():
    train, val = regression_loaders(batch_size=12)
    model = tiny_mlp()
    optimizer = get_optimizer(model, lr=1.0)
    scheduler = get_scheduler(optimizer, "step", step_size=1, gamma=0.5)
    trainer = Trainer(model, optimizer, scheduler, device="cpu", progress=False)
    history = trainer.fit(train, val, epochs=3)
    assert history["train/lr"] == [1.0, 0.5, 0.25]


def test_scheduler_without_interval_is_stepped_once_per_epoch():
    class Counting:
        steps = 0

        def step(self):
            Counting.steps += 1

    train, val = regression_loaders(batch_size=12)  # 4 optimizer steps per epoch
    make_trainer(scheduler=Counting()).fit(train, val, epochs=3)
    assert Counting.steps == 3


def test_plateau_scheduler_uses_monitored_metric_and_checks_mode():
    class Constant(nn.Module):
        """Has parameters but a constant output, so the val loss is flat: a plateau."""

        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 1)

        def forward(self, x):
            return self.lin(x) * 0.0  # [B, 1] zeros

    train, val = regression_loaders()
    model = Constant()
    optimizer = get_optimizer(model, lr=1.0)
    scheduler = get_scheduler(optimizer, "plateau", patience=0, gamma=0.5)
    trainer = Trainer(model, optimizer, scheduler, device="cpu", progress=False)
    with pytest.raises(ValueError, match="mode"):
        trainer.fit(train, val, epochs=1, minimize_metric=False)
    history = trainer.fit(train, val, epochs=3)
    # epoch 1 sets the best; epochs 2 and 3 are bad epochs -> two halvings
    assert history["train/lr"] == [1.0, 1.0, 0.5]
    assert optimizer.param_groups[0]["lr"] == 0.25


def test_cpu_mixed_precision_uses_bf16_autocast():
    train, val = regression_loaders()
    trainer = make_trainer(mixed_precision=True)
    assert trainer.scaler is None
    with trainer.autocast():
        assert trainer.model(torch.randn(2, 4)).dtype == torch.bfloat16
    history = trainer.fit(train, val, epochs=1)
    assert math.isfinite(history["train/loss"][0])


@pytest.mark.gpu
def test_cuda_mixed_precision_uses_fp16_and_grad_scaler():
    train, val = regression_loaders()
    model = tiny_mlp()
    trainer = Trainer(model, get_optimizer(model), device="cuda", mixed_precision=True,
                      grad_clip=1.0, progress=False)
    assert trainer.scaler is not None and trainer.amp_dtype == torch.float16
    history = trainer.fit(train, val, epochs=2)
    assert math.isfinite(history["val/loss"][-1])


def test_progress_prints_one_line_per_epoch_without_tty(capsys):
    train, val = regression_loaders()
    make_trainer(progress=True).fit(train, val, epochs=2)
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 2 and "\r" not in err
    assert lines[0].startswith("epoch 1/2") and "train loss" in lines[0]

    make_trainer(progress=False).fit(train, val, epochs=2)
    assert capsys.readouterr().err == ""


def test_constructor_validation():
    model = tiny_mlp()
    with pytest.raises(ValueError, match="regression"):
        Trainer(model, get_optimizer(model), task_type="ranking")
    with pytest.raises(ValueError, match="accumulation_steps"):
        Trainer(model, get_optimizer(model), accumulation_steps=0)
    with pytest.raises(ValueError, match="YAML"):
        Trainer(model, get_optimizer(model), config={"a": 1})


def test_classification_task_defaults():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(30, 4, generator=gen)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()  # 3 classes
    loader = DataLoader(TensorDataset(x, y), batch_size=10)
    model = nn.Linear(4, 3)
    trainer = make_trainer(model, task_type="classification")
    history = trainer.fit(loader, loader, epochs=1, metric_for_best="accuracy",
                          minimize_metric=False)
    assert {"val/accuracy", "val/f1", "val/roc_auc", "val/ap"} <= set(history)


def test_second_fit_continues_numbering_and_history():
    train, val = regression_loaders(batch_size=12)
    trainer = make_trainer()
    first = trainer.fit(train, val, epochs=1)
    second = trainer.fit(train, val, epochs=3)
    assert first["epoch"] == [1]
    assert second["epoch"] == [1, 2, 3] and second["val/loss"][0] == first["val/loss"][0]
    assert trainer.global_step == 12
