"""Crash- and race-safe on-disk caches: atomic writes, a per-entry lock, load-or-build.

Every cache file (built offline set, positional encodings) holds tensors and plain Python
values only and is read back with ``torch.load(weights_only=True)``. Writers save to a temp
file in the same directory and ``os.replace`` it into place, so a reader never sees a partly
written file; an ``fcntl.flock`` on ``<entry>.lock`` makes a second process that wants the
same entry wait for the first one and then read its result instead of recomputing it.
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from mspe_sweep.training.checkpoint import atomic_save

try:  # POSIX only; elsewhere the atomic replace alone still prevents corrupt files.
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

log = logging.getLogger(__name__)

# What torch.load raises on a truncated, foreign or otherwise unreadable file.
_UNREADABLE = (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Holds an exclusive advisory lock on ``<path>.lock`` (blocking) for the ``with`` body.

    Args:
        path: The cache entry the lock protects.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if fcntl is None:  # pragma: no cover - Windows
        yield
        return
    with open(f"{path}.lock", "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def try_load(path: Path, validate: Callable[[Any], bool], quiet: bool = False) -> Any | None:
    """Loads a cache entry, or returns None when it is missing, unreadable or fails ``validate``.

    Args:
        path: The cache file.
        validate: Returns True when the loaded object is usable (format version, shapes...).
        quiet: Do not warn about an unusable file (the caller will look again under the lock).

    Returns:
        The loaded object, or None.
    """
    if not path.exists():
        return None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except _UNREADABLE as exc:
        if quiet:
            return None
        warnings.warn(f"ignoring unreadable cache file {path} ({exc}); rebuilding it",
                      stacklevel=3)
        return None
    if not validate(obj):
        if quiet:
            return None
        warnings.warn(f"ignoring stale or invalid cache file {path}; rebuilding it", stacklevel=3)
        return None
    return obj


def load_or_build(
    path: Path, build: Callable[[], Any], validate: Callable[[Any], bool]
) -> tuple[Any, bool]:
    """Returns the cached object at ``path``, building and saving it once if needed.

    Concurrent callers (threads or processes) asking for the same entry serialize on its
    lock: one builds, the others then load what it wrote.

    Args:
        path: The cache file.
        build: Computes the object (tensors and plain containers only).
        validate: See :func:`try_load`.

    Returns:
        ``(obj, hit)`` where ``hit`` is True when the object came from disk.
    """
    obj = try_load(path, validate, quiet=True)
    if obj is not None:
        return obj, True
    with file_lock(path):
        obj = try_load(path, validate)  # another process may have built it while we waited
        if obj is not None:
            return obj, True
        obj = build()
        atomic_save(obj, path)
        log.info("wrote cache entry %s", path)
    return obj, False
