"""Atom tokens, bond encoding and the penalized-logP target of the offline ZINC-format set."""

from __future__ import annotations

import pytest
from rdkit import Chem

from mspe_sweep.dataset.molecules import (
    ATOM_IDS,
    ATOM_VOCAB,
    cycle_penalty,
    mol_to_graph,
    penalized_logp,
)


def tokens(smiles):
    ids, _, _ = mol_to_graph(Chem.MolFromSmiles(smiles))
    return [ATOM_VOCAB[i] for i in ids]


def test_vocabulary_matches_design_order():
    assert len(ATOM_VOCAB) == 28
    assert ATOM_VOCAB[:5] == ("C", "O", "N", "F", "C H1") and ATOM_VOCAB[-1] == "P H1 +"
    assert ATOM_IDS["N H3 +"] == 10 and ATOM_IDS["C H2 -"] == 23


@pytest.mark.parametrize("smiles,expected", [
    ("CCO", ["C", "C", "O"]),
    ("C[NH3+]", ["C", "N H3 +"]),
    ("C[NH2+]C", ["C", "N H2 +", "C"]),
    ("C[N+](=O)[O-]", ["C", "N +", "O", "O -"]),
    ("c1cc[nH]c1", ["C", "C", "C", "N", "C"]),  # aromatic [nH] is a plain "N", as in ZINC
    ("C[C@H](N)O", ["C", "C H1", "N", "O"]),  # stereocentre with H, ZINC's "C H1"
    ("CC[PH](=O)CC", ["C", "C", "P H1", "O", "C", "C"]),  # pentavalent P with H
    ("[CH2-]C", ["C H2 -", "C"]),
    ("CS(C)=O", ["C", "S", "C", "O"]),  # valence-4 S without H stays plain
])
def test_atom_tokens(smiles, expected):
    assert tokens(smiles) == expected


@pytest.mark.parametrize("smiles,reason", [("C[Si](C)(C)C", "'Si'"), ("C[N+2]C", "'N +2'"),
                                           ("C[SH](=O)C", "'S H1'")])
def test_out_of_vocabulary_is_reported_not_guessed(smiles, reason):
    result = mol_to_graph(Chem.MolFromSmiles(smiles))
    assert isinstance(result, str) and reason in result


def test_bonds_are_kekulized_both_directions():
    ids, (src, dst), kinds = mol_to_graph(Chem.MolFromSmiles("c1ccccc1C#N"))
    assert len(src) == len(dst) == len(kinds) == 2 * 8
    pairs = {(s, d): k for s, d, k in zip(src, dst, kinds)}
    assert all(pairs[(d, s)] == k for (s, d), k in pairs.items())  # symmetric
    ring = sorted(k for (s, d), k in pairs.items() if s < d and max(s, d) < 6)
    assert ring == [1, 1, 1, 2, 2, 2]  # benzene: alternating single/double
    assert pairs[(6, 7)] == 3  # nitrile triple bond


def test_target_formula_by_hand():
    mol = Chem.MolFromSmiles("Fc1c(ccc(c1)NC(=O)C2CCC2)F")
    logp, sa, cycle = 2.7034, 1.5955702670215537, 0  # Crippen sum, Ertl SA score, no macrocycle
    expected = ((logp - 2.4570953396190123) / 1.434324401111988
                + (-sa + 3.0525811293166134) / 0.8335207024513095
                + (-cycle + 0.0485696876403053) / 0.2860212110245455)
    assert penalized_logp(mol) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("smiles,penalty", [
    ("C1CCCCCCCCC1C(=O)O", 4),  # 10-ring
    ("c1ccc2cc3ccccc3cc2c1", 0),  # anthracene: largest basis ring is 6, not the 14-perimeter
    ("CCCCCC", 0),
])
def test_cycle_penalty_uses_the_cycle_basis(smiles, penalty):
    assert cycle_penalty(Chem.MolFromSmiles(smiles)) == penalty
