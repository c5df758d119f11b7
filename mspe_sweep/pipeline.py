"""From a composed run config to a trained model: the one place that wires the pieces.

`python -m mspe_sweep.train`, `python -m mspe_sweep.evaluate` and each sweep trial all go
through these functions, so a trial is reproduced exactly by ``train`` with its overrides.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from omegaconf import DictConfig, OmegaConf
from torch_geometric.loader import DataLoader

from mspe_sweep.config import to_yaml
from mspe_sweep.dataset import get_dataset
from mspe_sweep.errors import UserError
from mspe_sweep.models import get_model
from mspe_sweep.training import (
    Trainer,
    get_device,
    get_loss_fn,
    get_optimizer,
    get_scheduler,
    log_model_info,
    set_seed,
)

log = logging.getLogger(__name__)

RESULTS_FILE = "results.json"
CONFIG_FILE = "config.yaml"


@dataclass
class TrainResult:
    """What one training run produced (also written to ``<run_dir>/results.json``).

    ``val_metrics`` and ``test_metrics`` use ``stage/name`` keys and are both taken at the best
    epoch (the epoch with the best ``monitor`` value): the test split never picks the model.
    """

    run_dir: str
    monitor: str
    best_value: float
    best_epoch: int
    epochs_run: int
    stop_reason: str
    val_metrics: dict[str, float]
    test_metrics: dict[str, float]
    fingerprint: str
    data_source: str
    num_params: int
    history: dict[str, list] = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available; asking for CUDA without it is a user error."""
    if name == "auto":
        return get_device()
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device={name}: CUDA is not available here (valid: auto, cpu)")
    try:
        return torch.device(name)
    except RuntimeError:
        raise UserError(f"device={name}: not a torch device (valid: auto, cpu, cuda, cuda:N)")


def build_dataset(cfg: DictConfig, with_pe: bool = True):
    """The dataset object for ``cfg.dataset``, with the encodings of ``cfg.pe`` if asked."""
    ds = cfg.dataset
    sizes = {"train_size": ds.train_size, "val_size": ds.val_size, "test_size": ds.test_size}
    pe = OmegaConf.to_container(cfg.pe, resolve=True) if with_pe else None
    try:
        return get_dataset(
            ds.name, root=ds.root, pe=pe,
            offline_fallback=ds.offline_fallback, seed=ds.seed,
            **{k: v for k, v in sizes.items() if v is not None},
        )
    except ValueError as exc:
        raise UserError(f"dataset: {exc}") from None


def build_loaders(cfg: DictConfig, dataset) -> tuple[DataLoader, DataLoader, DataLoader]:
    """Train (shuffled), val and test loaders."""
    t = cfg.training
    if t.num_workers == 0:  # the same batches, vectorized, on the run's device (see batching)
        return dataset.loaders(t.batch_size, device=resolve_device(cfg.device))
    train, val, test = dataset.get_splits()
    common = {"batch_size": t.batch_size, "num_workers": t.num_workers}
    return (DataLoader(train, shuffle=True, **common), DataLoader(val, **common),
            DataLoader(test, **common))


def build_model(cfg: DictConfig, dataset) -> torch.nn.Module:
    """The model of ``cfg.model``, sized for the dataset and its encodings."""
    m = cfg.model
    try:
        return get_model(
            m.name, num_features=dataset.num_features, num_classes=dataset.num_classes,
            hidden_dim=m.hidden_dim, num_layers=m.num_layers, heads=m.heads,
            dropout=m.dropout, attn_dropout=m.attn_dropout, pooling=m.pooling,
            pe_combine=m.pe_combine, lap_encoder=m.lap_encoder, norm=m.norm,
            num_edge_types=dataset.num_edge_types, pe_dims=dataset.pe_dims, pe_dim=cfg.pe.dim,
        )
    except ValueError as exc:
        raise UserError(f"model: {exc}") from None


