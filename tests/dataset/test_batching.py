"""TableLoader: the batches of PyG's DataLoader, straight from the flat tensors."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.loader import DataLoader

from mspe_sweep.dataset import get_dataset
from mspe_sweep.dataset.batching import TableLoader

PE = {"lap": {"k": 4}, "rwse": {"steps": 8},
      "heat": {"num_times": 3, "t_min": 0.1, "t_max": 10.0}}


@pytest.mark.parametrize("shuffle", [True, False])
def test_same_batches_and_random_draws_as_pyg_dataloader(shuffle):
    ds = get_dataset("synthetic", pe=PE, num_graphs=203)
    passes = []
    for make in (lambda: DataLoader(ds.get_splits()[0], batch_size=16, shuffle=shuffle),
                 lambda: ds.loaders(16)[0] if shuffle else
                 TableLoader(ds.tables["train"], ds.pe["train"], batch_size=16)):
        torch.manual_seed(5)
        loader = make()
        batches = [batch for _ in range(2) for batch in loader]  # two epochs
        passes.append((batches, torch.rand(4), len(loader)))
    (pyg, pyg_next, pyg_len), (ours, ours_next, ours_len) = passes
    assert pyg_len == ours_len == 11 and len(ours) == len(pyg) == 22
    torch.testing.assert_close(ours_next, pyg_next, rtol=0, atol=0)  # same RNG draws
    for a, b in zip(pyg, ours):
        assert sorted(a.keys()) == sorted(b.keys()) and a.num_graphs == b.num_graphs
        for key in a.keys():  # noqa: SIM118 (Batch.keys() is a method, not a dict view)
            assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key


def test_loaders_are_train_shuffled_val_test_in_order():
    ds = get_dataset("synthetic", num_graphs=50, pe={"rwse": {"steps": 4}})
    train, val, test = ds.loaders(8)
    assert train.shuffle and not val.shuffle and not test.shuffle
    assert [b.num_graphs for b in val] == [5] and [b.num_graphs for b in test] == [5]
    assert sum(b.num_graphs for b in train) == 40
    batch = next(iter(val))
    assert batch.rwse.shape == (batch.num_nodes, 4)
    assert torch.equal(batch.y, ds.tables["val"].y)
