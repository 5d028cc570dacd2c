"""DSM trained by gradient flow (m = inf): against the ridge estimator, the small-time expansion and
closed-form gradient-flow training at finite size."""

import math

import numpy as np
import pytest

from pencils.errors import ParameterError
from pencils.models import dsm
from pencils.simulation.dsm import fresh_moments, training_moments
from pencils.activations import sin

from extrapolation import extrapolate


def test_long_training_reaches_the_ridge_estimator():
    """tau -> inf: B(tau) -> V (U + lam)^{-1}, the estimator of dsm.errors (solved as one tilted resolvent)."""
    flow = dsm.gradient_flow(2.0, 1.0, 0.5, np.array([400.0, 800.0]), lam=0.1)
    ridge = dsm.errors(2.0, 1.0, 0.5, 0.1)
    np.testing.assert_allclose(flow.test, ridge.test, rtol=1e-10)
    np.testing.assert_allclose(flow.train, ridge.train, rtol=1e-10)


@pytest.mark.parametrize("lam", [0.0, 0.3])
def test_small_times_follow_the_taylor_expansion(lam):
    r"""B = tau V - tau^2 V (U + lam)/2 + O(tau^3), so both errors are
    1 - 2 tau tr(V V^T)/d + tau^2 [tr(V U_* V^T) + tr(V (U + lam) V^T)]/d + O(tau^3), with the
    Wishart moments tr(A)/d = psi_p, tr(A^2)/d = psi_p (psi_p + 1) of A = W W^T/d and
    tr(A U)/d = tr(A U_test)/d = mu1^2 psi_p (psi_p + 1) + v^2 psi_p."""
    psi_n, psi_p, t = 2.0, 1.5, 0.3
    times = np.array([1e-3, 2e-3])
    flow = dsm.gradient_flow(psi_n, psi_p, t, times, lam=lam)
    c = dsm.constants(t)
    h = -math.expm1(-2 * t)
    first = -2 * h * c["mu1"] ** 2 * psi_p
    moment = c["mu1"] ** 2 * psi_p * (psi_p + 1) + c["v_squared"] * psi_p
    second = h * c["mu1"] ** 2 * (2 * moment + lam * psi_p)
    taylor = 1 + first * times + second * times**2
    # the tau^2 term is about 1e-6: a 1e-8 agreement checks it to 1 %, the remainder is O(tau^3) ~ 1e-9
    np.testing.assert_allclose(flow.test, taylor, rtol=0, atol=1e-8)
    np.testing.assert_allclose(flow.train, taylor, rtol=0, atol=1e-8)
    assert np.all(np.abs(flow.test - flow.train) < 1e-8)


def finite_size_flow(d, seed, psi_n, psi_p, t, lam, times):
    """Gradient flow on the exact m = inf loss at finite d (rho = sin): U, V and the fresh U_test, V_test
    from the closed-form Gaussian expectations, B(tau) from the eigendecomposition of U + lam."""
    rng = np.random.default_rng(seed)
    n, p = int(psi_n * d), int(psi_p * d)
    W, X = rng.standard_normal((p, d)), rng.standard_normal((d, n))
    U, V = training_moments(W, X, t, "sin", centred=True)
    U_test, V_test = fresh_moments(W, t, "sin", centred=True)
    eigenvalues, vectors = np.linalg.eigh(U + lam * np.eye(p))
    errors = []
    for tau in times:
        B = (V @ vectors) * (-np.expm1(-tau * eigenvalues) / eigenvalues) @ vectors.T
        errors.append([1 + (np.sum((B @ U_) * B) - 2 * np.sum(B * V_)) / d for U_, V_ in ((U_test, V_test), (U, V))])
    return np.array(errors)  # (times, [test, train])


def assert_extrapolates_to(theory, runs):
    """runs[size]: (seeds, times, [test, train]); the seed means extrapolated in 1/d (4 seeds: standard error
    std/2) must match theory within 4 standard errors of the extrapolated value plus 2e-4."""
    sizes = sorted(runs)
    for index in np.ndindex(runs[sizes[0]].shape[1:]):
        means = [runs[size][(slice(None),) + index].mean() for size in sizes]
        errors = [runs[size][(slice(None),) + index].std(ddof=1) / 2 for size in sizes]
        limit, error = extrapolate(sizes, means, errors)
        expected = (theory.test, theory.train)[index[1]][index[0]]
        assert abs(limit - expected) < 4 * error + 2e-4, (index, limit, expected, error)


