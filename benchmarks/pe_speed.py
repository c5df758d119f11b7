"""Positional-encoding speed: the vectorized engine vs a naive per-graph loop.

Usage (from the repository root):

    python benchmarks/pe_speed.py                       # 12,000 ZINC-sized synthetic graphs
    python benchmarks/pe_speed.py --source zinc_rdkit   # the 10,000 offline ZINC-format molecules
    python benchmarks/pe_speed.py --naive-limit 0       # time the naive loop on every graph

The naive loop calls the pure per-graph functions (``laplacian_pe``, ``random_walk_pe``,
``heat_kernel_pe``) one graph at a time. By default it runs on the first ``--naive-limit``
graphs and its time is scaled to the whole set (it is linear in the number of graphs). Both
run with BLAS limited to one thread, so the ratio measures vectorization, not threading.
"""

from __future__ import annotations

import argparse
import time

from threadpoolctl import threadpool_limits

from mspe_sweep.dataset import get_dataset
from mspe_sweep.dataset.base import SPLITS
from mspe_sweep.dataset.encodings import PESpec
from mspe_sweep.dataset.graphs import GraphTable
from mspe_sweep.dataset.pe_batch import compute_pe, compute_pe_naive
from mspe_sweep.dataset.synthetic import make_synthetic

HEAT = {"num_times": 4, "t_min": 0.1, "t_max": 10.0}
OFF = {"lap": {"k": 0}, "rwse": {"steps": 0, "scale": "linear"}, "heat": {"num_times": 0}}
PRESETS = {
    "lap": {**OFF, "lap": {"k": 8}},
    "rwse": {**OFF, "rwse": {"steps": 20, "scale": "linear"}},
    "heat": {**OFF, "heat": HEAT},
    "multiscale": {"lap": {"k": 8}, "rwse": {"steps": 16, "scale": "geometric"}, "heat": HEAT},
    "lap8+rwse20": {**OFF, "lap": {"k": 8}, "rwse": {"steps": 20, "scale": "linear"}},
}


def load_tables(source: str, graphs: int) -> list[GraphTable]:
    """The graphs to encode, as one or more tables."""
    if source == "synthetic":
        # 80% of the generated graphs land in the train split: generate 1.25x and use it.
        made = make_synthetic(num_graphs=graphs * 5 // 4, min_nodes=9, max_nodes=38, seed=0)
        return [made.splits["train"].head(graphs)]
    dataset = get_dataset("zinc_rdkit")
    return [dataset.tables[split] for split in SPLITS]


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", choices=("synthetic", "zinc_rdkit"), default="synthetic")
    parser.add_argument("--graphs", type=int, default=12_000, help="synthetic graphs")
    parser.add_argument("--naive-limit", type=int, default=1_000,
                        help="graphs the naive loop runs on (0 = all), scaled to the full set")
    parser.add_argument("--presets", nargs="*", default=list(PRESETS), choices=list(PRESETS))
    args = parser.parse_args()

    tables = load_tables(args.source, args.graphs)
    total = sum(t.num_graphs for t in tables)
    nodes = sum(t.x.size(0) for t in tables) / total
    print(f"{args.source}: {total:,} graphs, {nodes:.1f} nodes/graph")
    print(f"{'preset':<12} {'dims':<30} {'vectorized s':>12} {'naive s':>10} {'ratio':>7}")
    for name in args.presets:
        spec = PESpec.from_config(PRESETS[name])
        fast = sum(timed(lambda t=t: compute_pe(t, spec)) for t in tables)
        naive_tables = tables if args.naive_limit == 0 else [tables[0].head(args.naive_limit)]
        naive_graphs = sum(t.num_graphs for t in naive_tables)
        with threadpool_limits(limits=1):
            naive = sum(timed(lambda t=t: compute_pe_naive(t, spec)) for t in naive_tables)
        naive *= total / naive_graphs
        scaled = "" if naive_graphs == total else "*"
        print(f"{name:<12} {str(spec.dims):<30} {fast:>12.2f} {naive:>9.1f}{scaled} "
              f"{naive / fast:>6.0f}x")
    if args.naive_limit:
        print(f"* naive time measured on {args.naive_limit:,} graphs and scaled to {total:,}")


if __name__ == "__main__":
    main()
