"""``zinc`` / ``zinc_full``: real ZINC via PyG, falling back loudly to ``zinc_rdkit`` offline.

PyG's ``ZINC(root=<root>/zinc)`` reads its raw files from ``<root>/zinc/raw/`` and downloads
them when they are missing. Without network the download fails; then, with
``offline_fallback=True`` (default), the offline ZINC-format set is used instead, with a
warning that says why and how to get real ZINC, and with ``source``/``fingerprint`` naming the
data really used. ``offline_fallback=False`` turns the same message into a ``UserError``.

Two guards around PyG: a short connection check first (PyG's ``urlopen`` has no timeout, so a
firewalled machine could otherwise hang for minutes), and never calling PyG when the raw
directory is only partly filled (PyG's ``download()`` deletes the raw directory first, which
would destroy the files a user has placed there).
"""

from __future__ import annotations

import http.client
import logging
import socket
import urllib.parse
import warnings
import zipfile
from pathlib import Path

from torch_geometric.datasets import ZINC

from mspe_sweep.dataset.base import SPLITS, LoadedSplits
from mspe_sweep.dataset.graphs import GraphTable
from mspe_sweep.dataset.molecules import ATOM_VOCAB
from mspe_sweep.dataset.zinc_rdkit import load_zinc_rdkit
from mspe_sweep.errors import UserError

log = logging.getLogger(__name__)

RAW_FILES = ("train.pickle", "val.pickle", "test.pickle", "train.index", "val.index", "test.index")
CONNECT_TIMEOUT_S = 5.0
# What a failed or garbled download raises: URLError/HTTPError/timeouts/SSL are OSErrors.
_NETWORK_ERRORS = (OSError, http.client.HTTPException, zipfile.BadZipFile)


class OfflineFallbackWarning(UserWarning):
    """Real ZINC was unavailable and the offline ``zinc_rdkit`` set is used instead."""


def how_to_get_zinc(raw_dir: Path) -> str:
    """One line telling the user where to put the raw files of real ZINC."""
    return (
        f"to use real ZINC, download {ZINC.url.split('?')[0]}, unzip it and put the files of its "
        f"molecules/ folder (train.pickle, val.pickle, test.pickle) plus train.index, val.index "
        f"and test.index from {ZINC.split_url.rsplit('/', 1)[0]}/ into {raw_dir}/"
    )


def network_reachable(url: str, timeout: float = CONNECT_TIMEOUT_S) -> str | None:
    """Tries a TCP connection to the URL's host; returns None when it works, else the reason."""
    host = urllib.parse.urlsplit(url).hostname or ""
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError as exc:
        return f"cannot reach {host} ({type(exc).__name__}: {exc})"
    return None


def _load_pyg(zinc_root: Path, subset: bool) -> dict[str, GraphTable]:
    tables = {}
    for split in SPLITS:
        dataset = ZINC(root=str(zinc_root), subset=subset, split=split)
        tables[split] = GraphTable.from_collated(dataset._data, dataset.slices)
    return tables


def load_zinc(
    root: Path, *, subset: bool = True, offline_fallback: bool = True, seed: int = 0
) -> LoadedSplits:
    """Loads real ZINC (subset: 10k/1k/1k; full: 220k/24k/5k) or falls back offline.

    Args:
        root: Resolved data root; PyG's files live under ``<root>/zinc/``.
        subset: The 12k-graph benchmark subset (``zinc``) or the full set (``zinc_full``).
        offline_fallback: Use ``zinc_rdkit`` (with a warning) when real ZINC is unavailable.
        seed: Split seed of the fallback set (real ZINC has fixed splits).

    Returns:
        The splits, with ``name``/``source`` telling which data was really used.

    Raises:
        UserError: Real ZINC is unavailable and ``offline_fallback`` is False.
    """
    name = "zinc" if subset else "zinc_full"
    zinc_root = root / "zinc"
    raw_dir = zinc_root / "raw"
    missing = [f for f in RAW_FILES if not (raw_dir / f).is_file()]
    reason = None
    if missing and len(missing) < len(RAW_FILES):
        reason = f"{raw_dir} is incomplete (missing {', '.join(missing)})"
    elif missing:
        reason = network_reachable(ZINC.url)
    if reason is None:
        try:
            tables = _load_pyg(zinc_root, subset)
        except _NETWORK_ERRORS as exc:
            reason = f"downloading ZINC failed ({type(exc).__name__}: {exc})"
            # PyG reuses an existing zip without checking it: never leave a partial one behind.
            (zinc_root / "molecules.zip").unlink(missing_ok=True)
        else:
            kind = "subset, 10,000/1,000/1,000" if subset else "full, 220,011/24,445/5,000"
            return LoadedSplits(
                name=name,
                source=f"{name}: real ZINC ({kind}) via torch_geometric from {zinc_root}",
                source_id=f"{name}:pyg", splits=tables, num_features=len(ATOM_VOCAB))
    message = f"dataset {name}: real ZINC is unavailable: {reason}; {how_to_get_zinc(raw_dir)}"
    if not offline_fallback:
        raise UserError(message + " (or allow dataset.offline_fallback=true)")
    message += "; FALLING BACK to the offline zinc_rdkit set, whose MAE is not comparable"
    log.warning(message)
    warnings.warn(message, OfflineFallbackWarning, stacklevel=4)
    loaded = load_zinc_rdkit(root, seed=seed)
    loaded.source = f"{loaded.source} [requested {name}; fallback: {reason}]"
    loaded.notes.insert(0, f"FALLBACK: {name} requested but unavailable ({reason})")
    return loaded
