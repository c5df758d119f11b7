"""Checkpoint files: atomic writes, safe reads (``weights_only=True``), shape checks."""

from __future__ import annotations

import contextlib
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any, Mapping

import torch

from mspe_sweep.errors import UserError

__all__ = ["CheckpointError", "FORMAT_VERSION", "atomic_save", "read_checkpoint"]

FORMAT_VERSION = 1

# What torch.load raises on truncated, garbage or non-weights-only files: bytes that merely
# look like a pickle can fail anywhere in the unpickler (an empty stack or memo gives
# IndexError / KeyError).
_READ_ERRORS = (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError,
                IndexError, KeyError, TypeError, AttributeError)


class CheckpointError(UserError):
    """A checkpoint is missing, unreadable, or does not fit the model/optimizer."""


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to ``path`` so that readers only ever see a complete file.

    Writes a temporary file in the same directory, flushes and fsyncs it, then ``os.replace``s
    it over ``path`` (atomic on POSIX and Windows). On any failure the temporary file is removed
    and an existing ``path`` is left untouched.

    Args:
        obj: What to save.
        path: Destination; parent directories are created.

    Returns:
        ``path`` as a Path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        # Also on KeyboardInterrupt: never leave a half-written temp file behind.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a Trainer checkpoint with ``torch.load(weights_only=True)``.

    Args:
        path: The ``.pt`` file.
        map_location: Passed to ``torch.load``.

    Returns:
        The checkpoint dict (keys listed in the training README), e.g. ``ckpt["config"]`` is
        the run's YAML text or None.

    Raises:
        CheckpointError: If the file is missing, unreadable/corrupt, not a Trainer checkpoint,
            or from a newer format version.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except _READ_ERRORS as exc:
        raise CheckpointError(
            f"cannot read checkpoint {path} (corrupt, truncated, or holding pickled objects "
            f"other than tensors and plain values): {_short_reason(exc)}"
        ) from exc
    if not isinstance(ckpt, dict) or "model" not in ckpt or "format_version" not in ckpt:
        raise CheckpointError(
            f"{path} is not an mspe_sweep training checkpoint (no 'model'/'format_version')"
        )
    if ckpt["format_version"] > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {ckpt['format_version']}; this code reads up to "
            f"{FORMAT_VERSION} (upgrade mspe_sweep)"
        )
    return ckpt


def _short_reason(exc: BaseException) -> str:
    """One informative sentence of torch.load's (multi-paragraph) error message."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for index, line in enumerate(lines):
        position = line.find("WeightsUnpickler error")
        if position >= 0:
            detail = line[position:]
            if detail.endswith(":") and index + 1 < len(lines):  # detail on the next line
                detail = f"{detail} {lines[index + 1]}"
            return detail.split(". ")[0]
    return lines[0].split(". ")[0] if lines else type(exc).__name__


def check_state_dict(
    path: Path, expected: Mapping[str, torch.Tensor], found: Mapping[str, Any]
) -> None:
    """Raise a CheckpointError naming the first key that is missing, extra or mis-shaped.

    Args:
        path: The checkpoint (for the message).
        expected: ``model.state_dict()`` of the model being loaded into.
        found: The checkpoint's model state dict.
    """
    for key, tensor in expected.items():
        if key not in found:
            raise CheckpointError(f"{path}: model key {key!r} is missing from the checkpoint")
        if tuple(found[key].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"{path}: shape mismatch for {key!r}: checkpoint {tuple(found[key].shape)}, "
                f"model {tuple(tensor.shape)} (was it written for a different model config?)"
            )
    extra = [key for key in found if key not in expected]
    if extra:
        raise CheckpointError(f"{path}: checkpoint has keys the model lacks, e.g. {extra[0]!r}")
