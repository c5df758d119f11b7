"""``zinc_rdkit``: an offline ZINC-format set built with RDKit from molecules its wheel ships.

The default source is ``rdkit/Data/Pains/test_data/wehi_mols.csv`` (10,000 drug-like
molecules, all inside ZINC's 28-token vocabulary, 9-34 heavy atoms). Molecules are parsed,
filtered to ZINC's 9-38 heavy atoms, de-duplicated by canonical SMILES, tokenized and kekulized
exactly like ZINC (see ``molecules``) and labelled with the same penalized-logP formula and
normalization constants. The split is a seeded 80/10/10 permutation: 8,000 / 1,000 / 1,000
for the default file and seed 0.

Its MAE is NOT comparable with published ZINC results: different molecules, a different
target distribution. ``source`` says so wherever the dataset is shown.

The built set is cached at ``<root>/zinc_rdkit/zinc_rdkit-v<FORMAT>-<key>.pt`` where the key
covers the format version, the source file's content hash, the split seed and the RDKit
version (the target depends on RDKit's logP/SA implementations).
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import csv
import hashlib
import itertools
import logging
import multiprocessing
import os
import time
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import rdkit
from rdkit import Chem, RDLogger

from mspe_sweep.dataset.base import SPLITS, LoadedSplits, split_indices
from mspe_sweep.dataset.cache_io import load_or_build
from mspe_sweep.dataset.graphs import GraphTable
from mspe_sweep.dataset.molecules import (
    ATOM_VOCAB,
    MAX_ATOMS,
    MIN_ATOMS,
    mol_to_graph,
    penalized_logp,
)
from mspe_sweep.errors import UserError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1  # bump whenever tokens, bonds, target or split rules change
DEFAULT_SMILES_FILE = Path(rdkit.__file__).parent / "Data/Pains/test_data/wehi_mols.csv"
NOT_COMPARABLE = "MAE not comparable with published ZINC results"


def read_smiles(path: Path) -> list[str]:
    """The first column of a CSV file (one molecule per row, no header)."""
    with open(path, newline="") as f:
        return [row[0].strip() for row in csv.reader(f) if row and row[0].strip()]


def convert_smiles(smiles: str) -> tuple[str | None, tuple | str]:
    """One SMILES -> ``(canonical SMILES, graph)``, or a skip reason in place of the graph.

    Returns:
        ``(canonical, (atom_ids, [src, dst], bond_types, y))`` for a usable molecule (see
        ``mol_to_graph``); ``(None, reason)`` when it does not parse or has too few/many
        atoms; ``(canonical, reason)`` when it is outside the vocabulary (a duplicate of it
        still counts as a duplicate, as it would in a sequential pass).
    """
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        return None, "unparsable SMILES"
    if not MIN_ATOMS <= mol.GetNumAtoms() <= MAX_ATOMS:
        return None, f"outside {MIN_ATOMS}-{MAX_ATOMS} heavy atoms"
    canonical = Chem.MolToSmiles(mol)
    graph = mol_to_graph(mol)
    if isinstance(graph, str):
        return canonical, f"outside the vocabulary ({graph})"
    return canonical, (*graph, penalized_logp(mol))


def _convert_chunk(chunk: list[str]) -> list[tuple[str | None, tuple | str]]:
    RDLogger.DisableLog("rdApp.*")  # also in pool workers: unparsable rows are counted
    try:
        return [convert_smiles(smi) for smi in chunk]
    finally:
        RDLogger.EnableLog("rdApp.*")


def _converted(smiles: Iterable[str], workers: int, chunk: int = 500) -> Iterator[tuple]:
    """``convert_smiles`` over ``smiles``, in input order; a process pool when ``workers > 1``.

    Chunks are submitted a few ahead of the consumer only, so a consumer that stops early (a
    size limit reached) leaves little work behind.
    """
    if workers <= 1:
        RDLogger.DisableLog("rdApp.*")
        try:
            yield from map(convert_smiles, smiles)
        finally:
            RDLogger.EnableLog("rdApp.*")
        return
    rows = iter(smiles)
    chunks = iter(lambda: list(itertools.islice(rows, chunk)), [])
    # fork (where there is one): spawn would re-run an unguarded main script in every worker.
    # The children only run RDKit and plain Python (no torch, no OpenMP, no logging), which
    # is what makes forking a process with threads safe here.
    context = multiprocessing.get_context(
        "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        with warnings.catch_warnings():  # Python >= 3.12 warns about any fork with threads
            warnings.filterwarnings("ignore", message=".*fork.*", category=DeprecationWarning)
            pending = collections.deque(pool.submit(_convert_chunk, part)
                                        for part in itertools.islice(chunks, 3 * workers))
        try:
            while pending:
                done = pending.popleft().result()
                part = next(chunks, None)
                if part is not None:
                    pending.append(pool.submit(_convert_chunk, part))
                yield from done
        finally:
            for future in pending:
                future.cancel()


def build_graphs(
    smiles: Iterable[str], *, limit: int | None = None, seen: set[str] | None = None,
    workers: int = 1,
) -> tuple[list[tuple], collections.Counter]:
    """Parses, filters, de-duplicates and converts molecules, in input order.

    Args:
        smiles: SMILES strings.
        limit: Stop after this many usable molecules (None: convert them all).
        seen: Canonical SMILES already used elsewhere (skipped as duplicates); updated.
        workers: Processes converting molecules (1: in this process).

    Returns:
        ``(graphs, skipped)``: graphs as ``(atom_ids, [src, dst], bond_types, y)`` tuples (see
        ``mol_to_graph``), and a count of skipped molecules per reason.
    """
    graphs, skipped = [], collections.Counter()
    seen = set() if seen is None else seen
    if limit is not None and limit <= 0:
        return graphs, skipped
    with contextlib.closing(_converted(smiles, workers)) as converted:
        for canonical, graph in converted:
            if canonical is not None and canonical in seen:
                skipped["duplicate"] += 1
                continue
            if canonical is not None:
                seen.add(canonical)
            if isinstance(graph, str):
                skipped[graph] += 1
                continue
            graphs.append(graph)
            if len(graphs) == limit:
                break
    return graphs, skipped


def _build(smiles_file: Path, seed: int) -> dict:
    start = time.perf_counter()
    smiles = read_smiles(smiles_file)
    graphs, skipped = build_graphs(smiles)
    if len(graphs) < 3:
        raise UserError(f"{smiles_file}: only {len(graphs)} usable molecules; need at least 3")
    splits = {}
    for split, indices in split_indices(len(graphs), seed).items():
        ids, edges, kinds, ys = zip(*(graphs[i] for i in indices))
        splits[split] = GraphTable.from_lists(ids, edges, kinds, ys).to_dict()
    seconds = time.perf_counter() - start
    log.info("built zinc_rdkit from %s: %d molecules in %.1f s", smiles_file, len(graphs), seconds)
    return {"format": FORMAT_VERSION, "splits": splits, "skipped": dict(skipped),
            "num_source": len(smiles), "build_seconds": seconds}


def load_zinc_rdkit(root: Path, *, seed: int = 0, smiles_file: str | None = None) -> LoadedSplits:
    """Loads (building once) the offline ZINC-format set.

    Args:
        root: Resolved data root; the set is cached under ``<root>/zinc_rdkit/``.
        seed: Split seed.
        smiles_file: CSV whose first column holds SMILES (default: RDKit's wehi_mols.csv).

    Returns:
        The splits and a description saying the MAE is not comparable with ZINC.
    """
    path = Path(smiles_file).expanduser() if smiles_file else DEFAULT_SMILES_FILE
    if not path.is_file():
        raise UserError(f"dataset.smiles_file: {path} does not exist (expected a SMILES CSV)")
    file_hash = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    key = hashlib.sha256(
        f"{FORMAT_VERSION}|{file_hash}|{seed}|{rdkit.__version__}".encode()).hexdigest()[:16]
    cache = root / "zinc_rdkit" / f"zinc_rdkit-v{FORMAT_VERSION}-{key}.pt"
    built, hit = load_or_build(cache, lambda: _build(path, seed), _valid)
    splits = {split: GraphTable.from_dict(built["splits"][split]) for split in SPLITS}
    total = sum(table.num_graphs for table in splits.values())
    skipped = built["skipped"]
    notes = [
        f"built from {built['num_source']:,} SMILES in {built['build_seconds']:.1f} s"
        + (" (loaded from cache)" if hit else "") + f"; cache {cache}",
        "skipped: " + (", ".join(f"{n} {why}" for why, n in sorted(skipped.items()))
                       if skipped else "none"),
    ]
    return LoadedSplits(
        name="zinc_rdkit",
        source=(f"zinc_rdkit: offline ZINC-format set ({total:,} molecules from rdkit's "
                f"{path.name if smiles_file is None else os.fspath(path)}); {NOT_COMPARABLE}"),
        source_id=f"zinc_rdkit:v{FORMAT_VERSION}:{file_hash}:seed{seed}:rdkit{rdkit.__version__}",
        splits=splits, num_features=len(ATOM_VOCAB), notes=notes)


def _valid(obj) -> bool:
    return (isinstance(obj, dict) and obj.get("format") == FORMAT_VERSION
            and set(obj.get("splits", {})) == set(SPLITS))
