"""The vectorized PE engine against the per-graph reference functions."""

from __future__ import annotations

import torch

from mspe_sweep.dataset.encodings import PESpec
from mspe_sweep.dataset.graphs import GraphTable
from mspe_sweep.dataset.pe_batch import compute_pe, compute_pe_naive
from mspe_sweep.dataset.synthetic import make_synthetic

SPEC = PESpec(lap_k=6, rwse_walks=(1, 2, 3, 5, 8, 16), heat_times=(0.1, 1.0, 10.0))


def assert_same(fast, slow):
    assert fast.keys() == slow.keys() == {"lap_vec", "lap_val", "lap_mask", "rwse", "heat"}
    assert torch.equal(fast["lap_mask"], slow["lap_mask"])
    for name in ("lap_vec", "lap_val", "rwse", "heat"):
        assert fast[name].dtype == torch.float32
        assert torch.allclose(fast[name], slow[name], atol=1e-5), name


def test_vectorized_equals_per_graph_reference():
    table = make_synthetic(num_graphs=120, min_nodes=1, max_nodes=14, seed=3).splits["train"]
    assert set(table.num_nodes.tolist()) >= {1, 2, 14}  # single nodes and padding included
    fast = compute_pe(table, SPEC, chunk_size=7)  # small chunks: several per bucket
    assert_same(fast, compute_pe_naive(table, SPEC))
    assert all(torch.equal(fast[k], v) for k, v in compute_pe(table, SPEC).items())


def test_vectorized_handles_isolated_nodes_duplicates_and_self_loops():
    graphs = [
        ([0, 0, 0], [[0, 1, 1, 0], [1, 0, 0, 1]]),  # duplicate edge 0-1, node 2 isolated
        ([0, 0, 0, 0], [[0, 1, 2, 2], [1, 0, 2, 3]]),  # self-loop on 2, edge 2->3 one way
        ([0], [[], []]),
    ]
    table = GraphTable.from_lists([g[0] for g in graphs], [g[1] for g in graphs],
                                  [[1] * len(g[1][0]) for g in graphs], [0.0, 1.0, 2.0])
    fast = compute_pe(table, SPEC)
    assert_same(fast, compute_pe_naive(table, SPEC))
    assert not any(torch.isnan(t.float()).any() for t in fast.values())
    assert torch.allclose(fast["rwse"][2], torch.ones(6))  # isolated node: walker stays


def test_only_requested_encodings_are_computed():
    table = make_synthetic(num_graphs=10).splits["train"]
    out = compute_pe(table, PESpec(rwse_walks=(1, 2)))
    assert set(out) == {"rwse"} and out["rwse"].shape == (table.x.size(0), 2)
