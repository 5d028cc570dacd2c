"""Tests of :mod:`pencils.activations` against independent computations.

The closed forms of the named activations are checked against the generic
quadrature applied to the same function passed as a plain callable; the
quadrature itself against nested ``scipy.integrate.quad``, Monte Carlo and
the identities ``c(1) = ||rho||^2``, ``c(0) = mu0^2``, ``c'(0) = mu1^2``.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import scipy.special
from scipy import integrate

from closed_forms import activation_kernel, activation_moments
from pencils import activations, precision
from pencils.activations import Activation, get


def _dispatch(numpy_fn, mpmath_fn):
    """A plain callable that works on numpy arrays and on mpmath numbers (of the calling thread's context)."""

    def function(x):
        return mpmath_fn(x) if hasattr(x, "_mpf_") else numpy_fn(x)

    return function


# The named activations with closed forms, as plain callables written here.
PLAIN = {
    "relu": lambda x: x * (x > 0),
    "abs": abs,
    "erf": _dispatch(scipy.special.erf, precision.Function("erf")),
    "sin": _dispatch(np.sin, precision.Function("sin")),
    "cos": _dispatch(np.cos, precision.Function("cos")),
    "linear": lambda x: x,
}
R_GRID = np.concatenate([np.linspace(-1, 1, 21), [-0.999999, 1e-9, 0.9999]])


def generic(name: str) -> Activation:
    """The named activation without its closed forms, through ``get(callable)``."""
    act = get(PLAIN[name])
    assert act.closed_form is None
    return act


def moments(act: Activation, dps: int | None = None) -> tuple:
    return act.mu0(dps), act.mu1(dps), act.second_moment(dps)


# --------------------------------------------------------------------------
# Closed forms against the generic quadrature
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PLAIN))
def test_closed_forms_match_quadrature_in_float(name):
    closed = get(name)
    assert closed.closed_form is not None
    quadrature = generic(name)
    np.testing.assert_allclose(closed.kernel(R_GRID), quadrature.kernel(R_GRID), atol=1e-12)
    np.testing.assert_allclose(moments(closed), moments(quadrature), atol=1e-12)


@pytest.mark.parametrize(
    ("name", "r"),
    [("relu", "-0.9"), ("relu", "0.3"), ("relu", "0.8"), ("sin", "-0.4"), ("cos", "0.7")],
)
def test_closed_form_kernels_match_quadrature_to_40_digits(name, r):
    closed, quadrature = get(name).kernel(r, dps=50), generic(name).kernel(r, dps=50)
    assert abs(closed - quadrature) < mpmath.mpf(10) ** -40


def test_erf_kernel_matches_quadrature_to_15_digits():
    # mpmath.erf is slow at large arguments: 50 digits would take ~30 s per value.
    assert abs(get("erf").kernel("0.7", dps=20) - generic("erf").kernel("0.7", dps=20)) < 1e-15


@pytest.mark.parametrize("name", ["relu", "erf", "sin", "cos"])
def test_closed_form_moments_match_quadrature_to_25_digits(name):
    for closed, quadrature in zip(moments(get(name), 30), moments(generic(name), 30)):
        assert abs(closed - quadrature) < 1e-25


def test_closed_form_constants():
    """Against the textbook values; the second moments are also the kernels at r = 1."""
    for name in ("relu", "abs", "erf", "sin", "cos", "linear"):
        with mpmath.workdps(40):
            expected = activation_moments(name)
            assert abs(expected[2] - activation_kernel(name, 1)) < 1e-38, name
        for got, want in zip(moments(get(name), 30), expected):
            assert abs(got - want) < 1e-30, name


# --------------------------------------------------------------------------
# The quadrature against independent references
# --------------------------------------------------------------------------


def _nested_scipy_kernel(f, r: float) -> float:
    """``E f(g) f(r g + sqrt(1 - r^2) z)`` by nested adaptive quadrature."""
    s = math.sqrt(1 - r * r)

    def density(x):
        return math.exp(-x * x / 2) / math.sqrt(2 * math.pi)

    def expectation(integrand):
        return integrate.quad(lambda x: integrand(x) * density(x), -np.inf, np.inf, epsabs=1e-14)[0]

    return expectation(lambda x: f(x) * expectation(lambda z: f(r * x + s * z)))


@pytest.mark.parametrize(("name", "r"), [("tanh", 0.7), ("sigmoid", -0.3)])
def test_kernel_matches_nested_scipy_quad(name, r):
    act = get(name)
    assert act.kernel(r) == pytest.approx(_nested_scipy_kernel(act.numpy_fn, r), abs=1e-12)


