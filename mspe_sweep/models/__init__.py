"""Graph-level models for ZINC-format batches: ``get_model(name, ...)``.

``graph_transformer`` is a GPS-style transformer (GINE + global attention per layer);
``gine`` is the same network without attention.
"""

from mspe_sweep.models.factory import MODELS, get_model, model_options
from mspe_sweep.models.graph_transformer import GINE, GraphTransformer

__all__ = ["GINE", "MODELS", "GraphTransformer", "get_model", "model_options"]
