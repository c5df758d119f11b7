"""Molecules -> ZINC-format graphs: the atom vocabulary, atom tokens, bonds and the target.

Atom tokens follow the notation of ZINC's vocabulary ("C", "C H1", "N H1 +", "O -", ...),
which reads like RDKit SMILES bracket atoms with stereo marks removed. The rule used here, on
the kekulized molecule:

    token = symbol
            + " H<n>"  if the atom has n > 0 hydrogens AND (it is charged, OR it has a chiral
                       tag, OR its total valence is not the element's default valence)
            + " +" / " -" for a formal charge of +1 / -1 (other charges: out of vocabulary)

These are exactly the atoms RDKit writes in brackets together with their hydrogens:
``[NH3+]`` -> "N H3 +", ``[C@@H]`` -> "C H1", ``[PH](=O)`` (valence 5) -> "P H1",
``[CH2-]`` -> "C H2 -". Aromatic ``[nH]`` is "N" (in Kekulé form it is a plain trivalent N,
as ZINC's vocabulary has no "N H1"). A molecule with any token outside the 28-token vocabulary
is skipped and counted by the caller.

Target (DESIGN.md, "Data facts"): z-scored Crippen logP - SA score - cycle penalty, where the
cycle penalty is max(0, largest ring of RDKit's ring perception (SSSR) - 6).
"""

from __future__ import annotations

import functools
import importlib.util
import os
from types import ModuleType

from rdkit import Chem, RDConfig
from rdkit.Chem import Crippen

# ZINC atom vocabulary, in id order (DESIGN.md, "Data facts (ZINC)").
ATOM_VOCAB: tuple[str, ...] = (
    "C", "O", "N", "F", "C H1", "S", "Cl", "O -", "N H1 +", "Br", "N H3 +", "N H2 +", "N +",
    "N -", "S -", "I", "P", "O H1 +", "N H1 -", "O +", "S +", "P H1", "P H2", "C H2 -", "P +",
    "S H1 +", "C H1 -", "P H1 +",
)
ATOM_IDS: dict[str, int] = {token: i for i, token in enumerate(ATOM_VOCAB)}
NUM_EDGE_TYPES = 4  # 0 unused (no bond), 1 single, 2 double, 3 triple
MIN_ATOMS, MAX_ATOMS = 9, 38  # heavy-atom range of ZINC

# ZINC-250k statistics used to z-score each term (DESIGN.md).
LOGP_MEAN, LOGP_STD = 2.4570953396190123, 1.434324401111988
SA_MEAN, SA_STD = 3.0525811293166134, 0.8335207024513095
CYCLE_MEAN, CYCLE_STD = 0.0485696876403053, 0.2860212110245455


@functools.lru_cache(maxsize=None)
def _default_valence(atomic_num: int) -> int:
    return Chem.GetPeriodicTable().GetValenceList(atomic_num)[0]


def atom_token(atom: Chem.Atom) -> str:
    """The ZINC-style token of an RDKit atom of a kekulized molecule (see module docstring)."""
    symbol, charge, hydrogens = atom.GetSymbol(), atom.GetFormalCharge(), atom.GetTotalNumHs()
    nonstandard = atom.GetTotalValence() != _default_valence(atom.GetAtomicNum())
    chiral = atom.GetChiralTag() != Chem.ChiralType.CHI_UNSPECIFIED
    token = symbol
    if hydrogens and (charge or chiral or nonstandard):
        token += f" H{hydrogens}"
    if charge:
        token += " +" if charge == 1 else " -" if charge == -1 else f" {charge:+d}"
    return token


_BOND_IDS = {Chem.BondType.SINGLE: 1, Chem.BondType.DOUBLE: 2, Chem.BondType.TRIPLE: 3}


def mol_to_graph(mol: Chem.Mol) -> tuple[list[int], list[list[int]], list[int]] | str:
    """Converts a sanitized RDKit molecule to ZINC-format node/edge lists.

    Args:
        mol: An RDKit ``Mol`` (implicit hydrogens); it is kekulized on a copy, so bonds are
            1 single, 2 double, 3 triple.

    Returns:
        ``(atom_ids [n], [src [2b], dst [2b]], bond_types [2b])`` with both directions of
        every bond, or a short reason string when the molecule cannot be represented.
    """
    mol = Chem.Mol(mol)
    Chem.Kekulize(mol, clearAromaticFlags=True)
    ids = []
    for i in range(mol.GetNumAtoms()):  # index loop: RDKit's atom sequence wrapper is slow
        token = atom_token(mol.GetAtomWithIdx(i))
        if token not in ATOM_IDS:
            return f"token {token!r}"
        ids.append(ATOM_IDS[token])
    src, dst, kinds = [], [], []
    for b in range(mol.GetNumBonds()):
        bond = mol.GetBondWithIdx(b)
        kind = _BOND_IDS.get(bond.GetBondType())
        if kind is None:
            return f"bond {bond.GetBondType()}"
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        src += [i, j]
        dst += [j, i]
        kinds += [kind, kind]
    return ids, [src, dst], kinds


@functools.lru_cache(maxsize=1)
def load_sascorer() -> ModuleType:
    """Imports RDKit's Contrib ``SA_Score/sascorer.py`` (shipped in the wheel, not a package)."""
    path = os.path.join(RDConfig.RDContribDir, "SA_Score", "sascorer.py")
    spec = importlib.util.spec_from_file_location("sascorer", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"RDKit's SA_Score contrib module not found at {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cycle_penalty(mol) -> int:
    """max(0, size of the largest ring in RDKit's ring perception - 6)."""
    rings = mol.GetRingInfo().AtomRings()
    return max(0, max((len(ring) for ring in rings), default=0) - 6)


def penalized_logp(mol) -> float:
    """ZINC's ``logP_SA_cycle_normalized``: the sum of the three z-scored terms.

    ``(logP - m1)/s1 + (-SA + m2)/s2 + (-cycle + m3)/s3`` with the ZINC-250k means/stds above.
    """
    logp = Crippen.MolLogP(mol)
    sa = load_sascorer().calculateScore(mol)
    cycle = cycle_penalty(mol)
    return ((logp - LOGP_MEAN) / LOGP_STD + (-sa + SA_MEAN) / SA_STD
            + (-cycle + CYCLE_MEAN) / CYCLE_STD)
