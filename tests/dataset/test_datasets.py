"""get_dataset: names, options, splits, fingerprints, synthetic data and the offline set."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_geometric.loader import DataLoader

from mspe_sweep.dataset import DATASETS, get_dataset
from mspe_sweep.dataset.base import resolve_root


def test_unknown_name_lists_valid_ones():
    with pytest.raises(ValueError) as err:
        get_dataset("zinc250k")
    names = ("zinc", "zinc_full", "zinc_rdkit", "zinc_moses", "synthetic")
    assert all(name in str(err.value) for name in names)
    assert set(DATASETS) == set(names)


@pytest.mark.parametrize("kw,needle", [({"num_graph": 5}, "num_graphs"),
                                       ({"train_size": 0}, "train_size"),
                                       ({"val_size": 2.0}, "val_size")])
def test_bad_options_are_rejected(kw, needle):
    with pytest.raises(ValueError, match=needle):
        get_dataset("synthetic", **kw)


def test_relative_root_lives_under_mspe_home(mspe_home, tmp_path):
    assert resolve_root("data/") == mspe_home / "data"
    assert resolve_root(tmp_path / "x") == tmp_path / "x"


def test_synthetic_format_and_attributes():
    ds = get_dataset("synthetic", num_graphs=30, num_node_types=5)
    train, val, test = ds.get_splits()
    assert (len(train), len(val), len(test)) == (24, 3, 3)
    for data in train + val + test:
        assert data.x.dtype == torch.long and data.x.shape == (data.num_nodes, 1)
        assert data.x.max() < 5 and data.edge_attr.dtype == torch.long
        assert data.edge_attr.shape == (data.edge_index.size(1),)
        assert set(data.edge_attr.tolist()) <= {1, 2, 3}
        assert data.y.dtype == torch.float and data.y.shape == (1,)
    assert (ds.num_features, ds.num_classes, ds.num_edge_types) == (5, 1, 4)
    assert ds.task_type == "regression" and ds.pe_dims == {"lap": 0, "rwse": 0, "heat": 0}
    batch = next(iter(DataLoader(train, batch_size=8)))
    assert batch.y.shape == (8,) and batch.x.shape[1] == 1


def test_synthetic_is_deterministic_per_seed():
    a, b, c = (get_dataset("synthetic", seed=s) for s in (1, 1, 2))
    assert a.fingerprint == b.fingerprint != c.fingerprint
    for x, y in zip(a.get_splits()[0], b.get_splits()[0]):
        assert torch.equal(x.edge_index, y.edge_index) and torch.equal(x.y, y.y)


def test_synthetic_target_is_learnable_from_structure():
    ds = get_dataset("synthetic", num_graphs=400, seed=0)

    def features(split):  # node-type counts, ring count, double bonds: what a GNN can sum up
        rows = [np.concatenate([np.bincount(d.x.view(-1), minlength=8),
                                [d.edge_index.size(1) / 2 - d.num_nodes + 1,
                                 (d.edge_attr == 2).sum() / 2, 1.0]]) for d in split]
        return np.array(rows), np.array([float(d.y) for d in split])

    (x_tr, y_tr), (x_va, y_va) = features(ds.get_splits()[0]), features(ds.get_splits()[1])
    coef, *_ = np.linalg.lstsq(x_tr, y_tr, rcond=None)
    model_mae = np.abs(x_va @ coef - y_va).mean()
    mean_mae = np.abs(y_tr.mean() - y_va).mean()
    assert model_mae < 0.5 * mean_mae


def test_subset_sizes_take_first_graphs_and_change_fingerprint():
    full = get_dataset("synthetic", num_graphs=50)
    small = get_dataset("synthetic", num_graphs=50, train_size=10, val_size=2)
    assert [len(s) for s in small.get_splits()] == [10, 2, 5]
    assert small.fingerprint != full.fingerprint
    assert get_dataset("synthetic", num_graphs=50, train_size=11).fingerprint != small.fingerprint
    for a, b in zip(small.get_splits()[0], full.get_splits()[0]):
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert "subset" in small.describe()


def test_pe_attributes_on_every_graph():
    pe = {"name": "multiscale", "dim": 16, "lap": {"k": 4},
          "rwse": {"steps": 8, "scale": "geometric"},
          "heat": {"num_times": 3, "t_min": 0.1, "t_max": 10.0}}
    ds = get_dataset("synthetic", pe=pe, min_nodes=2, max_nodes=6)
    assert ds.pe_dims == {"lap": 4, "rwse": 4, "heat": 3}
    data = ds.get_splits()[0][0]
    n = data.num_nodes
    assert data.lap_vec.shape == data.lap_val.shape == data.lap_mask.shape == (n, 4)
    assert data.lap_mask.dtype == torch.bool and data.lap_mask[:, : n - 1].all()
    assert not data.lap_mask[:, n - 1:].any() and data.rwse.shape == (n, 4)
    assert data.heat.shape == (n, 3)
    batch = next(iter(DataLoader(ds.get_splits()[0], batch_size=4)))
    assert batch.lap_vec.shape == (batch.num_nodes, 4)
    assert "rwse walks=[1, 2, 4, 8]" in ds.describe()
    assert ds.fingerprint == get_dataset("synthetic", min_nodes=2, max_nodes=6).fingerprint


def test_zinc_rdkit_from_a_small_file(tiny_smiles, tmp_path):
    ds = get_dataset("zinc_rdkit", root=tmp_path)
    sizes = [len(s) for s in ds.get_splits()]
    assert sizes == [tiny_smiles.usable - 4, 2, 2]
    assert ds.num_features == 28 and ds.num_edge_types == 4
    assert "not comparable" in ds.source and "\n" not in ds.source
    text = ds.describe()
    for reason in tiny_smiles.skip_reasons:
        assert f"1 {reason}" in text
    assert len(list((tmp_path / "zinc_rdkit").glob("*.pt"))) == 1
    again = get_dataset("zinc_rdkit", root=tmp_path)
    assert "loaded from cache" in again.describe() and again.fingerprint == ds.fingerprint
    assert get_dataset("zinc_rdkit", root=tmp_path, seed=1).fingerprint != ds.fingerprint
    data = ds.get_splits()[0][0]
    assert data.x.dtype == torch.long and data.y.shape == (1,)


def test_zinc_rdkit_missing_file_is_a_user_error(tmp_path):
    from mspe_sweep.errors import UserError

    with pytest.raises(UserError, match="smiles_file"):
        get_dataset("zinc_rdkit", root=tmp_path, smiles_file=str(tmp_path / "nope.csv"))


@pytest.mark.slow
def test_full_offline_set_builds(tmp_path):
    ds = get_dataset("zinc_rdkit", root=tmp_path, pe={"rwse": {"steps": 20}, "lap": {"k": 8}})
    assert [len(s) for s in ds.get_splits()] == [8000, 1000, 1000]
    assert "skipped: none" in ds.describe()
    nodes = sum(d.num_nodes for d in ds.get_splits()[0]) / 8000
    assert 20 < nodes < 24
    ys = torch.cat([d.y for d in ds.get_splits()[0]])
    assert torch.isfinite(ys).all() and ys.std() > 0.5


def test_synthetic_generates_enough_graphs_for_the_requested_sizes(tmp_path):
    ds = get_dataset("synthetic", root=tmp_path, train_size=48, val_size=16, test_size=16)
    assert [len(split) for split in ds.get_splits()] == [48, 16, 16]
    small = get_dataset("synthetic", root=tmp_path, train_size=10)
    assert [len(split) for split in small.get_splits()] == [10, 6, 6]
