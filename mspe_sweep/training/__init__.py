"""Training: the Trainer and its utilities. Knows nothing of Optuna or MLflow (see README.md)."""

from .callbacks import Callback
from .checkpoint import CheckpointError, read_checkpoint
from .loops import NonFiniteLossError
from .losses import get_loss_fn
from .metrics import get_metrics
from .optimizer import get_optimizer
from .reproducibility import ReproducibilityContext, set_seed
from .scheduler import get_scheduler
from .trainer import Trainer
from .utils import EarlyStopping, GradientAccumulator, get_device, log_model_info

__all__ = [
    "Trainer",
    "get_optimizer",
    "get_scheduler",
    "get_loss_fn",
    "get_metrics",
    "set_seed",
    "ReproducibilityContext",
    "EarlyStopping",
    "GradientAccumulator",
    "get_device",
    "log_model_info",
    "Callback",
    "NonFiniteLossError",
    "CheckpointError",
    "read_checkpoint",
]
