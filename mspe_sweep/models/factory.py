"""``get_model``: builds a model by name from explicit keyword arguments."""

from __future__ import annotations

import inspect

from torch import nn

from mspe_sweep.models.graph_transformer import GINE, GraphTransformer

MODELS: dict[str, type[GraphTransformer]] = {"graph_transformer": GraphTransformer, "gine": GINE}
_POSITIONAL = ("num_features", "num_classes", "hidden_dim", "num_layers")


def model_options(name: str) -> tuple[str, ...]:
    """Returns the keyword options (beyond the four positional sizes) model ``name`` takes."""
    params = inspect.signature(MODELS[name].__init__).parameters
    return tuple(p for p in params if p not in ("self", *_POSITIONAL))


def get_model(
    name: str,
    num_features: int,
    num_classes: int,
    hidden_dim: int,
    num_layers: int,
    **kwargs,
) -> nn.Module:
    """Builds a graph-level model.

    Args:
        name: ``"graph_transformer"`` (GPS-style) or ``"gine"`` (no global attention).
        num_features: Atom-type vocabulary size (28 for ZINC).
        num_classes: Output width (1 for regression).
        hidden_dim: Node feature width.
        num_layers: Number of layers.
        **kwargs: Model options: ``heads``, ``dropout``, ``attn_dropout``,
            ``num_edge_types``, ``pe_dims``, ``pe_dim``, ``pe_combine``, ``lap_encoder``,
            ``pooling``, ``norm`` (see :class:`GraphTransformer`; ``gine`` accepts and
            ignores ``heads`` and ``attn_dropout``).

    Returns:
        The model; ``model(batch)`` returns ``[num_graphs, num_classes]``.

    Raises:
        ValueError: On an unknown name or option, or an unsupported option value.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid: {sorted(MODELS)}")
    unknown = sorted(set(kwargs) - set(model_options(name)))
    if unknown:
        raise ValueError(
            f"unknown option(s) {unknown} for model {name!r}; valid: {list(model_options(name))}"
        )
    return MODELS[name](num_features, num_classes, hidden_dim, num_layers, **kwargs)
