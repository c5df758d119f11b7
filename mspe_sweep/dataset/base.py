"""The dataset object that ``get_dataset`` returns, and what every loader hands to it."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Data

from mspe_sweep.dataset.batching import TableLoader
from mspe_sweep.dataset.encodings import PESpec
from mspe_sweep.dataset.graphs import GraphTable, graph_stats

SPLITS = ("train", "val", "test")


@dataclass
class LoadedSplits:
    """What a loader returns: the splits plus a description of where they really came from.

    Attributes:
        name: The dataset whose data this really is (``zinc_rdkit`` after a fallback).
        source: One-line human description of the data actually used.
        source_id: Stable identifier of the source (enters the fingerprint).
        splits: ``{"train": table, "val": table, "test": table}``.
        num_features: Node-type vocabulary size.
        persistent: Whether PE may be cached on disk (False for in-memory synthetic data).
        notes: Extra lines for ``describe()`` (skipped molecules, build time, fallback reason).
    """

    name: str
    source: str
    source_id: str
    splits: dict[str, GraphTable]
    num_features: int
    persistent: bool = True
    notes: list[str] = field(default_factory=list)


class GraphDataset:
    """Train/val/test splits in PyG ZINC format, with optional positional encodings.

    Attributes:
        name: Dataset name of the data really used.
        source: One-line description of the data really used.
        num_features: Node-type vocabulary size (categorical ``x``).
        num_classes: Output dimension (1: scalar regression).
        task_type: ``"regression"``.
        num_edge_types: Edge-type vocabulary size (4: 0 unused, 1 single, 2 double, 3 triple).
        pe_spec: The positional encodings attached (None when none).
        pe_dims: ``{"lap": k, "rwse": R, "heat": H}``, 0 for encodings not attached.
        fingerprint: 16 hex digits identifying the exact graphs and targets (not the PE).
    """

    num_classes = 1
    task_type = "regression"
    num_edge_types = 4

    def __init__(
        self,
        loaded: LoadedSplits,
        sizes: dict[str, int | None],
        pe_spec: PESpec | None = None,
    ) -> None:
        self.name, self.source = loaded.name, loaded.source
        self.num_features = loaded.num_features
        self.tables = {split: loaded.splits[split].head(sizes.get(split)) for split in SPLITS}
        self.sizes = dict(sizes)
        self.notes = list(loaded.notes)
        self.pe_spec = pe_spec if pe_spec is not None and not pe_spec.is_empty else None
        self.pe: dict[str, dict[str, Tensor]] = {split: {} for split in SPLITS}
        self.pe_dims = (self.pe_spec or PESpec()).dims
        self.fingerprint = compute_fingerprint(loaded.name, loaded.source_id, self.tables, sizes)
        self._data_lists: tuple[list[Data], list[Data], list[Data]] | None = None

    def attach_pe(self, pe: dict[str, dict[str, Tensor]], note: str) -> None:
        """Sets the per-split PE tensors (``{split: {attr: [N_split, d]}}``) for ``pe_spec``."""
        assert self.pe_spec is not None and self._data_lists is None
        self.pe = pe
        self.notes.append(note)

    def get_splits(self) -> tuple[list[Data], list[Data], list[Data]]:
        """Returns ``(train, val, test)`` lists of ``Data`` (built once, then reused)."""
        if self._data_lists is None:
            train, val, test = (self.tables[s].to_data_list(self.pe[s]) for s in SPLITS)
            self._data_lists = (train, val, test)
        return self._data_lists

    def loaders(self, batch_size: int, device: torch.device | str | None = None
                ) -> tuple[TableLoader, TableLoader, TableLoader]:
        """Train (shuffled), val and test batches built from the flat tensors (see
        ``batching``): the batches PyG's ``DataLoader`` makes of :meth:`get_splits`, without
        building a ``Data`` per graph; on ``device`` when given."""
        return tuple(TableLoader(self.tables[s], self.pe[s], batch_size=batch_size,
                                 shuffle=s == "train", device=device) for s in SPLITS)

    def describe(self) -> str:
        """A multi-line summary: source, fingerprint, split sizes, features and PE."""
        lines = [f"dataset: {self.name} (fingerprint {self.fingerprint})",
                 f"source: {self.source}"]
        lines += [f"  {split}: {graph_stats(self.tables[split])}" for split in SPLITS]
        limited = {s: n for s, n in self.sizes.items() if n is not None}
        if limited:
            lines.append(f"  subset: first {limited} graphs of each split")
        lines.append(
            f"features: {self.num_features} node types (categorical), {self.num_edge_types} edge "
            f"types; task: {self.task_type}, {self.num_classes} output")
        if self.pe_spec is None:
            lines.append("PE: none")
        else:
            spec = self.pe_spec
            lines.append(
                f"PE: lap k={spec.lap_k}, rwse walks={list(spec.rwse_walks)}, heat times="
                f"{[round(t, 4) for t in spec.heat_times]} -> dims {self.pe_dims}")
        return "\n".join(lines + self.notes)

    def __repr__(self) -> str:
        sizes = "/".join(str(self.tables[s].num_graphs) for s in SPLITS)
        return (f"GraphDataset(name={self.name!r}, graphs={sizes}, pe_dims={self.pe_dims}, "
                f"fingerprint={self.fingerprint!r})")


def compute_fingerprint(
    name: str, source_id: str, tables: dict[str, GraphTable], sizes: dict[str, int | None]
) -> str:
    """16 hex digits over the real dataset name, source id, subset sizes and split contents."""
    payload = {
        "name": name,
        "source": source_id,
        "sizes": {split: sizes.get(split) for split in SPLITS},
        "content": {split: tables[split].content_hash() for split in SPLITS},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def resolve_root(root: str | os.PathLike) -> Path:
    """An absolute ``root`` is used as is; a relative one lives under ``$MSPE_HOME``.

    DESIGN.md keeps all state under MSPE_HOME (default ``./mspe_home``), so the default
    ``root="data/"`` means ``$MSPE_HOME/data``.
    """
    path = Path(root).expanduser()
    if path.is_absolute():
        return path
    return Path(os.environ.get("MSPE_HOME", "mspe_home")).expanduser().absolute() / path


def split_indices(n: int, seed: int) -> dict[str, list[int]]:
    """Deterministic 80/10/10 split of ``range(n)`` (val and test get ``n // 10`` each).

    Args:
        n: Number of graphs (at least 3).
        seed: Seed of the permutation.

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}`` index lists.
    """
    if n < 3:
        raise ValueError(f"need at least 3 graphs to split into train/val/test, got {n}")
    order = np.random.default_rng(seed).permutation(n).tolist()
    k = max(1, n // 10)
    return {"val": order[:k], "test": order[k:2 * k], "train": order[2 * k:]}
