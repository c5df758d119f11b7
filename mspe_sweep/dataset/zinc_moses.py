"""``zinc_moses``: a large offline ZINC-format set from the ZINC molecules that MOSES ships.

The ``molsets`` 0.3.1 wheel (MOSES, MIT licence) holds ``moses/dataset/data/train.csv.gz``:
1,584,663 SMILES drawn from ZINC (clean-leads, 250-350 Da, neutral). The file is located with
``importlib.util.find_spec`` and read directly: ``moses`` itself is never imported (its
pinned dependencies do not install on current Pythons, hence ``pip install --no-deps``).

The set is built exactly like ``zinc_rdkit`` (the same ``build_graphs``: ZINC's atom
vocabulary, kekulized bond types, the normalized penalized-logP target; molecules outside the
vocabulary or ZINC's 9-38 heavy atoms are skipped and counted) and only as large as asked:
the file's rows are put in a seeded permutation whose first 10% are the val candidates, the
next 10% the test candidates and the rest the train candidates (``split_indices``), and each
split takes the first ``<split>_size`` usable molecules of its candidates, de-duplicated
across splits (val first, then test, then train). Default sizes are those of full ZINC,
220,011 / 24,445 / 5,000.

Its molecules come from ZINC but it is NOT the ZINC benchmark subset: its MAE is not comparable
with published ZINC results. The cache ``<root>/zinc_moses/zinc_moses-v<FORMAT>-<key>.pt`` is
keyed by the format version, the file's content hash, the seed, the three sizes and RDKit's
version.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import importlib.util
import logging
import os
import time
from pathlib import Path

import rdkit

from mspe_sweep.dataset.base import SPLITS, LoadedSplits, split_indices
from mspe_sweep.dataset.cache_io import load_or_build
from mspe_sweep.dataset.graphs import GraphTable
from mspe_sweep.dataset.molecules import ATOM_VOCAB
from mspe_sweep.dataset.zinc_rdkit import NOT_COMPARABLE, build_graphs
from mspe_sweep.errors import UserError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1  # bump whenever tokens, bonds, target, split or size rules change
DEFAULT_SIZES = {"train": 220_011, "val": 24_445, "test": 5_000}  # full ZINC's splits
SOURCE = "molecules from ZINC via MOSES; not the benchmark subset"
INSTALL_HINT = "pip install --no-deps molsets==0.3.1 (`make setup` does)"
# Below this many molecules a process pool costs more than it saves.
POOL_MIN_MOLECULES = 20_000


def moses_train_file() -> Path:
    """The path of MOSES's ``train.csv.gz``, found without importing ``moses``.

    Raises:
        UserError: When ``molsets`` is not installed or the file is missing.
    """
    spec = importlib.util.find_spec("moses")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"dataset=zinc_moses needs the molsets wheel: {INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / "dataset" / "data" / "train.csv.gz"
    if not path.is_file():
        raise UserError(f"dataset=zinc_moses: {path} is missing; reinstall: {INSTALL_HINT}")
    return path


def read_moses_smiles(path: Path) -> list[str]:
    """The ``SMILES`` column of a (gzipped) MOSES CSV file."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        if "SMILES" not in header:
            raise UserError(f"{path}: expected a CSV with a SMILES column, got header {header}")
        column = header.index("SMILES")
        return [row[column] for row in reader if row]


