"""Positional encodings computed once per (dataset fingerprint, every PE parameter), on disk.

Entries live at ``<root>/pe_cache/v<FORMAT>-<key>.pt`` with ``key = PESpec.cache_key(
fingerprint)``: the key hashes the exact graphs (fingerprint, which covers subset sizes) and
every PE parameter (k, each walk length, each heat time), so changing any of them makes a new
entry instead of silently reusing stale encodings. Each entry also stores its fingerprint and
spec and is checked against them and against the split sizes on load. Writes are atomic and
serialized per entry by a file lock (see ``cache_io``), so concurrent workers asking for the
same PE compute it once and never read a half-written file.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from torch import Tensor

from mspe_sweep.dataset.base import SPLITS
from mspe_sweep.dataset.cache_io import load_or_build
from mspe_sweep.dataset.encodings import PESpec
from mspe_sweep.dataset.graphs import GraphTable
from mspe_sweep.dataset.pe_batch import compute_pe, pe_shapes

log = logging.getLogger(__name__)

PE_FORMAT = 1  # bump whenever a convention of encodings.py / pe_batch.py changes


def pe_cache_path(cache_dir: Path, spec: PESpec, fingerprint: str) -> Path:
    """Where the entry for ``(fingerprint, spec)`` lives."""
    return cache_dir / f"v{PE_FORMAT}-{spec.cache_key(fingerprint)}.pt"


def _spec_record(spec: PESpec) -> dict:
    return {"lap_k": spec.lap_k, "rwse_walks": list(spec.rwse_walks),
            "heat_times": list(spec.heat_times)}


def _compute_all(tables: dict[str, GraphTable], spec: PESpec) -> tuple[dict, float]:
    start = time.perf_counter()
    splits = {split: compute_pe(tables[split], spec) for split in SPLITS}
    return splits, time.perf_counter() - start


def load_or_compute_pe(
    tables: dict[str, GraphTable], spec: PESpec, fingerprint: str, cache_dir: Path | None
) -> tuple[dict[str, dict[str, Tensor]], str]:
    """Returns the encodings of every split, from the disk cache when possible.

    Args:
        tables: ``{"train": ..., "val": ..., "test": ...}``.
        spec: Which encodings (non-empty).
        fingerprint: The dataset fingerprint of exactly these tables.
        cache_dir: Cache directory, or None to compute in memory only.

    Returns:
        ``({split: {attr: tensor [N_split, d]}}, note)`` where ``note`` is a line for
        ``describe()`` saying where the encodings came from and how long they took.
    """
    if cache_dir is None:
        splits, seconds = _compute_all(tables, spec)
        return splits, f"PE computed in memory in {seconds:.2f} s (not cached)"
    path = pe_cache_path(cache_dir, spec, fingerprint)

    def build() -> dict:
        splits, seconds = _compute_all(tables, spec)
        log.info("computed PE %s for %s in %.2f s", spec, fingerprint, seconds)
        return {"format": PE_FORMAT, "fingerprint": fingerprint, "spec": _spec_record(spec),
                "splits": splits, "seconds": seconds}

    def valid(obj) -> bool:
        if not (isinstance(obj, dict) and obj.get("format") == PE_FORMAT
                and obj.get("fingerprint") == fingerprint
                and obj.get("spec") == _spec_record(spec)):
            return False
        for split in SPLITS:
            stored = obj["splits"].get(split, {})
            expected = pe_shapes(spec, tables[split].x.size(0))
            if set(stored) != set(expected) or any(
                    tuple(stored[name].shape) != shape or stored[name].dtype != dtype
                    for name, (shape, dtype) in expected.items()):
                return False
        return True

    entry, hit = load_or_build(path, build, valid)
    how = "loaded from cache" if hit else "computed and cached"
    return entry["splits"], f"PE {how} {path} (computed in {entry['seconds']:.2f} s)"
