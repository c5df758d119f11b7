"""get_optimizer: AdamW / Adam / SGD with weight decay only where it belongs."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["get_optimizer", "OPTIMIZERS", "param_groups"]

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adamw": torch.optim.AdamW,
    "adam": torch.optim.Adam,
    "sgd": torch.optim.SGD,
}

# Normalisation layers whose parameters (scale and shift) are never weight-decayed.
_NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
    nn.RMSNorm,
)


def _is_norm(module: nn.Module) -> bool:
    # PyG's norm layers (torch_geometric.nn.norm.*) wrap torch ones or are named "*Norm".
    return isinstance(module, _NORM_TYPES) or type(module).__name__.endswith("Norm")


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Split trainable parameters into a decayed group and a no-decay group.

    No decay for: every parameter of a normalisation layer, and every parameter with fewer than
    two dimensions (biases, norm scales, scalar temperatures). Weight matrices, conv kernels
    and embedding tables are decayed. Frozen parameters (``requires_grad=False``) are skipped.

    Args:
        model: The model.
        weight_decay: Decay for the decayed group.

    Returns:
        One or two param-group dicts (empty groups are left out).
    """
    no_decay_ids = set()
    for module in model.modules():
        if _is_norm(module):
            no_decay_ids.update(id(p) for p in module.parameters(recurse=False))
    decay, no_decay = [], []
    for param in model.parameters():
        if not param.requires_grad:
            continue
        if param.ndim < 2 or id(param) in no_decay_ids:
            no_decay.append(param)
        else:
            decay.append(param)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def get_optimizer(
    model: nn.Module,
    optimizer_type: str = "adamw",
    lr: float = 1e-4,
    weight_decay: float = 0.01,
    **kwargs: Any,
) -> torch.optim.Optimizer:
    """Build an optimizer over ``model``'s trainable parameters.

    Weight decay applies to weight matrices only: biases, other 1-D parameters and all
    normalisation-layer parameters are in a second group with ``weight_decay=0`` (see
    :func:`param_groups`). Note that ``adam`` applies decay as L2 in the gradient while
    ``adamw`` decouples it.

    Args:
        model: The model to optimize.
        optimizer_type: ``"adamw"``, ``"adam"`` or ``"sgd"``.
        lr: Learning rate.
        weight_decay: Weight decay of the decayed group.
        **kwargs: Passed to the torch optimizer (e.g. ``betas``, ``momentum``).

    Returns:
        The optimizer. Group 0 is the decayed group when the model has weight matrices.

    Raises:
        ValueError: On an unknown ``optimizer_type`` or a model without trainable parameters.
    """
    key = optimizer_type.lower()
    if key not in OPTIMIZERS:
        raise ValueError(
            f"unknown optimizer_type {optimizer_type!r}; valid: {', '.join(OPTIMIZERS)}"
        )
    groups = param_groups(model, weight_decay)
    if not groups:
        raise ValueError(f"{type(model).__name__} has no trainable parameters")
    return OPTIMIZERS[key](groups, lr=lr, **kwargs)
