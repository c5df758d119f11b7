"""One GPS layer: local GINE message passing + global self-attention + feed-forward block.

Follows PyG's :class:`torch_geometric.nn.GPSConv` (and GraphGPS): both branches read the
same input, each has its own residual + norm, their sum goes through a feed-forward block
with residual + norm. With ``attention=False`` the layer is a plain GINE block (the ``gine``
baseline).

The attention computes what ``nn.MultiheadAttention`` on ``to_dense_batch`` output computed
(the same parameters and state-dict keys; the maths of ``scaled_dot_product_attention``'s
math backend, with the dropout masks drawn in the same order, so a seeded run trains the same
way), but faster: the padded layout of a batch is worked out once per forward
(:class:`DenseLayout`) instead of once per layer, the q/k/v and output projections run on the
real nodes only (not on the padding), the products run head-major on contiguous operands, and
nothing syncs with the host inside a layer.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch_geometric.nn import GINEConv
from torch_geometric.nn.inits import reset

NORMS = ("batch", "layer")


def build_norm(norm: str, channels: int) -> nn.Module:
    """Returns a per-node normalisation layer: ``"batch"`` or ``"layer"``."""
    if norm == "batch":
        return nn.BatchNorm1d(channels)
    if norm == "layer":
        return nn.LayerNorm(channels)
    raise ValueError(f"norm={norm!r} is not supported; valid: {NORMS}")


@functools.cache
def bernoulli_is_uniform_below() -> bool:
    """Whether CPU ``bernoulli_(q)`` equals ``torch.rand(float64) < q``, draw for draw.

    PyTorch's own CPU kernel draws one float64 uniform per element, serially, and keeps it
    when it is below ``q``, exactly what ``torch.rand(..., dtype=torch.float64) < q`` does, at
    half the cost. Builds that use MKL's generator (on Intel CPUs) draw differently: this
    checks, once per process, on a tensor of a realistic size, leaving the RNG as it was.
    """
    state = torch.get_rng_state()
    try:
        drawn = torch.empty(1 << 18).bernoulli_(0.375)
        after = torch.get_rng_state()
        torch.set_rng_state(state)
        kept = torch.rand(1 << 18, dtype=torch.float64) < 0.375
        return torch.equal(drawn.bool(), kept) and torch.equal(after, torch.get_rng_state())
    finally:
        torch.set_rng_state(state)


def attention_dropout(weights: Tensor, p: float, graphs: int) -> Tensor:
    """Dropout on head-major attention weights ``[H * B, L, L]``, drawn as SDPA draws it.

    ``scaled_dot_product_attention``'s math backend (what ``nn.MultiheadAttention`` runs in
    training on CPU) calls ``dropout`` on batch-major weights ``[B, H, L, L]``: one Bernoulli
    draw per element in that order, then ``weights * mask / (1 - p)``. The mask is drawn here
    in the same order (and, where that is the same draw, as a cheaper uniform comparison), so
    a seeded run draws the same masks as it did through ``nn.MultiheadAttention``.
    """
    heads_graphs, length, _ = weights.shape
    shape = (graphs, heads_graphs // graphs, length, length)  # [B, H, L, L]
    if weights.device.type == "cpu" and bernoulli_is_uniform_below():
        noise = (torch.rand(shape, dtype=torch.float64) < 1 - p).to(weights.dtype).div_(1 - p)
    else:
        noise = torch.empty(shape, dtype=weights.dtype, device=weights.device)
        noise.bernoulli_(1 - p).div_(1 - p)
    heads = heads_graphs // graphs
    return (weights.view(heads, graphs, length, length) * noise.transpose(0, 1)).view_as(weights)


@dataclass(frozen=True)
class DenseLayout:
    """Where the nodes of a batch sit in the padded ``[B, Lmax]`` layout of the attention.

    Attributes:
        index: Slot of every node in the flattened ``[B * Lmax]`` layout, ``[N]``.
        gather: The node in every slot, ``N`` (a zero row) for padding, ``[B * Lmax]``.
        num_graphs: ``B``.
        max_nodes: ``Lmax``, the largest graph of the batch.
        attn_mask: ``True`` where a key is a real node, ``[B, 1, 1, Lmax]``.
        attn_bias: The same as an additive mask, ``0`` or ``-inf``, ``[B, 1, Lmax]``.
    """

    index: Tensor
    gather: Tensor
    num_graphs: int
    max_nodes: int
    attn_mask: Tensor
    attn_bias: Tensor

    @classmethod
    def from_batch(cls, batch: Tensor, num_graphs: int) -> DenseLayout:
        """Builds the layout from the graph id of every node (``[N]``, sorted, as in PyG).

        One host sync (``Lmax`` sizes the padded tensors); ``to_dense_batch`` has the same
        sync, in every layer.
        """
        nodes, device = batch.numel(), batch.device
        counts = torch.bincount(batch, minlength=num_graphs)  # [B]
        max_nodes = int(counts.max()) if nodes else 0
        starts = counts.cumsum(0) - counts  # [B] first node of each graph
        index = batch * max_nodes + torch.arange(nodes, device=device) - starts[batch]  # [N]
        gather = torch.full((num_graphs * max_nodes,), nodes, dtype=torch.long, device=device)
        gather[index] = torch.arange(nodes, device=device)
        mask = (gather < nodes).view(num_graphs, 1, 1, max_nodes)
        bias = torch.zeros(num_graphs, 1, max_nodes, device=device)
        bias.masked_fill_(~mask.view(num_graphs, 1, max_nodes), float("-inf"))
        return cls(index, gather, num_graphs, max_nodes, mask, bias)


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
            # Holds the projections (and the state-dict keys); `attention` does the maths.
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

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor, batch: Tensor,
                layout: DenseLayout | None = None) -> Tensor:
        """Runs the layer.

        Args:
            x: Node features, ``[N, C]``.
            edge_index: ``[2, E]``.
            edge_attr: Edge embeddings, ``[E, C]``.
            batch: Graph id of every node, ``[N]``.
            layout: The batch's padded layout (made from ``batch`` when None; a model with
                several layers makes it once and passes it to each).

        Returns:
            Updated node features, ``[N, C]``.
        """
        h = self.conv(x, edge_index, edge_attr)  # [N, C]
        h = F.dropout(h, p=self.dropout, training=self.training)
        out = self.norm_local(h + x)  # [N, C]
        if self.attn is not None:
            if layout is None:
                graphs = int(batch.max()) + 1 if batch.numel() else 0
                layout = DenseLayout.from_batch(batch, graphs)
            h = F.dropout(self.attention(x, layout), p=self.dropout, training=self.training)
            out = out + self.norm_attn(h + x)
        return self.norm_ff(out + self.ff(out))  # [N, C]

    def attention(self, x: Tensor, layout: DenseLayout) -> Tensor:
        """Multi-head self-attention within each graph: ``nn.MultiheadAttention``'s maths.

        Computed head-major (``[H * B, L, d]``: every matrix product runs on contiguous
        operands) on the padded layout, with the projections on real nodes only. Padded keys
        are masked and padded queries dropped, so zero rows there (instead of the projection
        bias) change nothing. On CUDA the fused ``scaled_dot_product_attention`` kernels run
        instead of the explicit maths.

        Args:
            x: Node features, ``[N, C]``.
            layout: Where each node sits in the padded layout.

        Returns:
            The attention output after the output projection, ``[N, C]``.
        """
        attn = self.attn
        graphs, length, heads = layout.num_graphs, layout.max_nodes, self.heads
        width = self.channels // heads
        qkv = F.linear(x, attn.in_proj_weight, attn.in_proj_bias)  # [N, 3C]
        qkv = qkv.view(-1, 3 * heads, width).transpose(0, 1)  # [3H, N, d]
        qkv = torch.cat([qkv, qkv.new_zeros(3 * heads, 1, width)], dim=1)  # + a zero row
        q, k, v = qkv.index_select(1, layout.gather).view(
            3, heads * graphs, length, width).unbind(0)  # 3 x [H * B, L, d]
        dropout = attn.dropout if self.training else 0.0
        if x.is_cuda:
            q, k, v = (t.view(heads, graphs, length, width).transpose(0, 1) for t in (q, k, v))
            h = F.scaled_dot_product_attention(q, k, v, attn_mask=layout.attn_mask,
                                               dropout_p=dropout)  # [B, H, L, d]
            h = h.transpose(0, 1).reshape(heads, graphs * length, width)
        else:
            bias = layout.attn_bias.expand(heads, -1, -1, -1).reshape(heads * graphs, 1, length)
            scores = torch.baddbmm(bias, q, k.transpose(1, 2), alpha=width**-0.5)
            weights = torch.softmax(scores, dim=-1)  # [H * B, L, L]
            if dropout > 0.0:
                weights = attention_dropout(weights, dropout, graphs)
            h = torch.bmm(weights, v).view(heads, graphs * length, width)
        h = h.index_select(1, layout.index).transpose(0, 1).reshape(-1, self.channels)  # [N, C]
        return F.linear(h, attn.out_proj.weight, attn.out_proj.bias)

    def __repr__(self) -> str:
        attn = f"heads={self.heads}" if self.attn is not None else "attention=None"
        name = self.__class__.__name__
        return f"{name}({self.channels}, local=GINE, {attn}, norm={self.norm_type})"
