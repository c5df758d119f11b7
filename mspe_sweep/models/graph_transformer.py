"""Graph-level models: the GPS-style graph transformer and its GINE-only baseline."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn
from torch_geometric.nn import global_add_pool, global_mean_pool
from torch_geometric.nn.inits import reset

from mspe_sweep.models.layers import NORMS, DenseLayout, GPSLayer
from mspe_sweep.models.node_encoder import NodeEncoder, graph_index

POOLINGS = ("sum", "mean")


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")


def _check_probability(**values: float) -> None:
    for name, value in values.items():
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {value!r}")


class GraphTransformer(nn.Module):
    """GPS-style graph transformer for graph-level prediction on ZINC-format batches.

    Atom-type embedding + PE encoders -> ``num_layers`` :class:`GPSLayer` (GINE + global
    multi-head attention + feed-forward) -> sum/mean pooling -> 2-layer MLP head.

    With the GraphGPS ZINC configuration (``num_features=28, num_classes=1, hidden_dim=64,
    num_layers=10, heads=4, pe_dims={"rwse": 20}, pe_dim=16``) it has 425,401 parameters;
    with multi-scale PE ``{"lap": 8, "rwse": 20, "heat": 8}`` (linear LapPE) 424,937, and
    with the ``pe=multiscale`` preset ``{"lap": 8, "rwse": 7, "heat": 4}`` 424,631 (424,951
    with ``lap_encoder="signnet"``).

    Args:
        num_features: Atom-type vocabulary size (28 for ZINC).
        num_classes: Output width (1 for ZINC regression).
        hidden_dim: Node feature width.
        num_layers: Number of GPS layers.
        heads: Attention heads; must divide ``hidden_dim``.
        dropout: Dropout inside the layers.
        attn_dropout: Dropout on attention weights.
        num_edge_types: Bond-type vocabulary size (``edge_attr`` ids; ZINC uses 1-3).
        pe_dims: ``{"lap": k, "rwse": r, "heat": h}``; 0 or missing disables that PE.
        pe_dim: Width of each PE embedding with ``pe_combine="concat"``.
        pe_combine: ``"concat"`` (atom embedding gets ``hidden_dim - n_pe * pe_dim``) or
            ``"add"`` (every encoder outputs ``hidden_dim``).
        lap_encoder: ``"linear"`` (with random per-graph sign flips in training) or
            ``"signnet"`` (sign-invariant DeepSets).
        pooling: ``"sum"`` or ``"mean"``.
        norm: ``"batch"`` or ``"layer"``.

    Raises:
        ValueError: On an unsupported option or impossible dimensions.
    """

    use_attention = True

    def __init__(
        self,
        num_features: int,
        num_classes: int,
        hidden_dim: int,
        num_layers: int,
        heads: int = 4,
        dropout: float = 0.0,
        attn_dropout: float = 0.5,
        num_edge_types: int = 4,
        pe_dims: Mapping[str, int] | None = None,
        pe_dim: int = 16,
        pe_combine: str = "concat",
        lap_encoder: str = "linear",
        pooling: str = "sum",
        norm: str = "batch",
    ) -> None:
        super().__init__()
        _check_positive(
            num_features=num_features,
            num_classes=num_classes,
            hidden_dim=hidden_dim,
            num_layers=num_layers,
            num_edge_types=num_edge_types,
            pe_dim=pe_dim,
        )
        _check_probability(dropout=dropout, attn_dropout=attn_dropout)
        if pooling not in POOLINGS:
            raise ValueError(f"pooling={pooling!r} is not supported; valid: {POOLINGS}")
        if norm not in NORMS:
            raise ValueError(f"norm={norm!r} is not supported; valid: {NORMS}")
        self.hidden_dim, self.num_layers, self.heads = hidden_dim, num_layers, heads
        self.pooling, self.norm = pooling, norm
        self.num_edge_types = num_edge_types
        self.node_encoder = NodeEncoder(
            num_features, hidden_dim, pe_dims, pe_dim, pe_combine, lap_encoder
        )
        self.edge_encoder = nn.Embedding(num_edge_types, hidden_dim)
        self.layers = nn.ModuleList(
            GPSLayer(hidden_dim, heads, dropout, attn_dropout, norm, self.use_attention)
            for _ in range(num_layers)
        )
        self.head = nn.Sequential(
            nn.Linear(hidden_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, num_classes)
        )

    def reset_parameters(self) -> None:
        """Resets all learnable parameters (and normalisation statistics) of the module."""
        self.node_encoder.reset_parameters()
        self.edge_encoder.reset_parameters()
        for layer in self.layers:
            layer.reset_parameters()
        reset(self.head)

    def _edge_ids(self, batch) -> Tensor:
        edge_attr = getattr(batch, "edge_attr", None)
        if edge_attr is None:
            raise ValueError("batch has no attribute 'edge_attr' (bond-type ids, shape [E])")
        if edge_attr.dim() == 2 and edge_attr.size(1) == 1:
            edge_attr = edge_attr.squeeze(1)  # [E, 1] -> [E]
        if edge_attr.dim() != 1 or edge_attr.is_floating_point():
            raise ValueError(
                f"batch.edge_attr must hold integer bond-type ids of shape [E], got "
                f"{edge_attr.dtype} {tuple(edge_attr.shape)}"
            )
        return edge_attr

    def forward(self, batch) -> Tensor:
        """Predicts one row per graph.

        Args:
            batch: A PyG ``Batch`` with ``x`` ``[N, 1]``, ``edge_index`` ``[2, E]``,
                ``edge_attr`` ``[E]``, ``batch`` ``[N]`` and the PE attributes that
                ``pe_dims`` asks for.

        Returns:
            ``[num_graphs, num_classes]``.
        """
        graph, num_graphs = graph_index(batch)  # [N], B
        x = self.node_encoder(batch)  # [N, C]
        edge_attr = self.edge_encoder(self._edge_ids(batch))  # [E, C]
        layout = DenseLayout.from_batch(graph, num_graphs) if self.use_attention else None
        for layer in self.layers:
            x = layer(x, batch.edge_index, edge_attr, graph, layout)  # [N, C]
        pool = global_add_pool if self.pooling == "sum" else global_mean_pool
        return self.head(pool(x, graph, size=num_graphs))  # [B, num_classes]

    def __repr__(self) -> str:
        enc = self.node_encoder
        pe = ", ".join(f"{k}={v}" for k, v in enc.pe_dims.items()) or "none"
        attn = f"heads={self.heads}, " if self.use_attention else ""
        return (
            f"{self.__class__.__name__}(hidden_dim={self.hidden_dim}, "
            f"num_layers={self.num_layers}, {attn}pe=[{pe}], pe_combine={enc.pe_combine}, "
            f"pooling={self.pooling}, norm={self.norm}, "
            f"params={sum(p.numel() for p in self.parameters()):,})"
        )


class GINE(GraphTransformer):
    """The :class:`GraphTransformer` without global attention: a GINE baseline.

    Takes the same arguments so that sweeps can switch ``model=`` presets with the same
    keys; ``heads`` and ``attn_dropout`` are accepted and ignored. With the ZINC
    configuration and ``pe_dims={"rwse": 20}`` it has 257,721 parameters
    (257,257 with ``{"lap": 8, "rwse": 20, "heat": 8}``).
    """

    use_attention = False
