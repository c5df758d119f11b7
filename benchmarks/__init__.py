"""Reproducible performance measurements (not tests): ``python -m benchmarks [--quick]``."""

# Before anything loads torch: the package sets OMP_WAIT_POLICY=PASSIVE (see its __init__),
# without which a busy neighbour stalls every parallel region of the measured process.
import mspe_sweep  # noqa: F401
