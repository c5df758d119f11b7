"""train_from_config: the one path from a composed config to a trained model."""

from __future__ import annotations

import json

import pytest
import torch

from mspe_sweep.config import compose_run_config
from mspe_sweep.errors import UserError
from mspe_sweep.pipeline import RESULTS_FILE, build_dataset, train_from_config

TINY = ["dataset=synthetic", "model.hidden_dim=32", "model.num_layers=1", "pe.dim=8",
        "training.epochs=2", "training.batch_size=16", "training.scheduler.warmup_epochs=0",
        "training.progress=false"]


def test_a_run_writes_checkpoints_config_and_results(tmp_path):
    result = train_from_config(compose_run_config(TINY), tmp_path / "run")
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"best.pt", "last.pt", "config.yaml", RESULTS_FILE} <= files
    saved = json.loads((tmp_path / "run" / RESULTS_FILE).read_text())
    assert saved["best_epoch"] == result.best_epoch
    assert saved["best_value"] == pytest.approx(min(result.history["val/mae"]))
    assert set(result.test_metrics) >= {"test/mae", "test/loss"}
    assert result.epochs_run == 2 and result.stop_reason == "completed"


def test_bad_model_option_is_a_user_error_before_anything_is_built(tmp_path):
    with pytest.raises(UserError, match=r"model.pooling=max: unknown option \(valid: sum, mean\)"):
        compose_run_config([*TINY, "model.pooling=max"])


@pytest.mark.slow
def test_small_transformer_beats_a_mean_predictor_on_zinc_rdkit(tmp_path):
    """A few CPU epochs on 2,000 offline molecules clearly beat predicting the train mean."""
    cfg = compose_run_config([
        "dataset=zinc_rdkit", "dataset.train_size=2000", "dataset.val_size=500",
        "dataset.test_size=500", "model.hidden_dim=32", "model.num_layers=2", "pe.dim=8",
        "training.epochs=4", "training.batch_size=32", "training.scheduler.warmup_epochs=1",
        "training.optimizer.lr=0.003", "training.progress=false",
    ])
    result = train_from_config(cfg, tmp_path / "run")
    train, _, test = build_dataset(cfg, with_pe=False).get_splits()
    mean = torch.cat([g.y for g in train]).mean()
    baseline = torch.cat([g.y for g in test]).sub(mean).abs().mean().item()
    assert result.test_metrics["test/mae"] < 0.75 * baseline, (result.test_metrics, baseline)
