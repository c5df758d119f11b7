"""`python -m mspe_sweep.train [group=option ...] [key=value ...]`: one training run, no Optuna.

A sweep trial is reproduced exactly by passing its recorded overrides to this command.
"""

from __future__ import annotations

import logging
import secrets
import time
from pathlib import Path
from typing import Sequence

from omegaconf import DictConfig

from mspe_sweep.cli import groups_help, run_command, split_key_value
from mspe_sweep.config import RUN_GROUPS, compose_run_config, from_yaml, mspe_home, to_yaml
from mspe_sweep.errors import UserError
from mspe_sweep.pipeline import TrainResult, train_from_config
from mspe_sweep.training import read_checkpoint

log = logging.getLogger("mspe_sweep.train")

USAGE = f"""\
usage: python -m mspe_sweep.train [group=option ...] [key=value ...]

Trains one run from configs/train.yaml and writes best.pt, last.pt, config.yaml and
results.json to $MSPE_HOME/runs/train/<id>/. resume=<last.pt> continues an interrupted run
with the config stored in the checkpoint (overrides given with it apply on top).
--cfg job prints the composed, validated config and exits (trains nothing).

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
    """Compose the config (or take a resumed run's own), train, and print where things went."""
    opts, overrides = split_key_value(overrides, ("resume",))
    resume_from = Path(opts["resume"]) if "resume" in opts else None
    if resume_from is None:
        cfg = compose_run_config(overrides)
        run_dir = new_run_dir(mspe_home())
    else:
        cfg = resumed_config(checked_checkpoint(opts["resume"]), overrides)
        run_dir = resume_from.parent
    log.info("MSPE_HOME: %s", mspe_home())
    result = train_from_config(cfg, run_dir, resume_from=resume_from)
    print(format_result(result))
    return result


def composed_config(overrides: Sequence[str]) -> str:
    """What ``train --cfg job`` prints: the resolved run config, validated, as YAML."""
    opts, overrides = split_key_value(overrides, ("resume",))
    if "resume" in opts:
        return to_yaml(resumed_config(checked_checkpoint(opts["resume"]), overrides))
    return to_yaml(compose_run_config(overrides))


def checked_checkpoint(path: str) -> Path:
    """The ``resume=`` checkpoint, which must be a file."""
    if not Path(path).is_file():
        raise UserError(f"resume={path}: no such checkpoint file (give a run's last.pt)")
    return Path(path)


def resumed_config(checkpoint: Path, overrides: Sequence[str]) -> DictConfig:
    """The run's own config from its checkpoint, with ``key=value`` changes on top (e.g.
    ``training.epochs=200`` to extend it). Group options may be repeated as they were (so the
    original command plus ``resume=`` works) but not changed: that would be another run."""
    stored = from_yaml(read_checkpoint(checkpoint).get("config") or "", str(checkpoint))
    changes = []
    for override in overrides:
        key, _, value = override.partition("=")
        if key not in RUN_GROUPS:
            changes.append(override)
        elif stored[key].get("name") != value:
            raise UserError(f"{override}: resume={checkpoint} was trained with "
                            f"{key}={stored[key].get('name')}; a resumed run keeps its config "
                            "groups (change single keys, e.g. training.epochs=200)")
    return from_yaml(to_yaml(stored), str(checkpoint), changes)


def format_result(result: TrainResult) -> str:
    """The closing lines: best epoch, val and test metrics, where the files are."""
    metrics = {**result.val_metrics, **result.test_metrics}
    shown = "  ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items()) if "loss" not in k)
    return (f"best epoch {result.best_epoch}/{result.epochs_run} ({result.stop_reason}): "
            f"{shown}\nrun directory: {result.run_dir}")


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(train, USAGE, argv, show_config=composed_config)


if __name__ == "__main__":
    raise SystemExit(main())