def build_trainer(cfg: DictConfig, model, steps_per_epoch: int, *, run_dir: Path | None,
                  callbacks: Sequence = (), device: torch.device | None = None) -> Trainer:
    """Optimizer, schedule, loss and the Trainer for one run."""
    t = cfg.training
    try:
        optimizer = get_optimizer(model, optimizer_type=t.optimizer.type, lr=t.optimizer.lr,
                                  weight_decay=t.optimizer.weight_decay, fused=True)
        scheduler = get_scheduler(
            optimizer, scheduler_type=t.scheduler.type, total_epochs=t.epochs,
            warmup_epochs=t.scheduler.warmup_epochs, min_lr=t.scheduler.min_lr,
            steps_per_epoch=math.ceil(steps_per_epoch / t.accumulation_steps),
        )
        loss_fn = get_loss_fn("regression", loss_type=t.loss)
    except ValueError as exc:
        raise UserError(f"training: {exc}") from None
    return Trainer(
        model, optimizer, scheduler=scheduler, loss_fn=loss_fn,
        device=device or resolve_device(cfg.device), task_type="regression",
        grad_clip=t.grad_clip, mixed_precision=t.mixed_precision,
        accumulation_steps=t.accumulation_steps, checkpoint_dir=run_dir,
        callbacks=list(callbacks), progress=t.progress, config=to_yaml(cfg),
    )


def train_from_config(cfg: DictConfig, run_dir: Path, *, callbacks: Sequence = (),
                      resume_from: Path | None = None) -> TrainResult:
    """Train one run end to end and keep its checkpoints, config and results in ``run_dir``.

    Args:
        cfg: A composed run config (:func:`mspe_sweep.config.compose_run_config`).
        run_dir: Directory for ``last.pt``, ``best.pt``, ``config.yaml`` and ``results.json``.
        callbacks: Trainer callbacks (the sweep's pruning callback, an MLflow logger, ...).
        resume_from: A ``last.pt`` to continue from (exact resume).

    Returns:
        The run's :class:`TrainResult`.
    """
    t = cfg.training
    device = resolve_device(cfg.device)  # before anything is built or written
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / CONFIG_FILE).write_text(to_yaml(cfg))
    set_seed(t.seed, deterministic=t.deterministic)
    dataset = build_dataset(cfg)
    log.info("data: %s", dataset.source)
    train_loader, val_loader, test_loader = build_loaders(cfg, dataset)
    model = build_model(cfg, dataset)
    num_params = log_model_info(model)["total"]
    trainer = build_trainer(cfg, model, len(train_loader), run_dir=run_dir, callbacks=callbacks,
                            device=device)
    try:
        history = trainer.fit(
            train_loader, val_loader, epochs=t.epochs, metric_for_best=t.monitor,
            minimize_metric=t.monitor_mode == "min", early_stopping=t.early_stopping,
            resume_from=resume_from,
        )
    except ValueError as exc:
        raise UserError(f"training: {exc}") from None
    # Read before best.pt is loaded below: loading restores the best epoch's counters.
    best, epochs_run, stop_reason = trainer.best_epoch, trainer.epoch, trainer.stop_reason
    best_value = float(trainer.best_metric)
    if best is None:
        raise UserError(f"training diverged: no finite {t.monitor} in {epochs_run} epochs "
                        "(lower training.optimizer.lr)")
    at_best = history["epoch"].index(best)
    val_metrics = {k: v[at_best] for k, v in history.items() if k.startswith("val/")}
    trainer.load_checkpoint(run_dir / "best.pt")  # restores the best epoch's weights
    test_metrics = {f"test/{k}": v for k, v in trainer.eval_epoch(test_loader).items()}
    result = TrainResult(
        run_dir=str(run_dir), monitor=t.monitor, best_value=best_value,
        best_epoch=best, epochs_run=epochs_run, stop_reason=stop_reason,
        val_metrics=val_metrics, test_metrics=test_metrics, fingerprint=dataset.fingerprint,
        data_source=dataset.source, num_params=num_params, history=history,
    )
    (run_dir / RESULTS_FILE).write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    return result
