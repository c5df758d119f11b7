"""Model behaviour: LapPE sign flips, invariances, reset, attention path, autocast."""

from __future__ import annotations

import torch
from torch.nn import functional as F
from torch_geometric.data import Batch

from mspe_sweep.models import get_model
from mspe_sweep.models.encoders import random_sign_flip


def _build(pe_dims, **kwargs):
    kwargs.setdefault("attn_dropout", 0.0)
    return get_model("graph_transformer", 28, 1, 32, 2, pe_dims=pe_dims, pe_dim=8, **kwargs)


def _flip_lap_of_graph(batch, graph_id, columns):
    flipped = batch.clone()
    rows = batch.batch == graph_id
    flipped.lap_vec[rows.nonzero(), columns] *= -1
    return flipped


def test_random_sign_flip_is_one_sign_per_graph_and_eigenvector():
    torch.manual_seed(0)
    vec = torch.rand(12, 4) + 0.5  # positive, so the ratio below is the sign
    graph = torch.tensor([0] * 4 + [1] * 5 + [2] * 3)
    seen = set()
    for _ in range(20):
        ratio = random_sign_flip(vec, graph, 3) / vec  # [12, 4] of +-1
        for g in range(3):
            rows = ratio[graph == g]  # [n_g, 4]
            assert (rows == rows[0]).all(), "all nodes of a graph share the sign"
            seen.update(rows[0].tolist())
    assert seen == {-1.0, 1.0}


def test_lap_sign_flip_only_in_training(make_batch):
    torch.manual_seed(0)
    model = _build({"lap": 4})
    batch = make_batch({"lap": 4})
    train_a, train_b = model(batch), model(batch)
    assert not torch.allclose(train_a, train_b), "train mode draws fresh signs"
    model.eval()
    torch.testing.assert_close(model(batch), model(batch), rtol=0, atol=0)
    # Without LapPE the same (dropout-free) model is deterministic in train mode too.
    plain = _build({"rwse": 5}).train()
    other = make_batch({"rwse": 5})
    torch.testing.assert_close(plain(other), plain(other), rtol=0, atol=0)


def test_signnet_is_sign_invariant_and_linear_is_not(make_batch):
    batch = make_batch({"lap": 4})
    flipped = _flip_lap_of_graph(batch, graph_id=1, columns=torch.tensor([0, 2]))
    torch.manual_seed(0)
    signnet = _build({"lap": 4}, lap_encoder="signnet").eval()
    torch.testing.assert_close(signnet(batch), signnet(flipped))
    linear = _build({"lap": 4}, lap_encoder="linear").eval()
    assert not torch.allclose(linear(batch)[1], linear(flipped)[1])
    torch.testing.assert_close(linear(batch)[[0, 2]], linear(flipped)[[0, 2]])


def _permute_graph(batch, graph_id, perm):
    """Returns batch with the nodes of one graph reordered: new node i = old node perm[i]."""
    graphs = batch.to_data_list()
    data = graphs[graph_id].clone()
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(perm.numel())
    for key in ("x", "lap_vec", "lap_val", "lap_mask", "rwse", "heat"):
        data[key] = data[key][perm]
    data.edge_index = inverse[data.edge_index]
    graphs[graph_id] = data
    return Batch.from_data_list(graphs)


def test_graph_output_is_permutation_invariant_in_eval(make_batch, full_pe):
    batch = make_batch(full_pe)
    permuted = _permute_graph(batch, graph_id=1, perm=torch.tensor([3, 0, 4, 2, 1]))
    assert not torch.equal(permuted.x, batch.x)
    for name, pooling in (("graph_transformer", "sum"), ("gine", "mean")):
        torch.manual_seed(0)
        model = get_model(name, 28, 1, 32, 2, pe_dims=full_pe, pe_dim=8, pooling=pooling)
        model.train()(batch)  # non-trivial BatchNorm running statistics
        model.eval()
        torch.testing.assert_close(model(permuted), model(batch), rtol=1e-5, atol=1e-5)


def test_reset_parameters_reinitialises_every_parameter(make_batch, full_pe):
    model = _build(full_pe, lap_encoder="signnet")
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(0.123)
    model.reset_parameters()
    for name, p in model.named_parameters():
        assert not torch.all(p == 0.123), f"{name} was not reset"
    out = model(make_batch(full_pe))
    assert out.shape == (3, 1) and torch.isfinite(out).all()


def test_every_parameter_gets_a_gradient(make_batch, full_pe):
    for lap_encoder in ("linear", "signnet"):
        torch.manual_seed(0)
        model = _build(full_pe, lap_encoder=lap_encoder, dropout=0.1, attn_dropout=0.1)
        batch = make_batch(full_pe)
        F.mse_loss(model(batch).squeeze(-1), batch.y).backward()
        for name, p in model.named_parameters():
            assert p.grad is not None, f"{name} is unused ({lap_encoder})"
            assert p.grad.abs().sum() > 0, f"{name} has a zero gradient ({lap_encoder})"


def test_attention_runs_on_the_padded_layout_made_once_per_forward(make_batch, monkeypatch):
    from mspe_sweep.models import layers

    calls, layouts = [], []
    baddbmm, from_batch = torch.baddbmm, layers.DenseLayout.from_batch

    def counting_baddbmm(bias, q, k, **kwargs):
        calls.append(q.shape)  # query: [heads * B, Lmax, head_dim]
        return baddbmm(bias, q, k, **kwargs)

    def counting_layout(*args):
        layouts.append(1)
        return from_batch(*args)

    monkeypatch.setattr(torch, "baddbmm", counting_baddbmm)
    monkeypatch.setattr(layers.DenseLayout, "from_batch", counting_layout)
    model = get_model("graph_transformer", 28, 1, 32, 3, heads=4)
    model(make_batch())
    assert calls == [torch.Size([4 * 3, 5, 8])] * 3  # 4 heads x 3 graphs, 5 nodes max, 32/4
    assert layouts == [1]


def test_runs_under_bf16_autocast_on_cpu(make_batch, full_pe):
    torch.manual_seed(0)
    model = _build(full_pe)
    batch = make_batch(full_pe)
    reference = model.eval()(batch)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(batch)
        model.train()
        train_out = model(batch)
    assert out.shape == (3, 1) and torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), reference, rtol=0.1, atol=0.1)
    train_out.float().sum().backward()
    assert all(p.grad is not None for p in model.parameters())
