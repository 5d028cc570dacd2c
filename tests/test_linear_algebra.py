"""The solver's linear algebra: block forward substitution and mixed-precision refinement.

Both are checked against a plain dense solve (numpy's, or mpmath's ``lu_solve`` at the
working precision), on random matrices and on the DSM systems themselves.
"""

import mpmath
import numpy as np
import pytest

from pencils import SolverOptions, limit, precision
from pencils.models import dsm
from pencils.solve import linear_algebra
from pencils.solve.linear_algebra import BlockTriangular, FloatAlgebra, refined_solve


def _block_triangular_pattern(rng, sizes):
    """A random pattern: diagonal blocks of the given sizes (dense), random entries below them,
    rows and columns then permuted by one random permutation (so the blocks are hidden)."""
    n = sum(sizes)
    starts = np.cumsum([0, *sizes])
    dense = np.zeros((n, n), dtype=bool)
    for a, b in zip(starts[:-1], starts[1:]):
        dense[a:b, a:b] = True
        dense[b:, a:b] = rng.random((n - b, b - a)) < 0.3
    permutation = rng.permutation(n)
    return dense[np.ix_(permutation, permutation)]


@pytest.mark.parametrize("dtype", [float, complex])
def test_block_substitution_equals_dense_solve(dtype):
    rng = np.random.default_rng(3)
    pattern = _block_triangular_pattern(rng, [3, 1, 4, 1, 1, 4, 2])
    n = len(pattern)
    positions = np.flatnonzero(pattern)
    blocks = BlockTriangular(positions, n)
    assert max(group["block"].shape[1] for group in blocks.groups) == 4
    count = 50
    entries = rng.normal(size=(count, len(positions))).astype(dtype)
    if dtype is complex:
        entries += 1j * rng.normal(size=entries.shape)
    diagonal = np.searchsorted(positions, np.arange(n) * (n + 1))
    entries[:, diagonal] += 4  # keep the diagonal blocks well conditioned
    right = rng.normal(size=(count, n)).astype(dtype)
    dense = np.zeros((count, n * n), dtype=dtype)
    dense[:, positions] = entries
    expected = np.linalg.solve(dense.reshape(count, n, n), right[..., None])[..., 0]
    np.testing.assert_allclose(blocks.solve(entries, right, FloatAlgebra()), expected, rtol=1e-12, atol=1e-12)


def test_a_singular_diagonal_entry_gives_a_non_finite_point_only():
    """One point with a zero 1x1 block: that point is not finite (reported as not converged), the others are solved."""
    n = 3
    pattern = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 1]], dtype=bool)
    positions = np.flatnonzero(pattern)
    entries = np.ones((2, len(positions)))
    entries[1, 0] = 0.0
    with np.errstate(divide="ignore", invalid="ignore"):  # as inside the solver
        solved = BlockTriangular(positions, n).solve(entries, np.ones((2, n)), FloatAlgebra())
    np.testing.assert_allclose(solved[0], [1.0, 0.0, 1.0])
    assert not np.all(np.isfinite(solved[1]))


def test_dsm_grid_is_the_same_with_dense_and_block_solves():
    psi = np.geomspace(0.3, 30.0, 9)
    found = dsm.quantities(finite_m=False)
    subs = dsm.substitutions(psi[:, None], psi[None, :], 0.1, 1e-3)

    def errors(block_solve_points: int):
        options = SolverOptions(block_solve_points=block_solve_points)
        return limit([found["test"], found["train"]], dsm.dims, subs, options=options)

    blocked = errors(1)  # every batch block by block
    dense = errors(10**9)  # every batch dense
    np.testing.assert_allclose(blocked[0], dense[0], rtol=1e-12)
    np.testing.assert_allclose(blocked[1], dense[1], rtol=1e-11)


@pytest.mark.parametrize("complex_entries", [False, True])
def test_refined_solve_reaches_the_working_precision(complex_entries, monkeypatch):
    """A well-conditioned system: 60 digits by refinement alone (no elimination in mpmath)."""
    monkeypatch.setattr(linear_algebra, "gauss_solve", lambda *arguments: pytest.fail("refinement did not contract"))
    rng = np.random.default_rng(5)
    n = 25
    with mpmath.workdps(60), precision.digits(60):  # the test's numbers, and the solver's private context
        values = rng.normal(size=(n, n)) + n * np.eye(n)
        if complex_entries:
            values = values + 1j * rng.normal(size=(n, n))
        matrix = np.array([[mpmath.mpmathify(x) / 3 for x in row] for row in values], dtype=object)
        right = np.array([mpmath.mpf(k + 1) / 7 for k in range(n)], dtype=object)
        expected = mpmath.lu_solve(mpmath.matrix(matrix.tolist()), mpmath.matrix(right.tolist()))
        solved = refined_solve(matrix, right)
        error = max(abs(solved[k] - expected[k]) for k in range(n))
        assert error < mpmath.mpf(10) ** -55


def test_refined_solve_falls_back_to_elimination_when_double_precision_cannot_contract(monkeypatch):
    """The 14 x 14 Hilbert matrix has condition number ~1e19: refinement from a double-precision
    inverse does not contract, and elimination at the working precision is used instead."""
    calls = []
    elimination = linear_algebra.gauss_solve
    monkeypatch.setattr(linear_algebra, "gauss_solve", lambda *arguments: calls.append(1) or elimination(*arguments))
    n = 14
    with mpmath.workdps(60), precision.digits(60):  # the test's numbers, and the solver's private context
        matrix = np.array([[mpmath.mpf(1) / (i + j + 1) for j in range(n)] for i in range(n)], dtype=object)
        right = np.array([mpmath.mpf(1)] * n, dtype=object)
        expected = mpmath.lu_solve(mpmath.matrix(matrix.tolist()), mpmath.matrix(right.tolist()))
        solved = refined_solve(matrix, right)
        error = max(abs(solved[k] - expected[k]) / abs(expected[k]) for k in range(n))
        assert error < mpmath.mpf(10) ** -35
    assert calls == [1]
