"""Typed schema of one training run's config (`configs/train.yaml` and its groups).

Hydra composes plain YAML; merging the result into these dataclasses is what turns a typo
(`training.epoch=3`) or a wrong type (`training.epochs=abc`) into a one-line error before any
work starts. Each field's ``rule`` adds what a type cannot say: a range, finiteness, or the
valid options, named by the factory that owns them (``"module:NAME"``, imported only when a
config is checked, so this module stays free of torch). :mod:`mspe_sweep.validation` applies
the rules, before any dataset is built, run directory made or study storage opened.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass(frozen=True)
class Rule:
    """What a value must satisfy beyond its type (``None`` passes where the type allows it).

    Attributes:
        ge, gt, le, lt: Bounds (numbers); floats must also be finite.
        options: The valid values: ``"module:NAME"`` of a sequence, a mapping (its keys) or a
            function returning either; a leading ``"|"`` gives literal options
            (``"|min|max"``).
        pattern: A regular expression the whole value must match, with ``hint`` as the
            description of valid values.
    """

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    options: str | None = None
    pattern: str | None = None
    hint: str | None = None


def rule(default: Any, **checks: Any) -> Any:
    """A dataclass field with a default and a :class:`Rule` in its metadata."""
    return field(default=default, metadata={"rule": Rule(**checks)})


@dataclass
class DatasetConfig:
    name: str = rule("zinc", options="mspe_sweep.dataset.factory:DATASETS")
    root: str = "data"
    offline_fallback: bool = True
    seed: int = rule(0, ge=0)
    train_size: Optional[int] = rule(None, ge=1)
    val_size: Optional[int] = rule(None, ge=1)
    test_size: Optional[int] = rule(None, ge=1)


@dataclass
class ModelConfig:
    name: str = rule("graph_transformer", options="mspe_sweep.models.factory:MODELS")
    hidden_dim: int = rule(64, ge=1)
    num_layers: int = rule(10, ge=1)
    heads: int = rule(4, ge=1)
    dropout: float = rule(0.0, ge=0, lt=1)
    attn_dropout: float = rule(0.5, ge=0, lt=1)
    pooling: str = rule("sum", options="mspe_sweep.models.graph_transformer:POOLINGS")
    pe_combine: str = rule("concat", options="mspe_sweep.models.node_encoder:PE_COMBINES")
    lap_encoder: str = rule("linear", options="mspe_sweep.models.encoders:LAP_ENCODERS")
    norm: str = rule("batch", options="mspe_sweep.models.layers:NORMS")


@dataclass
class LapConfig:
    k: int = rule(0, ge=0)


@dataclass
class RwseConfig:
    steps: int = rule(0, ge=0)
    scale: str = rule("linear", options="mspe_sweep.dataset.encodings:RWSE_SCALES")


@dataclass
class HeatConfig:
    num_times: int = rule(0, ge=0)
    t_min: float = rule(0.1, gt=0)
    t_max: float = rule(10.0, gt=0)


@dataclass
class PEConfig:
    name: str = "none"
    dim: int = rule(16, ge=1)
    lap: LapConfig = field(default_factory=LapConfig)
    rwse: RwseConfig = field(default_factory=RwseConfig)
    heat: HeatConfig = field(default_factory=HeatConfig)


@dataclass
class OptimizerConfig:
    type: str = rule("adamw", options="mspe_sweep.training.optimizer:OPTIMIZERS")
    lr: float = rule(1e-3, gt=0)
    weight_decay: float = rule(1e-5, ge=0)


@dataclass
class SchedulerConfig:
    type: str = rule("cosine_warmup", options="mspe_sweep.training.scheduler:SCHEDULERS")
    warmup_epochs: int = rule(5, ge=0)
    min_lr: float = rule(1e-6, ge=0)


@dataclass
class TrainingConfig:
    epochs: int = rule(100, ge=1)
    batch_size: int = rule(32, ge=1)
    grad_clip: Optional[float] = rule(1.0, gt=0)
    mixed_precision: bool = False
    early_stopping: Optional[int] = rule(20, ge=1)
    accumulation_steps: int = rule(1, ge=1)
    # numpy seeds are 32-bit; a sweep derives trial seeds below 2**31.
    seed: int = rule(0, ge=0, lt=2**32)
    deterministic: bool = False
    monitor: str = rule("val/mae", options="mspe_sweep.validation:monitor_options")
    monitor_mode: str = rule("min", options="|min|max")
    loss: str = rule("mae", options="mspe_sweep.validation:loss_options")
    num_workers: int = rule(0, ge=0)
    progress: bool = True
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)


@dataclass
class RunConfig:
    """One training run: what `python -m mspe_sweep.train` composes."""

    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    pe: PEConfig = field(default_factory=PEConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    device: str = rule("auto", pattern=r"auto|cpu|cuda(:\d+)?|mps",
                       hint="auto, cpu, cuda, cuda:N, mps")


@dataclass
class StudyArgs:
    name: Optional[str] = None
    n_trials: Optional[int] = None
    timeout: Optional[float] = None
    seed: Optional[int] = None
    force: bool = False
    trial_timeout: Optional[float] = None  # hang limits of one trial (sweep/watchdog.py)
    epoch_timeout: Optional[float] = None


@dataclass
class StorageConfig:
    backend: str = "sqlite"
    url: Optional[str] = None
    heartbeat_interval: int = rule(30, ge=1)
    grace_period: int = rule(90, ge=1)
    max_retry: int = rule(3, ge=0)
    # seconds a storage call waits for the database
    outage_timeout: Optional[int] = rule(600, ge=1)


@dataclass
class ProxyConfig:
    """Where `python -m mspe_sweep.storage_proxy` listens (its ``proxy.*`` keys)."""

    host: str = "127.0.0.1"  # no authentication, no TLS: a private interface at most
    port: int = rule(13000, ge=1, le=65535)
    threads: int = rule(10, ge=1)  # calls served at once (Optuna's default)


@dataclass
class TrackingConfig:
    backend: str = "none"
    uri: Optional[str] = None


@dataclass
class LauncherConfig:
    """How workers start (`configs/launcher/`); the batch keys apply to ``slurm`` only."""

    name: str = "local"
    workers: int = rule(1, ge=1)
    partition: Optional[str] = None
    account: Optional[str] = None
    qos: Optional[str] = None
    time: Optional[str] = None
    gpus_per_worker: int = rule(0, ge=0)
    cpus_per_worker: int = rule(1, ge=1)
    mem: Optional[str] = None
    max_parallel: Optional[int] = rule(None, ge=1)
    signal_seconds: int = rule(120, ge=0)
    sbatch_lines: list[str] = field(default_factory=list)
    setup: str = ""
    log_dir: Optional[str] = None
    dry_run: bool = False
    wait: bool = False


@dataclass
class ConfirmConfig:
    """The confirmation phase (`python -m mspe_sweep.confirm`): its ``confirm.*`` keys."""

    top_k: int = rule(3, ge=1)  # distinct configurations of the sweep, best first
    seeds: int = rule(4, ge=2)  # seeds per configuration, the sweep's own trial included


@dataclass
class DriverConfig:
    """The sweep driver's own keys (`configs/sweep.yaml`); never part of a trial's identity."""

    study: StudyArgs = field(default_factory=StudyArgs)
    storage: StorageConfig = field(default_factory=StorageConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    launcher: LauncherConfig = field(default_factory=LauncherConfig)
    confirm: ConfirmConfig = field(default_factory=ConfirmConfig)
    workers: int = rule(1, ge=1)
    trials_per_gpu: int = rule(1, ge=1)
