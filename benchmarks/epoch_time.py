"""Seconds per training epoch of a run config, measured on a slice of the train split.

Usage (from the repository root):

    python benchmarks/epoch_time.py                            # the ZINC config (GPS 10x64)
    python benchmarks/epoch_time.py model=gine pe=multiscale   # any run overrides
    python benchmarks/epoch_time.py --batches 50 training.mixed_precision=true

It trains ``--batches`` batches (after ``--warmup`` untimed ones), times them, and scales to
the full train split: ``seconds/epoch = seconds/batch * batches per epoch``. Data default to
the offline ``zinc_rdkit`` set (same graph sizes as ZINC) so it runs without network.
"""

from __future__ import annotations

import argparse
import itertools
import time

import torch

from mspe_sweep.config import compose_run_config
from mspe_sweep.pipeline import build_dataset, build_loaders, build_model, build_trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    cfg = compose_run_config(["dataset=zinc_rdkit", "training.progress=false", *args.overrides])
    dataset = build_dataset(cfg)
    train_loader, _, _ = build_loaders(cfg, dataset)
    model = build_model(cfg, dataset)
    trainer = build_trainer(cfg, model, len(train_loader), run_dir=None)
    params = sum(p.numel() for p in model.parameters())
    warm = list(itertools.islice(train_loader, args.warmup))
    timed = list(itertools.islice(train_loader, args.batches))
    trainer.train_epoch(warm)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    trainer.train_epoch(timed)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    per_batch = (time.perf_counter() - start) / len(timed)
    print(f"{cfg.model.name} ({params:,} params, pe={cfg.pe.name}) on {trainer.device}, "
          f"{torch.get_num_threads()} threads: {per_batch * 1000:.0f} ms/batch of "
          f"{cfg.training.batch_size}; {per_batch * len(train_loader):.0f} s per epoch of "
          f"{len(train_loader)} batches")


if __name__ == "__main__":
    main()
