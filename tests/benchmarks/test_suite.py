"""One tiny round of every benchmark of the suite, so that none of them can rot."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # `benchmarks` is a top-level package of the repository
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks import suite
from benchmarks.reference import ReferenceGPS


def test_reference_model_matches_our_zinc_config_parameter_budget():
    from mspe_sweep.models import get_model

    ours = get_model("graph_transformer", 28, 1, 64, 10, heads=4, pe_dims={"rwse": 20},
                     pe_dim=16)
    ours, theirs = (sum(p.numel() for p in m.parameters()) for m in (ours, ReferenceGPS()))
    assert abs(ours / theirs - 1) < 0.02


def test_row_ratios_and_targets():
    row = suite.Row("train", "peer", "graphs/s", "speedup", 1.5)
    for ours, theirs in ((300, 200), (330, 200), (100, 100)):
        row.add(ours, theirs)
    assert row.ratio == pytest.approx(1.5) and row.met() == "yes"
    cost = suite.Row("trial", "bare", "s", "cost", 1.05)
    cost.add(1.2, 1.0)
    assert cost.ratio == pytest.approx(1.2) and cost.met() == "no"
    share = suite.Row("loading", "step", "ms/batch", "share")
    share.add(1.0, 3.0)
    assert share.ratio == pytest.approx(0.25) and "25% of a step" in share.cells()


@pytest.mark.slow
def test_smoke_round_of_every_benchmark(capsys):
    assert suite.main(["--smoke"]) == 0
    out = capsys.readouterr().out
    for name in ("train graphs/s", "eval graphs/s", "data loading share", "batch collation",
                 "PE LapPE8+RWSE20",
                 "PE heat kernel", "PE multiscale", "PE cache hit", "per-trial cost",
                 "study start-up to first epoch"):
        line = next(line for line in out.splitlines() if line.startswith(f"| {name}"))
        assert "not measured" not in line and "rounds " in line, line
    assert "torch " in out and "threads" in out and "commit " in out
