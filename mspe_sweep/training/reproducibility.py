"""Seeding, deterministic mode, and RNG state capture/restore (used by checkpoints).

RNG states are captured as tensors and plain Python values only, so a checkpoint holding them
loads with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch

__all__ = ["set_seed", "ReproducibilityContext", "capture_rng_state", "restore_rng_state"]


def set_seed(seed: int, deterministic: bool = False) -> None:
    """Seed Python ``random``, NumPy, torch (CPU) and every CUDA device.

    Args:
        seed: Seed in ``[0, 2**32)`` (NumPy's legacy seeding range).
        deterministic: Also make torch pick deterministic kernels:
            ``torch.use_deterministic_algorithms(True, warn_only=True)``, cuDNN deterministic and
            no cuDNN benchmark, and ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` unless already set.
            With ``False`` these global flags are left as they are.

    Raises:
        ValueError: If ``seed`` is outside ``[0, 2**32)``.
    """
    if not 0 <= int(seed) < 2**32:
        raise ValueError(f"seed must be in [0, 2**32), got {seed}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device (lazily, no CUDA init)
    if deterministic:
        # cuBLAS needs this before its first call to be deterministic on CUDA >= 10.2.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def capture_rng_state() -> dict[str, Any]:
    """Return the Python, NumPy, torch CPU and (if available) CUDA RNG states.

    Returns:
        A dict of tensors and plain Python values (lists, ints, floats, str, None) that
        ``torch.load(weights_only=True)`` accepts: ``python``, ``numpy``, ``torch``, ``cuda``.
    """
    version, py_state, gauss_next = random.getstate()
    name, keys, pos, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    return {
        "python": {"version": version, "state": list(py_state), "gauss_next": gauss_next},
        "numpy": {
            "name": str(name),
            "keys": keys.tolist(),  # 624 uint32 as Python ints: no numpy scalars get pickled
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    """Restore RNG states captured by :func:`capture_rng_state`.

    CUDA states are restored only when CUDA is available with the same number of devices;
    otherwise they are skipped (a checkpoint written on a GPU box still loads on a CPU one).

    Args:
        state: The dict returned by :func:`capture_rng_state` (possibly after a save/load).
    """
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss_next"]))
    npy = state["numpy"]
    np.random.set_state(
        (
            npy["name"],
            np.asarray(npy["keys"], dtype=np.uint32),
            npy["pos"],
            npy["has_gauss"],
            npy["cached_gaussian"],
        )
    )
    # torch.set_rng_state needs a CPU ByteTensor even if the checkpoint was mapped elsewhere.
    torch.set_rng_state(state["torch"].to("cpu", torch.uint8))
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.to("cpu", torch.uint8) for s in cuda])


class ReproducibilityContext:
    """Seed on enter; restore the previous RNG states (and deterministic flags) on exit.

    Example:
        >>> with ReproducibilityContext(0):
        ...     a = torch.rand(2)
        >>> with ReproducibilityContext(0):
        ...     b = torch.rand(2)
        >>> bool(torch.equal(a, b))
        True

    Args:
        seed: Passed to :func:`set_seed`.
        deterministic: Passed to :func:`set_seed`; the previous flags come back on exit.
    """

    def __init__(self, seed: int, deterministic: bool = False) -> None:
        self.seed = seed
        self.deterministic = deterministic
        self._saved: dict[str, Any] | None = None

    def __enter__(self) -> ReproducibilityContext:
        self._saved = {
            "rng": capture_rng_state(),
            "det": torch.are_deterministic_algorithms_enabled(),
            "det_warn": torch.is_deterministic_algorithms_warn_only_enabled(),
            "cudnn_det": torch.backends.cudnn.deterministic,
            "cudnn_bench": torch.backends.cudnn.benchmark,
        }
        set_seed(self.seed, deterministic=self.deterministic)
        return self

    def __exit__(self, *exc_info: object) -> None:
        saved = self._saved
        assert saved is not None, "__exit__ without __enter__"
        restore_rng_state(saved["rng"])
        torch.use_deterministic_algorithms(saved["det"], warn_only=saved["det_warn"])
        torch.backends.cudnn.deterministic = saved["cudnn_det"]
        torch.backends.cudnn.benchmark = saved["cudnn_bench"]
        self._saved = None
