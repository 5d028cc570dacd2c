"""Functions of random matrices (MatrixFunction) and gradient-flow least squares, against quadrature and closed forms."""

import logging
import re

import mpmath
import numpy as np
import pytest
import sympy
from sympy.codegen.cfunctions import expm1

from closed_forms import marchenko_pastur_integral
from pencils import Gaussian, MatrixFunction, limit
from pencils.errors import ParameterError
from pencils.models import linear_regression

n, d, m, x, t, gamma = sympy.symbols("n d m x t gamma")
X, Y = Gaussian("X", n, d), Gaussian("Y", m, d)
S, S2 = X.T * X / n, Y.T * Y / m
DECAY = sympy.Lambda(x, sympy.exp(-t * x))


def marchenko_pastur_integral_30_digits(function, ratio):
    """The integral of ``function`` (on mpmath numbers) against the Marchenko-Pastur law of ratio d/n, at 30 digits."""
    with mpmath.workdps(30):
        return float(marchenko_pastur_integral(function, ratio))


@pytest.mark.parametrize("ratio", [0.5, 2.0])
def test_exponential_against_quadrature_for_many_times(ratio):
    times = np.array([0.1, 1.0, 4.0, 20.0])
    values = limit(sympy.Trace(MatrixFunction(DECAY, S)) / d, {d: d, n: d / gamma}, {gamma: ratio, t: times})
    expected = [marchenko_pastur_integral_30_digits(lambda y: mpmath.exp(-time * y), ratio) for time in times]
    np.testing.assert_allclose(values, expected, rtol=1e-13, atol=1e-15)


def test_exponential_to_30_digits():
    value = limit(sympy.Trace(MatrixFunction(DECAY, S)) / d, {d: d, n: d / gamma},
                  {gamma: sympy.Rational(1, 2), t: 1}, dps=30)
    with mpmath.workdps(40):
        expected = marchenko_pastur_integral(lambda y: mpmath.exp(-y), mpmath.mpf(1) / 2)
        assert abs(value - expected) < mpmath.mpf(10) ** -28


def test_two_occurrences_to_30_digits_on_few_nodes(caplog):
    """tr f(S) f(S)/d = tr e^{-2tS}/d at dps=30, two occurrences on the ellipse chosen in arbitrary precision, against
    40-digit quadrature of the closed-form density (30-digit rounding of the result: 1e-28).  At t = 4, e^{-4z} grows by
    e^{30} on the widest ellipse (rho = 2), with which the integral stopped at 256 nodes per contour (a grid of about
    16,000 solves); the chosen contour stops at 96 (measured), and at fewer than 128 is required."""
    with caplog.at_level(logging.DEBUG, logger="pencils.functions"):
        value = limit(sympy.Trace(MatrixFunction(DECAY, S) ** 2) / d, {d: d, n: 2 * d}, {t: 4}, dps=30)
    with mpmath.workdps(40):
        expected = marchenko_pastur_integral(lambda y: mpmath.exp(-8 * y), mpmath.mpf(1) / 2)
        assert abs(value - expected) < mpmath.mpf(10) ** -28
    stops = [int(m) for m in re.findall(r"2 occurrence\(s\) on .*: stopped at N = (\d+)", caplog.text)]
    assert stops and max(stops) < 128


def test_two_occurrences_of_free_matrices_factorise():
    """Independent Wisharts are asymptotically free: tr(f(S1) g(S2))/d -> (tr f(S1)/d)(tr g(S2)/d).
    Two occurrences: a tensor grid of two contours, each around its own spectrum."""
    resolvent_like = sympy.Lambda(x, 1 / (1 + x))
    both = limit(sympy.Trace(MatrixFunction(DECAY, S) * MatrixFunction(resolvent_like, S2)) / d,
                 {d: d, n: 2 * d, m: 4 * d}, {t: np.array([0.5, 2.0])})
    first = [marchenko_pastur_integral_30_digits(lambda y: mpmath.exp(-time * y), 0.5) for time in (0.5, 2.0)]
    second = marchenko_pastur_integral_30_digits(lambda y: 1 / (1 + y), 0.25)
    np.testing.assert_allclose(both, np.array(first) * second, rtol=1e-10)


