"""Positional-encoding encoders: LapPE (linear or sign-invariant) and stats PEs (RWSE, heat).

Each encoder maps the per-node PE tensors that the dataset attaches to a batch to a
``[N, out_dim]`` embedding. :class:`~mspe_sweep.models.node_encoder.NodeEncoder` joins them
with the atom-type embedding.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.nn.inits import reset

LAP_ENCODERS = ("linear", "signnet")


def random_sign_flip(vec: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
    """Flips the sign of every eigenvector column independently per graph.

    Laplacian eigenvectors are defined only up to sign, so training sees both signs
    (GraphGPS / SAN augmentation). One ``+-1`` is drawn per (graph, eigenvector), so all
    nodes of a graph flip together and the eigenvector stays an eigenvector.

    Args:
        vec: Eigenvectors, ``[N, k]``.
        batch: Graph id of every node, ``[N]``.
        num_graphs: Number of graphs in the batch.

    Returns:
        ``vec`` with columns multiplied by a random sign per graph, ``[N, k]``.
    """
    signs = torch.randint(0, 2, (num_graphs, vec.size(1)), device=vec.device)  # [B, k]
    signs = (2 * signs - 1).to(vec.dtype)
    return vec * signs[batch]  # [N, k]


class LapPEEncoder(nn.Module):
    """Encodes ``k`` Laplacian eigenvector/eigenvalue pairs per node.

    ``"linear"``: one linear map over the masked, flattened ``[vec, val]`` of all ``k``
    eigenpairs (position-aware, not sign-invariant: use random sign flips in training).
    ``"signnet"``: a SignNet-lite DeepSets encoder, ``rho(sum_j phi([v_j, l_j]) +
    phi([-v_j, l_j]))`` over the valid eigenpairs, invariant to eigenvector signs and order.

    Args:
        k: Number of eigenpairs per node (``pe_dims["lap"]``).
        out_dim: Output width.
        encoder: ``"linear"`` or ``"signnet"``.
    """

    def __init__(self, k: int, out_dim: int, encoder: str = "linear") -> None:
        super().__init__()
        if encoder not in LAP_ENCODERS:
            raise ValueError(f"lap_encoder={encoder!r} is not supported; valid: {LAP_ENCODERS}")
        self.k = k
        self.out_dim = out_dim
        self.encoder = encoder
        self.sign_invariant = encoder == "signnet"
        if encoder == "linear":
            self.lin = nn.Linear(2 * k, out_dim)
        else:
            self.phi = nn.Sequential(
                nn.Linear(2, out_dim), nn.ReLU(), nn.Linear(out_dim, out_dim), nn.ReLU()
            )
            self.rho = nn.Linear(out_dim, out_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Resets all learnable parameters of the module."""
        for child in self.children():
            reset(child)

    def forward(self, vec: Tensor, val: Tensor, mask: Tensor) -> Tensor:
        """Encodes the eigenpairs.

        Args:
            vec: Eigenvectors, ``[N, k]``.
            val: Eigenvalues repeated per node, ``[N, k]``.
            mask: ``False`` on zero-padded eigenpairs, ``[N, k]``.

        Returns:
            The LapPE embedding, ``[N, out_dim]``.
        """
        keep = mask.to(vec.dtype)  # [N, k]
        vec, val = vec * keep, val * keep
        if self.encoder == "linear":
            return self.lin(torch.cat([vec, val], dim=-1))  # [N, 2k] -> [N, out]
        pos = torch.stack([vec, val], dim=-1)  # [N, k, 2]
        neg = torch.stack([-vec, val], dim=-1)  # [N, k, 2]
        h = self.phi(pos) + self.phi(neg)  # [N, k, out], sign-invariant per eigenpair
        h = (h * keep.unsqueeze(-1).to(h.dtype)).sum(dim=1)  # [N, out], padding dropped
        return self.rho(h)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(k={self.k}, out={self.out_dim}, {self.encoder})"


class StatsPEEncoder(nn.Module):
    """BatchNorm + Linear encoder for dense per-node PE/SE vectors (RWSE, heat kernels).

    The raw statistics have very different scales per column (return probabilities decay
    with walk length), so they are normalised before the projection.

    Args:
        in_dim: Width of the PE (``pe_dims["rwse"]`` or ``pe_dims["heat"]``).
        out_dim: Output width.
    """

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.out_dim = out_dim
        self.norm = nn.BatchNorm1d(in_dim)
        self.lin = nn.Linear(in_dim, out_dim)

    def reset_parameters(self) -> None:
        """Resets all learnable parameters (and running statistics) of the module."""
        self.norm.reset_parameters()
        self.lin.reset_parameters()

    def forward(self, pe: Tensor) -> Tensor:
        """Encodes ``pe`` of shape ``[N, in_dim]`` into ``[N, out_dim]``."""
        return self.lin(self.norm(pe))

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.in_dim}, {self.out_dim})"
