"""The peer our model is measured against: a GPS network built the way PyG builds it.

``ReferenceGPS`` follows PyG's ``examples/graph_gps.py`` (ZINC with RWSE): an atom embedding
concatenated with a BatchNorm + Linear RWSE encoding, a bond embedding, ``num_layers`` x
``GPSConv(channels, GINEConv(MLP), heads, attn_type="multihead", attn_kwargs={"dropout": ...})``,
sum pooling and the example's 3-layer MLP head. Only the sizes are parameters, so that it can
match our ZINC config (hidden 64, 10 layers, 4 heads, RWSE20 encoded to 16 channels): 423,801
parameters against our 425,401 (-0.4%; the heads differ).

Its training and evaluation loops are the example's too: ``model(x, pe, edge_index,
edge_attr, batch)``, an L1 loss, ``loss.item()`` per step.
"""

from __future__ import annotations

import torch
from torch.nn import BatchNorm1d, Embedding, Linear, ModuleList, ReLU, Sequential
from torch_geometric.nn import GINEConv, GPSConv, global_add_pool


class ReferenceGPS(torch.nn.Module):
    """PyG's example GPS model for ZINC (``examples/graph_gps.py``), sizes as arguments."""

    def __init__(self, channels: int = 64, pe_dim: int = 16, pe_in: int = 20,
                 num_layers: int = 10, heads: int = 4, attn_dropout: float = 0.5,
                 num_atom_types: int = 28, num_bond_types: int = 4) -> None:
        super().__init__()
        self.node_emb = Embedding(num_atom_types, channels - pe_dim)
        self.pe_lin = Linear(pe_in, pe_dim)
        self.pe_norm = BatchNorm1d(pe_in)
        self.edge_emb = Embedding(num_bond_types, channels)
        self.convs = ModuleList()
        for _ in range(num_layers):
            nn = Sequential(Linear(channels, channels), ReLU(), Linear(channels, channels))
            self.convs.append(GPSConv(channels, GINEConv(nn), heads=heads, attn_type="multihead",
                                      attn_kwargs={"dropout": attn_dropout}))
        self.mlp = Sequential(
            Linear(channels, channels // 2), ReLU(), Linear(channels // 2, channels // 4), ReLU(),
            Linear(channels // 4, 1),
        )

    def forward(self, x, pe, edge_index, edge_attr, batch):
        x_pe = self.pe_norm(pe)
        x = torch.cat((self.node_emb(x.squeeze(-1)), self.pe_lin(x_pe)), 1)
        edge_attr = self.edge_emb(edge_attr)
        for conv in self.convs:
            x = conv(x, edge_index, batch, edge_attr=edge_attr)
        x = global_add_pool(x, batch)
        return self.mlp(x)


def reference_for(run) -> ReferenceGPS:
    """The reference sized like a ``benchmarks.epoch_time.Run``'s model (seed 0), on its
    device."""
    m = run.cfg.model
    torch.manual_seed(0)
    return ReferenceGPS(channels=m.hidden_dim, pe_dim=run.cfg.pe.dim,
                        pe_in=run.dataset.pe_dims["rwse"], num_layers=m.num_layers,
                        heads=m.heads, attn_dropout=m.attn_dropout).to(run.trainer.device)


def reference_train_epoch(model, optimizer, batches) -> float:
    """One pass of the example's ``train()`` over pre-collated batches; returns the loss."""
    model.train()
    total, count = 0.0, 0
    for data in batches:
        optimizer.zero_grad()
        out = model(data.x, data.rwse, data.edge_index, data.edge_attr, data.batch)
        loss = (out.squeeze() - data.y).abs().mean()
        loss.backward()
        total += loss.item() * data.num_graphs
        count += data.num_graphs
        optimizer.step()
    return total / count


@torch.no_grad()
def reference_eval_epoch(model, batches) -> float:
    """The example's ``test()`` over pre-collated batches; returns the MAE."""
    model.eval()
    total, count = 0.0, 0
    for data in batches:
        out = model(data.x, data.rwse, data.edge_index, data.edge_attr, data.batch)
        total += (out.squeeze() - data.y).abs().sum().item()
        count += data.num_graphs
    return total / count
