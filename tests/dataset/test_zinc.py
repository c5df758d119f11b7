"""Real ZINC via PyG (on fake raw files) and the loud offline fallback to zinc_rdkit."""

from __future__ import annotations

import pickle
import time
import urllib.error

import pytest
import torch
from torch_geometric.datasets import ZINC

from mspe_sweep.dataset import OfflineFallbackWarning, get_dataset, zinc
from mspe_sweep.errors import UserError


def fake_molecule(n, y):
    bonds = torch.zeros(n, n, dtype=torch.long)
    for i in range(n - 1):
        bonds[i, i + 1] = bonds[i + 1, i] = 1 + i % 2
    return {"atom_type": torch.arange(n) % 3, "logP_SA_cycle_normalized": torch.tensor([y]),
            "bond_type": bonds}


def write_fake_raw(raw_dir):
    """PyG's raw layout: three pickles of molecule dicts and three subset index files."""
    raw_dir.mkdir(parents=True)
    for split, count in (("train", 5), ("val", 3), ("test", 3)):
        mols = [fake_molecule(4 + i, float(i)) for i in range(count)]
        (raw_dir / f"{split}.pickle").write_bytes(pickle.dumps(mols))
        (raw_dir / f"{split}.index").write_text("0,2\n")


@pytest.fixture
def download_spy(monkeypatch):
    calls = []

    def failing_download(self):
        calls.append(self.raw_dir)
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(ZINC, "download", failing_download)
    return calls


def test_real_zinc_is_read_from_raw_files(tmp_path, download_spy):
    write_fake_raw(tmp_path / "zinc" / "raw")
    ds = get_dataset("zinc", root=tmp_path, offline_fallback=False, pe={"rwse": {"steps": 2}})
    assert ds.name == "zinc" and "real ZINC" in ds.source and not download_spy
    train, val, test = ds.get_splits()
    assert [len(s) for s in (train, val, test)] == [2, 2, 2]  # the index files pick 0 and 2
    assert train[1].num_nodes == 6 and train[1].y.item() == 2.0
    assert sorted(set(train[0].edge_attr.tolist())) == [1, 2]
    assert train[0].rwse.shape == (4, 2)
    full = get_dataset("zinc_full", root=tmp_path, offline_fallback=False)
    assert [len(s) for s in full.get_splits()] == [5, 3, 3]
    assert full.fingerprint != ds.fingerprint


def test_offline_fallback_is_loud_fast_and_truthful(tiny_smiles, tmp_path, no_network,
                                                    download_spy):
    start = time.perf_counter()
    with pytest.warns(OfflineFallbackWarning) as record:
        ds = get_dataset("zinc", root=tmp_path)
    assert time.perf_counter() - start < 10
    message = str(record[0].message)
    assert str(tmp_path / "zinc" / "raw") in message and "train.index" in message
    assert "network disabled" in message
    assert ds.name == "zinc_rdkit" and "requested zinc" in ds.source
    assert "not comparable" in ds.source and "FALLBACK" in ds.describe()
    assert ds.fingerprint == get_dataset("zinc_rdkit", root=tmp_path).fingerprint
    assert not download_spy  # the connection check failed first: PyG never tried


def test_failed_download_falls_back(tiny_smiles, tmp_path, monkeypatch, download_spy):
    monkeypatch.setattr(zinc, "network_reachable", lambda url: None)
    with pytest.warns(OfflineFallbackWarning, match="URLError"):
        ds = get_dataset("zinc_full", root=tmp_path)
    assert len(download_spy) == 1 and ds.name == "zinc_rdkit"
    assert "requested zinc_full" in ds.source


def test_no_fallback_is_a_user_error(tmp_path, no_network, download_spy):
    with pytest.raises(UserError) as err:
        get_dataset("zinc", root=tmp_path, offline_fallback=False)
    assert str(tmp_path / "zinc" / "raw") in str(err.value)
    assert "offline_fallback" in str(err.value)


def test_partial_raw_dir_is_never_wiped(tiny_smiles, tmp_path, monkeypatch, download_spy):
    monkeypatch.setattr(zinc, "network_reachable", lambda url: None)
    raw = tmp_path / "zinc" / "raw"
    raw.mkdir(parents=True)
    (raw / "train.pickle").write_bytes(b"user data")
    with pytest.warns(OfflineFallbackWarning, match="incomplete"):
        get_dataset("zinc", root=tmp_path)
    assert (raw / "train.pickle").read_bytes() == b"user data" and not download_spy
