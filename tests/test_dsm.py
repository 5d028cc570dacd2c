"""The DSM model: internal consistency (m = 1 is random-features regression, m -> infinity, optimum)."""

import math

import mpmath
import numpy as np
import pytest

from pencils.errors import ParameterError
from pencils import limit
from pencils.models import dsm, random_features


@pytest.mark.parametrize("psi_n, psi_p, t, lam", [(2.0, 1.0, 0.5, 1e-2), (1.0, 3.0, 0.1, 1e-3), (4.0, 0.5, 1.0, 0.1)])
def test_m_equal_one_is_random_features_regression(psi_n, psi_p, t, lam):
    """docs/dsm.md: regress z on x_t, signal h, label noise a^2, ridge lam/psi_p; two separate derivations.

    In floats each error is a sum of traces of order one, each accurate to about the
    solver's 1e-12 relative residual; so the errors agree to 1e-11 in absolute terms
    (the train error at p > n with a small ridge is 1e-5: its relative error is larger)
    and the test error, of order one, to 1e-9 relative.  The slow test below checks 28 digits.
    """
    result = dsm.errors(psi_n, psi_p, t, lam, m=1)
    a2 = math.exp(-2 * t)
    reference = random_features.errors(psi_n, psi_p, lam / psi_p, signal=1 - a2, noise=a2)
    assert abs(result.test - reference.test) < 1e-9 * reference.test
    assert abs(result.train - reference.train) < 1e-11


@pytest.mark.parametrize("t, lam", [(0.01, 1e-3), (0.01, 1.0), (1.0, 1e-3), (1.0, 1.0)])
def test_infinite_m_from_one_resolvent_equals_the_direct_form(t, lam):
    """dsm.errors uses one resolvent trace and its derivatives; the direct form (docs/dsm.md formulas,
    traces of products of two resolvents) is a different pencil.

    Both are solved to a relative residual of 1e-12 or better; measured agreement 4e-12.
    """
    psi_n, psi_p = np.meshgrid([0.5, 20.0], [0.3, 20.0, 80.0])
    direct = dsm.quantities(finite_m=False, direct=True)
    test, train = limit([direct["test"], direct["train"]], dsm.dims, dsm.substitutions(psi_n, psi_p, t, lam))
    result = dsm.errors(psi_n, psi_p, t, lam)
    assert np.allclose(result.test, test, rtol=2e-11, atol=0)
    assert np.allclose(result.train, train, rtol=2e-11, atol=0)


def test_infinite_m_from_one_resolvent_equals_the_direct_form_to_28_digits():
    subs = dsm.substitutions(20.0, 30.0, 0.01, "0.001", dps=30)
    direct = dsm.quantities(finite_m=False, direct=True)
    test, train = limit([direct["test"], direct["train"]], dsm.dims, subs, dps=30)
    result = dsm.errors(20.0, 30.0, 0.01, "0.001", dps=30)
    with mpmath.workdps(40):
        assert abs(result.test - test) < mpmath.mpf(10) ** -28
        assert abs(result.train - train) < mpmath.mpf(10) ** -28


@pytest.mark.slow
def test_m_equal_one_is_random_features_regression_to_28_digits():
    psi_n, psi_p, t, lam = 2.0, 1.0, 0.5, 1e-2
    result = dsm.errors(psi_n, psi_p, t, lam, m=1, dps=30)
    with mpmath.workdps(50):
        a2 = mpmath.exp(-2 * mpmath.mpf(t))
        signal, ridge = 1 - a2, mpmath.mpf(lam) / mpmath.mpf(psi_p)
    reference = random_features.errors(psi_n, psi_p, ridge, signal=signal, noise=a2, dps=30)
    with mpmath.workdps(40):
        assert abs(result.test - reference.test) < mpmath.mpf(10) ** -28
        assert abs(result.train - reference.train) < mpmath.mpf(10) ** -28