def test_two_occurrences_of_one_matrix_multiply():
    """tr(f(S) S g(S)) with two occurrences equals the one-occurrence tr((x f g)(S))."""
    other = sympy.Lambda(x, sympy.cos(x))
    dims = {d: d, n: 2 * d}
    two = limit(sympy.Trace(MatrixFunction(DECAY, S) * S * MatrixFunction(other, S)) / d, dims, {t: 1.5})
    expected = marchenko_pastur_integral_30_digits(lambda y: y * mpmath.exp(-1.5 * y) * mpmath.cos(y), 0.5)
    assert abs(two - expected) < 1e-11


def test_square_of_a_function_is_two_occurrences():
    """SymPy writes f(S) f(S) as the power f(S)^2: two occurrences (it was read as one resolvent squared)."""
    square = MatrixFunction(DECAY, S) * MatrixFunction(DECAY, S)
    assert isinstance(square, sympy.MatPow)
    value = limit(sympy.Trace(square) / d, {d: d, n: 2 * d}, {t: 1.0})
    assert abs(value - marchenko_pastur_integral(lambda y: mpmath.exp(-2 * y), 0.5)) < 1e-12


@pytest.mark.slow
def test_atom_next_to_a_bulk_inside_one_ellipse():
    """At d/n = 1.75 the Wishart S has an atom of mass 1 - 1/1.75 at 0, 0.039 half-widths below its bulk
    [0.104, 5.40]: outside the reach of the bulk's own contour, so near that contours around the parts would be
    squeezed between them.  The gradient-flow filter g (pole at -lam removable) and exp(-tx) have no poles: at
    t = 0.5 and 5 one ellipse encloses the atom and the bulk (t = 50, beyond LONG_TIME, goes on a hyperbola and
    a circle around the atom).  One and two occurrences (tr g(S)^2 and tr g(S) S g(S), a 2-D grid)
    against the quadrature of the Marchenko-Pastur density plus the atom, at 30 digits, to 1e-11 relative: ten
    times the change between successive node counts at which the contour integral stops (1e-12 relative)."""
    lam, times = 1e-2, np.array([0.5, 5.0, 50.0])
    filter_ = sympy.Lambda(x, -expm1(-t * (x + lam)) / (x + lam))
    dims, subs, ratio = {d: d, n: d / gamma}, {gamma: 1.75, t: times}, mpmath.mpf(7) / 4
    g = MatrixFunction(filter_, S)
    one = limit(sympy.Trace(MatrixFunction(DECAY, S)) / d, dims, subs)
    square = limit(sympy.Trace(g * g) / d, dims, subs)
    sandwich = limit(sympy.Trace(g * S * g) / d, dims, subs)
    for k, time in enumerate(times):
        for value, function in ((one, lambda y: mpmath.exp(-time * y)), (square, lambda y: flow(y, time, lam) ** 2),
                                (sandwich, lambda y: y * flow(y, time, lam) ** 2)):
            expected = marchenko_pastur_integral_30_digits(function, ratio)
            assert abs(value[k] - expected) < 1e-11 * (1 + abs(expected))


@pytest.mark.parametrize("dps", [None, 30])
def test_contour_grids_are_read_back_from_disk(dps, tmp_path, monkeypatch):
    """The solved grid of resolvent traces goes to the disk cache: with the process's memory of it cleared (as
    in a new process) the grid is read, not solved, and gives identical values; another value of a parameter of
    the matrix (not of the function) is another grid."""
    from pencils import functions

    monkeypatch.setenv("PENCILS_CACHE_DIR", str(tmp_path))
    quantity, dims = sympy.Trace(MatrixFunction(DECAY, S)) / d, {d: d, n: d / gamma}
    exact = (lambda number: sympy.nsimplify(number)) if dps else float
    values = {gamma: exact(0.5), t: np.array([0.5, 2.0])}
    functions._grid.cache_clear()
    first = limit(quantity, dims, values, dps=dps)
    assert list(tmp_path.glob("contour_grid-*.json"))
    solves = []
    solve = functions._solve_grid
    monkeypatch.setattr(functions, "_solve_grid", lambda *arguments: solves.append(1) or solve(*arguments))
    functions._grid.cache_clear()
    again = limit(quantity, dims, {**values, t: np.array([0.5, 2.0])}, dps=dps)
    assert solves == [] and all(a == b for a, b in zip(first, again))
    other = limit(quantity, dims, {**values, gamma: exact(0.4)}, dps=dps)
    assert solves and all(a != b for a, b in zip(first, other))
    functions._grid.cache_clear()


