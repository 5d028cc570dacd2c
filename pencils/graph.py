"""Which entries of the inverse of a structured matrix can be non-zero (used by the derivation and the solver)."""

from __future__ import annotations

import numpy as np

__all__ = ["structurally_nonzero"]


def structurally_nonzero(size: int, pattern: set, terms: dict) -> np.ndarray:
    r"""Which entries of :math:`g = (\Lambda - \eta(g))^{-1}` can be non-zero.

    :math:`G_{lm}` vanishes identically unless the graph of non-zero entries of
    :math:`\Lambda - \eta(g)` has a path from :math:`l` to :math:`m`; and
    :math:`\eta` writes :math:`(i, j)` only if the entry it reads can be
    non-zero.  Starting from the pattern of :math:`\Lambda` (the solution at
    zero variance) and adding the writes of non-zero reads until nothing changes
    gives the entries that are non-zero on the physical branch; the others, and
    the couplings that read them, are dropped.
    """
    adjacency = np.eye(size, dtype=bool)
    for i, j in pattern:
        adjacency[i, j] = True
    while True:
        reach = adjacency.copy()
        for k in range(size):  # transitive closure (Floyd-Warshall on booleans)
            reach |= reach[:, k : k + 1] & reach[k : k + 1, :]
        grown = adjacency.copy()
        for i, j, l, m in terms:
            if reach[l, m]:
                grown[i, j] = True
        if np.array_equal(grown, adjacency):
            return reach
        adjacency = grown
