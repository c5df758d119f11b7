"""Multi-scale positional encodings: the spec, and the pure per-graph reference functions.

Conventions shared by every function here and by the vectorized engine (``pe_batch``):

* The graph is simple and undirected: duplicate edges count once, self-loops are dropped.
* Laplacian: the symmetric-normalized ``L = I - D^-1/2 A D^-1/2``; an isolated node has
  ``L_ii = 0`` (its own zero-eigenvalue component), so no value is ever NaN.
* LapPE: eigenvectors 1..k of ``L`` (ascending eigenvalues; eigenvector 0, the trivial one,
  is dropped). Sign: the largest-|value| entry is made positive (ties within 1e-6: the lowest
  node index wins). Graphs with fewer than k+1 nodes get zero-padded columns, mask False.
* RWSE: return probabilities ``diag(P^t)``, ``P = D^-1 A``; a walker on an isolated node
  stays put (probability 1), matching the zero-eigenvalue convention above.
* Heat kernel: ``diag(exp(-t L))`` with the same sym-normalized ``L`` (its spectrum lies in
  [0, 2] whatever the degrees, so one time range suits graphs of any size).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

RWSE_SCALES = ("linear", "geometric")
_TOP_KEYS = ("name", "dim", "lap", "rwse", "heat")
SIGN_TOL = 1e-6  # entries this close to the max |value| count as tied for the sign rule


@dataclass(frozen=True)
class PESpec:
    """Which positional encodings to compute, with every parameter that changes their values.

    Attributes:
        lap_k: Number of non-trivial Laplacian eigenvectors (0 = no LapPE).
        rwse_walks: Random-walk lengths whose return probabilities are stored (empty = none).
        heat_times: Diffusion times of the heat-kernel diagonal (empty = none).
    """

    lap_k: int = 0
    rwse_walks: tuple[int, ...] = ()
    heat_times: tuple[float, ...] = ()

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> PESpec:
        """Validates a ``configs/pe/*.yaml`` mapping (dict or DictConfig) into a spec.

        RWSE ``scale: linear`` gives walks 1..steps; ``geometric`` gives the powers of two
        below ``steps`` followed by ``steps`` itself (steps=20 -> 1, 2, 4, 8, 16, 20), so the
        longest requested walk is always included. Heat times are ``num_times`` log-spaced
        values from ``t_min`` to ``t_max`` inclusive. ``name`` and ``dim`` are ignored.

        Args:
            cfg: ``{"lap": {"k"}, "rwse": {"steps", "scale"}, "heat": {"num_times", "t_min",
                "t_max"}}`` (plus the informational ``name`` and ``dim``).

        Returns:
            The spec; a missing section counts as off.

        Raises:
            ValueError: Naming the key at fault and the valid values.
        """
        if not isinstance(cfg, Mapping):
            raise ValueError(f"pe must be a mapping with keys {list(_TOP_KEYS)}, got {cfg!r}")
        unknown = sorted(set(cfg) - set(_TOP_KEYS))
        if unknown:
            raise ValueError(f"pe: unknown key(s) {unknown}; valid keys: {list(_TOP_KEYS)}")
        lap, rwse, heat = (_section(cfg, key) for key in ("lap", "rwse", "heat"))
        k = _count(lap, "lap.k", "k")
        steps = _count(rwse, "rwse.steps", "steps")
        scale = rwse.get("scale", "linear")
        if scale not in RWSE_SCALES:
            raise ValueError(f"pe.rwse.scale must be one of {list(RWSE_SCALES)}, got {scale!r}")
        if scale == "linear":
            walks = tuple(range(1, steps + 1))
        else:
            walks = tuple(2**i for i in range(steps.bit_length()) if 2**i < steps) + (
                (steps,) if steps else ())
        num_times = _count(heat, "heat.num_times", "num_times")
        times: tuple[float, ...] = ()
        if num_times:
            t_min, t_max = (_positive_float(heat, key) for key in ("t_min", "t_max"))
            if t_min > t_max:
                raise ValueError(
                    f"pe.heat.t_min ({t_min}) must be <= pe.heat.t_max ({t_max}); valid: "
                    "0 < t_min <= t_max")
            times = tuple(float(t) for t in np.geomspace(t_min, t_max, num_times))
        return cls(lap_k=k, rwse_walks=walks, heat_times=times)

    @property
    def dims(self) -> dict[str, int]:
        """Per-node width of each encoding: ``{"lap": k, "rwse": R, "heat": H}``."""
        return {"lap": self.lap_k, "rwse": len(self.rwse_walks), "heat": len(self.heat_times)}

    @property
    def is_empty(self) -> bool:
        """True when no encoding is requested."""
        return not any(self.dims.values())

    def cache_key(self, fingerprint: str) -> str:
        """A filename-safe key covering the data fingerprint and EVERY PE parameter."""
        payload = json.dumps(
            {"fingerprint": fingerprint, "lap_k": self.lap_k, "rwse_walks": list(self.rwse_walks),
             "heat_times": [repr(t) for t in self.heat_times]}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:32]


def _section(cfg: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    section = cfg.get(key) or {}
    if not isinstance(section, Mapping):
        raise ValueError(f"pe.{key} must be a mapping, got {section!r}")
    return section


def _count(section: Mapping[str, Any], name: str, key: str) -> int:
    value = section.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"pe.{name} must be an integer >= 0 (0 = off), got {value!r}")
    return value


def _positive_float(section: Mapping[str, Any], key: str) -> float:
    value = section.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 \
            or not math.isfinite(value):
        raise ValueError(f"pe.heat.{key} must be a finite number > 0, got {value!r}")
    return float(value)


def dense_adjacency(edge_index: Tensor, num_nodes: int) -> np.ndarray:
    """Symmetric 0/1 adjacency without self-loops, float64 [n, n]."""
    adj = np.zeros((num_nodes, num_nodes))
    src, dst = np.asarray(edge_index, dtype=np.int64).reshape(2, -1)
    adj[src, dst] = 1.0
    adj[dst, src] = 1.0
    np.fill_diagonal(adj, 0.0)
    return adj


def normalized_laplacian(edge_index: Tensor, num_nodes: int) -> np.ndarray:
    """``I - D^-1/2 A D^-1/2`` with ``L_ii = 0`` for isolated nodes, float64 [n, n]."""
    adj = dense_adjacency(edge_index, num_nodes)
    deg = adj.sum(axis=1)  # [n]
    inv_sqrt = np.where(deg > 0, 1.0 / np.sqrt(np.maximum(deg, 1.0)), 0.0)
    return np.diag((deg > 0).astype(float)) - inv_sqrt[:, None] * adj * inv_sqrt[None, :]


def fix_signs(vectors: np.ndarray) -> np.ndarray:
    """Flips each column so its largest-|value| entry is positive (ties: lowest row), [n, k]."""
    out = vectors.copy()
    for j in range(out.shape[1]):
        mags = np.abs(out[:, j])
        first = int(np.nonzero(mags >= mags.max() - SIGN_TOL)[0][0])
        if out[first, j] < 0:
            out[:, j] = -out[:, j]
    return out


def laplacian_pe(edge_index: Tensor, num_nodes: int, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """Laplacian eigenvector PE of one graph.

    Returns:
        ``(lap_vec, lap_val, lap_mask)``: float [n, k] eigenvectors 1..k, float [n, k] their
        eigenvalues repeated on every row, bool [n, k] True where the column is a real
        eigenvector (padded columns are zero and False).
    """
    vec, val = np.zeros((num_nodes, k)), np.zeros((num_nodes, k))
    mask = np.zeros((num_nodes, k), dtype=bool)
    if num_nodes > 1 and k > 0:
        eigvals, eigvecs = np.linalg.eigh(normalized_laplacian(edge_index, num_nodes))
        m = min(k, num_nodes - 1)
        vec[:, :m] = fix_signs(eigvecs[:, 1:m + 1])
        val[:, :m] = eigvals[1:m + 1]
        mask[:, :m] = True
    return torch.from_numpy(vec).float(), torch.from_numpy(val).float(), torch.from_numpy(mask)


def random_walk_pe(edge_index: Tensor, num_nodes: int, walks: tuple[int, ...]) -> Tensor:
    """Return probabilities ``diag(P^t)`` for each walk length t, float [n, len(walks)]."""
    adj = dense_adjacency(edge_index, num_nodes)
    deg = adj.sum(axis=1)  # [n]
    trans = adj / np.maximum(deg, 1.0)[:, None]  # P = D^-1 A, [n, n]
    trans[deg == 0, deg == 0] = 1.0  # isolated node: the walker stays
    out, power, t = np.zeros((num_nodes, len(walks))), np.eye(num_nodes), 0
    for j in np.argsort(walks, kind="stable"):  # increasing lengths reuse the running power
        while t < walks[j]:
            power, t = power @ trans, t + 1
        out[:, j] = np.diag(power)
    return torch.from_numpy(out).float()


def heat_kernel_pe(edge_index: Tensor, num_nodes: int, times: tuple[float, ...]) -> Tensor:
    """Heat-kernel diagonal ``diag(exp(-t L))`` for each time t, float [n, len(times)]."""
    if num_nodes == 0:
        return torch.zeros(0, len(times))
    eigvals, eigvecs = np.linalg.eigh(normalized_laplacian(edge_index, num_nodes))
    decay = np.exp(-np.outer(np.maximum(eigvals, 0.0), np.asarray(times, dtype=float)))  # [n, T]
    return torch.from_numpy((eigvecs**2) @ decay).float()
