"""Hand-built ZINC-format graphs with random positional encodings for the model tests."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Batch, Data

# (num_nodes, undirected edges with bond types 1-3): a triangle with a tail, a 5-ring with a
# double bond, and a 3-node path with a triple bond.
GRAPHS = [
    (4, [(0, 1, 1), (1, 2, 1), (2, 0, 2), (2, 3, 1)]),
    (5, [(0, 1, 1), (1, 2, 2), (2, 3, 1), (3, 4, 1), (4, 0, 1)]),
    (3, [(0, 1, 3), (1, 2, 1)]),
]
FULL_PE = {"lap": 4, "rwse": 5, "heat": 3}


def make_graph(num_nodes, edges, pe_dims, gen):
    """Builds one graph with atom ids in [0, 28), bond ids and PE attributes for pe_dims."""
    src = [u for u, v, _ in edges] + [v for u, v, _ in edges]
    dst = [v for u, v, _ in edges] + [u for u, v, _ in edges]
    bonds = [b for _, _, b in edges] * 2
    data = Data(
        x=torch.randint(0, 28, (num_nodes, 1), generator=gen),
        edge_index=torch.tensor([src, dst]),
        edge_attr=torch.tensor(bonds),
        y=torch.randn(1, generator=gen),
    )
    k = pe_dims.get("lap", 0)
    if k:
        valid = min(k, num_nodes)  # a graph with n nodes has only n eigenpairs
        mask = torch.zeros(num_nodes, k, dtype=torch.bool)
        mask[:, :valid] = True
        vals = torch.rand(k, generator=gen) * 2
        data.lap_vec = torch.randn(num_nodes, k, generator=gen) * mask
        data.lap_val = vals.expand(num_nodes, k) * mask
        data.lap_mask = mask
    for kind in ("rwse", "heat"):
        if pe_dims.get(kind, 0):
            data[kind] = torch.rand(num_nodes, pe_dims[kind], generator=gen)
    return data


def build_batch(pe_dims=None, seed=0, graphs=GRAPHS):
    """Returns a Batch of the hand-built graphs with PEs for pe_dims."""
    gen = torch.Generator().manual_seed(seed)
    return Batch.from_data_list([make_graph(n, e, pe_dims or {}, gen) for n, e in graphs])


@pytest.fixture
def make_batch():
    """``make_batch(pe_dims=None, seed=0, graphs=GRAPHS) -> Batch`` of hand-built graphs."""
    return build_batch


@pytest.fixture
def full_pe():
    """PE widths enabling every kind: LapPE (with padding on the 3-node graph), RWSE, heat."""
    return dict(FULL_PE)