@pytest.mark.parametrize("psi_n, psi_p, t, lam", [(0.5, 4.0, 1.0, 1e-6), (2.0, 1.0, 0.5, 1e-9)])
def test_m_equal_one_at_a_tiny_ridge_is_random_features_regression(psi_n, psi_p, t, lam):
    """A tiny ridge: p > n (the dual form, continued in the ridge) and p < n (the primal form).

    The reference is random-features regression in 30 digits (its float solution is
    ill-conditioned there), so the DSM floats must be right to rounding: 1e-12 relative
    on the test error; the train error (2e-13 at p > n, the interpolating regime) to 1e-10
    relative.
    """
    result = dsm.errors(psi_n, psi_p, t, lam, m=1)
    a2 = math.exp(-2 * t)
    reference = random_features.errors(psi_n, psi_p, lam / psi_p, signal=1 - a2, noise=a2, dps=30)
    assert abs(result.test - float(reference.test)) < 1e-12 * float(reference.test)
    assert abs(result.train - float(reference.train)) < 1e-10 * float(reference.train)


@pytest.mark.parametrize("m", [1.0, 2.5, 4.0])
def test_primal_and_dual_forms_agree_where_both_are_well_conditioned(m):
    """p > n m with a moderate ridge: the test error from the p x p and from the nm x nm (block)
    form of the estimator are two derivations of the same number; both are well conditioned, so
    they agree to rounding.  (The default train error is the same expression in both forms; it is
    checked against the two-resolvent forms below.)"""
    psi_n, t = 1.0, 0.2
    psi_p = np.array([1.5, 4.0]) * m
    lam = np.array([[1e-2], [1e-1]])
    subs = dsm.substitutions(psi_n, psi_p, t, lam, m)
    primal, dual = dsm.quantities(finite_m=True), dsm.quantities(finite_m=True, dual=True)
    np.testing.assert_allclose(limit(dual["test"], dsm.dims, subs), limit(primal["test"], dsm.dims, subs), rtol=1e-10)


@pytest.mark.parametrize("dual", [False, True])
@pytest.mark.parametrize("m", [1.0, 2.5, 4.0])
def test_finite_m_from_one_resolvent_equals_the_two_resolvent_form(m, dual):
    """The default finite-m errors (one trace and its derivatives in the tilt, the scale and the
    ridge) against the errors written directly with two resolvents (different pencils: 106 and 195
    unknowns, or 90 and 48 in the dual form), each form where dsm.errors uses it (p <= n m primal,
    p > n m dual), over t, lam and psi_n.  Both are solved to a relative residual of 1e-12;
    measured agreement about 1e-14."""
    psi_n = np.array([0.3, 1.0, 3.0])[:, None, None, None]
    ratio = (np.array([1.5, 5.0]) if dual else np.array([0.2, 0.8]))[:, None, None]  # p / (n m)
    t = np.array([0.01, 1.0])[:, None]
    lam = np.array([1e-3, 0.3])
    subs = dsm.substitutions(psi_n, psi_n * m * ratio, t, lam, m)
    new, direct = dsm.quantities(True, dual), dsm.quantities(True, dual, direct=True)
    values = limit([new["test"], new["train"]], dsm.dims, subs)
    references = limit([direct["test"], direct["train"]], dsm.dims, subs)
    for value, reference in zip(values, references):
        np.testing.assert_allclose(value, reference, rtol=1e-10, atol=0)


@pytest.mark.parametrize("psi_n, psi_p, m, dual", [
    pytest.param(2.0, 3.0, 4.0, False, marks=pytest.mark.slow),  # the 106 + 195 unknowns at 45 digits: 30 s
    (0.5, 6.0, 2.5, True),
])
def test_finite_m_from_one_resolvent_equals_the_two_resolvent_form_to_28_digits(psi_n, psi_p, m, dual):
    subs = dsm.substitutions(psi_n, psi_p, 0.1, "0.01", m, dps=30)
    new, direct = dsm.quantities(True, dual), dsm.quantities(True, dual, direct=True)
    values = limit([new["test"], new["train"]], dsm.dims, subs, dps=30)
    references = limit([direct["test"], direct["train"]], dsm.dims, subs, dps=30)
    with mpmath.workdps(40):
        for value, reference in zip(values, references):
            assert abs(value - reference) < mpmath.mpf(10) ** -28 * abs(reference)