def test_tanh_monte_carlo():
    n = 1_000_000
    rng = np.random.default_rng(20240607)
    g, h = rng.standard_normal((2, n))
    r = 0.6
    g_prime = r * g + math.sqrt(1 - r * r) * h
    for samples, exact in [(g * np.tanh(g), activations.tanh.mu1()),
                           (np.tanh(g) * np.tanh(g_prime), activations.tanh.kernel(r))]:
        standard_error = samples.std() / math.sqrt(n)
        assert abs(samples.mean() - exact) < 5 * standard_error


def test_monte_carlo_split_of_centred_tanh():
    """shared and private are the covariance and variance of the nonlinear parts."""
    n = 1_000_000
    rng = np.random.default_rng(7)
    g, h = rng.standard_normal((2, n))
    r = 0.36
    g_prime = r * g + math.sqrt(1 - r * r) * h
    act = activations.tanh
    mu0, mu1 = act.mu0(), act.mu1()
    eta, eta_prime = np.tanh(g) - mu0 - mu1 * g, np.tanh(g_prime) - mu0 - mu1 * g_prime
    split = act.correlated_split(r)
    for samples, exact in [(eta * eta_prime, split.shared), (eta * eta, split.total)]:
        assert abs(samples.mean() - exact) < 5 * samples.std() / math.sqrt(n)


# --------------------------------------------------------------------------
# Identities
# --------------------------------------------------------------------------

SMOOTH_AND_KINKED = ["tanh", "sigmoid", "relu-plain", "abs-plain", "cube"]


def _activation(label: str) -> Activation:
    if label == "cube":
        return get(lambda x: x**3)
    if label.endswith("-plain"):
        return generic(label.removesuffix("-plain"))
    return get(label)


@pytest.mark.parametrize("label", SMOOTH_AND_KINKED)
def test_kernel_endpoints_in_float(label):
    act = _activation(label)
    assert act.kernel(1.0) == pytest.approx(act.second_moment(), rel=1e-12)
    assert act.kernel(0.0) == pytest.approx(act.mu0() ** 2, abs=1e-12)
    c = act.kernel(np.linspace(-1, 1, 41))
    assert np.all(np.abs(c) <= act.second_moment() * (1 + 1e-12))  # Cauchy-Schwarz


@pytest.mark.parametrize("label", ["sigmoid", "relu-plain"])
def test_kernel_identities_at_high_precision(label):
    act = _activation(label)
    dps = 16
    with mpmath.workdps(dps + 10):
        tolerance = mpmath.mpf(10) ** (2 - dps)
        assert abs(act.kernel(1, dps=dps) - act.second_moment(dps)) < tolerance
        assert abs(act.kernel(0, dps=dps) - act.mu0(dps) ** 2) < tolerance
        # Central difference: truncation h^2 c^(3)(0)/6, quadrature error 10^-dps / h.
        h = mpmath.mpf("1e-5")
        slope = (act.kernel(h, dps=dps) - act.kernel(-h, dps=dps)) / (2 * h)
        assert abs(slope - act.mu1(dps) ** 2) < 1e-10


@pytest.mark.parametrize("name", ["relu", "erf", "sin", "cos", "abs", "linear", "tanh", "sigmoid"])
def test_split_adds_up(name):
    act = get(name)
    r = np.linspace(-1, 1, 9)
    split = act.correlated_split(r)
    np.testing.assert_allclose(split.shared + split.private, split.total, rtol=0, atol=1e-13)
    assert split.shared[-1] == pytest.approx(split.total, abs=1e-13)  # r = 1: all shared
    assert split.shared[4] == pytest.approx(0, abs=1e-13)  # r = 0: all private
    assert split.private[-1] == pytest.approx(0, abs=1e-13)


@pytest.mark.parametrize("name", ["relu", "erf", "sigmoid"])
def test_split_adds_up_at_high_precision(name):
    split = get(name).correlated_split("0.3", dps=15)
    assert all(isinstance(value, mpmath.mpf) for value in split)
    assert abs(split.shared + split.private - split.total) < 1e-15


def test_split_of_relu_at_diffusion_time():
    t = 0.4
    r = math.exp(-2 * t)
    split = activations.relu.correlated_split(r)
    c = float(activation_kernel("relu", r))
    assert split.shared == pytest.approx(c - 1 / (2 * math.pi) - r / 4, abs=1e-15)
    assert split.private == pytest.approx(0.5 - c - (1 - r) / 4, abs=1e-15)
    assert split.total == pytest.approx(0.25 - 1 / (2 * math.pi), abs=1e-15)


