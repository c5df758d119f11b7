"""Positional encodings on hand-built graphs with known answers, and PESpec validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from mspe_sweep.dataset.encodings import (
    PESpec,
    heat_kernel_pe,
    laplacian_pe,
    normalized_laplacian,
    random_walk_pe,
)

MULTISCALE = {"name": "multiscale", "dim": 16, "lap": {"k": 8},
              "rwse": {"steps": 16, "scale": "geometric"},
              "heat": {"num_times": 4, "t_min": 0.1, "t_max": 10.0}}


def undirected(pairs):
    """edge_index [2, 2b] with both directions of each pair."""
    src = [i for i, j in pairs] + [j for i, j in pairs]
    dst = [j for i, j in pairs] + [i for i, j in pairs]
    return torch.tensor([src, dst], dtype=torch.long).view(2, -1)


def path(n):
    return undirected([(i, i + 1) for i in range(n - 1)])


def cycle(n):
    return undirected([(i, (i + 1) % n) for i in range(n)])


# ---- PESpec -------------------------------------------------------------------------------

def test_spec_from_multiscale_preset():
    spec = PESpec.from_config(MULTISCALE)
    assert spec.lap_k == 8
    assert spec.rwse_walks == (1, 2, 4, 8, 16)
    assert spec.heat_times[0] == pytest.approx(0.1) and spec.heat_times[-1] == pytest.approx(10)
    assert np.allclose(np.diff(np.log(spec.heat_times)), math.log(100) / 3)
    assert spec.dims == {"lap": 8, "rwse": 5, "heat": 4}
    assert not spec.is_empty


@pytest.mark.parametrize("steps,scale,walks", [
    (3, "linear", (1, 2, 3)), (20, "geometric", (1, 2, 4, 8, 16, 20)),
    (1, "geometric", (1,)), (0, "geometric", ()), (0, "linear", ()),
])
def test_rwse_walk_lengths(steps, scale, walks):
    assert PESpec.from_config({"rwse": {"steps": steps, "scale": scale}}).rwse_walks == walks


def test_spec_accepts_dictconfig_and_off_means_empty():
    omegaconf = pytest.importorskip("omegaconf")
    off = {"name": "none", "dim": 0, "lap": {"k": 0}, "rwse": {"steps": 0, "scale": "linear"},
           "heat": {"num_times": 0, "t_min": 0.1, "t_max": 10.0}}
    assert PESpec.from_config(omegaconf.OmegaConf.create(off)).is_empty
    assert PESpec.from_config(omegaconf.OmegaConf.create(MULTISCALE)) == PESpec.from_config(
        MULTISCALE)


@pytest.mark.parametrize("cfg,needle", [
    ({"lap": {"k": -1}}, "pe.lap.k"),
    ({"lap": {"k": 2.5}}, "pe.lap.k"),
    ({"rwse": {"steps": 4, "scale": "log"}}, "['linear', 'geometric']"),
    ({"heat": {"num_times": 3, "t_min": 0.0, "t_max": 1.0}}, "pe.heat.t_min"),
    ({"heat": {"num_times": 3, "t_min": 2.0, "t_max": 1.0}}, "t_min <= t_max"),
    ({"lap": {"k": 2}, "walks": 3}, "valid keys"),
])
def test_spec_validation_names_key_and_valid_values(cfg, needle):
    with pytest.raises(ValueError) as err:
        PESpec.from_config(cfg)
    assert needle in str(err.value)


def test_cache_key_covers_every_parameter():
    base = PESpec.from_config(MULTISCALE)
    variants = [
        {**MULTISCALE, "lap": {"k": 4}},
        {**MULTISCALE, "rwse": {"steps": 16, "scale": "linear"}},
        {**MULTISCALE, "rwse": {"steps": 20, "scale": "geometric"}},
        {**MULTISCALE, "heat": {"num_times": 4, "t_min": 0.1, "t_max": 10.000001}},
        {**MULTISCALE, "heat": {"num_times": 5, "t_min": 0.1, "t_max": 10.0}},
    ]
    keys = {base.cache_key("abc")} | {PESpec.from_config(v).cache_key("abc") for v in variants}
    assert len(keys) == 1 + len(variants)
    assert base.cache_key("abc") != base.cache_key("abd")  # and the data fingerprint
    assert base.cache_key("abc") == PESpec.from_config(dict(MULTISCALE)).cache_key("abc")


# ---- Laplacian PE --------------------------------------------------------------------------

@pytest.mark.parametrize("n", [4, 6])
def test_cycle_spectrum(n):
    vec, val, mask = laplacian_pe(cycle(n), n, k=n - 1)
    expected = np.sort(1 - np.cos(2 * np.pi * np.arange(n) / n))[1:]
    assert np.allclose(val[0].numpy(), expected, atol=1e-6)
    assert torch.equal(val[0], val[-1])  # eigenvalues repeated on every row
    assert mask.all()
    lap = normalized_laplacian(cycle(n), n)
    assert np.allclose(lap @ vec.double().numpy(), vec.double().numpy() * expected, atol=1e-5)


@pytest.mark.parametrize("n", [4, 5])
def test_path_spectrum_and_orthonormal_vectors(n):
    vec, val, _ = laplacian_pe(path(n), n, k=n - 1)
    expected = 1 - np.cos(np.pi * np.arange(1, n) / (n - 1))
    assert np.allclose(val[0].numpy(), expected, atol=1e-6)
    gram = vec.double().T @ vec.double()
    assert torch.allclose(gram, torch.eye(n - 1, dtype=torch.double), atol=1e-5)


def test_padding_and_mask_for_small_graphs():
    vec, val, mask = laplacian_pe(path(3), 3, k=4)
    assert vec.shape == val.shape == mask.shape == (3, 4)
    assert mask[:, :2].all() and not mask[:, 2:].any()
    assert (vec[:, 2:] == 0).all() and (val[:, 2:] == 0).all()
    single = laplacian_pe(torch.zeros(2, 0, dtype=torch.long), 1, k=3)
    assert all(t.shape == (1, 3) for t in single) and not single[2].any()
    assert not torch.isnan(single[0]).any()


def test_sign_convention_and_determinism():
    edge_index = undirected([(0, 1), (1, 2), (2, 3), (1, 4), (4, 5)])  # a tree, no symmetry
    first = laplacian_pe(edge_index, 6, k=5)
    second = laplacian_pe(edge_index.flip(1), 6, k=5)  # same graph, edges listed backwards
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    vec = first[0]
    pivot = vec.abs().argmax(dim=0)
    assert (vec[pivot, torch.arange(5)] > 0).all()


# ---- RWSE ----------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [4, 6])
def test_rwse_on_even_cycles(n):
    rw = random_walk_pe(cycle(n), n, (1, 2, 3, 4))
    assert np.allclose(rw[:, 0], 0) and np.allclose(rw[:, 2], 0)  # odd t: bipartite
    assert np.allclose(rw[:, 1], 0.5)
    assert np.allclose(rw[:, 3], 0.5 if n == 4 else 6 / 16)  # closed 4-walks / 2^4


def test_rwse_on_paths():
    assert np.allclose(random_walk_pe(path(4), 4, (2,))[:, 0], [0.5, 0.75, 0.75, 0.5])
    assert np.allclose(random_walk_pe(path(5), 5, (2,))[:, 0], [0.5, 0.75, 0.5, 0.75, 0.5])
    unsorted = random_walk_pe(path(5), 5, (4, 2))
    assert torch.equal(unsorted[:, 1], random_walk_pe(path(5), 5, (2,))[:, 0])


def test_isolated_nodes_never_nan():
    edge_index = undirected([(0, 1)])  # node 2 is isolated
    rw = random_walk_pe(edge_index, 3, (1, 2, 3))
    heat = heat_kernel_pe(edge_index, 3, (0.5, 2.0))
    vec, val, _ = laplacian_pe(edge_index, 3, k=2)
    for tensor in (rw, heat, vec, val):
        assert not torch.isnan(tensor).any()
    assert torch.allclose(rw[2], torch.ones(3)) and torch.allclose(heat[2], torch.ones(2))
    assert torch.allclose(rw[0], torch.tensor([0.0, 1.0, 0.0]))


# ---- heat kernel ---------------------------------------------------------------------------

@pytest.mark.parametrize("edge_index,n", [
    (path(4), 4), (cycle(5), 5), (undirected([(0, 1), (0, 2), (0, 3), (3, 4), (4, 5)]), 6),
])
def test_heat_kernel_matches_expm(edge_index, n):
    times = (0.1, 1.0, 7.5)
    heat = heat_kernel_pe(edge_index, n, times)
    lap = normalized_laplacian(edge_index, n)
    for j, t in enumerate(times):
        assert np.allclose(heat[:, j].numpy(), np.diag(scipy.linalg.expm(-t * lap)), atol=1e-6)
