"""Construction-time and input validation: every error names the culprit and the options."""

from __future__ import annotations

import pytest

from mspe_sweep.models import get_model


def _build(**kwargs):
    return get_model("graph_transformer", 28, 1, 32, 2, **kwargs)


def test_unknown_model_name_lists_valid_ones():
    with pytest.raises(ValueError, match="unknown model 'gat'.*gine.*graph_transformer"):
        get_model("gat", 28, 1, 32, 2)


@pytest.mark.parametrize("name", ["graph_transformer", "gine"])
def test_unknown_kwarg_is_named(name):
    with pytest.raises(ValueError, match=r"\['num_head'\].*pe_combine"):
        get_model(name, 28, 1, 32, 2, num_head=4)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"pe_combine": "mul"}, "pe_combine='mul'.*concat.*add"),
        ({"lap_encoder": "transformer", "pe_dims": {"lap": 4}}, "lap_encoder.*linear.*signnet"),
        ({"pooling": "max"}, "pooling='max'.*sum.*mean"),
        ({"norm": "graph"}, "norm='graph'.*batch.*layer"),
        ({"pe_dims": {"rwse": 4, "spd": 3}}, r"unknown kinds \['spd'\].*lap.*rwse.*heat"),
        ({"pe_dims": {"rwse": -1}}, r"pe_dims\['rwse'\] must be an int >= 0"),
        ({"pe_dims": {"heat": 2.5}}, r"pe_dims\['heat'\] must be an int >= 0, got 2.5"),
        ({"heads": 3}, "heads=3 must be >= 1 and divide hidden_dim=32"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
        ({"attn_dropout": -0.1}, r"attn_dropout must be in \[0, 1\)"),
        ({"pe_dim": 0}, "pe_dim must be a positive int"),
        ({"num_edge_types": 0}, "num_edge_types must be a positive int"),
        # concat: 32 - 3 * 16 <= 0 channels left for the atom embedding
        ({"pe_dims": {"lap": 2, "rwse": 2, "heat": 2}, "pe_dim": 16}, "hidden_dim=32 leaves"),
    ],
)
def test_unsupported_options_raise_at_construction(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        _build(**kwargs)


def test_impossible_sizes_raise():
    with pytest.raises(ValueError, match="num_layers must be a positive int"):
        get_model("gine", 28, 1, 32, 0)
    with pytest.raises(ValueError, match="hidden_dim must be a positive int"):
        get_model("gine", 28, 1, -4, 2)


def test_same_dims_fit_with_add_combine(make_batch):
    pe = {"lap": 2, "rwse": 2, "heat": 2}
    model = _build(pe_dims=pe, pe_dim=16, pe_combine="add")
    assert model(make_batch(pe)).shape == (3, 1)


def test_gine_ignores_heads_but_validates_the_rest():
    get_model("gine", 28, 1, 32, 2, heads=3, attn_dropout=0.9)  # no attention: not checked
    with pytest.raises(ValueError, match="pooling"):
        get_model("gine", 28, 1, 32, 2, pooling="max")


@pytest.mark.parametrize(("kind", "attr"), [("rwse", "rwse"), ("heat", "heat"),
                                            ("lap", "lap_vec"), ("lap", "lap_mask")])
def test_missing_pe_attribute_names_it_and_pe_dims(make_batch, kind, attr):
    pe = {kind: 3}
    batch = make_batch(pe)
    del batch[attr]
    with pytest.raises(ValueError, match=rf"no attribute '{attr}'.*pe_dims=\{{'{kind}': 3\}}"):
        _build(pe_dims=pe)(batch)


def test_pe_width_mismatch_is_reported(make_batch):
    batch = make_batch({"rwse": 5})
    with pytest.raises(ValueError, match=r"batch.rwse has shape \(12, 5\), expected .*8\]"):
        _build(pe_dims={"rwse": 8})(batch)


def test_bad_node_and_edge_inputs_are_reported(make_batch):
    model = _build()
    batch = make_batch()
    batch.x = batch.x.float()
    with pytest.raises(ValueError, match="batch.x must hold integer atom-type ids"):
        model(batch)
    batch = make_batch()
    del batch["edge_attr"]
    with pytest.raises(ValueError, match="no attribute 'edge_attr'"):
        model(batch)
