"""``get_dataset``: name + root + PE config -> a :class:`GraphDataset`."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from mspe_sweep.dataset.base import SPLITS, GraphDataset, LoadedSplits, resolve_root
from mspe_sweep.dataset.encodings import PESpec
from mspe_sweep.dataset.pe_cache import load_or_compute_pe
from mspe_sweep.dataset.synthetic import make_synthetic
from mspe_sweep.dataset.zinc import load_zinc
from mspe_sweep.dataset.zinc_moses import load_zinc_moses
from mspe_sweep.dataset.zinc_rdkit import load_zinc_rdkit


def _zinc(subset: bool) -> Callable[..., LoadedSplits]:
    def load(root: Path, *, offline_fallback: bool, seed: int, sizes: dict) -> LoadedSplits:
        return load_zinc(root, subset=subset, offline_fallback=offline_fallback, seed=seed)
    return load


def _zinc_rdkit(root: Path, *, offline_fallback: bool, seed: int, sizes: dict,
                **kw: Any) -> LoadedSplits:
    return load_zinc_rdkit(root, seed=seed, **kw)


def _zinc_moses(root: Path, *, offline_fallback: bool, seed: int, sizes: dict) -> LoadedSplits:
    return load_zinc_moses(root, seed=seed, sizes=sizes)


def _synthetic(root: Path, *, offline_fallback: bool, seed: int, sizes: dict,
               **kw: Any) -> LoadedSplits:
    if "num_graphs" not in kw and any(sizes.values()):
        # Generate enough graphs that each 80/10/10 split holds at least its requested size.
        kw["num_graphs"] = max(64, -(-(sizes["train"] or 0) * 10 // 8),
                               10 * (sizes["val"] or 0), 10 * (sizes["test"] or 0))
    return make_synthetic(seed=seed, **kw)


# name -> (loader, extra keyword arguments it accepts)
_LOADERS: dict[str, tuple[Callable[..., LoadedSplits], tuple[str, ...]]] = {
    "zinc": (_zinc(subset=True), ()),
    "zinc_full": (_zinc(subset=False), ()),
    "zinc_rdkit": (_zinc_rdkit, ("smiles_file",)),
    "zinc_moses": (_zinc_moses, ()),
    "synthetic": (_synthetic, ("num_graphs", "min_nodes", "max_nodes", "num_node_types")),
}
DATASETS = tuple(_LOADERS)


def get_dataset(
    name: str,
    root: str | os.PathLike = "data/",
    pe: Mapping[str, Any] | PESpec | None = None,
    *,
    train_size: int | None = None,
    val_size: int | None = None,
    test_size: int | None = None,
    offline_fallback: bool = True,
    seed: int = 0,
    **kw: Any,
) -> GraphDataset:
    """Loads a dataset in PyG ZINC format, with positional encodings from the disk cache.

    Args:
        name: One of ``zinc``, ``zinc_full``, ``zinc_rdkit``, ``zinc_moses``, ``synthetic``.
        root: Data directory; a relative path is taken under ``$MSPE_HOME`` (so the default
            is ``$MSPE_HOME/data``). Datasets and ``pe_cache/`` live below it.
        pe: A ``configs/pe/*.yaml`` mapping (``lap``/``rwse``/``heat`` sections), a
            :class:`PESpec`, or None for no encodings.
        train_size: Keep only the first n graphs of the (deterministic) train split
            (``zinc_moses``: build this many; None = full ZINC's 220,011).
        val_size: Same for val.
        test_size: Same for test.
        offline_fallback: ``zinc``/``zinc_full``: use ``zinc_rdkit`` (loudly) when real ZINC
            cannot be loaded; False makes that a ``UserError``. Ignored by the others.
        seed: Split seed of ``zinc_rdkit``/``zinc_moses``/``synthetic`` (real ZINC has
            fixed splits).
        **kw: Dataset-specific options: ``zinc_rdkit``: ``smiles_file``; ``synthetic``:
            ``num_graphs``, ``min_nodes``, ``max_nodes``, ``num_node_types``.

    Returns:
        A :class:`GraphDataset`; ``fingerprint`` and ``source`` name the data really used.

    Raises:
        ValueError: Unknown name, unknown option, bad subset size or bad PE config.
        UserError: Real ZINC unavailable with ``offline_fallback=False``, missing files.
    """
    if name not in _LOADERS:
        raise ValueError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)}")
    loader, options = _LOADERS[name]
    unknown = sorted(set(kw) - set(options))
    if unknown:
        valid = ["train_size", "val_size", "test_size", "offline_fallback", "seed", *options]
        raise ValueError(f"dataset {name}: unknown option(s) {unknown}; valid: {valid}")
    sizes = dict(zip(SPLITS, (train_size, val_size, test_size)))
    for split, size in sizes.items():
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise ValueError(f"dataset {name}: {split}_size must be a positive int or None, "
                             f"got {size!r}")
    spec = pe if isinstance(pe, PESpec) or pe is None else PESpec.from_config(pe)
    data_root = resolve_root(root)
    loaded = loader(data_root, offline_fallback=offline_fallback, seed=seed, sizes=sizes, **kw)
    dataset = GraphDataset(loaded, sizes, pe_spec=spec)
    if dataset.pe_spec is not None:
        cache_dir = data_root / "pe_cache" if loaded.persistent else None
        pe_tensors, note = load_or_compute_pe(
            dataset.tables, dataset.pe_spec, dataset.fingerprint, cache_dir)
        dataset.attach_pe(pe_tensors, note)
    return dataset
