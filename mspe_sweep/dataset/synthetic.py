"""``synthetic``: tiny random molecule-like graphs with a learnable target, for fast tests.

Each graph is a random tree on n nodes (``min_nodes <= n <= max_nodes``) plus, with
probability 1/2, one or two extra edges closing rings. Node types are uniform over
``num_node_types``; edge types are 1/2/3 with probabilities 0.7/0.2/0.1. The target is a
structural score, z-scored over the generated set:

    sum over nodes of w[type]  +  0.5 * (#rings = E - n + 1)  -  0.3 * #(nodes of degree >= 3)
    +  0.2 * #(edges of type 2)

with ``w = linspace(-1, 1, num_node_types)``: a sum of node/edge/degree counts that a small
message-passing model learns quickly, so it beats a mean predictor within a few epochs.
Generated in memory (milliseconds), deterministic for a seed; its PE are not cached on disk.
"""

from __future__ import annotations

import numpy as np
import torch

from mspe_sweep.dataset.base import SPLITS, LoadedSplits, split_indices
from mspe_sweep.dataset.graphs import GraphTable


def _random_graph(rng: np.random.Generator, n: int, num_node_types: int, weights: np.ndarray):
    parents = [int(rng.integers(0, i)) for i in range(1, n)]
    pairs = {(min(i, p), max(i, p)) for i, p in zip(range(1, n), parents)}
    if n >= 4 and rng.random() < 0.5:
        for _ in range(int(rng.integers(1, 3))):
            i, j = sorted(int(v) for v in rng.choice(n, size=2, replace=False))
            pairs.add((i, j))
    pairs = sorted(pairs)
    types = rng.integers(0, num_node_types, size=n)
    kinds = rng.choice(np.array([1, 2, 3]), size=len(pairs), p=[0.7, 0.2, 0.1])
    src = [i for i, j in pairs] + [j for i, j in pairs]
    dst = [j for i, j in pairs] + [i for i, j in pairs]
    degree = np.bincount(np.array(src, dtype=np.int64), minlength=n)
    score = (weights[types].sum() + 0.5 * (len(pairs) - n + 1) - 0.3 * (degree >= 3).sum()
             + 0.2 * (kinds == 2).sum())
    x = torch.from_numpy(types).long().view(-1, 1)  # [n, 1]
    edge_index = torch.tensor([src, dst], dtype=torch.long).view(2, -1)  # [2, 2b]
    edge_attr = torch.from_numpy(np.concatenate([kinds, kinds])).long()  # [2b]
    return x, edge_index, edge_attr, float(score)


def make_synthetic(
    *, seed: int = 0, num_graphs: int = 64, min_nodes: int = 4, max_nodes: int = 12,
    num_node_types: int = 8,
) -> LoadedSplits:
    """Generates the synthetic dataset.

    Args:
        seed: Seed of graphs, targets and the 80/10/10 split.
        num_graphs: Total graphs (at least 3).
        min_nodes: Fewest nodes per graph (at least 1).
        max_nodes: Most nodes per graph.
        num_node_types: Node-type vocabulary size.

    Returns:
        The splits.

    Raises:
        ValueError: On sizes that cannot be generated.
    """
    if not 1 <= min_nodes <= max_nodes:
        raise ValueError(f"synthetic: need 1 <= min_nodes <= max_nodes, got {min_nodes}, "
                         f"{max_nodes}")
    if num_node_types < 1 or num_graphs < 3:
        raise ValueError(f"synthetic: need num_node_types >= 1 and num_graphs >= 3, got "
                         f"{num_node_types}, {num_graphs}")
    rng = np.random.default_rng(seed)
    weights = np.linspace(-1.0, 1.0, num_node_types)
    graphs = [_random_graph(rng, int(rng.integers(min_nodes, max_nodes + 1)), num_node_types,
                            weights) for _ in range(num_graphs)]
    scores = np.array([g[3] for g in graphs])
    scores = (scores - scores.mean()) / (scores.std() or 1.0)
    splits = {}
    for split, indices in split_indices(num_graphs, seed).items():
        xs, edge_indices, edge_attrs, _ = zip(*(graphs[i] for i in indices))
        splits[split] = GraphTable.from_graphs(xs, edge_indices, edge_attrs, scores[indices])
    params = f"{num_graphs},{min_nodes},{max_nodes},{num_node_types},seed{seed}"
    return LoadedSplits(
        name="synthetic",
        source=(f"synthetic: {num_graphs} random graphs ({min_nodes}-{max_nodes} nodes, "
                f"{num_node_types} node types, seed {seed}); for tests, not a benchmark"),
        source_id=f"synthetic:v1:{params}",
        splits={split: splits[split] for split in SPLITS},
        num_features=num_node_types, persistent=False)
