"""`python -m mspe_sweep.run study=<name> [driver keys] [run overrides]`: run an Optuna study.

Running the same command again resumes the study from its storage.
"""

from __future__ import annotations

from typing import Sequence

import yaml

from mspe_sweep.cli import groups_help, run_command
from mspe_sweep.config import DRIVER_GROUPS, STUDIES_DIR, group_options, to_yaml
from mspe_sweep.sweep.driver import run_study
from mspe_sweep.sweep.prepare import load_spec, parse_args
from mspe_sweep.sweep.reporting import quiet_libraries

USAGE = f"""\
usage: python -m mspe_sweep.run study=<name> [driver keys] [run overrides]

Runs (or resumes) the Optuna study studies/<name>.yaml: each trial composes configs/train.yaml
with the study's fixed overrides, your run overrides and the sampled params, and trains it.

studies: {', '.join(sorted(p.stem for p in STUDIES_DIR.glob('*.yaml')))}
driver keys:
  study.n_trials=N  study.timeout=SECONDS  study.seed=N  study.force=true
  study.trial_timeout=SECONDS  study.epoch_timeout=SECONDS  (a hung trial is killed; FAIL)
  storage={'|'.join(group_options(DRIVER_GROUPS)['storage'])}  storage.url=URL (or $MSPE_STORAGE_URL)
  tracking={'|'.join(group_options(DRIVER_GROUPS)['tracking'])}  workers=N  trials_per_gpu=K
  launcher={'|'.join(group_options(['launcher'])['launcher'])}  launcher.workers=N  launcher.dry_run=true  \
(configs/launcher/)
--cfg job prints the study's base run config (fixed + your run overrides) and its search space,
and exits without opening the storage.
run overrides (applied to every trial; a searched key cannot be set):
{groups_help()}
  any key, e.g. training.epochs=3 dataset.train_size=500
examples:
  python -m mspe_sweep.run study=zinc_quick
  python -m mspe_sweep.run study=zinc storage=postgres workers=4
  python -m mspe_sweep.run study=zinc storage=postgres launcher=slurm launcher.workers=16
"""


def study_config(args: Sequence[str]) -> str:
    """What ``run --cfg job`` prints: the validated base run config every trial starts from,
    then the search space as the study file wrote it; no storage is opened."""
    driver, run_overrides = parse_args(args)
    spec, base_cfg = load_spec(driver, run_overrides)
    space = {p.key: ({"values": p.grammar, "when": {k: list(v) for k, v in p.when.items()}}
                     if p.when else p.grammar) for p in spec.params}
    return (f"# study {spec.name} ({spec.path}): base run config of every trial\n"
            f"{to_yaml(base_cfg)}"
            f"# search space ({spec.sampler.type} sampler, {spec.direction} {spec.metric})\n"
            f"{yaml.safe_dump({'params': space}, sort_keys=False)}")


def main(argv: Sequence[str] | None = None) -> int:
    with quiet_libraries():  # the process-wide settings, once, for the whole command
        return run_command(run_study, USAGE, argv, show_config=study_config)


if __name__ == "__main__":
    raise SystemExit(main())
