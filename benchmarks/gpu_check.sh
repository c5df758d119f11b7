#!/usr/bin/env bash
# GPU readiness check: under 8 minutes on one H100/H200. Runs the `gpu`-marked tests, then
# benchmarks/gpu.py: ZINC-config seconds per epoch (fp32, bf16 autocast, fp16 + GradScaler),
# ours against PyG's example GPS on the GPU, the peak CUDA memory of a trial, and trials per
# hour of a tiny study with trials_per_gpu = 1, 2, 4.
#
#   bash benchmarks/gpu_check.sh            # on the GPU machine, after `make setup`
#   bash benchmarks/gpu_check.sh --smoke    # seconds; what the CPU-only CI test runs
#
# Without CUDA it still runs to the end: the gpu tests report as skipped, CPU-capable rows run
# on the CPU (labelled so) and every CUDA-only row says "skipped" and why.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
start=$(date +%s)

echo "== gpu-marked tests"
if "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  "$PY" -m pytest -m gpu -q -p no:cacheprovider
else
  # Collected and reported as skipped (tests/conftest.py); exit code 5 = none selected.
  "$PY" -m pytest -m gpu -q -p no:cacheprovider -rs | tail -n 3 || [ "${PIPESTATUS[0]}" -eq 5 ]
fi

echo
echo "== GPU benchmarks"
"$PY" -m benchmarks.gpu "$@"
echo
echo "gpu_check: done in $(( $(date +%s) - start )) s"
