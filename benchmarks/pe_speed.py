"""Positional-encoding speed: the vectorized engine vs per-graph loops (ours and PyG's).

Usage (from the repository root):

    python -m benchmarks.pe_speed                       # 12,000 ZINC-sized synthetic graphs
    python -m benchmarks.pe_speed --source zinc_rdkit   # the 10,000 offline ZINC-format molecules
    python -m benchmarks.pe_speed --naive-limit 0       # time the loops on every graph

The per-graph loops are our pure per-graph functions (``laplacian_pe``, ``random_walk_pe``,
``heat_kernel_pe``, i.e. ``compute_pe_naive``) and, for LapPE + RWSE, PyG's own
``AddLaplacianEigenvectorPE`` + ``AddRandomWalkPE`` transforms applied to one ``Data`` at a
time. By default they run on the first ``--naive-limit`` graphs and their time is scaled to
the whole set (they are linear in the number of graphs). ``python -m benchmarks`` runs the
same comparisons, interleaved and repeated, as rows of its table.
"""

from __future__ import annotations

import argparse
import time
import warnings

from torch_geometric.data import Data

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


def synthetic_table(graphs: int, seed: int = 0) -> GraphTable:
    """``graphs`` ZINC-sized (9-38 nodes) synthetic graphs as one table."""
    # 80% of the generated graphs land in the train split: generate 1.25x and use it.
    made = make_synthetic(num_graphs=max(graphs * 5 // 4, 3), min_nodes=9, max_nodes=38,
                          seed=seed)
    return made.splits["train"].head(graphs)


def load_tables(source: str, graphs: int) -> list[GraphTable]:
    """The graphs to encode, as one or more tables."""
    if source == "synthetic":
        return [synthetic_table(graphs)]
    from mspe_sweep.dataset import get_dataset
    from mspe_sweep.dataset.base import SPLITS

    dataset = get_dataset("zinc_rdkit")
    return [dataset.tables[split] for split in SPLITS]


def pyg_pe_per_graph(table: GraphTable, lap_k: int = 8, walk_length: int = 20) -> None:
    """PyG's LapPE + RWSE transforms, one ``Data`` at a time (what a PyG user writes)."""
    from torch_geometric.transforms import AddLaplacianEigenvectorPE, AddRandomWalkPE

    lap = AddLaplacianEigenvectorPE(k=lap_k, attr_name="lap_vec", is_undirected=True)
    rwse = AddRandomWalkPE(walk_length=walk_length, attr_name="rwse")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyG warns per graph about its sparse fallbacks
        for data in table.to_data_list():
            rwse(lap(Data(edge_index=data.edge_index, num_nodes=data.num_nodes)))


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", choices=("synthetic", "zinc_rdkit"), default="synthetic")
    parser.add_argument("--graphs", type=int, default=12_000, help="synthetic graphs")
    parser.add_argument("--naive-limit", type=int, default=1_000,
                        help="graphs the per-graph loops run on (0 = all), scaled to the set")
    parser.add_argument("--presets", nargs="*", default=list(PRESETS), choices=list(PRESETS))
    args = parser.parse_args()

    tables = load_tables(args.source, args.graphs)
    total = sum(t.num_graphs for t in tables)
    nodes = sum(t.x.size(0) for t in tables) / total
    naive_tables = tables if args.naive_limit == 0 else [tables[0].head(args.naive_limit)]
    naive_graphs = sum(t.num_graphs for t in naive_tables)
    scale = total / naive_graphs
    print(f"{args.source}: {total:,} graphs, {nodes:.1f} nodes/graph")
    print(f"{'preset':<12} {'dims':<30} {'vectorized s':>12} {'our loop s':>10} {'ratio':>7}")
    for name in args.presets:
        spec = PESpec.from_config(PRESETS[name])
        fast = sum(timed(lambda t=t, s=spec: compute_pe(t, s)) for t in tables)
        naive = scale * sum(timed(lambda t=t, s=spec: compute_pe_naive(t, s))
                            for t in naive_tables)
        mark = "" if naive_graphs == total else "*"
        print(f"{name:<12} {str(spec.dims):<30} {fast:>12.2f} {naive:>9.1f}{mark} "
              f"{naive / fast:>6.0f}x")
    spec = PESpec.from_config(PRESETS["lap8+rwse20"])
    fast = sum(timed(lambda t=t: compute_pe(t, spec)) for t in tables)
    pyg = scale * sum(timed(lambda t=t: pyg_pe_per_graph(t)) for t in naive_tables)
    print(f"lap8+rwse20 vs PyG's AddLaplacianEigenvectorPE + AddRandomWalkPE per graph: "
          f"{fast:.2f} s vs {pyg:.1f} s{'*' if naive_graphs != total else ''}: "
          f"{pyg / fast:.0f}x")
    if args.naive_limit:
        print(f"* per-graph loops measured on {naive_graphs:,} graphs and scaled to {total:,}")


if __name__ == "__main__":
    main()
