"""Typed schema of one training run's config (`configs/train.yaml` and its groups).

Hydra composes plain YAML; merging the result into these dataclasses is what turns a typo
(`training.epoch=3`) or a wrong type (`training.epochs=abc`) into a one-line error before any
work starts. Choices that are not types (e.g. ``pooling: sum | mean``) are validated by the
factories that consume them, which list the valid options.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass
class DatasetConfig:
    name: str = "zinc"
    root: str = "data"
    offline_fallback: bool = True
    seed: int = 0
    train_size: Optional[int] = None
    val_size: Optional[int] = None
    test_size: Optional[int] = None


@dataclass
class ModelConfig:
    name: str = "graph_transformer"
    hidden_dim: int = 64
    num_layers: int = 10
    heads: int = 4
    dropout: float = 0.0
    attn_dropout: float = 0.5
    pooling: str = "sum"
    pe_combine: str = "concat"
    lap_encoder: str = "linear"
    norm: str = "batch"


@dataclass
class LapConfig:
    k: int = 0


@dataclass
class RwseConfig:
    steps: int = 0
    scale: str = "linear"


@dataclass
class HeatConfig:
    num_times: int = 0
    t_min: float = 0.1
    t_max: float = 10.0


@dataclass
class PEConfig:
    name: str = "none"
    dim: int = 16
    lap: LapConfig = field(default_factory=LapConfig)
    rwse: RwseConfig = field(default_factory=RwseConfig)
    heat: HeatConfig = field(default_factory=HeatConfig)


@dataclass
class OptimizerConfig:
    type: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-5


@dataclass
class SchedulerConfig:
    type: str = "cosine_warmup"
    warmup_epochs: int = 5
    min_lr: float = 1e-6


@dataclass
class TrainingConfig:
    epochs: int = 100
    batch_size: int = 32
    grad_clip: Optional[float] = 1.0
    mixed_precision: bool = False
    early_stopping: Optional[int] = 20
    accumulation_steps: int = 1
    seed: int = 0
    deterministic: bool = False
    monitor: str = "val/mae"
    monitor_mode: str = "min"
    loss: str = "mae"
    num_workers: int = 0
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
    device: str = "auto"


@dataclass
class StudyArgs:
    name: Optional[str] = None
    n_trials: Optional[int] = None
    timeout: Optional[float] = None
    seed: Optional[int] = None
    force: bool = False


@dataclass
class StorageConfig:
    backend: str = "sqlite"
    url: Optional[str] = None
    heartbeat_interval: int = 30
    grace_period: int = 90
    max_retry: int = 3


@dataclass
class TrackingConfig:
    backend: str = "none"
    uri: Optional[str] = None


@dataclass
class DriverConfig:
    """The sweep driver's own keys (`configs/sweep.yaml`); never part of a trial's identity."""

    study: StudyArgs = field(default_factory=StudyArgs)
    storage: StorageConfig = field(default_factory=StorageConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    workers: int = 1
    trials_per_gpu: int = 1
