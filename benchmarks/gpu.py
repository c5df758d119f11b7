"""GPU readiness numbers (``benchmarks/gpu_check.sh`` runs this after the ``gpu`` tests).

Usage: ``python -m benchmarks.gpu [--smoke]``. Prints, for the ZINC config (GPS 10x64, 4
heads, RWSE20, batch 32): seconds per epoch in fp32, bf16 autocast and fp16 autocast (what
``training.mixed_precision=true`` does on CUDA), ours against PyG's example GPS on the same
batches, the peak CUDA memory of one trial, and trials per hour of a tiny study with
``trials_per_gpu`` = 1, 2, 4 (workers packed on one GPU). Batches are built on the device
from the split moved there once (``TableLoader``), as in training.

Without CUDA, what can run on the CPU runs there (few batches, labelled ``cpu``) and every
CUDA-only line says ``skipped`` and why; ``--smoke`` shrinks everything to seconds (tests).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
NO_CUDA = "skipped: no CUDA device here (torch.cuda.is_available() is False)"


def line(name: str, value: str) -> None:
    print(f"| {name} | {value} |", flush=True)


def bf16(forward, device: str):
    def autocast_forward(*args, **kwargs):
        with torch.autocast(device_type=device, dtype=torch.bfloat16):
            return forward(*args, **kwargs)
    return autocast_forward


def epoch_rows(batches: int, smoke: bool) -> None:
    from benchmarks.epoch_time import build_run, seconds_per_batch
    from benchmarks.reference import reference_for, reference_train_epoch

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    base = ["dataset=synthetic", "dataset.train_size=256", "model.num_layers=2"] if smoke else []
    results = {}
    for label, extra, dtype in (("fp32", [], None),
                                ("bf16 autocast", [], torch.bfloat16),
                                ("fp16 autocast + GradScaler (training.mixed_precision=true)",
                                 ["training.mixed_precision=true"], torch.float16)):
        if dtype is torch.float16 and not cuda:
            line(f"s/epoch, ours, {label}", "skipped: fp16 autocast + GradScaler is CUDA-only")
            continue
        run = build_run([*base, *extra, f"device={device}"])
        if dtype is torch.bfloat16:  # the forward under bf16 autocast (no scaler needed)
            run.model.forward = bf16(run.model.forward, device)
        steps = len(run.train_loader)
        per_batch = seconds_per_batch(run, run.batches(3 + batches), warmup=3)
        results[label] = per_batch * steps
        if dtype is None:
            fp32 = run
        line(f"s/epoch, ours, {label}",
             f"{per_batch * steps:.2f} s on {device} ({per_batch * 1000:.1f} ms x {steps} "
             f"batches; {run.num_params:,} params)")
    ref = reference_for(fp32)  # the fp32 run's data and sizes: no second build
    optimizer = torch.optim.Adam(ref.parameters(), lr=1e-3)
    per_batch = seconds_per_batch(fp32, fp32.batches(3 + batches), warmup=3,
                                  train=lambda b: reference_train_epoch(ref, optimizer, b))
    ref_epoch = per_batch * len(fp32.train_loader)
    line("s/epoch, PyG reference GPS, fp32", f"{ref_epoch:.2f} s on {device}")
    line("ours fp32 vs the PyG reference (graphs/s)",
         f"{ref_epoch / results['fp32']:.2f}x on {device} (target on an H200: >= 3x)")


def memory_row(smoke: bool) -> None:
    if not torch.cuda.is_available():
        line("peak CUDA memory, one trial", NO_CUDA)
        return
    from mspe_sweep.config import compose_run_config
    from mspe_sweep.pipeline import train_from_config

    sizes = (["dataset.train_size=256", "dataset.val_size=64", "dataset.test_size=64"]
             if smoke else [])
    cfg = compose_run_config(["dataset=zinc_rdkit", *sizes, "training.epochs=1",
                              "training.progress=false", "device=cuda"])
    torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as run_dir:
        train_from_config(cfg, Path(run_dir))
    peak = torch.cuda.max_memory_allocated() / 2**20
    line("peak CUDA memory, one trial (ZINC config, 1 epoch)", f"{peak:,.0f} MiB allocated")


def study_rows(smoke: bool) -> None:
    import optuna

    cuda = torch.cuda.is_available()
    packings = (1, 2) if smoke or not cuda else (1, 2, 4)
    fixed = ("dataset=synthetic, model.hidden_dim=16, model.num_layers=1, pe.dim=4, "
             "training.epochs=1"
             if smoke else
             "dataset=zinc_rdkit, dataset.train_size=2000, dataset.val_size=500, "
             "dataset.test_size=500, training.epochs=2")
    where = "cuda" if cuda else "cpu (not a GPU measurement: workers share the CPU cores)"
    rates = {}
    with tempfile.TemporaryDirectory() as home:
        for per_gpu in packings:
            name = f"packing{per_gpu}"
            study = Path(home) / f"{name}.yaml"
            trials = per_gpu if smoke else 4 * per_gpu
            study.write_text(
                f"name: {name}\ndirection: minimize\nmetric: val/mae\nn_trials: {trials}\n"
                f"seed: 0\npruner: {{type: none}}\nfixed: [{fixed}, training.progress=false]\n"
                "params:\n  training.optimizer.lr: tag(log, interval(1e-4, 1e-2))\n")
            storage = f"sqlite:///{home}/optuna.db"
            data = os.environ.get("MSPE_HOME", str(REPO_ROOT / "mspe_home"))
            cmd = [sys.executable, "-m", "mspe_sweep.run", f"study={study}",
                   f"workers={per_gpu}", f"trials_per_gpu={per_gpu}", f"storage.url={storage}",
                   "tracking=none", f"dataset.root={Path(data).resolve() / 'data'}"]
            env = {**os.environ, "MSPE_HOME": home}
            done = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                                  check=False)
            if done.returncode != 0:
                reason = (done.stderr or done.stdout).strip().splitlines()[-1:]
                raise RuntimeError(f"trials_per_gpu={per_gpu}: {' '.join(cmd)} failed: {reason}")
            finished = [t for t in optuna.load_study(study_name=name, storage=storage).trials
                        if t.datetime_complete is not None]
            span = (max(t.datetime_complete for t in finished)
                    - min(t.datetime_start for t in finished)).total_seconds()
            rates[per_gpu] = len(finished) / span * 3600
            line(f"trials/hour, trials_per_gpu={per_gpu}",
                 f"{rates[per_gpu]:,.0f} on {where} ({len(finished)} trials in {span:.0f} s)")
    if 4 in rates and 1 in rates:
        line("trials/hour, 4 per GPU vs 1", f"{rates[4] / rates[1]:.2f}x (target >= 3x)")
    elif not cuda:
        line("trials/hour, 4 per GPU vs 1", "skipped: packing trials on a GPU needs CUDA")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="seconds, not minutes (tests)")
    parser.add_argument("--batches", type=int, help="timed batches per s/epoch row")
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    batches = args.batches or (2 if args.smoke else 100 if cuda else 10)
    device = torch.cuda.get_device_name() if cuda else "none (CPU only)"
    print(f"GPU readiness: torch {torch.__version__}, CUDA device: {device}, "
          f"{torch.get_num_threads()} CPU threads")
    print("\n| measurement | result |\n|---|---|")
    epoch_rows(batches, args.smoke)
    memory_row(args.smoke)
    study_rows(args.smoke)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