def test_bad_input():
    with pytest.raises(ParameterError, match="Lambda"):
        MatrixFunction(sympy.exp(-x), S)
    with pytest.raises(ParameterError, match="may be arrays"):
        limit(sympy.Trace(MatrixFunction(DECAY, S)) / d, {d: d, n: d / gamma}, {gamma: np.array([0.5, 2.0]), t: 1.0})


# --------------------------------------------------------------------------- gradient flow


def flow(y, time, lam):
    return -mpmath.expm1(-time * (y + lam)) / (y + lam)


@pytest.mark.parametrize("psi_n, lam", [(2.0, 0.0), (0.5, 0.0), (0.5, 0.1)])
def test_gradient_flow_against_quadrature(psi_n, lam):
    times = np.array([0.5, 2.0, 10.0])
    signal, noise = 1.3, 0.4
    result = linear_regression.gradient_flow(psi_n, times, lam=lam, signal=signal, noise=noise)
    ratio = 1 / psi_n
    for k, time in enumerate(times):
        F = lambda y: flow(y, time, lam) if y != 0 or lam else time  # noqa: E731  (F(0) = t without a ridge)
        bias = signal * marchenko_pastur_integral_30_digits(lambda y: (1 - y * F(y)) ** 2, ratio)
        variance = noise * ratio * marchenko_pastur_integral_30_digits(lambda y: y * F(y) ** 2, ratio)
        train = signal * marchenko_pastur_integral_30_digits(lambda y: y * (1 - y * F(y)) ** 2, ratio) + noise * (
            1 - ratio * marchenko_pastur_integral_30_digits(lambda y: 2 * y * F(y) - (y * F(y)) ** 2, ratio))
        assert abs(result.bias[k] - bias) < 1e-11
        assert abs(result.variance[k] - variance) < 1e-11
        assert abs(result.test[k] - (bias + variance + noise)) < 1e-11
        assert abs(result.train[k] - train) < 1e-11


def test_gradient_flow_to_30_digits():
    result = linear_regression.gradient_flow(2.0, [1], dps=30, signal=1, noise=sympy.Rational(1, 4))
    with mpmath.workdps(45):
        ratio = mpmath.mpf(1) / 2
        lower, upper = (1 - mpmath.sqrt(ratio)) ** 2, (1 + mpmath.sqrt(ratio)) ** 2

        def integral(function):
            return mpmath.quad(lambda y: function(y) * mpmath.sqrt((upper - y) * (y - lower))
                               / (2 * mpmath.pi * ratio * y), [lower, upper])

        bias = integral(lambda y: mpmath.exp(-2 * y))  # (1 - y F(y))^2 = e^{-2ty} at t = 1, no ridge
        variance = ratio / 4 * integral(lambda y: (-mpmath.expm1(-y)) ** 2 / y)
        assert abs(result.bias[0] - bias) < mpmath.mpf(10) ** -28
        assert abs(result.variance[0] - variance) < mpmath.mpf(10) ** -28
        assert abs(result.test[0] - (bias + variance + mpmath.mpf(1) / 4)) < mpmath.mpf(10) ** -28


@pytest.mark.parametrize("psi_n", [4.0, 0.25])
def test_long_training_reaches_the_minimum_norm_least_squares(psi_n):
    """t -> inf without a ridge: least squares (n > d), test sigma^2/(1 - d/n); the minimum-norm
    interpolator (n < d), bias r^2 (1 - n/d) and variance sigma^2/(d/n - 1) (Hastie et al. 2019).
    e^{-t lower edge} < 1e-20 at the time used."""
    signal, noise = 1.0, 0.3
    ratio = 1 / psi_n
    lower = (1 - np.sqrt(ratio)) ** 2
    time = 50 / lower
    result = linear_regression.gradient_flow(psi_n, time, signal=signal, noise=noise)
    if ratio < 1:
        assert abs(result.test - noise / (1 - ratio)) < 1e-11 and abs(result.bias) < 1e-11
    else:
        assert abs(result.bias - signal * (1 - 1 / ratio)) < 1e-11
        assert abs(result.variance - noise / (ratio - 1)) < 1e-11
        assert abs(result.train) < 1e-11


