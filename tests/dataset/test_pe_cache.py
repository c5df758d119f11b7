"""The on-disk PE cache: hits, invalidation, concurrency, corrupt files."""

from __future__ import annotations

import threading

import pytest
import torch

from mspe_sweep.dataset import get_dataset, pe_cache
from mspe_sweep.training.checkpoint import atomic_save
from mspe_sweep.dataset.encodings import PESpec
from mspe_sweep.dataset.synthetic import make_synthetic

SPEC = PESpec(lap_k=4, rwse_walks=(1, 2, 4), heat_times=(0.5, 5.0))


@pytest.fixture
def tables():
    return make_synthetic(num_graphs=40).splits


@pytest.fixture
def spy(monkeypatch):
    """Counts calls of the vectorized engine as pe_cache sees it."""
    calls = []
    real = pe_cache.compute_pe

    def counting(table, spec):
        calls.append(spec)
        return real(table, spec)

    monkeypatch.setattr(pe_cache, "compute_pe", counting)
    return calls


def test_second_call_reads_the_cache(tables, tmp_path, spy):
    first, note1 = pe_cache.load_or_compute_pe(tables, SPEC, "fp1", tmp_path)
    assert len(spy) == 3 and "computed and cached" in note1  # one call per split
    second, note2 = pe_cache.load_or_compute_pe(tables, SPEC, "fp1", tmp_path)
    assert len(spy) == 3 and "loaded from cache" in note2
    for split in first:
        assert all(torch.equal(first[split][k], second[split][k]) for k in first[split])
    assert [p.name for p in tmp_path.glob("*.pt")] == [
        pe_cache.pe_cache_path(tmp_path, SPEC, "fp1").name]


@pytest.mark.parametrize("other", [
    PESpec(lap_k=3, rwse_walks=(1, 2, 4), heat_times=(0.5, 5.0)),
    PESpec(lap_k=4, rwse_walks=(1, 2, 3), heat_times=(0.5, 5.0)),
    PESpec(lap_k=4, rwse_walks=(1, 2, 4), heat_times=(0.5, 5.5)),
])
def test_changing_any_parameter_makes_a_new_entry(tables, tmp_path, spy, other):
    pe_cache.load_or_compute_pe(tables, SPEC, "fp1", tmp_path)
    out, note = pe_cache.load_or_compute_pe(tables, other, "fp1", tmp_path)
    assert len(spy) == 6 and "computed" in note and len(list(tmp_path.glob("*.pt"))) == 2
    assert out["train"]["rwse"].shape[1] == len(other.rwse_walks)


def test_other_data_fingerprint_makes_a_new_entry(tables, tmp_path, spy):
    pe_cache.load_or_compute_pe(tables, SPEC, "fp1", tmp_path)
    pe_cache.load_or_compute_pe(tables, SPEC, "fp2", tmp_path)
    assert len(spy) == 6


def test_concurrent_builders_compute_once(tables, tmp_path, spy):
    results, errors = [], []

    def worker():
        try:
            results.append(pe_cache.load_or_compute_pe(tables, SPEC, "fp1", tmp_path))
        except Exception as exc:  # noqa: BLE001 - surfaced by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(results) == 4
    assert len(spy) == 3  # built once; the other three waited on the lock and loaded it
    assert sum("loaded from cache" in note for _, note in results) == 3
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("content", [b"not a torch file", None])
def test_corrupt_or_mismatched_entry_is_rebuilt(tables, tmp_path, spy, content):
    path = pe_cache.pe_cache_path(tmp_path, SPEC, "fp1")
    if content is None:  # a readable entry whose shapes do not fit these tables
        atomic_save({"format": pe_cache.PE_FORMAT, "fingerprint": "fp1", "spec": {},
                           "splits": {}, "seconds": 0.0}, path)
    else:
        path.write_bytes(content)
    with pytest.warns(UserWarning, match="rebuilding"):
        pe_cache.load_or_compute_pe(tables, SPEC, "fp1", tmp_path)
    assert len(spy) == 3
    pe_cache.load_or_compute_pe(tables, SPEC, "fp1", tmp_path)
    assert len(spy) == 3


def test_get_dataset_caches_pe_under_root(tiny_smiles, tmp_path, spy):
    pe = {"lap": {"k": 2}, "rwse": {"steps": 4, "scale": "linear"}, "heat": {"num_times": 0}}
    first = get_dataset("zinc_rdkit", root=tmp_path, pe=pe)
    assert len(spy) == 3 and len(list((tmp_path / "pe_cache").glob("*.pt"))) == 1
    second = get_dataset("zinc_rdkit", root=tmp_path, pe=pe)
    assert len(spy) == 3 and "loaded from cache" in second.describe()
    a, b = first.get_splits()[0][0], second.get_splits()[0][0]
    assert torch.equal(a.rwse, b.rwse) and a.lap_vec.shape == (a.num_nodes, 2)
    get_dataset("zinc_rdkit", root=tmp_path, pe={**pe, "rwse": {"steps": 5}})
    assert len(spy) == 6 and len(list((tmp_path / "pe_cache").glob("*.pt"))) == 2


def test_synthetic_pe_stays_in_memory(tmp_path, spy):
    ds = get_dataset("synthetic", root=tmp_path, pe={"rwse": {"steps": 3}})
    assert len(spy) == 3 and not (tmp_path / "pe_cache").exists()
    assert ds.pe_dims == {"lap": 0, "rwse": 3, "heat": 0}
    assert ds.get_splits()[1][0].rwse.shape[1] == 3
