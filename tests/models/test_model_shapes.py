"""Output shapes, parameter budget, repr and structure of the models."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mspe_sweep.models import GINE, GraphTransformer, get_model

PE_CONFIGS = [{}, {"lap": 4}, {"rwse": 5}, {"heat": 3}, {"lap": 4, "rwse": 5, "heat": 3}]


def _count(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", ["graph_transformer", "gine"])
@pytest.mark.parametrize("pe_dims", PE_CONFIGS)
@pytest.mark.parametrize("pe_combine", ["concat", "add"])
def test_output_shape_for_every_pe_and_combine(make_batch, name, pe_dims, pe_combine):
    model = get_model(
        name, 28, 2, 32, 2, heads=4, pe_dims=pe_dims, pe_dim=8, pe_combine=pe_combine
    )
    batch = make_batch(pe_dims)
    for train in (True, False):
        model.train(train)
        out = model(batch)
        assert out.shape == (3, 2)
        assert torch.isfinite(out).all()


@pytest.mark.parametrize("pooling", ["sum", "mean"])
@pytest.mark.parametrize("norm", ["batch", "layer"])
@pytest.mark.parametrize("lap_encoder", ["linear", "signnet"])
def test_pooling_norm_and_lap_encoder_options(make_batch, full_pe, pooling, norm, lap_encoder):
    model = get_model(
        "graph_transformer", 28, 1, 32, 2, pe_dims=full_pe, pe_dim=8, pooling=pooling,
        norm=norm, lap_encoder=lap_encoder,
    )
    assert model(make_batch(full_pe)).shape == (3, 1)


def test_mean_and_sum_pooling_differ_by_graph_size(make_batch):
    batch = make_batch()
    pooled = {}
    for pooling in ("sum", "mean"):
        torch.manual_seed(0)  # same weights for both
        model = get_model("gine", 28, 1, 16, 1, pooling=pooling).eval()
        hook = model.head[0].register_forward_hook(
            lambda module, inputs, output, key=pooling: pooled.__setitem__(key, inputs[0])
        )
        model(batch)
        hook.remove()
    sizes = torch.tensor([[4.0], [5.0], [3.0]])  # nodes per hand-built graph
    torch.testing.assert_close(pooled["sum"], pooled["mean"] * sizes)


def test_accepts_x_of_shape_n(make_batch):
    batch = make_batch({"rwse": 5})
    model = get_model("graph_transformer", 28, 1, 32, 1, pe_dims={"rwse": 5}).eval()
    out_2d = model(batch)
    batch.x = batch.x.view(-1)  # [N, 1] -> [N]
    torch.testing.assert_close(model(batch), out_2d)


def test_zinc_config_parameter_budget():
    """GraphGPS ZINC config: 10 layers, hidden 64, 4 heads, RWSE-20 -> within 400k-500k."""
    kwargs = dict(heads=4, pe_dims={"rwse": 20}, pe_dim=16)
    gps = get_model("graph_transformer", 28, 1, 64, 10, **kwargs)
    assert 400_000 <= _count(gps) <= 500_000
    assert _count(gps) == 425_401  # documented in GraphTransformer's docstring
    assert _count(get_model("gine", 28, 1, 64, 10, **kwargs)) == 257_721
    multiscale = dict(kwargs, pe_dims={"lap": 8, "rwse": 20, "heat": 8})
    assert _count(get_model("graph_transformer", 28, 1, 64, 10, **multiscale)) == 424_937


def test_gine_has_no_attention_and_transformer_has_one_per_layer(make_batch):
    gine = get_model("gine", 28, 1, 32, 3, heads=4, attn_dropout=0.2)
    gps = get_model("graph_transformer", 28, 1, 32, 3)
    assert isinstance(gine, GINE) and isinstance(gps, GraphTransformer)
    assert not any(isinstance(m, nn.MultiheadAttention) for m in gine.modules())
    assert sum(isinstance(m, nn.MultiheadAttention) for m in gps.modules()) == 3
    assert gine(make_batch()).shape == (3, 1)


def test_repr_mentions_key_settings(full_pe):
    model = get_model(
        "graph_transformer", 28, 1, 48, 3, heads=8, pe_dims=full_pe, pe_dim=8,
        pooling="mean", norm="layer",
    )
    text = repr(model)
    for part in ("GraphTransformer", "hidden_dim=48", "num_layers=3", "heads=8", "lap=4",
                 "rwse=5", "heat=3", "pe_combine=concat", "pooling=mean", "norm=layer"):
        assert part in text, part
    assert "heads" not in repr(get_model("gine", 28, 1, 48, 3))
    assert "heads=8" in repr(model.layers[0])