# --------------------------------------------------------------------------- long times: the hyperbolic contour


#: Marchenko-Pastur ratio d/n = 0.9: lower edge (1 - sqrt(0.9))^2 = 0.0026, so that e^{-tau x} still matters on
#: the spectrum at tau = 1e4 (e^{-26}), where an ellipse around it would need of order tau (b - a) = 4e4 nodes.
LONG_RATIO = sympy.Rational(9, 10)
LONG_TIMES = np.array([1.0, 30.0, 300.0, 3e3, 1e4])
TINY_RIDGE = sympy.Rational(1, 10**8)
RIDGE, TIME = sympy.symbols("lambda tau")
GRADIENT_FLOW = -expm1(-TIME * (x + RIDGE)) / (x + RIDGE)


def marchenko_pastur_long_time(function, time, digits):
    """The integral of ``function`` against the Marchenko-Pastur law of ratio LONG_RATIO (no atom), by
    tanh-sinh quadrature split at lower edge + 10^k / time, where e^{-time x} varies."""
    with mpmath.workdps(digits):
        ratio = mpmath.mpf(LONG_RATIO.p) / LONG_RATIO.q
        lower, upper = (1 - mpmath.sqrt(ratio)) ** 2, (1 + mpmath.sqrt(ratio)) ** 2
        points = [lower] + [lower + mpmath.mpf(10) ** k / time for k in range(8) if lower + mpmath.mpf(10) ** k / time < upper]
        return mpmath.quad(lambda y: function(y) * mpmath.sqrt((upper - y) * (y - lower)) / (2 * mpmath.pi * ratio * y),
                           points + [upper])


def long_flow(y, time):
    ridge = mpmath.mpf(TINY_RIDGE.p) / TINY_RIDGE.q
    return -mpmath.expm1(-time * (y + ridge)) / (y + ridge)


@pytest.mark.parametrize("name, expression, reference", [
    ("flow", GRADIENT_FLOW, long_flow),
    ("variance", x * GRADIENT_FLOW**2, lambda y, time: y * long_flow(y, time) ** 2),
    ("train", 2 * x * GRADIENT_FLOW - x**2 * GRADIENT_FLOW**2,  # rational part not O(1/z): the outer circle
     lambda y, time: 2 * y * long_flow(y, time) - (y * long_flow(y, time)) ** 2),
])
def test_long_times_against_quadrature(name, expression, reference):
    """Gradient-flow functions up to tau = 1e4 with a ridge 1e-8: the exponential part on the hyperbola, the
    rational part around its pole; one call mixes a short time (ellipse) with long ones."""
    dims = {d: d, n: d / LONG_RATIO}
    values = limit(sympy.Trace(MatrixFunction(sympy.Lambda(x, expression), S)) / d, dims,
                   {TIME: LONG_TIMES, RIDGE: float(TINY_RIDGE)})
    expected = [float(marchenko_pastur_long_time(lambda y: reference(y, time), time, 30)) for time in LONG_TIMES]
    np.testing.assert_allclose(values, expected, rtol=1e-12, atol=1e-12)


def test_long_times_with_two_occurrences():
    """tr(g(S) g(S)) as two occurrences (a grid of two hyperbolas, with the exchange symmetry) equals tr(g^2)."""
    g = MatrixFunction(sympy.Lambda(x, GRADIENT_FLOW), S)
    values = limit(sympy.Trace(g * g) / d, {d: d, n: d / LONG_RATIO}, {TIME: LONG_TIMES[3:4], RIDGE: float(TINY_RIDGE)})
    expected = [float(marchenko_pastur_long_time(lambda y: long_flow(y, time) ** 2, time, 30)) for time in LONG_TIMES[3:4]]
    np.testing.assert_allclose(values, expected, rtol=1e-12)


def test_long_times_to_30_digits():
    value = limit(sympy.Trace(MatrixFunction(sympy.Lambda(x, GRADIENT_FLOW), S)) / d, {d: d, n: d / LONG_RATIO},
                  {TIME: 10**4, RIDGE: TINY_RIDGE}, dps=30)
    expected = marchenko_pastur_long_time(lambda y: long_flow(y, 10**4), 10**4, 50)
    assert abs(value - expected) < mpmath.mpf(10) ** -29
