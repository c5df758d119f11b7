"""Datasets in PyG ZINC format with cached multi-scale positional encodings.

``get_dataset(name, root="data/", pe=None, **kw)`` returns a :class:`GraphDataset` whose
``get_splits()`` gives ``(train, val, test)`` lists of ``Data``. Names: ``zinc`` and
``zinc_full`` (real ZINC via PyG, falling back loudly to ``zinc_rdkit`` offline),
``zinc_rdkit`` (an offline ZINC-format set built with RDKit; its MAE is not comparable with
published ZINC results), ``zinc_moses`` (the same, at full-ZINC scale, from the ZINC molecules
that MOSES ships) and ``synthetic`` (tiny generated graphs for tests).
"""

from mspe_sweep.dataset.base import GraphDataset
from mspe_sweep.dataset.encodings import (
    PESpec,
    heat_kernel_pe,
    laplacian_pe,
    random_walk_pe,
)
from mspe_sweep.dataset.factory import DATASETS, get_dataset
from mspe_sweep.dataset.molecules import ATOM_VOCAB
from mspe_sweep.dataset.zinc import OfflineFallbackWarning

__all__ = [
    "ATOM_VOCAB",
    "DATASETS",
    "GraphDataset",
    "OfflineFallbackWarning",
    "PESpec",
    "get_dataset",
    "heat_kernel_pe",
    "laplacian_pe",
    "random_walk_pe",
]