@pytest.mark.parametrize("psi_p, primal_accuracy", [(0.99, 1e-11), (1.0, 1e-7)])
def test_train_error_at_the_interpolation_threshold(psi_p, primal_accuracy):
    """m = 1, p = n m (and 1 % below) with lam = 1e-9, against random-features regression at 30
    digits (a different pencil).  The train error is small there (3e-5 on the threshold) and the
    primal form 1 - (T - lam dT/dlam)/d, which dsm.errors uses for p <= n m, subtracts terms of order
    one: measured 3.5e-13 relative below the threshold and 3e-8 on it.  The dual form
    -lam^2 dP/dlam/(nmd) is one term and keeps 2e-12 on the threshold (continued from lam = 1e-2;
    3e-11 from lam = 1e-3) where its continuation converges (it is not used there: see
    dsm.quantities).  The test error (about 1e3 on the
    threshold) is as sensitive as the problem: double precision holds it to 1e-8 relative."""
    t, lam = 0.1, 1e-9
    result = dsm.errors(1.0, psi_p, t, lam, m=1.0)
    a2 = math.exp(-2 * t)
    reference = random_features.errors(1.0, psi_p, lam / psi_p, signal=1 - a2, noise=a2, dps=30)
    assert abs(result.train - float(reference.train)) < primal_accuracy * float(reference.train)
    assert abs(result.test - float(reference.test)) < 1e-8 * float(reference.test)
    dual_train = limit(dsm.quantities(True, dual=True)["train"], dsm.dims, dsm.substitutions(1.0, psi_p, t, lam, 1.0),
                       path_from={dsm.symbols["lam"]: 1e-2})
    assert abs(dual_train - float(reference.train)) < 1e-11 * float(reference.train)


@pytest.mark.parametrize("m", [1.0, 4.0])
def test_finite_m_at_a_tiny_ridge(m):
    """lam = 1e-9 on both sides of p = n m: finite, above the optimum, and in the interpolating
    regime p > n m the train error is lam^2 times a constant (the dual form's lam^2 tr(Z K^-2 Z^T))."""
    psi_p = np.array([0.3, 0.8, 3.0, 20.0]) * m
    tiny = dsm.errors(1.0, psi_p, 0.1, 1e-9, m=m)
    assert np.all(np.isfinite(tiny.test)) and np.all(np.isfinite(tiny.train))
    assert np.all(tiny.test >= tiny.optimum) and np.all(tiny.train >= 0)
    smaller = dsm.errors(1.0, psi_p[2:], 0.1, 1e-10, m=m)
    np.testing.assert_allclose(tiny.train[2:] / 1e-9**2, smaller.train / 1e-10**2, rtol=1e-6)


def test_large_m_tends_to_infinite_m():
    """The finite-m system approaches the separately derived m = inf one as c/m + O(1/m^2).

    Richardson extrapolation of m = 10^2 and 10^3 removes the c/m term and must
    then agree with m = inf to O(10^-5) (the O(1/m^2) remainder).
    """
    m = np.array([1e2, 1e3])
    finite = dsm.errors(2.0, 3.0, 0.1, 1e-2, m=m)
    infinite = dsm.errors(2.0, 3.0, 0.1, 1e-2, m=math.inf)
    for name in ("test", "train"):
        values = getattr(finite, name)
        gaps = np.abs(values - getattr(infinite, name))
        assert 5 < gaps[0] / gaps[1] < 20
        richardson = (m[1] * values[1] - m[0] * values[0]) / (m[1] - m[0])
        assert abs(richardson - getattr(infinite, name)) < 1e-4


