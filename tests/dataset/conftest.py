"""Fixtures for dataset tests: a tiny SMILES file standing in for rdkit's wehi_mols.csv."""

from __future__ import annotations

import gzip
import socket
import urllib.request
from types import SimpleNamespace

import pytest

from mspe_sweep.dataset import zinc_moses, zinc_rdkit

# 24 usable drug-like molecules (the first rows of wehi_mols.csv) ...
USABLE = [
    "N(NC(=O)C1CCC1)c2ccc(cc2)C(C)(C)C", "N1C=CC(=O)c2c1c(cc(c2)C)OC",
    "n1(cccc1)C2CC(NC(C2)(C)C)(C)C", "N1(CCCC1)CC(=O)Nc2c(oc3c2cccc3)C(=O)C4CC4",
    "n2(c1c3c(c(cc1c(c2C)C(=O)OC)O)cccc3)Cc4occc4", "Brc1c[nH]nc1C=NNC(=O)c2noc(c2)C",
    "s1c(nc(c1)CC(=O)c2c(cc(c(c2)CC)O)O)-c3ccccc3", "[nH]1c3c(c(c1)C2C(=NNC2=O)C)cccc3",
    "s1cc(cc1)C=CC(=O)N4CCC2(CN(CC2)C(=O)c3noc(c3)C)CC4",
    "N(c1nccc(c1)CC)C(=O)Nc2c(cccc2)C(C)(C)C", "s1c(ccc1C)C2C(=C(N(C(=C2C(=O)OC)C)C)C)C(=O)OC",
    "Clc1c(c(ccc1)Cl)C=NNc2n[nH]cn2", "n1(nc(c(c1C)NC(=O)c2ccncc2)C)CC",
    "FC(F)(F)C1=CN(C(=O)C=C1)CC(=O)O", "Clc1cc(cc(c1)-n2nc(nc2N)SC)Cl",
    "N1(CCCc2c1ccc(c2)C)CC(=O)N(C3CCCCC3)c4ccccc4", "n2(nc1nc(cc(c1c2)C)O)C",
    "S(C(C)(C)C)CCNC(=O)c1ccc(cc1)CN3CCc2c(cccc2)C3", "S(=O)(=O)(NCCSCc1ccccc1)c2ccc(cc2)CC",
    "Clc1c(cccc1)COc2c(cccc2)C=NNC(=O)C(=O)NC", "Fc1c(ccc(c1)NC(=O)C2CCC2)F",
    "S=C(NCCCC(=O)OC(C)(C)C)Nc1c(cc(cc1)OC)C", "Fc1ccc(cc1)N2C=NC(=O)c3c2cccc3",
    "C[N+](C)(C)CCOC(=O)c1ccc([O-])cc1",
]
# ... and one molecule for each skip reason.
SKIPPED = {
    "this is not smiles": "unparsable SMILES",
    "CCO": "outside 9-38 heavy atoms",
    "CC(C)(C)c1ccc(NNC(=O)C2CCC2)cc1": "duplicate",  # = the first row, other atom order
    "C[Si](C)(C)c1ccc(cc1)CCCCO": "outside the vocabulary (token 'Si')",
}


@pytest.fixture
def tiny_smiles(tmp_path, monkeypatch):
    """A 28-row SMILES CSV, installed as zinc_rdkit's default source.

    Returns:
        A namespace with ``path``, ``usable`` (molecules kept) and ``skip_reasons``.
    """
    path = tmp_path / "tiny_mols.csv"
    rows = USABLE + list(SKIPPED)
    path.write_text("".join(f'"{smi}","ID-{i}"\n' for i, smi in enumerate(rows)))
    monkeypatch.setattr(zinc_rdkit, "DEFAULT_SMILES_FILE", path)
    return SimpleNamespace(path=path, usable=len(USABLE), skip_reasons=list(SKIPPED.values()))


@pytest.fixture
def tiny_moses(tmp_path, monkeypatch):
    """A MOSES-format ``train.csv.gz`` installed as zinc_moses's source: one molecule per skip
    reason, the usable molecules, then the first 8 usable ones again (duplicates).

    Returns:
        A namespace with ``path``, ``usable`` and ``skip_reasons``.
    """
    path = tmp_path / "train.csv.gz"
    rows = ["SMILES", *SKIPPED, *USABLE, *USABLE[:8]]
    with gzip.open(path, "wt") as f:
        f.write("\n".join(rows) + "\n")
    monkeypatch.setattr(zinc_moses, "moses_train_file", lambda: path)
    return SimpleNamespace(path=path, usable=len(USABLE), skip_reasons=list(SKIPPED.values()))


@pytest.fixture
def no_network(monkeypatch):
    """Makes every connection attempt fail at once, as on an offline machine."""

    def refuse(*args, **kwargs):
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
