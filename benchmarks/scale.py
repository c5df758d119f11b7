"""Scale rows: ``dataset=zinc_moses`` at full-ZINC size (220,011 / 24,445 / 5,000 graphs).

Usage: ``python -m benchmarks.scale`` prints the rows; the full suite (``make bench``) runs it
in a child process of its own, so that the peak resident memory it reports is this work's.

Measured: the set's build time (from its cache entry when it is cached; building it takes
minutes the first time), LapPE8 + RWSE20 for all 250k graphs (computed, never read from the
cache), the training set-up (the ZINC config's RWSE20 from the PE cache, the loaders), and
one epoch of the ZINC config on the train split, estimated from ``--batches`` timed batches. Targets (issue 12): PE under 60 s and the
whole set under 4 GiB resident.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import time

PE_TARGET_S = 60.0
RSS_TARGET_GIB = 4.0


def measure(batches: int) -> dict:
    import torch

    from benchmarks.epoch_time import build_run, seconds_per_batch
    from benchmarks.pe_speed import PRESETS
    from mspe_sweep.dataset import get_dataset
    from mspe_sweep.dataset.encodings import PESpec
    from mspe_sweep.dataset.pe_batch import compute_pe

    out = {}
    start = time.perf_counter()
    dataset = get_dataset("zinc_moses")
    out["load_s"] = time.perf_counter() - start
    built = re.search(r" in ([\d.]+) s \((\d+) processes\)", dataset.describe())
    out["build_s"], out["build_processes"] = float(built[1]), int(built[2])
    out["graphs"] = sum(t.num_graphs for t in dataset.tables.values())
    spec = PESpec.from_config(PRESETS["lap8+rwse20"])
    start = time.perf_counter()
    for table in dataset.tables.values():
        compute_pe(table, spec)
    out["pe_s"] = time.perf_counter() - start
    start = time.perf_counter()
    run = build_run(["dataset=zinc_moses"])  # RWSE20 (cached after the first run) + loaders
    out["data_lists_s"] = time.perf_counter() - start
    per_batch = seconds_per_batch(run, run.batches(3 + batches), warmup=3)
    out["epoch_s"] = per_batch * len(run.train_loader)
    out["threads"] = torch.get_num_threads()
    out["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return out


def scale_table(batches: int = 20) -> str:
    """Runs :func:`measure` in a child process and formats its rows."""
    done = subprocess.run([sys.executable, "-m", "benchmarks.scale", "--json",
                           "--batches", str(batches)], capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:]
        return f"scale rows (zinc_moses): not measured: {' '.join(tail)}"
    return format_rows(json.loads(done.stdout.strip().splitlines()[-1]))


def format_rows(m: dict) -> str:
    rows = [
        ("build (RDKit, cached afterwards)",
         f"{m['build_s']:.0f} s with {m['build_processes']} processes", "", ""),
        ("load from cache", f"{m['load_s']:.1f} s", "", ""),
        ("PE LapPE8+RWSE20, all graphs", f"{m['pe_s']:.1f} s", f"< {PE_TARGET_S:.0f} s",
         "yes" if m["pe_s"] < PE_TARGET_S else "no"),
        ("training set-up: RWSE20 (PE cache) + loaders", f"{m['data_lists_s']:.1f} s", "", ""),
        ("one epoch, ZINC config (estimated)",
         f"{m['epoch_s'] / 60:.1f} min ({m['threads']} threads)", "", ""),
        ("peak resident memory, all of the above", f"{m['peak_rss_gib']:.2f} GiB",
         f"< {RSS_TARGET_GIB:.0f} GiB", "yes" if m["peak_rss_gib"] < RSS_TARGET_GIB else "no"),
    ]
    lines = [f"scale: zinc_moses, {m['graphs']:,} graphs (absolute; no peer)", "",
             "| row | measured | target | met |", "|---|---|---|---|"]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=20, help="timed batches for the epoch")
    parser.add_argument("--json", action="store_true", help="print the measurements as JSON")
    args = parser.parse_args()
    measured = measure(args.batches)
    print(json.dumps(measured) if args.json else format_rows(measured))


if __name__ == "__main__":
    main()
