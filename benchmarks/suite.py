"""The benchmark suite: one command, one table, every row a ratio against a peer.

Usage (from the repository root; ``make bench`` / ``make bench-quick`` run these):

    python -m benchmarks              # 5 rounds, larger samples, plus the 250k-graph scale rows
    python -m benchmarks --quick      # 3 rounds, small samples: under 3 minutes on 2 cores
    python -m benchmarks --only train,eval --rounds 7 --threads 1

Each row measures ours and its peer in the same process and the same rounds, interleaved: the
order flips every round, and the model rows also alternate every few batches inside a round.
The table shows the median over rounds of each round's ratio, so a noisy neighbour that slows
one round slows both sides of its ratio. ``--smoke`` runs one tiny round of everything on
synthetic data (what ``tests/benchmarks`` runs, so that no benchmark can rot).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Row:
    """One line of the table: ours against a peer, one value of each per round.

    ``kind`` says how the ratio reads: ``"speedup"`` (peer time / our time, or our rate /
    the peer's: higher is better), ``"cost"`` (our time / the peer's: lower is better) or
    ``"share"`` (ours as a fraction of ours + peer).
    """

    name: str
    peer: str
    unit: str
    kind: str
    target: float | None = None
    ours: list[float] = field(default_factory=list)
    theirs: list[float] = field(default_factory=list)
    note: str = ""

    def add(self, ours: float, theirs: float) -> None:
        self.ours.append(ours)
        self.theirs.append(theirs)

    def ratios(self) -> list[float]:
        pairs = zip(self.ours, self.theirs)
        if self.kind == "speedup":
            rate = self.unit.endswith("/s")  # a rate: ours / peer; a time: peer / ours
            return [o / t if rate else t / o for o, t in pairs]
        if self.kind == "share":
            return [o / (o + t) for o, t in pairs]
        return [o / t for o, t in pairs]

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios())

    def met(self) -> str:
        if self.target is None or not self.ours:
            return ""
        good = self.ratio >= self.target if self.kind == "speedup" else self.ratio <= self.target
        return "yes" if good else "no"

    def cells(self) -> list[str]:
        if not self.ours:
            return [self.name, "-", self.peer, "-", "", "", self.note or "not measured"]
        ours, theirs = statistics.median(self.ours), statistics.median(self.theirs)
        notes = [self.note] if self.note else []
        ratios = self.ratios()
        if self.kind == "share":
            ratio = f"{self.ratio:.0%} of a step"
            target = f"<= {self.target:.0%}" if self.target is not None else ""
            spread = f"{min(ratios):.0%}-{max(ratios):.0%}"
        else:
            word = "x faster" if self.kind == "speedup" else "x the peer"
            ratio = f"{self.ratio:.2f}{word}"
            sign = ">=" if self.kind == "speedup" else "<="
            target = f"{sign} {self.target:g}x" if self.target is not None else ""
            spread = f"{min(ratios):.2f}-{max(ratios):.2f}"
        if self.kind == "cost":  # what the ratio means in absolute terms
            extra = statistics.median(o - t for o, t in zip(self.ours, self.theirs))
            notes.insert(0, f"{extra:+.2f} {self.unit} each")
        return [self.name, f"{fmt(ours)} {self.unit}",
                f"{self.peer}: {fmt(theirs)} {self.unit}", ratio, target, self.met(),
                "; ".join([f"rounds {spread}", *notes])]


def fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


@dataclass
class Settings:
    """Sample sizes for one suite run (``--quick``, full, ``--smoke``)."""

    rounds: int
    batches: int  # timed batches per model row and round
    chunk: int  # batches per interleaving slice
    pe_graphs: int  # graphs the vectorized PE engine encodes
    pe_loop_graphs: int  # graphs the per-graph loops encode (scaled up)
    trial_overrides: tuple[str, ...]  # the trial of the per-trial / start-up rows
    study_trials: int  # trials of those rows' studies: trial 0 and the last are not timed
    model_overrides: tuple[str, ...] = ()
    smoke: bool = False
    scale: bool = False


QUICK_TRIAL = ("dataset=zinc_rdkit", "dataset.train_size=500", "dataset.val_size=200",
               "dataset.test_size=200", "model.hidden_dim=32", "model.num_layers=2",
               "training.epochs=2", "training.batch_size=64", "pe=rwse",
               "training.scheduler.warmup_epochs=1")
# zinc_quick's trials: 1,500 graphs, GPS 2x32, 6 epochs.
FULL_TRIAL = ("dataset=zinc_rdkit", "dataset.train_size=1500", "dataset.val_size=300",
              "dataset.test_size=300", "model.hidden_dim=32", "model.num_layers=2",
              "training.epochs=6", "training.batch_size=64", "pe=rwse",
              "training.scheduler.warmup_epochs=1")
SMOKE_TRIAL = ("dataset=synthetic", "model.hidden_dim=16", "model.num_layers=1", "pe=rwse",
               "pe.dim=4", "training.epochs=1", "training.batch_size=16",
               "training.scheduler.warmup_epochs=0")
SMOKE_MODEL = ("dataset=synthetic", "dataset.train_size=64", "model.num_layers=2")


def settings(args) -> Settings:
    if args.smoke:
        return Settings(rounds=1, batches=2, chunk=1, pe_graphs=40, pe_loop_graphs=8,
                        trial_overrides=SMOKE_TRIAL, study_trials=3, model_overrides=SMOKE_MODEL, smoke=True)
    if args.quick:
        base = Settings(rounds=3, batches=16, chunk=4, pe_graphs=12_000, pe_loop_graphs=150,
                        trial_overrides=QUICK_TRIAL, study_trials=4)
    else:
        base = Settings(rounds=5, batches=60, chunk=4, pe_graphs=12_000, pe_loop_graphs=1_000,
                        trial_overrides=FULL_TRIAL, study_trials=6, scale=not args.no_scale)
    if args.rounds:
        base.rounds = args.rounds
    return base


# --- the benchmarks --------------------------------------------------------------------------

class ModelBench:
    """Train and eval graphs/s of the ZINC config against PyG's example GPS, same batches."""

    def __init__(self, s: Settings) -> None:
        from benchmarks.epoch_time import build_run
        from benchmarks.reference import reference_for

        self.s = s
        self.run = build_run(s.model_overrides)
        self.ref = reference_for(self.run)
        self.ref_opt = torch.optim.Adam(self.ref.parameters(), lr=1e-3)
        warm = 1 if s.smoke else 3
        self.batches = self.run.batches(warm + s.batches)
        self.warm, self.batches = self.batches[:warm], self.batches[warm:]
        ours = self.run.num_params
        theirs = sum(p.numel() for p in self.ref.parameters())
        self.note = f"{ours:,} vs {theirs:,} params ({ours / theirs - 1:+.1%})"
        peer = "PyG GPSConv+GINEConv"
        self.rows = {
            "train": Row("train graphs/s, ZINC config", peer, "graphs/s", "speedup", 1.5,
                         note=self.note),
            "eval": Row("eval graphs/s, ZINC config", peer, "graphs/s", "speedup", 2.0),
        }
        self._steps()["train"][0](self.warm)  # first calls: lazy inits, allocator warm-up
        self._steps()["train"][1](self.warm)
        self._steps()["eval"][0](self.warm)
        self._steps()["eval"][1](self.warm)

    def _steps(self):
        from benchmarks.reference import reference_eval_epoch, reference_train_epoch

        trainer = self.run.trainer
        return {
            "train": (trainer.train_epoch,
                      lambda b: reference_train_epoch(self.ref, self.ref_opt, b)),
            "eval": (trainer.eval_epoch, lambda b: reference_eval_epoch(self.ref, b)),
        }

    def measure(self, rnd: int) -> None:
        from benchmarks.epoch_time import synchronize

        device = self.run.trainer.device
        graphs = sum(b.num_graphs for b in self.batches)
        for key, (ours_fn, peer_fn) in self._steps().items():
            spent = [0.0, 0.0]
            for i in range(0, len(self.batches), self.s.chunk):
                chunk = self.batches[i:i + self.s.chunk]
                order = (0, 1) if (rnd + i // self.s.chunk) % 2 == 0 else (1, 0)
                for side in order:
                    start = time.perf_counter()
                    (ours_fn, peer_fn)[side](chunk)
                    synchronize(device)
                    spent[side] += time.perf_counter() - start
            self.rows[key].add(graphs / spent[0], graphs / spent[1])


class LoaderBench:
    """Batch collation: what share of a training step it takes, and ours against PyG's."""

    def __init__(self, s: Settings, model: ModelBench) -> None:
        from torch_geometric.loader import DataLoader

        self.s, self.model = s, model
        run = model.run
        self.pyg = DataLoader(run.dataset.get_splits()[0], batch_size=run.cfg.training.batch_size,
                              shuffle=True)
        self.rows = {
            "share": Row("data loading share of a train step", "model step", "ms/batch",
                         "share", note=type(run.train_loader).__name__),
            "collate": Row("batch collation, ZINC batches", "PyG DataLoader", "ms/batch",
                           "speedup", note=f"ours: {type(run.train_loader).__name__}"),
        }

    def _load(self, loader) -> float:
        import itertools

        start = time.perf_counter()
        for _ in itertools.islice(loader, self.s.batches):
            pass
        return (time.perf_counter() - start) / self.s.batches * 1000

    def _step(self) -> float:
        from benchmarks.epoch_time import synchronize

        start = time.perf_counter()
        self.model.run.trainer.train_epoch(self.model.batches)
        synchronize(self.model.run.trainer.device)
        return (time.perf_counter() - start) / len(self.model.batches) * 1000

    def measure(self, rnd: int) -> None:
        jobs = {"ours": lambda: self._load(self.model.run.train_loader), "step": self._step,
                "pyg": lambda: self._load(self.pyg)}
        order = list(jobs) if rnd % 2 == 0 else list(jobs)[::-1]
        got = {key: jobs[key]() for key in order}
        self.rows["share"].add(got["ours"], got["step"])
        self.rows["collate"].add(got["ours"], got["pyg"])


class PEBench:
    """The vectorized PE engine against per-graph loops: PyG's transforms and our own."""

    CASES = (("lap8+rwse20", "PE LapPE8+RWSE20", "PyG transforms per graph"),
             ("heat", "PE heat kernel", "our per-graph loop"),
             ("multiscale", "PE multiscale", "our per-graph loop"))

    def __init__(self, s: Settings) -> None:
        from benchmarks.pe_speed import pyg_pe_per_graph, synthetic_table

        self.s = s
        self.table = synthetic_table(s.pe_graphs)
        self.sample = self.table.head(s.pe_loop_graphs)
        self.scale = self.table.num_graphs / self.sample.num_graphs
        graphs = f"{self.table.num_graphs:,} graphs"
        self.rows = {key: Row(f"{label}, {graphs}", peer, "s", "speedup",
                              note=f"loop timed on {self.sample.num_graphs:,}, scaled")
                     for key, label, peer in self.CASES}
        pyg_pe_per_graph(self.sample.head(2))  # imports and first-call costs, untimed

    def measure(self, rnd: int) -> None:
        from threadpoolctl import threadpool_limits

        from benchmarks.pe_speed import PRESETS, pyg_pe_per_graph, timed
        from mspe_sweep.dataset.encodings import PESpec
        from mspe_sweep.dataset.pe_batch import compute_pe, compute_pe_naive

        for key, _, _ in self.CASES:
            spec = PESpec.from_config(PRESETS[key])

            def ours_fn(spec=spec):
                return compute_pe(self.table, spec)

            def peer_fn(spec=spec, key=key):
                if key == "lap8+rwse20":
                    return pyg_pe_per_graph(self.sample)
                return compute_pe_naive(self.sample, spec)

            # One BLAS thread for the loops, as inside compute_pe: tiny matrices, and spinning
            # BLAS threads make a busy machine's timings of them swing several-fold.
            with threadpool_limits(limits=1):
                if rnd % 2:
                    peer, ours = timed(peer_fn), timed(ours_fn)
                else:
                    ours, peer = timed(ours_fn), timed(peer_fn)
            self.rows[key].add(ours, peer * self.scale)


class CacheBench:
    """Loading cached PE (a hit) against computing and writing it (a miss)."""

    def __init__(self, s: Settings) -> None:
        from benchmarks.pe_speed import PRESETS
        from mspe_sweep.dataset import get_dataset
        from mspe_sweep.dataset.encodings import PESpec

        name = "synthetic" if s.smoke else "zinc_rdkit"
        self.tables = get_dataset(name).tables  # the offline ZINC-format set: 10,000 graphs
        self.spec = PESpec.from_config(PRESETS["lap8+rwse20"])
        graphs = sum(t.num_graphs for t in self.tables.values())
        self.row = Row(f"PE cache hit, {graphs:,} graphs", "a miss (compute + write)", "s",
                       "speedup")

    def measure(self, rnd: int) -> None:
        from mspe_sweep.dataset.pe_cache import load_or_compute_pe

        with tempfile.TemporaryDirectory() as cache_dir:
            start = time.perf_counter()
            _, note = load_or_compute_pe(self.tables, self.spec, f"b{rnd}", Path(cache_dir))
            miss = time.perf_counter() - start
            assert "computed and cached" in note, note
            start = time.perf_counter()
            _, note = load_or_compute_pe(self.tables, self.spec, f"b{rnd}", Path(cache_dir))
            hit = time.perf_counter() - start
            assert "loaded from cache" in note, note
        self.row.add(hit, miss)


class StudyBench:
    """A study's per-trial cost and its start-up, each against its bare minimum.

    Per round one ``python -m mspe_sweep.run`` of a fresh study of ``study_trials`` trials (a
    warm ``MSPE_HOME``: its storage and MLflow databases exist, data and PE are cached) gives
    the median time from one trial's start to the next's from trial 1 on (everything a trial
    costs, between-trial work included; trial 0 is left out, it pays the process's first-time costs;
    the process is stopped as the last trial starts training) and the time from process start
    to its first epoch. Peers: the median of as many bare ``train_from_config`` runs of the
    same overrides in a process of its own (``benchmarks._bare``, also warm: it has run once
    before), and a process that only imports torch and torch_geometric. Several samples a
    side per round (full: 4, quick: 2, smoke: 1): one sample is at the mercy of a busy
    neighbour.
    """

    def __init__(self, s: Settings) -> None:
        from mspe_sweep.config import mspe_home

        self.s = s
        self.trials = s.study_trials
        self.home = mspe_home() / "bench" / "study"
        self.data = mspe_home() / "data"
        self.overrides = (*s.trial_overrides, f"dataset.root={self.data}",
                          "training.progress=false", "training.optimizer.lr=0.001")
        self.rows = {
            "trial": Row("per-trial cost", "bare train_from_config", "s", "cost", 1.05,
                         note=f"{self.trials}-trial studies, median gap of trials 1->"
                              f"{self.trials - 1}"),
            "startup": Row("study start-up to first epoch", "import torch + PyG", "s", "cost",
                           note="target <= 4 s"),
        }
        self.home.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "MSPE_HOME": str(self.home)}
        self.bare = subprocess.Popen(
            [sys.executable, "-m", "benchmarks._bare", *self.overrides], cwd=REPO_ROOT, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)

    def wait_ready(self) -> None:
        """Waits for the bare-run process's warm-up (it runs while the other benches set up)."""
        if self.bare.stdout.readline().strip() != "ready":  # after a warm-up run
            raise RuntimeError("benchmarks._bare did not start; run it by hand to see why")
        if not self.s.smoke and not (self.home / "mlflow.db").exists():  # a first study
            self._study(f"bench_{os.getpid()}_warmup")  # makes the databases

    def _study_file(self, name: str) -> Path:
        fixed = ", ".join(self.overrides[:-1])
        path = self.home / f"{name}.yaml"
        path.write_text(
            f"name: {name}\ndirection: minimize\nmetric: val/mae\nn_trials: {self.trials}\n"
            f"seed: 0\npruner: {{type: none}}\nfixed: [{fixed}]\n"
            f"params:\n  training.optimizer.lr: choice(0.001)\n")
        return path

    def _study(self, name: str) -> tuple[list[float], float]:
        import optuna

        mark = self.home / f"{name}.mark"
        mark.unlink(missing_ok=True)
        storage = f"sqlite:///{self.home / 'optuna.db'}"
        env = {**os.environ, "MSPE_HOME": str(self.home), "MSPE_BENCH_MARK": str(mark),
               "MSPE_BENCH_EXIT_AT_FIT": str(self.trials)}  # stop as the last trial starts
        cmd = [sys.executable, "-m", "benchmarks._first_epoch", "mspe_sweep.run",
               f"study={self._study_file(name)}", f"storage.url={storage}",
               "tracking=none" if self.s.smoke else "tracking=local"]
        start = time.time()
        done = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                              check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}")
        first_epoch = float(mark.read_text()) - start
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        trials = sorted(optuna.load_study(study_name=name, storage=storage).trials,
                        key=lambda t: t.number)
        starts = [t.datetime_start for t in trials[1:]]
        gaps = [(b - a).total_seconds() for a, b in zip(starts, starts[1:])]
        return gaps, first_epoch

    def _bare(self) -> float:
        self.bare.stdin.write("run\n")
        self.bare.stdin.flush()
        return float(self.bare.stdout.readline())

    def close(self) -> None:
        self.bare.stdin.close()
        self.bare.wait()
        self.bare.stdout.close()

    def _imports(self) -> float:
        start = time.time()
        subprocess.run([sys.executable, "-c", "import torch, torch_geometric"], check=True)
        return time.time() - start

    def measure(self, rnd: int) -> None:
        name = f"bench_{os.getpid()}_{rnd}"
        samples = self.trials - 2
        if rnd % 2:
            bare, imports = [self._bare() for _ in range(samples)], self._imports()
            gaps, first_epoch = self._study(name)
        else:
            gaps, first_epoch = self._study(name)
            imports, bare = self._imports(), [self._bare() for _ in range(samples)]
        self.rows["trial"].add(statistics.median(gaps), statistics.median(bare))
        self.rows["startup"].add(first_epoch, imports)