def default_workers() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _build(path: Path, seed: int, sizes: dict[str, int]) -> dict:
    start = time.perf_counter()
    smiles = read_moses_smiles(path)
    candidates = split_indices(len(smiles), seed)
    workers = default_workers() if sum(sizes.values()) >= POOL_MIN_MOLECULES else 1
    splits, skipped, seen, used = {}, {}, set(), 0
    for split in ("val", "test", "train"):  # val and test first: they win a duplicate
        order = candidates[split]
        graphs, skips = build_graphs((smiles[i] for i in order), limit=sizes[split],
                                     seen=seen, workers=workers)
        if len(graphs) < sizes[split]:
            raise UserError(
                f"dataset=zinc_moses: {split}_size={sizes[split]:,} is more than the "
                f"{len(graphs):,} usable molecules among its {len(order):,} candidates")
        used += len(graphs) + sum(skips.values())
        for why, n in skips.items():
            skipped[why] = skipped.get(why, 0) + n
        ids, edges, kinds, ys = zip(*graphs)
        splits[split] = GraphTable.from_lists(ids, edges, kinds, ys).to_dict()
    seconds = time.perf_counter() - start
    log.info("built zinc_moses: %s molecules from %s in %.1f s (%d processes)",
             "/".join(f"{sizes[s]:,}" for s in SPLITS), path, seconds, workers)
    return {"format": FORMAT_VERSION, "splits": {s: splits[s] for s in SPLITS},
            "skipped": skipped, "num_source": len(smiles), "num_read": used,
            "build_seconds": seconds, "workers": workers}


def load_zinc_moses(
    root: Path, *, seed: int = 0, sizes: dict[str, int | None] | None = None
) -> LoadedSplits:
    """Loads (building once per size) the offline ZINC set from MOSES's molecules.

    Args:
        root: Resolved data root; the set is cached under ``<root>/zinc_moses/``.
        seed: Seed of the row permutation that assigns candidates to splits.
        sizes: ``{"train": n, "val": n, "test": n}``; None or a missing entry takes the
            default (full ZINC's 220,011 / 24,445 / 5,000).

    Returns:
        The splits (exactly the requested sizes) and a description naming the source.

    Raises:
        UserError: ``molsets`` is not installed, or a size exceeds what the file holds.
    """
    path = moses_train_file()
    resolved = {s: (sizes or {}).get(s) or DEFAULT_SIZES[s] for s in SPLITS}
    file_hash = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    size_key = "-".join(str(resolved[s]) for s in SPLITS)
    key = hashlib.sha256(f"{FORMAT_VERSION}|{file_hash}|{seed}|{size_key}|"
                         f"{rdkit.__version__}".encode()).hexdigest()[:16]
    cache = root / "zinc_moses" / f"zinc_moses-v{FORMAT_VERSION}-{key}.pt"
    if not cache.exists() and sum(resolved.values()) >= POOL_MIN_MOLECULES:
        log.warning("building zinc_moses (%s molecules) once; it is cached in %s",
                    "/".join(f"{resolved[s]:,}" for s in SPLITS), cache.parent)
    built, hit = load_or_build(cache, lambda: _build(path, seed, resolved), _valid)
    splits = {split: GraphTable.from_dict(built["splits"][split]) for split in SPLITS}
    skipped = built["skipped"]
    notes = [
        f"built from {built['num_read']:,} of the {built['num_source']:,} MOSES SMILES (each "
        f"split's first candidates) in {built['build_seconds']:.1f} s "
        f"({built['workers']} processes)"
        + (" (loaded from cache)" if hit else "") + f"; cache {cache}",
        "skipped: " + (", ".join(f"{n} {why}" for why, n in sorted(skipped.items()))
                       if skipped else "none"),
    ]
    counts = "/".join(f"{splits[s].num_graphs:,}" for s in SPLITS)
    return LoadedSplits(
        name="zinc_moses",
        source=f"zinc_moses: {SOURCE} ({counts} from molsets' {path.name}); {NOT_COMPARABLE}",
        source_id=f"zinc_moses:v{FORMAT_VERSION}:{file_hash}:seed{seed}:rdkit{rdkit.__version__}",
        splits=splits, num_features=len(ATOM_VOCAB), notes=notes)


def _valid(obj) -> bool:
    return (isinstance(obj, dict) and obj.get("format") == FORMAT_VERSION
            and set(obj.get("splits", {})) == set(SPLITS))