def test_against_finite_size_gradient_flow():
    """d = 100, 200, 400 with 4 seeds each, extrapolated in 1/d; tolerance 4 standard errors of the
    extrapolated value (from the seed spread) plus 2e-4."""
    psi_n, psi_p, t, lam = 2.0, 1.0, 0.5, 0.0
    times = np.array([0.5, 2.0, 8.0])
    theory = dsm.gradient_flow(psi_n, psi_p, t, times, lam=lam, activation="sin")
    sizes = (100, 200, 400)
    runs = {size: np.array([finite_size_flow(size, seed, psi_n, psi_p, t, lam, times) for seed in range(4)])
            for size in sizes}
    assert_extrapolates_to(theory, runs)


def test_time_zero_and_bad_input():
    flow = dsm.gradient_flow(2.0, 1.0, 0.5, 0.0)
    assert flow.test == pytest.approx(1.0, abs=1e-14) and flow.train == pytest.approx(1.0, abs=1e-14)
    with pytest.raises(ParameterError, match="time"):
        dsm.gradient_flow(2.0, 1.0, 0.5, [-1.0, 1.0])
    with pytest.raises(ParameterError, match="m"):
        dsm.gradient_flow(2.0, 1.0, 0.5, 1.0, m=0.5)
    with pytest.raises(ParameterError, match="psi_n"):
        dsm.gradient_flow([2.0, 3.0], 1.0, 0.5, 1.0)


def test_memorization_time_is_where_the_gap_reaches_half_of_its_final_value():
    """The root found by brentq, checked on a fresh evaluation; the gap is below half before it."""
    psi_n, psi_p, t, lam = 2.0, 1.0, 0.5, 0.1
    time = dsm.memorization_time(psi_n, psi_p, t, lam, span=(1e-2, 1e2))
    final = dsm.errors(psi_n, psi_p, t, lam).gap
    flow = dsm.gradient_flow(psi_n, psi_p, t, np.array([time / 2, time, 2 * time]), lam=lam)
    assert abs(flow.gap[1] / final - 0.5) < 1e-9
    assert flow.gap[0] < 0.5 * final < flow.gap[2]


@pytest.mark.slow
def test_spectrum_of_the_feature_matrix_at_the_hard_edge_raises_clearly():
    """psi_p = psi_n + 1: the atom of U at s^2 has mass 1 - (psi_n + 1)/psi_p = 0 and the bulk reaches s^2 with
    a diverging density, where the edge is not a fold of the Dyson equation: a ConvergenceError that says so."""
    from pencils import spectrum
    from pencils.errors import ConvergenceError

    subs = dsm.substitutions(1.0, 2.0, 0.5, 0.0)
    subs = {key: value for key, value in subs.items() if key not in (dsm.symbols["tilt"], dsm.symbols["scale"])}
    finite_dims = {key: value for key, value in dsm.dims.items() if str(key) != "k"}
    with pytest.raises(ConvergenceError, match="hard edge"):
        spectrum(dsm.feature_matrix(), finite_dims, subs)


@pytest.mark.slow
def test_finite_m_long_training_reaches_the_finite_m_ridge_estimator():
    """m = 4, lam = 0.1: tau -> inf gives B = Q (G + lam)^{-1}, the estimator of dsm.errors(..., m=4), derived
    there as a tilted resolvent without any matrix function."""
    flow = dsm.gradient_flow(2.0, 1.0, 0.5, np.array([500.0, 1000.0]), lam=0.1, m=4.0, activation="sin")
    ridge = dsm.errors(2.0, 1.0, 0.5, 0.1, m=4.0, activation="sin")
    np.testing.assert_allclose(flow.test, ridge.test, rtol=1e-9)
    np.testing.assert_allclose(flow.train, ridge.train, rtol=1e-9)