BENCHES = ("train", "eval", "loading", "pe", "cache", "trial", "startup")


def make_benches(s: Settings, only: set[str]) -> tuple[list, list[Row]]:
    """The benchmark objects to run (in round order) and the rows they fill (table order)."""
    benches, rows = [], []
    study = StudyBench(s) if only & {"trial", "startup"} else None  # starts its processes
    if only & {"train", "eval", "loading"}:
        model = ModelBench(s)
        benches.append(model)
        rows += [model.rows[k] for k in ("train", "eval") if k in only]
        if "loading" in only:
            loader = LoaderBench(s, model)
            benches.append(loader)
            rows += list(loader.rows.values())
    if "pe" in only:
        pe = PEBench(s)
        benches.append(pe)
        rows += list(pe.rows.values())
    if "cache" in only:
        cache = CacheBench(s)
        benches.append(cache)
        rows.append(cache.row)
    if study is not None:
        study.wait_ready()
        benches.append(study)
        rows += [study.rows[k] for k in ("trial", "startup") if k in only]
    return benches, rows


# --- the table -------------------------------------------------------------------------------

def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    memory = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 2**20:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return f"{cpu}, {cores} cores{memory}{gpu}"


def commit() -> str:
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPO_ROOT,
                             capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def header(s: Settings, mode: str) -> str:
    import torch_geometric

    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"mspe-sweep benchmarks ({mode}, {s.rounds} round(s), median of per-round ratios)\n"
            f"date {now}; commit {commit()}; machine: {machine()}\n"
            f"torch {torch.__version__} ({torch.get_num_threads()} threads), torch_geometric "
            f"{torch_geometric.__version__}, Python {platform.python_version()}")


