"""Vectorized positional encodings for a whole split, plus the naive per-graph loop.

Graphs are bucketed by node count n, and each bucket (in chunks) becomes one dense stack of
normalized Laplacians [G_n, n, n]. ONE batched ``numpy.linalg.eigh`` per chunk then serves
all three encodings, because ``P = D^-1 A`` is similar to ``S = I - L``:

* LapPE: eigenvectors 1..k of L.
* RWSE:  ``diag(P^t)_i = (S^t)_ii = sum_j U_ij^2 (1 - mu_j)^t``.
* Heat:  ``diag(exp(-tL))_i = sum_j U_ij^2 exp(-t mu_j)``.

BLAS/OpenMP pools are limited to one thread meanwhile: the matrices are tiny, and extra
threads would only fight the training process (torch) for the machine's cores.
"""

from __future__ import annotations

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from torch import Tensor

from mspe_sweep.dataset.encodings import (
    SIGN_TOL,
    PESpec,
    heat_kernel_pe,
    laplacian_pe,
    random_walk_pe,
)
from mspe_sweep.dataset.graphs import GraphTable

CHUNK = 2048  # graphs per dense stack: 2048 x 38 x 38 float64 is ~24 MB


def pe_shapes(spec: PESpec, num_nodes: int) -> dict[str, tuple[tuple[int, int], torch.dtype]]:
    """The PE attributes ``spec`` produces, with their shapes for ``num_nodes`` nodes."""
    shapes = {}
    if spec.lap_k:
        shape = (num_nodes, spec.lap_k)
        shapes.update(lap_vec=(shape, torch.float), lap_val=(shape, torch.float),
                      lap_mask=(shape, torch.bool))
    if spec.rwse_walks:
        shapes["rwse"] = ((num_nodes, len(spec.rwse_walks)), torch.float)
    if spec.heat_times:
        shapes["heat"] = ((num_nodes, len(spec.heat_times)), torch.float)
    return shapes


def compute_pe(table: GraphTable, spec: PESpec, chunk_size: int = CHUNK) -> dict[str, Tensor]:
    """Computes the requested encodings for every graph of a split, vectorized.

    Args:
        table: The split.
        spec: Which encodings.
        chunk_size: Most graphs per dense stack.

    Returns:
        Flat per-node tensors (graph g owns rows ``node_ptr[g]:node_ptr[g+1]``): ``lap_vec``,
        ``lap_val`` float [N_total, k], ``lap_mask`` bool [N_total, k], ``rwse`` [N_total, R],
        ``heat`` [N_total, H]; only the requested ones.
    """
    total = table.x.size(0)
    out = {name: np.zeros(shape, dtype=bool if dtype == torch.bool else np.float32)
           for name, (shape, dtype) in pe_shapes(spec, total).items()}
    counts = table.num_nodes.numpy()
    with threadpool_limits(limits=1):
        for n in np.unique(counts):
            graphs = np.nonzero(counts == n)[0]
            for start in range(0, len(graphs), chunk_size):
                if n > 0:
                    _fill_chunk(table, graphs[start:start + chunk_size], int(n), spec, out)
    return {name: torch.from_numpy(array) for name, array in out.items()}


def _laplacian_stack(table: GraphTable, graphs: np.ndarray, n: int) -> np.ndarray:
    """Normalized Laplacians of ``graphs`` (all with n nodes), float64 [g, n, n]."""
    edge_ptr, edge_index = table.edge_ptr.numpy(), table.edge_index.numpy()
    lengths = edge_ptr[graphs + 1] - edge_ptr[graphs]  # [g]
    owner = np.repeat(np.arange(len(graphs)), lengths)  # [e] position of each edge's graph
    first = np.repeat(edge_ptr[graphs] - np.cumsum(lengths) + lengths, lengths)
    edges = first + np.arange(lengths.sum())  # [e] columns of edge_index to take
    src, dst = edge_index[0, edges], edge_index[1, edges]
    adj = np.zeros((len(graphs), n, n))
    adj[owner, src, dst] = 1.0
    adj[owner, dst, src] = 1.0
    adj[:, np.arange(n), np.arange(n)] = 0.0  # self-loops dropped, as in the reference
    deg = adj.sum(axis=2)  # [g, n]
    inv_sqrt = np.where(deg > 0, 1.0 / np.sqrt(np.maximum(deg, 1.0)), 0.0)
    eye = (deg > 0)[:, :, None] * np.eye(n)  # [g, n, n]
    return eye - inv_sqrt[:, :, None] * adj * inv_sqrt[:, None, :]


def _fill_chunk(
    table: GraphTable, graphs: np.ndarray, n: int, spec: PESpec, out: dict[str, np.ndarray]
) -> None:
    mu, vecs = np.linalg.eigh(_laplacian_stack(table, graphs, n))  # [g, n], [g, n, n]
    rows = (table.node_ptr.numpy()[graphs][:, None] + np.arange(n)).ravel()  # [g * n]
    if spec.lap_k and n > 1:  # a single node has only the trivial eigenvector
        m = min(spec.lap_k, n - 1)
        lap = vecs[:, :, 1:m + 1]  # [g, n, m]
        mags = np.abs(lap)
        tied = mags >= mags.max(axis=1, keepdims=True) - SIGN_TOL
        pivot = np.take_along_axis(lap, tied.argmax(axis=1)[:, None, :], axis=1)  # [g, 1, m]
        lap = np.where(pivot < 0, -lap, lap)
        out["lap_vec"][rows, :m] = lap.reshape(-1, m)
        out["lap_val"][rows, :m] = np.repeat(mu[:, 1:m + 1], n, axis=0)
        out["lap_mask"][rows, :m] = True
    weights = vecs**2  # [g, n(node), n(eigen)]
    if spec.rwse_walks:
        walks = np.asarray(spec.rwse_walks, dtype=float)
        powers = (1.0 - mu)[:, :, None] ** walks  # [g, n, R]
        out["rwse"][rows] = (weights @ powers).reshape(-1, len(walks))
    if spec.heat_times:
        times = np.asarray(spec.heat_times, dtype=float)
        decay = np.exp(-np.maximum(mu, 0.0)[:, :, None] * times)  # [g, n, H]
        out["heat"][rows] = (weights @ decay).reshape(-1, len(times))


def compute_pe_naive(table: GraphTable, spec: PESpec) -> dict[str, Tensor]:
    """Reference: the pure per-graph functions in a Python loop (for tests and benchmarks)."""
    parts: dict[str, list[Tensor]] = {name: [] for name in pe_shapes(spec, 0)}
    node_ptr, edge_ptr = table.node_ptr.tolist(), table.edge_ptr.tolist()
    for g in range(table.num_graphs):
        n = node_ptr[g + 1] - node_ptr[g]
        edge_index = table.edge_index[:, edge_ptr[g]:edge_ptr[g + 1]]
        if spec.lap_k:
            vec, val, mask = laplacian_pe(edge_index, n, spec.lap_k)
            parts["lap_vec"].append(vec)
            parts["lap_val"].append(val)
            parts["lap_mask"].append(mask)
        if spec.rwse_walks:
            parts["rwse"].append(random_walk_pe(edge_index, n, spec.rwse_walks))
        if spec.heat_times:
            parts["heat"].append(heat_kernel_pe(edge_index, n, spec.heat_times))
    empty = pe_shapes(spec, 0)
    return {name: torch.cat(tensors) if tensors else torch.zeros(*empty[name])
            for name, tensors in parts.items()}
