"""``zinc_moses``: the large offline set built from the ZINC molecules MOSES ships."""

from __future__ import annotations

import importlib.util
import sys

import pytest
import torch

from mspe_sweep.dataset import get_dataset, zinc_moses
from mspe_sweep.dataset.zinc_rdkit import build_graphs
from mspe_sweep.errors import UserError


def test_real_file_small_sizes_cached_and_fingerprinted(tmp_path):
    before = set(sys.modules)
    ds = get_dataset("zinc_moses", root=tmp_path, train_size=40, val_size=10, test_size=10)
    assert "moses" not in set(sys.modules) - before  # the file is read, the package not imported
    assert [len(split) for split in ds.get_splits()] == [40, 10, 10]
    assert ds.name == "zinc_moses" and ds.num_features == 28 and ds.num_edge_types == 4
    assert "molecules from ZINC via MOSES; not the benchmark subset" in ds.source
    assert "not comparable" in ds.source and "\n" not in ds.source
    assert "skipped: none" in ds.describe()
    data = ds.get_splits()[0][0]
    assert data.x.dtype == torch.long and 9 <= data.num_nodes <= 38 and data.y.shape == (1,)
    assert set(torch.cat([d.edge_attr for d in ds.get_splits()[0]]).tolist()) <= {1, 2, 3}
    ys = torch.cat([d.y for d in ds.get_splits()[0]])
    assert torch.isfinite(ys).all() and ys.std() > 0.3
    again = get_dataset("zinc_moses", root=tmp_path, train_size=40, val_size=10, test_size=10)
    assert "loaded from cache" in again.describe() and again.fingerprint == ds.fingerprint
    other = get_dataset("zinc_moses", root=tmp_path, train_size=40, val_size=10, test_size=10,
                        seed=1)
    assert other.fingerprint != ds.fingerprint


def test_sizes_build_only_what_is_asked_and_splits_share_no_molecule(tiny_moses, tmp_path):
    ds = get_dataset("zinc_moses", root=tmp_path, train_size=8, val_size=1, test_size=1)
    assert [len(split) for split in ds.get_splits()] == [8, 1, 1]
    smiles = zinc_moses.read_moses_smiles(tiny_moses.path)
    assert len(smiles) == tiny_moses.usable + len(tiny_moses.skip_reasons) + 8
    # Each split is the first usable molecules of its candidates, in permutation order.
    keys = {tuple(d.x.view(-1).tolist()) + (round(float(d.y), 5),)
            for split in ds.get_splits() for d in split}
    assert len(keys) == 10  # no molecule in two splits
    with pytest.raises(UserError, match="train_size=40"):
        get_dataset("zinc_moses", root=tmp_path, train_size=40, val_size=1, test_size=1)


def test_skipped_molecules_are_counted(tiny_moses, tmp_path, monkeypatch):
    # Train candidates in file order (skip reasons first), val and test the last two rows.
    monkeypatch.setattr(zinc_moses, "split_indices", lambda n, seed: {
        "val": [n - 2], "test": [n - 1], "train": list(range(n - 2))})
    ds = get_dataset("zinc_moses", root=tmp_path, train_size=20, val_size=1, test_size=1)
    text = ds.describe()
    for reason in ("unparsable SMILES", "outside 9-38 heavy atoms",
                   "outside the vocabulary (token 'Si')"):
        assert f"1 {reason}" in text
    # val + test + 20 train + 4 skipped: 3 repeated rows are duplicates of the val/test rows
    # and of the first usable row (seen earlier in another atom order).
    assert "3 duplicate" in text and "built from 28 of the 36 MOSES SMILES" in text


def test_process_pool_builds_the_same_set(tiny_moses):
    smiles = zinc_moses.read_moses_smiles(tiny_moses.path)
    one = build_graphs(smiles, limit=20)
    two = build_graphs(smiles, limit=20, workers=2)
    assert one == two and len(one[0]) == 20
    everything = build_graphs(smiles, workers=2)
    assert everything == build_graphs(smiles)
    assert everything[1]["duplicate"] == 9  # 8 repeated rows + the one in SKIPPED


def test_missing_molsets_is_a_user_error(monkeypatch, tmp_path):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(UserError, match="molsets"):
        get_dataset("zinc_moses", root=tmp_path, train_size=5, val_size=1, test_size=1)