def table(rows: list[Row]) -> str:
    head = ["row", "ours", "peer", "ratio", "target", "met", "notes"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks",
                                     description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="3 rounds, small samples")
    mode.add_argument("--smoke", action="store_true", help="one tiny round (tests)")
    parser.add_argument("--rounds", type=int, help="rounds (default 3 quick, 5 full)")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(BENCHES)}")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--no-scale", action="store_true", help="skip the 250k scale rows")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    only = set(args.only.split(",")) if args.only else set(BENCHES)
    unknown = only - set(BENCHES)
    if unknown:
        parser.error(f"--only: unknown {sorted(unknown)}; valid: {','.join(BENCHES)}")
    s = settings(args)
    mode_name = "smoke" if s.smoke else "quick" if args.quick else "full"
    started = time.perf_counter()
    benches, rows = make_benches(s, only)
    print(f"set up in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    try:
        for rnd in range(s.rounds):
            spent = []
            for bench in benches:
                start = time.perf_counter()
                bench.measure(rnd)
                spent.append(f"{type(bench).__name__} {time.perf_counter() - start:.0f} s")
            print(f"round {rnd + 1}/{s.rounds} done ({time.perf_counter() - started:.0f} s: "
                  f"{', '.join(spent)})", file=sys.stderr, flush=True)
    finally:
        for bench in benches:
            getattr(bench, "close", lambda: None)()
    print(header(s, mode_name))
    print()
    print(table(rows))
    scale_rows = []
    if s.scale:
        from benchmarks.scale import scale_table

        scale_rows = scale_table()
        print()
        print(scale_rows)
    print(f"\n{time.perf_counter() - started:.0f} s in all")
    if args.json:
        args.json.write_text(json.dumps([row.__dict__ for row in rows], indent=1) + "\n")
    return 0
