"""Process-wide state that in-process CLI runs change, and a context manager undoing it.

Imported by test modules and conftests (``tests/`` is on ``sys.path`` through the top-level
conftest).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal

import optuna
import torch

# Loggers the CLI entry points reconfigure (handlers, levels, propagation) in-process.
_LOGGERS = ("mspe_sweep", "mspe_sweep.pipeline", "mspe_sweep.training", "mspe_sweep.dataset",
            "mlflow")


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
    """In-process CLI runs install a SIGTERM handler, reconfigure logging and Optuna's
    verbosity, and ``training.deterministic=true`` switches torch to deterministic kernels for
    the whole process: undo all of it, so later tests (caplog users, reproducibility tests) see
    the process as pytest set it up."""
    handler = signal.getsignal(signal.SIGTERM)
    saved = {name: (logging.getLogger(name).handlers[:], logging.getLogger(name).level,
                    logging.getLogger(name).propagate) for name in _LOGGERS}
    verbosity = optuna.logging.get_verbosity()
    torch_flags = torch_determinism()
    try:
        yield
    finally:
        restore_torch_determinism(torch_flags)
        signal.signal(signal.SIGTERM, handler)
        for name, (handlers, level, propagate) in saved.items():
            logger = logging.getLogger(name)
            logger.handlers[:] = handlers
            logger.setLevel(level)
            logger.propagate = propagate
        optuna.logging.set_verbosity(verbosity)