# --------------------------------------------------------------------------
# Interface
# --------------------------------------------------------------------------


def test_shapes_and_types():
    act = activations.tanh
    assert isinstance(act.kernel(0.5), float)
    assert isinstance(act.mu1(), float)
    r = np.array([[0.1, -0.2, 0.3], [0.4, 0.5, -1.0]])
    c = act.kernel(r)
    assert c.shape == r.shape
    np.testing.assert_allclose(c.ravel(), [act.kernel(x) for x in r.ravel()], rtol=0, atol=1e-13)
    assert act.kernel(np.array([])).shape == (0,)
    assert isinstance(activations.relu.kernel("0.5", dps=15), mpmath.mpf)
    np.testing.assert_array_equal(act(np.array([0.0, 1.0])), np.tanh([0.0, 1.0]))


def test_get():
    assert get("ReLU") is activations.relu
    assert get(" identity ") is activations.linear
    assert get(activations.erf) is activations.erf
    assert get("abs") is activations.absolute
    assert set(activations.REGISTRY) >= {"relu", "erf", "sin", "cos", "linear", "tanh"}


def test_correlation_out_of_range():
    for r in (1.5, -1.0000001, np.nan, [0.2, 1.2]):
        with pytest.raises(ValueError, match=r"\[-1, 1\]"):
            activations.relu.kernel(r)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        activations.tanh.correlated_split(2.0)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        activations.tanh.kernel("1.00000000000000000001", dps=30)


def test_unknown_name():
    with pytest.raises(ValueError, match="unknown activation 'swish'.*relu.*tanh"):
        get("swish")


def test_not_callable():
    with pytest.raises(TypeError, match="name, an Activation or a callable"):
        get(3.5)


def test_callable_that_rejects_mpmath():
    with pytest.raises(TypeError, match="pass an Activation with separate numpy and mpmath"):
        get(np.tanh)
    with pytest.raises(TypeError, match="mpmath"):
        get(lambda x: np.float64(x) ** 2)  # silently drops to float precision
    with pytest.raises(TypeError, match="numpy array"):
        get(mpmath.tanh)


def test_callable_computing_in_the_global_context_is_refused():
    """``mpmath.erf`` computes at the caller's ``mpmath.mp.dps``, not at the digits requested."""
    with pytest.raises(TypeError, match="global mpmath context"):
        get(_dispatch(scipy.special.erf, mpmath.erf))


def test_bad_dps():
    with pytest.raises(TypeError, match="dps"):
        activations.relu.mu0(dps=2.5)
    with pytest.raises(ValueError, match="dps"):
        activations.relu.kernel(0.5, dps=0)
    with pytest.raises(TypeError, match="scalar"):
        activations.relu.kernel([0.1, 0.2], dps=20)


def test_kink_away_from_zero_warns():
    hardtanh = Activation("hardtanh", lambda x: np.clip(x, -1, 1), lambda x: min(max(x, -1), 1))
    with pytest.warns(RuntimeWarning, match="hardtanh did not converge"):
        hardtanh.kernel(0.5)


# --------------------------------------------------------------------------
# The split without cancellation, at diffusion times from 1e-12 to 100
# --------------------------------------------------------------------------

TIMES = [1e-12, 1e-8, 1e-3, 1.0, 10.0, 30.0, 100.0]


def _split_by_subtraction(name: str, t: float) -> tuple:
    """``c(r) - mu0^2 - r mu1^2`` and ``||rho||^2 - c(r) - q mu1^2`` at r = exp(-2t), q = 1 - r,
    from the textbook closed forms evaluated at 400 digits, where the subtraction is harmless."""
    with mpmath.workdps(400):
        t = mpmath.mpf(t)
        r, q = mpmath.exp(-2 * t), -mpmath.expm1(-2 * t)
        c, (mu0, mu1, second) = activation_kernel(name, r), activation_moments(name)
        return c - mu0**2 - r * mu1**2, second - c - q * mu1**2


@pytest.mark.parametrize("name", ["relu", "abs", "erf", "sin", "cos"])
def test_split_has_full_relative_accuracy_at_every_time(name):
    """Against the defining subtractions at 400 digits: float to 1e-14 (measured <= 3.2e-15), dps=50 to 48 digits."""
    act = get(name)
    t = np.array(TIMES)
    split = act.correlated_split(np.exp(-2 * t), complement=-np.expm1(-2 * t))
    for k, time in enumerate(TIMES):
        shared, private = _split_by_subtraction(name, time)
        assert float(abs(split.shared[k] - shared) / shared) < 1e-14
        assert float(abs(split.private[k] - private) / private) < 1e-14
        with mpmath.workdps(80):
            r, q = mpmath.exp(-2 * mpmath.mpf(time)), -mpmath.expm1(-2 * mpmath.mpf(time))
        precise = act.correlated_split(r, dps=50, complement=q)
        assert abs(precise.shared - shared) / shared < 1e-48
        assert abs(precise.private - private) / private < 1e-48


