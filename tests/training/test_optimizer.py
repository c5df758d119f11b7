"""get_optimizer: types, param groups without decay on biases/norms, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mspe_sweep.training import get_optimizer


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(5, 4)
        self.lin = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4)
        self.bn = nn.BatchNorm1d(4)
        self.frozen = nn.Linear(4, 4)
        self.frozen.requires_grad_(False)


def _names(model, group):
    by_id = {id(p): n for n, p in model.named_parameters()}
    return sorted(by_id[id(p)] for p in group["params"])


@pytest.mark.parametrize(("name", "cls"), [
    ("adamw", torch.optim.AdamW), ("adam", torch.optim.Adam), ("SGD", torch.optim.SGD)
])
def test_types_and_decay_groups(name, cls):
    model = Net()
    optimizer = get_optimizer(model, name, lr=0.5, weight_decay=0.1)
    assert type(optimizer) is cls
    decay, no_decay = optimizer.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert _names(model, decay) == ["embed.weight", "lin.weight"]
    assert _names(model, no_decay) == ["bn.bias", "bn.weight", "lin.bias", "norm.bias",
                                       "norm.weight"]
    assert all(g["lr"] == 0.5 for g in optimizer.param_groups)


def test_kwargs_are_passed_through():
    optimizer = get_optimizer(nn.Linear(2, 2), "sgd", lr=0.1, momentum=0.9, nesterov=True)
    assert optimizer.param_groups[0]["momentum"] == 0.9
    assert optimizer.param_groups[0]["nesterov"] is True


def test_unknown_type_lists_valid_ones():
    with pytest.raises(ValueError, match="adamw, adam, sgd"):
        get_optimizer(nn.Linear(2, 2), "lamb")


def test_no_trainable_parameters():
    with pytest.raises(ValueError, match="no trainable parameters"):
        get_optimizer(nn.Linear(2, 2).requires_grad_(False))
