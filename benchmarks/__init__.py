"""Reproducible performance measurements (not tests): ``python -m benchmarks [--quick]``."""
