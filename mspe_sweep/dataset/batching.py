"""Batches straight from a split's flat tensors: PyG's ``DataLoader`` without per-graph work.

``DataLoader(dataset.get_splits()[0], batch_size, shuffle=True)`` builds one ``Data`` per graph
once (about 1 s per 10,000 graphs, and most of the memory of a large set) and then collates
each batch graph by graph in Python. :class:`TableLoader` gathers a batch from the split's
flat tensors with a handful of vectorized index operations instead, and yields the same
batches: the same graphs in the same order (it draws from the global RNG exactly as PyG's
``DataLoader`` with ``num_workers=0`` does, so a seeded run trains on the same sequence of
batches and then draws the same dropout masks), with the same attributes, dtypes and shapes.
Given a device, it moves the split there once and builds every batch there: only the index
vectors of a batch cross from the host.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping

import torch
from torch import Tensor
from torch_geometric.data import Batch

from mspe_sweep.dataset.graphs import GraphTable


def _ranges(starts: Tensor, lengths: Tensor) -> Tensor:
    """``cat([arange(s, s + n) for s, n in zip(starts, lengths)])``, vectorized."""
    total = int(lengths.sum())
    offsets = torch.repeat_interleave(starts - (lengths.cumsum(0) - lengths), lengths,
                                      output_size=total)
    return torch.arange(total) + offsets


class TableLoader:
    """Iterates over a split in batches of PyG ``Batch`` objects, like PyG's ``DataLoader``.

    Args:
        table: The split.
        node_attrs: Extra per-node tensors (the PE), each ``[N_total, d]``.
        batch_size: Graphs per batch (the last batch may be smaller).
        shuffle: A new random order every pass (as ``DataLoader(shuffle=True)``).
        device: Where the split lives and batches are built (default: the CPU).
    """

    def __init__(self, table: GraphTable, node_attrs: Mapping[str, Tensor] | None = None, *,
                 batch_size: int, shuffle: bool = False,
                 device: torch.device | str | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size, self.shuffle = batch_size, shuffle
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.num_graphs = table.num_graphs
        # Host copies of the layout (index arithmetic stays on the host: no device syncs).
        self._node_ptr, self._edge_ptr = table.node_ptr, table.edge_ptr
        fields = {"x": table.x, "edge_index": table.edge_index, "edge_attr": table.edge_attr,
                  "y": table.y, **(node_attrs or {})}
        self._fields = {name: t.to(self.device) for name, t in fields.items()}
        self._node_attrs = tuple(node_attrs or {})

    def __len__(self) -> int:
        return math.ceil(self.num_graphs / self.batch_size)

    def _order(self) -> Tensor:
        # torch's DataLoader draws a base seed from the global generator for every pass (for
        # its workers, even when it has none), and RandomSampler then draws its own seed.
        torch.empty((), dtype=torch.int64).random_()
        if not self.shuffle:
            return torch.arange(self.num_graphs)
        generator = torch.Generator()
        generator.manual_seed(int(torch.empty((), dtype=torch.int64).random_().item()))
        return torch.randperm(self.num_graphs, generator=generator)

    def __iter__(self) -> Iterator[Batch]:
        for graphs in self._order().split(self.batch_size):
            yield self.batch(graphs)

    def batch(self, graphs: Tensor) -> Batch:
        """The ``Batch`` of the given graphs (indices into the split), in that order."""
        node_ptr, edge_ptr = self._node_ptr, self._edge_ptr
        nodes = node_ptr[graphs + 1] - node_ptr[graphs]  # [B]
        edges = edge_ptr[graphs + 1] - edge_ptr[graphs]  # [B]
        node_idx = _ranges(node_ptr[graphs], nodes)  # [N] rows of the split's node tensors
        edge_idx = _ranges(edge_ptr[graphs], edges)  # [E] columns of its edge tensors
        shift = torch.repeat_interleave(nodes.cumsum(0) - nodes, edges,
                                        output_size=edge_idx.numel())  # [E] first node
        count = graphs.numel()
        graph_of_node = torch.repeat_interleave(torch.arange(count), nodes,
                                                output_size=node_idx.numel())
        ptr = torch.cat([torch.zeros(1, dtype=torch.long), nodes.cumsum(0)])
        to = {"device": self.device, "non_blocking": True}
        node_idx, edge_idx, shift = node_idx.to(**to), edge_idx.to(**to), shift.to(**to)
        f = self._fields
        batch = Batch(
            x=f["x"][node_idx], edge_index=f["edge_index"][:, edge_idx] + shift,
            edge_attr=f["edge_attr"][edge_idx], y=f["y"][graphs.to(**to)],
            **{name: f[name][node_idx] for name in self._node_attrs},
            batch=graph_of_node.to(**to), ptr=ptr.to(**to),
        )
        batch._num_graphs = count
        return batch
