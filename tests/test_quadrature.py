"""pencils.quadrature against independent references: exact integrals of polynomials and of the Gaussian
moments (Gamma functions) at 50 digits, numpy's Hermite_e polynomials, and Mehler's formula for sin."""

import math

import mpmath
import numpy as np
import pytest

from closed_forms import activation_kernel
from pencils import precision, quadrature


@pytest.mark.parametrize("size", [5, 16, 45])
def test_float_legendre_integrates_polynomials_of_degree_below_twice_its_size(size):
    """int_a^b x^k dx = (b^{k+1} - a^{k+1})/(k+1) on [-0.5, 2], to 1e-13 relative, for k < 2 size."""
    x, w = quadrature.gauss_legendre(size, -0.5, 2.0)
    assert np.all(np.diff(x) > 0) and -0.5 < x[0] and x[-1] < 2.0 and np.all(w > 0)
    for k in range(2 * size):
        exact = (2.0 ** (k + 1) - (-0.5) ** (k + 1)) / (k + 1)
        assert w @ x**k == pytest.approx(exact, rel=1e-13)


def test_float_legendre_agrees_with_scipy():
    import scipy.special

    nodes, weights = scipy.special.roots_legendre(64)
    x, w = quadrature.gauss_legendre(64, -1.0, 1.0)
    np.testing.assert_allclose(x, nodes, atol=2e-15)
    np.testing.assert_allclose(w, weights, rtol=1e-10, atol=1e-15)  # scipy's outer weights: ~5e-11 relative


@pytest.mark.parametrize("size", [8, 23])
def test_legendre_at_50_digits(size):
    """The highest degree a rule integrates exactly, x^{2n-1} on [0, 3], to 48 digits; the mpmath
    numbers are of the thread's context."""
    with precision.digits(60) as context:
        x, w = quadrature.gauss_legendre(size, 0, 3, dps=60)
        assert hasattr(x[0], "_mpf_") and not isinstance(x[0], mpmath.mpf)
        k = 2 * size - 1
        exact = context.mpf(3) ** (k + 1) / (k + 1)
        assert abs(context.fsum(w * x**k) - exact) / exact < context.mpf(10) ** -48


@pytest.mark.parametrize("power", [0, 1])
@pytest.mark.parametrize("dps", [None, 50])
def test_half_range_rules_integrate_the_gaussian_moments(power, dps):
    """int_0^inf x^{k+p} e^{-x^2/2} dx = 2^{(k+p-1)/2} Gamma((k+p+1)/2) for k < 2 size."""
    size = 11
    with precision.digits(dps or 15) as context:
        x, w = quadrature.half_range_gauss(power, size, dps=dps)
        tolerance = 1e-13 if dps is None else mpmath.mpf(10) ** -(dps - 2)
        for k in range(2 * size):
            with mpmath.workdps(60):
                exact = 2 ** (mpmath.mpf(k + power - 1) / 2) * mpmath.gamma(mpmath.mpf(k + power + 1) / 2)
            value = sum(w * x**k) if dps is not None else float(w @ x**k)
            assert abs(value - exact) / exact < tolerance


def test_half_range_refuses_other_powers():
    with pytest.raises(ValueError, match="power"):
        quadrature.half_range_gauss(2, 8)


def test_hermite_functions_are_numpys_hermite_e_polynomials_normalised():
    x = np.linspace(-4, 4, 17)
    for k, values in enumerate(quadrature.hermite_functions(x, 12)):
        coefficients = np.zeros(k + 1)
        coefficients[k] = 1 / math.sqrt(math.factorial(k))
        np.testing.assert_allclose(values, np.polynomial.hermite_e.hermeval(x, coefficients), rtol=1e-12, atol=1e-12)


def test_hermite_functions_in_mpmath_are_orthonormal():
    """Under N(0, 1): Gauss-Hermite (probabilists') nodes of mpmath at 40 digits, exact for the degrees used."""
    with precision.digits(40) as context:
        nodes, weights = zip(*[(context.sqrt(2) * t, w / context.sqrt(context.pi))
                               for t, w in zip(*context.gauss_quadrature(20, "hermite"))])
        x, w = np.array(nodes, dtype=object), np.array(weights, dtype=object)
        functions = list(quadrature.hermite_functions(x, 8, context.sqrt))
        for j in range(8):
            for k in range(8):
                assert abs(context.fsum(w * functions[j] * functions[k]) - (j == k)) < 1e-35


def test_mehler_series_of_sin_is_its_kernel():
    """sin(x) = sum_k a_k he_k(x) with a_k^2 = e^{-1}/k! for odd k (0 for even): sum a_k^2 r^k = e^{-1} sinh r,
    elementwise on an array of correlations."""
    r = np.linspace(-1, 1, 9)
    squares = [math.exp(-1) / math.factorial(k) if k % 2 else 0.0 for k in range(40)]
    expected = [float(activation_kernel("sin", value)) for value in r]
    np.testing.assert_allclose(quadrature.mehler_series(squares, r), expected, rtol=1e-15, atol=1e-16)
    with_first = quadrature.mehler_series(squares[3:], r, first=3)  # from k = 3: sinh r - r
    np.testing.assert_allclose(with_first, np.array(expected) - math.exp(-1) * r, atol=1e-16)
