"""One GPS layer: local GINE message passing + global self-attention + feed-forward block.

Follows PyG's :class:`torch_geometric.nn.GPSConv` (and GraphGPS): both branches read the
same input, each has its own residual + norm, their sum goes through a feed-forward block
with residual + norm. With ``attention=False`` the layer is a plain GINE block (the ``gine``
baseline).
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F
from torch_geometric.nn import GINEConv
from torch_geometric.nn.inits import reset
from torch_geometric.utils import to_dense_batch

NORMS = ("batch", "layer")


def build_norm(norm: str, channels: int) -> nn.Module:
    """Returns a per-node normalisation layer: ``"batch"`` or ``"layer"``."""
    if norm == "batch":
        return nn.BatchNorm1d(channels)
    if norm == "layer":
        return nn.LayerNorm(channels)
    raise ValueError(f"norm={norm!r} is not supported; valid: {NORMS}")


class GPSLayer(nn.Module):
    """GPS layer with a GINE local branch and (optionally) multi-head global attention.

    Args:
        channels: Node (and edge) feature width.
        heads: Attention heads; must divide ``channels`` when ``attention`` is on.
        dropout: Dropout after each branch and inside the feed-forward block.
        attn_dropout: Dropout on the attention weights.
        norm: ``"batch"`` or ``"layer"``.
        attention: Whether to build the global attention branch.
    """

    def __init__(
        self,
        channels: int,
        heads: int = 4,
        dropout: float = 0.0,
        attn_dropout: float = 0.5,
        norm: str = "batch",
        attention: bool = True,
    ) -> None:
        super().__init__()
        self.channels = channels
        self.heads = heads
        self.dropout = dropout
        self.norm_type = norm
        gin_mlp = nn.Sequential(
            nn.Linear(channels, channels), nn.ReLU(), nn.Linear(channels, channels)
        )
        self.conv = GINEConv(gin_mlp)  # edge features already have `channels` width
        self.norm_local = build_norm(norm, channels)
        self.attn = None
        self.norm_attn = None
        if attention:
            if heads < 1 or channels % heads != 0:
                raise ValueError(f"heads={heads} must be >= 1 and divide hidden_dim={channels}")
            # MultiheadAttention dispatches to scaled_dot_product_attention (and to the fused
            # native kernel in inference) when called with need_weights=False.
            self.attn = nn.MultiheadAttention(
                channels, heads, dropout=attn_dropout, batch_first=True
            )
            self.norm_attn = build_norm(norm, channels)
        self.ff = nn.Sequential(
            nn.Linear(channels, 2 * channels),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(2 * channels, channels),
            nn.Dropout(dropout),
        )
        self.norm_ff = build_norm(norm, channels)

    def reset_parameters(self) -> None:
        """Resets all learnable parameters of the module."""
        self.conv.reset_parameters()
        self.norm_local.reset_parameters()
        if self.attn is not None:
            # MultiheadAttention._reset_parameters() leaves out_proj.weight alone (PyG's
            # GPSConv has the same gap): re-draw it as at construction, then the rest.
            self.attn.out_proj.reset_parameters()
            self.attn._reset_parameters()
            self.norm_attn.reset_parameters()
        reset(self.ff)
        self.norm_ff.reset_parameters()

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor, batch: Tensor) -> Tensor:
        """Runs the layer.

        Args:
            x: Node features, ``[N, C]``.
            edge_index: ``[2, E]``.
            edge_attr: Edge embeddings, ``[E, C]``.
            batch: Graph id of every node, ``[N]``.

        Returns:
            Updated node features, ``[N, C]``.
        """
        h = self.conv(x, edge_index, edge_attr)  # [N, C]
        h = F.dropout(h, p=self.dropout, training=self.training)
        out = self.norm_local(h + x)  # [N, C]
        if self.attn is not None:
            dense, mask = to_dense_batch(x, batch)  # [B, Lmax, C], [B, Lmax]
            h, _ = self.attn(dense, dense, dense, key_padding_mask=~mask, need_weights=False)
            h = F.dropout(h[mask], p=self.dropout, training=self.training)  # [N, C]
            out = out + self.norm_attn(h + x)
        return self.norm_ff(out + self.ff(out))  # [N, C]

    def __repr__(self) -> str:
        attn = f"heads={self.heads}" if self.attn is not None else "attention=None"
        name = self.__class__.__name__
        return f"{name}({self.channels}, local=GINE, {attn}, norm={self.norm_type})"
