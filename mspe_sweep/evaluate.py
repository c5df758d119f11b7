"""`python -m mspe_sweep.evaluate checkpoint=<path> [split=test|val|train]`.

Rebuilds data and model from the checkpoint's own config (the resolved YAML every checkpoint
carries) and prints the split's metrics. Runs elsewhere: `dataset.root=<dir>` points at another
data directory, and `device=cpu` loads a GPU checkpoint on a CPU machine.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from mspe_sweep.cli import run_command, split_key_value
from mspe_sweep.config import from_yaml
from mspe_sweep.errors import UserError
from mspe_sweep.pipeline import build_dataset, build_loaders, build_model, resolve_device
from mspe_sweep.training import Trainer, get_loss_fn, read_checkpoint
from mspe_sweep.training.checkpoint import check_state_dict

log = logging.getLogger("mspe_sweep.evaluate")

USAGE = """\
usage: python -m mspe_sweep.evaluate checkpoint=<path> [split=test|val|train]
                                     [dataset.root=<dir>] [device=auto|cpu|cuda]

Prints the metrics of a checkpoint (best.pt or last.pt of a run or trial, or one downloaded
from MLflow) on a split, using the config stored inside the checkpoint.
"""
SPLITS = ("train", "val", "test")


def evaluate(args: Sequence[str]) -> dict[str, float]:
    """Evaluate a checkpoint and print ``split/metric value`` lines."""
    opts, rest = split_key_value(args, ("checkpoint", "split", "dataset.root", "device"))
    if rest:
        raise UserError(f"unexpected argument {rest[0]!r} (valid: checkpoint=, split=, "
                        "dataset.root=, device=)")
    if "checkpoint" not in opts:
        raise UserError("checkpoint=<path> is required (a best.pt or last.pt)")
    split = opts.get("split", "test")
    if split not in SPLITS:
        raise UserError(f"split={split}: valid splits are {', '.join(SPLITS)}")
    path = Path(opts["checkpoint"])
    checkpoint = read_checkpoint(path)
    if not checkpoint.get("config"):
        raise UserError(f"{path}: checkpoint holds no run config, so data and model cannot be "
                        "rebuilt (it was not written by mspe_sweep.train or a sweep trial)")
    changes = [f"{key}={opts[key]}" for key in ("dataset.root", "device") if key in opts]
    cfg = from_yaml(checkpoint["config"], str(path), changes)
    dataset = build_dataset(cfg)
    log.info("data: %s", dataset.source)
    loader = dict(zip(SPLITS, build_loaders(cfg, dataset)))[split]
    model = build_model(cfg, dataset)
    check_state_dict(path, model.state_dict(), checkpoint["model"])
    model.load_state_dict(checkpoint["model"])
    trainer = Trainer(model, optimizer=None, loss_fn=get_loss_fn("regression", cfg.training.loss),
                      device=resolve_device(cfg.device), progress=False)
    metrics = {f"{split}/{k}": float(v) for k, v in trainer.eval_epoch(loader).items()}
    print(f"checkpoint: {path} (epoch {checkpoint.get('epoch')})")
    for key, value in metrics.items():
        print(f"{key} {value:.6f}")
    return metrics


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(evaluate, USAGE, argv)


if __name__ == "__main__":
    raise SystemExit(main())
