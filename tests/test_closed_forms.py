"""trace_limit against closed forms from random-matrix theory, to 40 digits.

The closed forms come from the textbook formulas (Marchenko-Pastur and Wigner's
semicircle in ``closed_forms.py``, moments of free variables here), independently of the engine.
"""

import mpmath
import numpy as np
import pytest
import sympy

from closed_forms import close, marchenko_pastur_stieltjes, semicircle_stieltjes
from pencils import Gaussian, limit, trace_limit

@pytest.fixture(scope="module")
def wishart():
    n, d, z, gamma = sympy.symbols("n d z gamma")
    X = Gaussian("X", n, d)
    return (X.T * X / n - z * sympy.Identity(d)).I, {d: d, n: d / gamma}, z, gamma


@pytest.mark.parametrize("z", [-1, "-0.01", "-7.5", 0.3 + 0.25j, 5 + 1j])
@pytest.mark.parametrize("gamma", ["0.5", 2, 1])
def test_marchenko_pastur_40_digits(wishart, z, gamma):
    """Complex points are binary fractions, so that the float input is exact."""
    expr, dims, z_symbol, gamma_symbol = wishart
    value = trace_limit(expr, dims, {z_symbol: z, gamma_symbol: gamma}, dps=50)
    with mpmath.workdps(70):
        assert close(value, marchenko_pastur_stieltjes(mpmath.mpmathify(z), mpmath.mpmathify(gamma)))


def test_marchenko_pastur_float_vectorised(wishart):
    expr, dims, z_symbol, gamma_symbol = wishart
    z = np.linspace(-3, -0.05, 7)[:, None]
    gamma = np.array([0.3, 1.0, 2.5])[None, :]
    values = trace_limit(expr, dims, {z_symbol: z, gamma_symbol: gamma})
    assert values.shape == (7, 3)
    expected = np.array([[float(marchenko_pastur_stieltjes(zz, gg)) for gg in gamma[0]] for zz in z[:, 0]])
    np.testing.assert_allclose(values, expected, rtol=1e-12)


@pytest.mark.parametrize("z", ["-3", "2.5", 0.5 + 0.125j, -1.875 + 2.0**-10 * 1j])
def test_semicircle_40_digits(z):
    """(Y + Y^T)/sqrt(2d) for square Gaussian Y: the same Gaussian in two places."""
    d, z_symbol = sympy.symbols("d z")
    Y = Gaussian("Y", d, d)
    H = (Y + Y.T) / sympy.sqrt(2 * d)
    value = trace_limit((H - z_symbol * sympy.Identity(d)).I, {d: d}, {z_symbol: z}, dps=50)
    with mpmath.workdps(70):
        assert close(value, semicircle_stieltjes(mpmath.mpmathify(z)))


def test_squared_resolvent_is_the_derivative(wishart):
    """tr (S - z)^{-2} / d = m'(z): a product of two resolvents."""
    expr, dims, z_symbol, gamma_symbol = wishart
    values = {z_symbol: "-0.6", gamma_symbol: sympy.Rational(7, 10)}
    value = trace_limit(expr * expr, dims, values, dps=50)
    with mpmath.workdps(70):
        expected = mpmath.diff(lambda z: marchenko_pastur_stieltjes(z, mpmath.mpf("0.7")), mpmath.mpf("-0.6"))
        assert close(value, expected)


def test_free_product_moment():
    r"""Two independent Wisharts are asymptotically free:
    phi(abab) = phi(a^2) phi(b)^2 + phi(a)^2 phi(b^2) - phi(a)^2 phi(b)^2 = 1 + gamma_1 + gamma_2."""
    d, n, m = sympy.symbols("d n m")
    X, Y = Gaussian("X", n, d), Gaussian("Y", m, d)
    A, B = X.T * X / n, Y.T * Y / m
    value = limit(sympy.Trace(A * B * A * B) / d, {n: 4 * d, m: sympy.Rational(5, 2) * d}, dps=50)
    with mpmath.workdps(70):
        assert close(value, 1 + mpmath.mpf(1) / 4 + mpmath.mpf(2) / 5)


def test_ridge_identity(wishart):
    """tr S (S + lam)^{-1} / d = 1 - lam m(-lam): sums and products with a shared Gaussian."""
    n, d, lam, gamma = sympy.symbols("n d lam gamma")
    X = Gaussian("X", n, d)
    S = X.T * X / n
    value = trace_limit(S * (S + lam * sympy.Identity(d)).I, {d: d, n: d / gamma},
                        {lam: "0.01", gamma: 3}, dps=50)
    with mpmath.workdps(70):
        assert close(value, 1 - mpmath.mpf("0.01") * marchenko_pastur_stieltjes(-mpmath.mpf("0.01"), 3))


def test_two_precisions_agree(wishart):
    expr, dims, z_symbol, gamma_symbol = wishart
    values = {z_symbol: -2, gamma_symbol: "1.5"}
    low, high = trace_limit(expr, dims, values, dps=30), trace_limit(expr, dims, values, dps=60)
    assert close(low, high, digits=30)
    assert abs(float(low) - trace_limit(expr, dims, {z_symbol: -2.0, gamma_symbol: 1.5})) < 1e-14


@pytest.mark.parametrize("z", [3, "1.5", -2])
def test_circular_law_outside_the_disk(z):
    """For a circular element c and |z| > 1: tr (z - c)^{-1} (z - c)^{-*} = 1/(|z|^2 - 1)
    (the resolvent has the Neumann series sum_k c^k / z^{k+1}, and tr c^k c^{*l} = delta_kl)."""
    d, z_symbol = sympy.symbols("d z")
    Y = Gaussian("Y", d, d)
    C = Y / sympy.sqrt(d)
    I = sympy.Identity(d)
    value = trace_limit((z_symbol * I - C).I * (z_symbol * I - C.T).I, {d: d}, {z_symbol: z}, dps=50)
    with mpmath.workdps(70):
        assert close(value, 1 / (mpmath.mpmathify(z) ** 2 - 1))
