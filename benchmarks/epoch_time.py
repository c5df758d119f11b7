"""Seconds per training epoch of a run config, measured on a slice of the train split.

Usage (from the repository root):

    python -m benchmarks.epoch_time                            # the ZINC config (GPS 10x64)
    python -m benchmarks.epoch_time model=gine pe=multiscale   # any run overrides
    python -m benchmarks.epoch_time --batches 50 training.mixed_precision=true

It trains ``--batches`` batches (after ``--warmup`` untimed ones), times them, and scales to
the full train split: ``seconds/epoch = seconds/batch * batches per epoch``. Data default to
the offline ``zinc_rdkit`` set (same graph sizes as ZINC) so it runs without network. The
suite (``python -m benchmarks``) builds its model rows from the same functions.
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from omegaconf import DictConfig

from mspe_sweep.config import compose_run_config
from mspe_sweep.pipeline import build_dataset, build_loaders, build_model, build_trainer

# The ZINC config of the README (GPS 10x64, 4 heads, RWSE20, batch 32) on the offline set.
ZINC_CONFIG = ("dataset=zinc_rdkit", "training.progress=false")


@dataclass
class Run:
    """One run config, built: dataset, train loader, model and trainer (no checkpoints)."""

    cfg: DictConfig
    dataset: object
    train_loader: object
    model: torch.nn.Module
    trainer: object

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def batches(self, count: int, seed: int = 0) -> list:
        """The first ``count`` batches of a seeded shuffled pass over the train split."""
        torch.manual_seed(seed)
        return list(itertools.islice(self.train_loader, count))


def build_run(overrides: Sequence[str] = (), device: str | None = None) -> Run:
    """Builds the ZINC config with ``overrides`` applied on top."""
    cfg = compose_run_config([*ZINC_CONFIG, *overrides])
    dataset = build_dataset(cfg)
    train_loader, _, _ = build_loaders(cfg, dataset)
    model = build_model(cfg, dataset)
    trainer = build_trainer(cfg, model, len(train_loader), run_dir=None,
                            device=torch.device(device) if device else None)
    return Run(cfg, dataset, train_loader, model, trainer)


def synchronize(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def seconds_per_batch(run: Run, batches: list, warmup: int = 3, train=None) -> float:
    """Trains the first ``warmup`` batches untimed, then the rest; seconds per timed batch.
    ``train(batches)`` trains another model on them (default: the run's trainer)."""
    train = train or run.trainer.train_epoch
    train(batches[:warmup])
    synchronize(run.trainer.device)
    start = time.perf_counter()
    train(batches[warmup:])
    synchronize(run.trainer.device)
    return (time.perf_counter() - start) / len(batches[warmup:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    run = build_run(args.overrides)
    batches = run.batches(args.warmup + args.batches)
    per_batch = seconds_per_batch(run, batches, args.warmup)
    steps = len(run.train_loader)
    print(f"{run.cfg.model.name} ({run.num_params:,} params, pe={run.cfg.pe.name}) on "
          f"{run.trainer.device}, {torch.get_num_threads()} threads: {per_batch * 1000:.0f} "
          f"ms/batch of {run.cfg.training.batch_size}; {per_batch * steps:.0f} s per epoch of "
          f"{steps} batches")


if __name__ == "__main__":
    main()
