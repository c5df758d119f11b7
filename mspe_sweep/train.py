"""`python -m mspe_sweep.train [group=option ...] [key=value ...]`: one training run, no Optuna.

A sweep trial is reproduced exactly by passing its recorded overrides to this command.
"""

from __future__ import annotations

import logging
import secrets
import time
from pathlib import Path
from typing import Sequence

from mspe_sweep.cli import groups_help, run_command
from mspe_sweep.config import compose_run_config, mspe_home
from mspe_sweep.errors import UserError
from mspe_sweep.pipeline import TrainResult, train_from_config

log = logging.getLogger("mspe_sweep.train")

USAGE = f"""\
usage: python -m mspe_sweep.train [group=option ...] [key=value ...]

Trains one run from configs/train.yaml and writes best.pt, last.pt, config.yaml and
results.json to $MSPE_HOME/runs/train/<id>/ (resume an interrupted run with resume=<last.pt>).

config groups:
{groups_help()}
examples:
  python -m mspe_sweep.train dataset=zinc_rdkit pe=multiscale training.epochs=20
  python -m mspe_sweep.train model=gine training.optimizer.lr=3e-4
"""


def new_run_dir(root: Path) -> Path:
    """A fresh ``runs/train/<timestamp>-<random>`` directory name under ``root``."""
    return root / "runs" / "train" / f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def train(overrides: Sequence[str]) -> TrainResult:
    """Compose the config, train, and print where everything went."""
    resume = [o.partition("=")[2] for o in overrides if o.startswith("resume=")]
    overrides = [o for o in overrides if not o.startswith("resume=")]
    cfg = compose_run_config(overrides)
    resume_from = Path(resume[-1]) if resume else None
    if resume_from is not None and not resume_from.is_file():
        raise UserError(f"resume={resume_from}: no such checkpoint file (give a run's last.pt)")
    run_dir = resume_from.parent if resume_from else new_run_dir(mspe_home())
    log.info("MSPE_HOME: %s", mspe_home())
    result = train_from_config(cfg, run_dir, resume_from=resume_from)
    print(format_result(result))
    return result


def format_result(result: TrainResult) -> str:
    """The closing lines: best epoch, val and test metrics, where the files are."""
    metrics = {**result.val_metrics, **result.test_metrics}
    shown = "  ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items()) if "loss" not in k)
    return (f"best epoch {result.best_epoch}/{result.epochs_run} ({result.stop_reason}): "
            f"{shown}\nrun directory: {result.run_dir}")


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(train, USAGE, argv)


if __name__ == "__main__":
    raise SystemExit(main())