def test_test_error_above_the_optimum():
    psi_p = np.logspace(-1, 1.5, 5)
    for m in (1, 4, math.inf):
        result = dsm.errors(5.0, psi_p, np.array([[0.01], [0.3], [2.0]]), 1e-3, m=m)
        assert np.all(result.test >= result.optimum)
        np.testing.assert_allclose(result.optimum, np.exp(-2 * np.array([[0.01], [0.3], [2.0]])) * np.ones(psi_p.size))


def test_mixed_m_array_matches_scalar_calls():
    result = dsm.errors(2.0, 1.5, 0.2, 1e-2, m=np.array([1.0, 2.5, math.inf]))
    for k, m in enumerate((1.0, 2.5, math.inf)):
        single = dsm.errors(2.0, 1.5, 0.2, 1e-2, m=m)
        assert abs(result.test[k] - single.test) < 1e-12
        assert abs(result.gap[k] - single.gap) < 1e-12


def test_crossover_memorization_for_p_above_n():
    """The paper's picture at m = inf, psi_n = 20: small gap for p < n, large for p > n."""
    result = dsm.errors(20.0, np.array([5.0, 80.0]), 0.01, 1e-3)
    assert result.gap[0] < 0.05 < result.gap[1]


def test_constants_split():
    values = dsm.constants(np.array([0.01, 1.0]), "relu")
    np.testing.assert_allclose(values["v0_squared"] + values["s_squared"], values["v_squared"], rtol=1e-14)
    assert values["mu1"] == pytest.approx(0.5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(t=0.0), "t must be > 0"),
        (dict(t=-1.0), "t must be > 0"),
        (dict(lam=-1e-3), "lam must be > 0"),
        (dict(m=0.5), "m must be >= 1"),
        (dict(psi_n=0.0), "psi_n must be > 0"),
        (dict(psi_p=np.array([1.0, -2.0])), "psi_p must be > 0"),
        (dict(m="many"), "m must be a real number"),
    ],
)
def test_bad_input(kwargs, message):
    arguments = dict(psi_n=2.0, psi_p=1.0, t=0.1, lam=1e-3) | kwargs
    with pytest.raises(ParameterError, match=message):
        dsm.errors(**arguments)


def test_tiny_time_float_agrees_with_30_digits():
    """s^2 cancelled to 3.5e-6 relative at t = 1e-8 when computed as a difference of kernels."""
    result, reference = dsm.errors(1, 1, 1e-8, 1e-9), dsm.errors(1, 1, 1e-8, 1e-9, dps=30)
    assert abs(result.test - reference.test) / reference.test < 1e-10
    assert abs(result.train - reference.train) / reference.train < 1e-10


@pytest.mark.parametrize("activation", ["relu", "tanh", "erf"])
def test_large_times_tend_to_regression_on_independent_copies(activation):
    """At t = inf the copies x_ij = z_ij are independent: m n samples of random-features regression
    of the linear target z (signal h = 1, no label noise).  Every t up to 50 must work and the
    errors approach that limit by O(a^2) = O(e^{-2t}); the optimum e^{-2t} itself is not reached
    with p = 3 d features."""
    t = np.array([1.0, 6.0, 9.0, 20.0, 50.0])
    result = dsm.errors(2, 3, t, 1e-2, m=4, activation=activation)
    limit = random_features.errors(4 * 2, 3, 1e-2 / 3, activation=activation, signal=1.0, noise=0.0)
    assert np.all(np.isfinite(result.test)) and np.all(np.isfinite(result.train))
    assert np.all(result.test > result.optimum)
    excess = np.abs(result.test - limit.test)
    assert excess[-1] < 1e-12 and excess[-2] < 1e-12
    assert np.all(np.diff(excess[:3]) < 0)
