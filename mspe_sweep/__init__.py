"""mspe-sweep: hyperparameter sweeps for graph transformers with multi-scale PEs."""

__version__ = "0.1.0"
