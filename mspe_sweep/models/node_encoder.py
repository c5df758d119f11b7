"""Input node encoder: atom-type embedding joined with the enabled positional encodings."""

from __future__ import annotations

import operator
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from mspe_sweep.models.encoders import LapPEEncoder, StatsPEEncoder, random_sign_flip

PE_KINDS = ("lap", "rwse", "heat")
PE_COMBINES = ("concat", "add")
# Batch attributes each PE kind needs (the dataset's names).
PE_ATTRS = {"lap": ("lap_vec", "lap_val", "lap_mask"), "rwse": ("rwse",), "heat": ("heat",)}


def graph_index(batch) -> tuple[Tensor, int]:
    """Returns the graph id of every node (``[N]``) and the number of graphs of ``batch``.

    A single ``Data`` object (no ``batch`` vector) counts as one graph.
    """
    if getattr(batch, "batch", None) is not None:
        return batch.batch, int(batch.num_graphs)
    return torch.zeros(batch.num_nodes, dtype=torch.long, device=batch.x.device), 1


def normalize_pe_dims(pe_dims: Mapping[str, int] | None) -> dict[str, int]:
    """Validates ``pe_dims`` and keeps the enabled kinds, in :data:`PE_KINDS` order.

    Args:
        pe_dims: ``{"lap": k, "rwse": r, "heat": h}``; a missing or 0 entry disables that PE.

    Returns:
        ``{kind: width}`` for the kinds with a positive width.

    Raises:
        ValueError: On an unknown kind or a negative / non-integer width.
    """
    pe_dims = dict(pe_dims or {})
    unknown = sorted(set(pe_dims) - set(PE_KINDS))
    if unknown:
        raise ValueError(f"pe_dims has unknown kinds {unknown}; valid: {list(PE_KINDS)}")
    for kind, width in pe_dims.items():
        try:
            pe_dims[kind] = operator.index(width)  # ints, numpy ints; not floats or None
        except TypeError:
            pe_dims[kind] = -1
        if isinstance(width, bool) or pe_dims[kind] < 0:
            raise ValueError(f"pe_dims[{kind!r}] must be an int >= 0, got {width!r}")
    return {kind: pe_dims[kind] for kind in PE_KINDS if pe_dims.get(kind, 0) > 0}


class NodeEncoder(nn.Module):
    """Embeds atom types and the enabled PEs into ``[N, hidden_dim]`` node features.

    With ``pe_combine="concat"`` the atom embedding has ``hidden_dim - n_pe * pe_dim``
    channels and each PE encoder ``pe_dim``; with ``"add"`` every part has ``hidden_dim``
    channels and they are summed (``pe_dim`` is unused).

    Args:
        num_features: Atom-type vocabulary size.
        hidden_dim: Output width.
        pe_dims: ``{"lap": k, "rwse": r, "heat": h}``; 0 or missing disables a PE.
        pe_dim: Width of each PE embedding when concatenating.
        pe_combine: ``"concat"`` or ``"add"``.
        lap_encoder: ``"linear"`` or ``"signnet"`` (see :class:`LapPEEncoder`).
    """

    def __init__(
        self,
        num_features: int,
        hidden_dim: int,
        pe_dims: Mapping[str, int] | None = None,
        pe_dim: int = 16,
        pe_combine: str = "concat",
        lap_encoder: str = "linear",
    ) -> None:
        super().__init__()
        if pe_combine not in PE_COMBINES:
            raise ValueError(f"pe_combine={pe_combine!r} is not supported; valid: {PE_COMBINES}")
        self.pe_dims = normalize_pe_dims(pe_dims)
        self.pe_combine = pe_combine
        if pe_combine == "concat":
            pe_out = pe_dim
            atom_dim = hidden_dim - len(self.pe_dims) * pe_dim
            if atom_dim <= 0:
                raise ValueError(
                    f"hidden_dim={hidden_dim} leaves no room for the atom embedding next to "
                    f"{len(self.pe_dims)} PE(s) of pe_dim={pe_dim} (pe_combine='concat'); "
                    "raise hidden_dim, lower pe_dim or use pe_combine='add'"
                )
        else:
            pe_out = atom_dim = hidden_dim
        self.atom_dim = atom_dim
        self.atom = nn.Embedding(num_features, atom_dim)
        self.pe_encoders = nn.ModuleDict()
        for kind, width in self.pe_dims.items():
            if kind == "lap":
                self.pe_encoders[kind] = LapPEEncoder(width, pe_out, lap_encoder)
            else:
                self.pe_encoders[kind] = StatsPEEncoder(width, pe_out)

    def reset_parameters(self) -> None:
        """Resets all learnable parameters of the module."""
        self.atom.reset_parameters()
        for encoder in self.pe_encoders.values():
            encoder.reset_parameters()

    def _pe_tensors(self, batch, kind: str) -> list[Tensor]:
        tensors = []
        for attr in PE_ATTRS[kind]:
            value = getattr(batch, attr, None)
            if value is None:
                raise ValueError(
                    f"batch has no attribute {attr!r}, but the model was built with "
                    f"pe_dims={self.pe_dims} ({kind!r} needs {list(PE_ATTRS[kind])}); "
                    "build the dataset with the matching PE setting"
                )
            if value.dim() != 2 or value.size(1) != self.pe_dims[kind]:
                raise ValueError(
                    f"batch.{attr} has shape {tuple(value.shape)}, expected "
                    f"[num_nodes, {self.pe_dims[kind]}] from pe_dims[{kind!r}]"
                )
            tensors.append(value)
        return tensors

    def forward(self, batch) -> Tensor:
        """Encodes the nodes of ``batch`` (``x`` ``[N, 1]`` or ``[N]`` plus PE attributes).

        Returns:
            Node features, ``[N, hidden_dim]``.
        """
        x = batch.x
        if x.dim() == 2 and x.size(1) == 1:
            x = x.squeeze(1)  # [N, 1] -> [N]
        if x.dim() != 1 or x.is_floating_point():
            raise ValueError(
                f"batch.x must hold integer atom-type ids of shape [N] or [N, 1], got "
                f"{x.dtype} {tuple(batch.x.shape)}"
            )
        parts = [self.atom(x)]  # [N, atom_dim]
        for kind, encoder in self.pe_encoders.items():
            tensors = self._pe_tensors(batch, kind)
            if kind != "lap":
                parts.append(encoder(tensors[0].float()))  # [N, pe_out]
                continue
            vec, val, mask = tensors  # [N, k] each
            vec = vec.float()
            if self.training and not encoder.sign_invariant:
                vec = random_sign_flip(vec, *graph_index(batch))
            parts.append(encoder(vec, val.float(), mask.bool()))  # [N, pe_out]
        if self.pe_combine == "concat":
            return torch.cat(parts, dim=-1)  # [N, hidden_dim]
        return torch.stack(parts, dim=0).sum(dim=0)  # [N, hidden_dim]
