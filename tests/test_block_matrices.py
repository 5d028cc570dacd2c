"""Block matrices in expressions: their pencils, their limits against a closed form, and bad input.

A sympy ``BlockMatrix`` whose blocks are expressions in Gaussians is linearised
block by block (see :mod:`pencils.pencil`).  The pencils are checked on random
draws against a direct evaluation, and a trace limit against Marchenko-Pastur:
the normalised trace of one diagonal block of the resolvent of the *sample* Gram
matrix :math:`XX^T/n` (split by rows) equals that of the whole matrix, whose
non-zero eigenvalues are those of :math:`X^TX/n`.
"""

import mpmath
import pytest
import sympy

from pencils import Gaussian, linearize, sample_trace, trace_limit
from pencils.errors import MisScaledError, UnsupportedOperationError

from closed_forms import close, marchenko_pastur_stieltjes

d, n1, n2, z, lam = sympy.symbols("d n1 n2 z lambda")
X1, X2 = Gaussian("X1", n1, d), Gaussian("X2", n2, d)
Z1, Z2 = Gaussian("Z1", d, n1), Gaussian("Z2", d, n2)
I_1, I_2, O_12 = sympy.Identity(n1), sympy.Identity(n2), sympy.ZeroMatrix(n1, n2)
X = sympy.BlockMatrix([[X1], [X2]])  # (n1 + n2) x d, split by rows
Z = sympy.BlockMatrix([[Z1, Z2]])
FIRST = sympy.BlockMatrix([[I_1, O_12]])  # selects the first n1 coordinates
DIMS = {n1: 2 * d, n2: 3 * d}


def gram_resolvent(split_identity: bool):
    if split_identity:
        return (X * X.T / d - z * sympy.Identity(n1 + n2)).I
    blocks = sympy.block_collapse(X * X.T / d).blocks
    return (sympy.BlockMatrix([[blocks[0, 0] - z * I_1, blocks[0, 1]], [blocks[1, 0], blocks[1, 1] - z * I_2]])).I


EXPRESSIONS = {
    "one diagonal block of a resolvent": FIRST * gram_resolvent(split_identity=True) * FIRST.T,
    "ridge written inside the blocks": FIRST * gram_resolvent(split_identity=False) * FIRST.T,
    "row times inverse times column": Z * (X * X.T / d + lam * sympy.Identity(n1 + n2)).I * Z.T / d,
    "squared inverse": Z * (X * X.T / d + lam * sympy.Identity(n1 + n2)) ** -2 * Z.T / d,
    "transposed block matrix": (X.T * X / d + lam * sympy.Identity(d)).I,
    "triangular block matrix": FIRST * sympy.BlockMatrix([[X1 * X1.T / d + I_1, X1 * X2.T / d], [sympy.ZeroMatrix(n2, n1), I_2]]).I * FIRST.T,
}


@pytest.mark.parametrize("name", list(EXPRESSIONS))
@pytest.mark.parametrize("reduce", [True, False])
def test_pencil_realises_block_expression(name, reduce):
    pencil = linearize(EXPRESSIONS[name], DIMS, reduce=reduce)
    for seed in range(3):
        assert pencil.check({z: -0.7, lam: 0.4}, size=5, seed=seed) < 1e-9


@pytest.mark.parametrize("split_identity", [True, False])
@pytest.mark.parametrize("point", [-5, "-0.05", 2.5 + 1.25j])
def test_diagonal_block_of_the_sample_gram_matches_marchenko_pastur_to_40_digits(split_identity, point):
    r"""With :math:`n = n_1 + n_2 = 5d` and :math:`\gamma = d/n`, the normalised trace of
    :math:`(XX^T/n - w)^{-1}` is :math:`\gamma\, m_\gamma(w) - (1 - \gamma)/w`, :math:`m_\gamma` the
    Marchenko-Pastur transform of :math:`X^TX/n`; the first diagonal block has the same.  The
    expression is :math:`(XX^T/d - z)^{-1} = (XX^T/n - w)^{-1}/5` with :math:`w = z/5`."""
    value = trace_limit(5 * FIRST * gram_resolvent(split_identity) * FIRST.T, DIMS, {z: point}, dps=50)
    with mpmath.workdps(70):
        w, gamma = mpmath.mpmathify(point) / 5, mpmath.mpf(1) / 5
        expected = gamma * marchenko_pastur_stieltjes(w, gamma) - (1 - gamma) / w
        assert close(value, expected)


def test_block_limit_against_sampling():
    """The squared-inverse expression (the DSM dual pattern) against finite draws at d = 60."""
    expr = EXPRESSIONS["squared inverse"]
    value = trace_limit(expr, DIMS, {lam: 0.3})
    estimate = sample_trace(expr, DIMS, {lam: 0.3}, size=60, seeds=12)
    # finite-size bias O(1/d) ~ 2% at d = 60, plus 4 standard errors of the seed spread
    assert abs(estimate.mean - value) < 4 * estimate.stderr + 0.02 * abs(value)


def test_mismatched_splits_are_refused():
    swapped = sympy.BlockMatrix([[Gaussian("A", d, n2), Gaussian("B", d, n1)]])  # columns n2 then n1
    expr = swapped * (X * X.T / d + lam * sympy.Identity(n1 + n2)).I * Z.T / d
    with pytest.raises(UnsupportedOperationError, match="split"):
        linearize(expr, DIMS)


def test_trace_of_a_block_matrix_is_refused():
    with pytest.raises(UnsupportedOperationError, match="diagonal block"):
        linearize((X * X.T / d + lam * sympy.Identity(n1 + n2)).I, DIMS)


def test_nested_block_matrix_is_refused():
    nested = sympy.BlockMatrix([[sympy.BlockMatrix([[X1, X1]]), X1]])
    with pytest.raises(UnsupportedOperationError, match="itself split"):
        linearize(nested.T * nested / d, {n1: 2 * d})


def test_blocks_of_different_orders_are_refused():
    uneven = sympy.BlockMatrix([[X1 * X1.T, X1 * X2.T / d], [X2 * X1.T / d, X2 * X2.T / d]])
    with pytest.raises(MisScaledError, match="blocks"):
        linearize(FIRST * (uneven + sympy.Identity(n1 + n2)).I * FIRST.T, DIMS)