def test_split_of_a_linear_activation_is_exactly_zero():
    split = activations.linear.correlated_split(np.array([0.0, 0.5, 1.0]), complement=np.array([1.0, 0.5, 0.0]))
    assert not np.any(split.shared) and not np.any(split.private)


@pytest.mark.parametrize(
    ("name", "time"),
    [pytest.param("tanh", 1e-8, marks=pytest.mark.slow), ("sigmoid", 1e-8)]  # tanh: 20 s (28 digits), sigmoid: 10 s
    + [(name, time) for name in ("tanh", "sigmoid") for time in (1e-3, 1.0, 30.0)],
)
def test_split_by_hermite_series_against_subtraction_at_raised_precision(name, time):
    """Float: the Hermite series of 256 quadrature coefficients.  dps=20: the private part by the
    subtraction of polar-quadrature kernels at 20 + log10(1/q) digits, an independent method."""
    act = get(name)
    split = act.correlated_split(math.exp(-2 * time), complement=-math.expm1(-2 * time))
    with mpmath.workdps(40):
        r, q = mpmath.exp(-2 * mpmath.mpf(time)), -mpmath.expm1(-2 * mpmath.mpf(time))
    precise = act.correlated_split(r, dps=20, complement=q)
    assert abs(split.shared - precise.shared) / precise.shared < 1e-14
    assert abs(split.private - precise.private) / precise.private < 1e-14


def test_complement_must_match_the_correlation():
    with pytest.raises(ValueError, match="complement"):
        activations.relu.correlated_split(0.5, complement=0.4)


# --------------------------------------------------------------------------
# Inputs of any variance
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name, variance", [(name, variance) for name in ["relu", "abs", "erf", "sin", "cos", "linear"]
                                            for variance in [0.25, 3.0]] + [("tanh", 0.25)])
def test_at_variance_against_quadrature_of_the_scaled_function(name, variance):
    """Closed forms at variance v against scipy.integrate.quad of rho(sqrt(v) g) (moments) and against
    the generic polar quadrature of the scaled function passed as a plain callable (kernel and split)."""
    base = get(name)
    act = base.at_variance(variance)
    assert (act.closed_form is None) == (base.closed_form is None)
    scale = math.sqrt(variance)
    rho = lambda x: base.numpy_fn(scale * np.asarray(x, dtype=float))  # noqa: E731
    density = lambda g: math.exp(-g * g / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    for value, weight in [(act.mu0(), lambda g: 1.0), (act.mu1(), lambda g: g), (act.second_moment(), None)]:
        integrand = (lambda g: float(rho(g)) ** 2 * density(g)) if weight is None else (
            lambda g, weight=weight: weight(g) * float(rho(g)) * density(g))
        reference = sum(integrate.quad(integrand, a, b, epsabs=1e-14, epsrel=1e-13)[0]
                        for a, b in [(-np.inf, 0), (0, np.inf)])
        assert value == pytest.approx(reference, rel=1e-11, abs=1e-13)
    plain = Activation("plain", rho, lambda x: base.mpmath_fn(precision.context().sqrt(variance) * x))
    r = np.array([0.0, 0.3, 0.9, 1.0])
    np.testing.assert_allclose(act.kernel(r), plain.kernel(r), rtol=1e-12, atol=1e-13)
    split, reference = act.correlated_split(r), plain.correlated_split(r)
    np.testing.assert_allclose(split.shared, reference.shared, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(split.private, reference.private, rtol=1e-10, atol=1e-14)


def test_at_variance_at_high_precision_and_refusals():
    """erf at v = 1/2: b = 1/2, so c(r) = (2/pi) asin(r/2), c(1) = 1/3 exactly."""
    act = activations.erf.at_variance("0.5")
    second, mu1 = act.second_moment(dps=40), act.mu1(dps=40)
    with mpmath.workdps(60):
        assert abs(second - mpmath.mpf(1) / 3) < mpmath.mpf(10) ** -39
        assert abs(mu1 - 1 / mpmath.sqrt(mpmath.pi)) < mpmath.mpf(10) ** -39
    from pencils.errors import ParameterError

    for bad in (0, -1.0, math.inf, math.nan, "one"):
        with pytest.raises(ParameterError, match="variance"):
            activations.relu.at_variance(bad)
