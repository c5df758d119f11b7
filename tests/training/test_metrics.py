"""get_metrics against scikit-learn reference values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from mspe_sweep.training import get_metrics


def test_regression_matches_sklearn():
    gen = torch.Generator().manual_seed(0)
    pred, target = torch.randn(50, 1, generator=gen), torch.randn(50, generator=gen)
    result = get_metrics("regression")(pred, target)
    p, t = pred.reshape(-1).numpy(), target.numpy()
    assert result["mae"] == pytest.approx(skm.mean_absolute_error(t, p))
    assert result["mse"] == pytest.approx(skm.mean_squared_error(t, p))
    assert result["rmse"] == pytest.approx(math.sqrt(skm.mean_squared_error(t, p)))


def _binary_case():
    # Rounded scores create ties, which AUC and AP must handle like scikit-learn.
    gen = torch.Generator().manual_seed(1)
    labels = (torch.rand(80, generator=gen) < 0.4).long()
    logits = torch.round((torch.randn(80, generator=gen) + labels) * 2) / 2
    return logits, labels


def test_binary_single_logit_matches_sklearn():
    logits, labels = _binary_case()
    result = get_metrics("classification", num_classes=1)(logits.unsqueeze(1), labels)
    y, s = labels.numpy(), logits.numpy()
    assert result["accuracy"] == pytest.approx(skm.accuracy_score(y, s > 0))
    assert result["f1"] == pytest.approx(skm.f1_score(y, s > 0))
    assert result["roc_auc"] == pytest.approx(skm.roc_auc_score(y, s))
    assert result["ap"] == pytest.approx(skm.average_precision_score(y, s))


def test_binary_two_logits_matches_sklearn():
    logits, labels = _binary_case()
    two = torch.stack([torch.zeros_like(logits), logits], dim=1)  # [N, 2]
    result = get_metrics("classification")(two, labels)
    probs = torch.softmax(two.double(), 1)[:, 1].numpy()
    y = labels.numpy()
    assert result["roc_auc"] == pytest.approx(skm.roc_auc_score(y, probs))
    assert result["ap"] == pytest.approx(skm.average_precision_score(y, probs))
    assert result["f1"] == pytest.approx(skm.f1_score(y, two.argmax(1).numpy()))


def test_multiclass_macro_matches_sklearn():
    gen = torch.Generator().manual_seed(2)
    labels = torch.randint(0, 4, (120,), generator=gen)
    logits = torch.randn(120, 4, generator=gen) + 1.5 * torch.nn.functional.one_hot(labels, 4)
    result = get_metrics("classification", num_classes=4)(logits, labels)
    y, predicted = labels.numpy(), logits.argmax(1).numpy()
    probs = torch.softmax(logits.double(), 1).numpy()
    assert result["accuracy"] == pytest.approx(skm.accuracy_score(y, predicted))
    assert result["f1"] == pytest.approx(skm.f1_score(y, predicted, average="macro"))
    assert result["roc_auc"] == pytest.approx(
        skm.roc_auc_score(y, probs, multi_class="ovr", average="macro")
    )
    onehot = np.eye(4)[y]
    reference_ap = skm.average_precision_score(onehot, probs, average="macro")
    assert result["ap"] == pytest.approx(reference_ap)


def test_edge_prediction_metrics():
    logits, labels = _binary_case()
    result = get_metrics("edge_prediction", k=10)(logits, labels.float())
    y, s = labels.numpy(), logits.numpy()
    assert result["roc_auc"] == pytest.approx(skm.roc_auc_score(y, s))
    assert result["ap"] == pytest.approx(skm.average_precision_score(y, s))
    distinct = torch.arange(80.0)  # no ties: top-10 is unambiguous
    top = get_metrics("edge_prediction", k=10)(distinct, labels.float())["precision_at_k"]
    assert top == pytest.approx(labels[-10:].float().mean().item())


def test_undefined_auc_is_nan_and_names_listed():
    metrics = get_metrics("edge_prediction")
    assert math.isnan(metrics(torch.randn(5), torch.ones(5))["roc_auc"])
    assert metrics.names == ("roc_auc", "ap", "precision_at_k")
    with pytest.raises(ValueError, match="regression"):
        get_metrics("ranking")
