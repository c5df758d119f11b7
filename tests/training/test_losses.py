"""get_loss_fn defaults/aliases/errors and align_outputs shape handling."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mspe_sweep.training import get_loss_fn
from mspe_sweep.training.losses import align_outputs


@pytest.mark.parametrize(("args", "cls"), [
    (("regression",), nn.L1Loss),
    (("regression", "l1"), nn.L1Loss),
    (("regression", "MSE"), nn.MSELoss),
    (("regression", "huber"), nn.HuberLoss),
    (("classification",), nn.CrossEntropyLoss),
    (("classification", None, 1), nn.BCEWithLogitsLoss),
    (("classification", "bce_logits"), nn.BCEWithLogitsLoss),
    (("edge_prediction",), nn.BCEWithLogitsLoss),
])
def test_loss_types(args, cls):
    assert type(get_loss_fn(*args)) is cls


def test_unknown_loss_and_task_list_valid_ones():
    with pytest.raises(ValueError, match="mae, l1, mse, huber"):
        get_loss_fn("regression", "hinge")
    with pytest.raises(ValueError, match="regression, classification, edge_prediction"):
        get_loss_fn("segmentation")


def test_align_regression_shapes():
    bf16_pred = torch.ones(4, 1, dtype=torch.bfloat16)
    pred, target = align_outputs(bf16_pred, torch.zeros(4), "regression")
    assert pred.shape == target.shape == (4,) and pred.dtype == torch.float32
    pred, target = align_outputs(torch.ones(4), torch.zeros(4, 1, dtype=torch.long), "regression")
    assert pred.shape == target.shape == (4, 1) and target.dtype == torch.float32
    with pytest.raises(ValueError, match=r"\(4, 2\)"):
        align_outputs(torch.ones(4, 2), torch.zeros(4), "regression")


def test_align_classification_and_edges():
    pred, target = align_outputs(torch.randn(5, 3), torch.tensor([[0], [1], [2], [1], [0]]),
                                 "classification")
    assert target.shape == (5,) and target.dtype == torch.long
    loss = get_loss_fn("classification")(pred, target)
    assert loss.ndim == 0
    pred, target = align_outputs(torch.randn(6, 1), torch.tensor([0, 1, 1, 0, 1, 0]),
                                 "edge_prediction")
    assert pred.shape == target.shape == (6,) and target.dtype == torch.float32
