"""Process-wide state that in-process CLI runs change, and a context manager undoing it.

The sweep's own settings (Optuna's verbosity, the per-trial loggers' levels, the SIGTERM
handler) are undone by the code that sets them; what is left here is the entry points' logging
set-up (``cli.configure_logging``, MLflow's logger) and torch's determinism switches.

Imported by test modules and conftests (``tests/`` is on ``sys.path`` through the top-level
conftest).
"""

from __future__ import annotations

import contextlib
import logging
import os

import torch

# Loggers the CLI entry points reconfigure (handlers, levels, propagation) in-process.
_LOGGERS = ("mspe_sweep", "mlflow")


def torch_determinism() -> tuple:
    """What ``set_seed(..., deterministic=True)`` changes process-wide (and never undoes)."""
    return (torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(),
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
            os.environ.get("CUBLAS_WORKSPACE_CONFIG"))


def restore_torch_determinism(flags: tuple) -> None:
    enabled, warn_only, cudnn_deterministic, cudnn_benchmark, cublas = flags
    torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
    torch.backends.cudnn.deterministic = cudnn_deterministic
    torch.backends.cudnn.benchmark = cudnn_benchmark
    if cublas is None:
        os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
    else:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = cublas


@contextlib.contextmanager
def preserved_process_state():
    """In-process CLI runs reconfigure logging, and ``training.deterministic=true`` switches
    torch to deterministic kernels for the whole process: undo both, so later tests (caplog
    users, reproducibility tests) see the process as pytest set it up."""
    saved = {name: (logging.getLogger(name).handlers[:], logging.getLogger(name).level,
                    logging.getLogger(name).propagate) for name in _LOGGERS}
    torch_flags = torch_determinism()
    try:
        yield
    finally:
        restore_torch_determinism(torch_flags)
        for name, (handlers, level, propagate) in saved.items():
            logger = logging.getLogger(name)
            logger.handlers[:] = handlers
            logger.setLevel(level)
            logger.propagate = propagate