def finite_m_flow(d, seed, psi_n, psi_p, t, lam, m, times):
    """Gradient flow on the finite-m DSM loss at finite d (rho = sin, centred): m fresh noises per point, F (p x nm),
    B(tau) = C g_tau(G) with C = Z F^T/(nm), G = F F^T/(nm) by eigendecomposition; test error from the closed-form
    fresh moments, train error = ||Z - B F||^2/(nmd)."""
    rng = np.random.default_rng(seed)
    n, p = int(psi_n * d), int(psi_p * d)
    W, X = rng.standard_normal((p, d)), rng.standard_normal((d, n))
    a, h = math.exp(-t), -math.expm1(-2 * t)
    Z = rng.standard_normal((d, n * m))
    F = np.sin(W @ (a * np.tile(X, m) + math.sqrt(h) * Z) / math.sqrt(d))  # sin is odd: mu0 = 0, centred
    C, G = Z @ F.T / (n * m), F @ F.T / (n * m)
    U_test, V_test = fresh_moments(W, t, sin, centred=True)
    eigenvalues, vectors = np.linalg.eigh(G + lam * np.eye(p))
    errors = []
    for tau in times:
        B = (C @ vectors) * (-np.expm1(-tau * eigenvalues) / eigenvalues) @ vectors.T
        test = 1 + (np.sum((B @ U_test) * B) - 2 * np.sum(B * V_test)) / d
        errors.append([test, np.sum((Z - B @ F) ** 2) / (n * m * d)])
    return np.array(errors)


@pytest.mark.slow
def test_finite_m_against_finite_size_gradient_flow():
    """m = 4, lam = 0.1: d = 100, 200, 400 with 4 seeds each, extrapolated in 1/d; tolerance 4 standard errors of
    the extrapolated value (seed spread) plus 2e-4, as for m = inf."""
    psi_n, psi_p, t, lam, m = 2.0, 1.0, 0.5, 0.1, 4
    times = np.array([0.5, 2.0, 8.0])
    theory = dsm.gradient_flow(psi_n, psi_p, t, times, lam=lam, m=float(m), activation="sin")
    sizes = (100, 200, 400)
    runs = {size: np.array([finite_m_flow(size, seed, psi_n, psi_p, t, lam, m, times) for seed in range(4)])
            for size in sizes}
    assert_extrapolates_to(theory, runs)



@pytest.mark.slow
def test_long_training_reaches_the_ridge_estimator_to_30_digits():
    r"""dps = 30: with lam = 38 the flow's exponential part e^{-tau (x + lam)} is below e^{-76} ~ 1e-33 on the
    spectrum of U ([0.086, 1.17]) at tau = 2, so test and train errors equal those of the ridge estimator of
    dsm.errors (one tilted resolvent, no contour) to that accuracy; both are rounded to 30 digits, hence the
    1e-28 tolerance.  The contour sums are over entire functions on one ellipse, the test error's with two
    occurrences (a grid of resolvent traces of two spectral parameters, conjugate and exchange symmetric)."""
    import mpmath

    flow = dsm.gradient_flow(2.0, 1.0, 0.5, [2.0], lam=38, dps=30)
    ridge = dsm.errors(2.0, 1.0, 0.5, 38, dps=30)
    assert abs(flow.test[0] - ridge.test) < mpmath.mpf(10) ** -28
    assert abs(flow.train[0] - ridge.train) < mpmath.mpf(10) ** -28
    assert abs(ridge.test - 1) > 1e-3  # the ridge estimator is far from B = 0


@pytest.mark.slow
def test_memorization_time_against_a_dense_scan():
    """memorization_time against the crossing located here: gap / gap(inf) on 32 log-spaced times per decade, the
    first cell where it reaches 1/2, then bisection in log tau on fresh gradient_flow evaluations to 1e-9 (the
    setting of test_memorization_time_is_where_the_gap_reaches_half_of_its_final_value, whose
    contour grids it shares)."""
    psi_n, psi_p, t, lam, span = 2.0, 1.0, 0.5, 0.1, (1e-2, 1e2)
    found = dsm.memorization_time(psi_n, psi_p, t, lam, span=span)
    final = dsm.errors(psi_n, psi_p, t, lam).gap
    times = np.geomspace(*span, 129)
    ratio = dsm.gradient_flow(psi_n, psi_p, t, times, lam=lam).gap / final
    cell = np.flatnonzero(ratio >= 0.5)[0]
    low, high = np.log(times[cell - 1]), np.log(times[cell])
    while high - low > 1e-9:
        middle = (low + high) / 2
        if dsm.gradient_flow(psi_n, psi_p, t, np.exp(middle), lam=lam).gap / final >= 0.5:
            high = middle
        else:
            low = middle
    assert abs(np.log(found) - (low + high) / 2) < 1e-9
