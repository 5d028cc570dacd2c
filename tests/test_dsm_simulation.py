"""Checks of the finite-d DSM trainer :mod:`pencils.simulation.dsm`.

Every check compares against something computed independently: a brute-force Monte
Carlo, a brute-force re-implementation with full matrices, a limit (m -> inf,
lam -> inf), the Bayes bound, or a symmetry of the large-d limit.
"""

from __future__ import annotations

import dataclasses
import doctest
import math

import numpy as np
import pytest
import scipy.special

from pencils import activations, precision
from pencils.simulation import dsm as simulation_dsm
from pencils.simulation.dsm import SimulationResult, fresh_moments, simulate, training_moments


def _relu(x):
    return np.maximum(x, 0.0)


# ----------------------------------------------------------------------------- 1. closed forms


@pytest.mark.parametrize("name, centred", [("sin", False), ("sin", True), ("cos", False), ("cos", True)])
def test_training_moments_match_brute_force(name, centred):
    """m = inf: closed-form U, V against a plain average over 20000 noises per data point."""
    rng = np.random.default_rng(11)
    d, n, p, t, draws = 10, 3, 6, 0.4, 20000
    a, h = math.exp(-t), 1.0 - math.exp(-2.0 * t)
    W = rng.standard_normal((p, d))
    X = rng.standard_normal((d, n))
    U, V = training_moments(W, X, t, name, centred=centred)
    f = np.sin if name == "sin" else np.cos
    mu0 = activations.get(name).mu0() if centred else 0.0

    U_mean, U_var = np.zeros((p, p)), np.zeros((p, p))
    V_mean, V_var = np.zeros((d, p)), np.zeros((d, p))
    for i in range(n):
        Z = rng.standard_normal((d, draws))
        R = f(W @ (a * X[:, [i]] + math.sqrt(h) * Z) / math.sqrt(d)) - mu0
        rr = R[:, None, :] * R[None, :, :]
        zr = Z[:, None, :] * R[None, :, :]
        U_mean += rr.mean(axis=2) / n
        U_var += rr.var(axis=2, ddof=1) / (n * n * draws)
        V_mean += zr.mean(axis=2) / n
        V_var += zr.var(axis=2, ddof=1) / (n * n * draws)
    assert U.shape == (p, p) and V.shape == (d, p)
    assert np.all(np.abs(U - U_mean) <= 5.0 * np.sqrt(U_var))
    assert np.all(np.abs(V - V_mean) <= 5.0 * np.sqrt(V_var))


@pytest.mark.parametrize("name", ["sin", "cos", "relu", "erf"])
@pytest.mark.parametrize("centred", [False, True])
def test_fresh_moments_match_brute_force(name, centred):
    """Test-time U_test = E rho rho^T, V_test = E z rho^T, sampling x_0 and z themselves."""
    rng = np.random.default_rng(5)
    d, p, t, draws = 10, 5, 0.7, 40000
    a, h = math.exp(-t), 1.0 - math.exp(-2.0 * t)
    W = rng.standard_normal((p, d))
    U, V = fresh_moments(W, t, name, centred=centred)
    f = {"sin": np.sin, "cos": np.cos, "relu": _relu, "erf": scipy.special.erf}[name]
    mu0 = activations.get(name).mu0() if centred else 0.0
    x0, z = rng.standard_normal((d, draws)), rng.standard_normal((d, draws))
    R = f(W @ (a * x0 + math.sqrt(h) * z) / math.sqrt(d)) - mu0
    rr = R[:, None, :] * R[None, :, :]
    zr = z[:, None, :] * R[None, :, :]
    assert np.all(np.abs(U - rr.mean(axis=2)) <= 5.0 * rr.std(axis=2, ddof=1) / math.sqrt(draws) + 1e-12)
    assert np.all(np.abs(V - zr.mean(axis=2)) <= 5.0 * zr.std(axis=2, ddof=1) / math.sqrt(draws) + 1e-12)


def test_closed_forms_refuse_other_activations():
    W = np.ones((2, 3))
    with pytest.raises(ValueError, match="sin or cos"):
        training_moments(W, np.ones((3, 2)), 0.5, "relu")
    with pytest.raises(ValueError, match="Hermite series"):
        fresh_moments(W, 0.5, "tanh")


# ----------------------------------------------------------------------------- brute force


def _brute_force_finite_m(d, psi_n, psi_p, t, lam, m, f, seed, draws, rng_test):
    """Re-implementation with full matrices: the nm x p features, np.linalg.solve, and the
    test residual ||z - B rho||^2/d averaged over fresh (x_0, z).  Same random streams as
    documented in :func:`simulate`."""
    n, p = round(psi_n * d), round(psi_p * d)
    a, h = math.exp(-t), 1.0 - math.exp(-2.0 * t)
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[0])
    W = rng.standard_normal((p, d))
    X = rng.standard_normal((d, n))
    noises = rng.standard_normal((m, d, n))
    Z = np.concatenate(list(noises), axis=1)  # d x nm
    Xt = np.concatenate([a * X + math.sqrt(h) * noises[j] for j in range(m)], axis=1)
    F = f(W @ Xt / math.sqrt(d))
    N = n * m
    B = np.linalg.solve(F @ F.T / N + lam * np.eye(p), F @ Z.T / N).T
    train = np.sum((Z - B @ F) ** 2) / (N * d)
    x0, z = rng_test.standard_normal((d, draws)), rng_test.standard_normal((d, draws))
    residual = np.sum((z - B @ f(W @ (a * x0 + math.sqrt(h) * z) / math.sqrt(d))) ** 2, axis=0) / d
    return train, residual.mean(), residual.std(ddof=1) / math.sqrt(draws)


@pytest.mark.parametrize(
    "name, d, force_monte_carlo, method",
    [
        ("relu", 8, False, "closed form"),
        ("tanh", 8, False, "hermite series"),
        ("abs", 24, False, "hermite series"),
        ("tanh", 8, True, "monte carlo"),
    ],
)
def test_finite_m_matches_brute_force(name, d, force_monte_carlo, method, monkeypatch):
    """Blocked accumulation + trace identities + each route to the test expectation agree
    with the direct computation (train to rounding, test within 5 combined standard
    errors of the brute-force residual average)."""
    if force_monte_carlo:
        monkeypatch.setattr(simulation_dsm, "_SERIES_MAX_DEGREE", -1)
    f = {"relu": _relu, "tanh": np.tanh, "abs": np.abs}[name]
    args = dict(d=d, psi_n=1.5, psi_p=2.0, t=0.3, lam=0.05, m=3)
    result = simulate(**args, activation=name, seed=4, n_test=100000)
    assert result.test_method == method
    train, test, test_se = _brute_force_finite_m(**args, f=f, seed=4, draws=200000, rng_test=np.random.default_rng(9))
    assert result.train == pytest.approx(train, rel=1e-9, abs=1e-12)
    assert abs(result.test - test) <= 5.0 * math.hypot(test_se, result.test_stderr)
    if method == "monte carlo":
        # the control-variate estimate is much less noisy than averaging the residual
        assert not result.test_exact and result.n_test == 100000
        assert result.test_stderr * math.sqrt(100000) < 0.3 * test_se * math.sqrt(200000)
    else:
        assert result.test_exact and result.test_stderr == 0.0 and result.n_test == 0


@pytest.mark.parametrize("name", ["tanh", "sigmoid", "abs", "relu"])
def test_hermite_coefficients_reproduce_the_kernel(name):
    """sum_j c_j^2 r^j (Mehler) and the quadrature moments agree with the independent
    implementation in pencils.activations (sigma = 1)."""
    act = activations.get(name)
    c, second = simulation_dsm._hermite_coefficients(act, np.array([1.0, 1.3]), 80)
    assert second[0] == pytest.approx(act.second_moment(), abs=1e-12)
    assert c[0, 0] == pytest.approx(act.mu0(), abs=1e-12)
    assert c[0, 1] == pytest.approx(act.mu1(), abs=1e-12)
    for r in (-0.4, 0.1, 0.5):
        assert np.sum(c[0] ** 2 * r ** np.arange(81)) == pytest.approx(act.kernel(r), abs=1e-12)
    # a scale sigma: Parseval, E rho(1.3 g)^2 = sum_j c_j^2; the tail beyond degree 80 is
    # tiny for smooth activations, O(80^{-3/2}) ~ 1e-3 relative for a kink at 0; below, the
    # rule's own error (it integrates the N(0, 1) density to 1 within ~1e-14)
    tail = 1e-9 if name in ("tanh", "sigmoid") else 2e-3 * second[1]
    assert -1e-13 * second[1] <= second[1] - np.sum(c[1] ** 2) <= tail


def test_series_agrees_with_monte_carlo_at_moderate_d(monkeypatch):
    """tanh, d = 40: the Hermite-series test error equals the (independent) Monte Carlo
    estimate within 5 standard errors."""
    series = simulate(40, 2.0, 2.0, 0.5, 1e-2, 2, activation="tanh", seed=3)
    monkeypatch.setattr(simulation_dsm, "_SERIES_MAX_DEGREE", -1)
    mc = simulate(40, 2.0, 2.0, 0.5, 1e-2, 2, activation="tanh", seed=3, n_test=60000)
    assert series.test_method == "hermite series" and mc.test_method == "monte carlo"
    assert series.train == mc.train
    assert abs(series.test - mc.test) <= 5.0 * mc.test_stderr


def test_ridgeless_overparameterised_is_min_norm_interpolation():
    """lam = 0 with p > nm: the min-norm solution interpolates, train error 0."""
    result = simulate(d=10, psi_n=1.0, psi_p=3.0, t=0.5, lam=0.0, m=2, activation="relu", seed=1)
    assert result.p > result.n * 2
    assert abs(result.train) < 1e-8
    assert result.test > result.bayes_optimum


# ----------------------------------------------------------------------------- 2. m -> inf


def test_large_m_approaches_exact_m_infinity():
    """sin, d = 10: finite m converges to the exact m = inf run with the same W and X.

    The test error of the noisy-estimate B is biased by O(p/(nm)) (the estimation noise
    of F F^T/(nm), Z F^T/(nm) enters quadratically), measured ~8e-3 at m = 25 and
    ~6e-4 at m = 400 here; its random first-order part is O(1/sqrt(nm)) with a small
    coefficient.  The finite-m train error is in-sample: biased down by O(p/(nm)) =
    2.5e-3 at m = 400, and ||Z||^2/(nmd) fluctuates with sd sqrt(2/(nmd)) = 5e-3
    (2.5e-3 for the mean of 4 seeds)."""
    d, seeds = 10, range(4)
    diff_test, diff_train = {}, {}
    for m in (25, 400):
        dt, dtr = [], []
        for seed in seeds:
            exact = simulate(d, 2.0, 2.0, 0.5, 0.1, math.inf, activation="sin", seed=seed)
            finite = simulate(d, 2.0, 2.0, 0.5, 0.1, m, activation="sin", seed=seed)
            assert exact.exact_m_infinity and not finite.exact_m_infinity
            dt.append(finite.test - exact.test)
            dtr.append(finite.train - exact.train)
        diff_test[m], diff_train[m] = abs(np.mean(dt)), abs(np.mean(dtr))
    assert diff_test[400] < 2e-3
    assert diff_test[400] < diff_test[25] / 4.0  # at least the 1/sqrt(m) rate; 1/m is ~ /16
    assert diff_train[400] < 2.5e-3 + 4 * 2.5e-3
    assert diff_train[400] < diff_train[25]


# ----------------------------------------------------------------------------- 3. Bayes bound


@pytest.mark.parametrize(
    "activation, t, lam, m, psi_n, psi_p, centred",
    [
        ("relu", 0.05, 1e-3, 1, 2.0, 2.0, False),
        ("relu", 0.5, 1e-2, 4, 2.0, 0.5, True),
        ("relu", 2.0, 0.0, 2, 0.5, 3.0, False),
        ("sin", 0.3, 1e-3, math.inf, 2.0, 2.0, False),
        ("sin", 1.0, 0.1, 3, 4.0, 1.0, False),
        ("cos", 0.5, 1e-2, math.inf, 2.0, 2.0, True),
        ("erf", 0.2, 1e-2, 2, 3.0, 1.0, False),
        ("tanh", 0.5, 1e-2, 2, 3.0, 1.0, False),
        ("tanh", 0.1, 1e-1, 1, 5.0, 0.5, True),
    ],
)
def test_test_error_above_bayes(activation, t, lam, m, psi_n, psi_p, centred):
    """E||z - B rho||^2/d >= E||z - sqrt(h) x_t||^2/d = a^2 for every B (exactly, since
    E[z | x_t] = sqrt(h) x_t); slack: rounding when exact, 5 standard errors of the
    Monte Carlo part otherwise (n_test = 20000)."""
    result = simulate(30, psi_n, psi_p, t, lam, m, activation=activation, seed=2, centred=centred, n_test=20000)
    slack = 1e-10 if result.test_exact else 5.0 * result.test_stderr
    assert result.bayes_optimum == pytest.approx(math.exp(-2 * t))
    assert result.test >= math.exp(-2.0 * t) - slack
    assert result.excess_test >= -slack


# ----------------------------------------------------------------------------- 4. centring


def test_centring_does_not_matter_in_the_limit():
    """relu, d = 100: centred and uncentred features give the same errors up to finite-size
    fluctuations (means over 4 seeds within 4 combined standard errors)."""
    runs = {False: [], True: []}
    for centred in (False, True):
        for seed in range(4):
            r = simulate(100, 2.0, 2.0, 0.3, 1e-2, 1, activation="relu", seed=seed, centred=centred)
            runs[centred].append((r.test, r.train))
    u, c = np.array(runs[False]), np.array(runs[True])
    se = np.sqrt(u.var(axis=0, ddof=1) / len(u) + c.var(axis=0, ddof=1) / len(c))
    assert np.all(np.abs(u.mean(axis=0) - c.mean(axis=0)) <= 4.0 * se)


def test_centring_difference_shrinks_with_d():
    """The paired (same W, X, Z) centred - uncentred difference is a finite-size effect:
    measured ~ -3.7e-3 at d = 50 and ~ -8e-4 at d = 200 (O(1/d)), seed sd ~1e-4."""
    def paired(d):
        diffs = []
        for seed in range(3):
            u = simulate(d, 2.0, 1.0, 0.3, 0.1, 4, activation="relu", seed=seed)
            c = simulate(d, 2.0, 1.0, 0.3, 0.1, 4, activation="relu", seed=seed, centred=True)
            diffs.append(c.test - u.test)
        return abs(np.mean(diffs))

    assert paired(200) < 0.5 * paired(50)


# ----------------------------------------------------------------------------- 5. lam -> inf


@pytest.mark.parametrize("activation, m", [("relu", 1), ("sin", math.inf), ("tanh", 1)])
def test_huge_ridge_gives_errors_one(activation, m):
    """lam -> inf: B = O(1/lam) -> 0, so the test error -> E||z||^2/d = 1 and the train
    error -> the empirical ||Z||^2/(nmd) of the drawn noises (exactly 1 for m = inf)."""
    d, n, p = 20, 40, 40
    result = simulate(d, 2.0, 2.0, 0.5, 1e9, m, activation=activation, seed=0, n_test=2000)
    if m == math.inf:
        noise_energy = 1.0
    else:
        rng = np.random.default_rng(np.random.SeedSequence(0).spawn(2)[0])
        rng.standard_normal((p, d)), rng.standard_normal((d, n))  # W, X
        noise_energy = float(np.mean(rng.standard_normal((m, d, n)) ** 2))
    assert result.train == pytest.approx(noise_energy, abs=1e-6)
    assert result.test == pytest.approx(1.0, abs=1e-6)


# ----------------------------------------------------------------------------- 6. inputs


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(t=0.0), "t must be"),
        (dict(t=-1.0), "t must be"),
        (dict(t=math.inf), "t must be"),
        (dict(lam=-1e-3), "lam must be"),
        (dict(lam=math.nan), "lam must be"),
        (dict(m=0), "m must be"),
        (dict(m=2.5), "m must be"),
        (dict(m=-math.inf), "m must be"),
        (dict(m=math.nan), "m must be"),
        (dict(m="4"), "m must be"),
        (dict(psi_n=0.0), "psi_n must be"),
        (dict(psi_p=-2.0), "psi_p must be"),
        (dict(psi_n=0.01), "n = 0"),
        (dict(psi_p=0.01), "p = 0"),
        (dict(d=0), "d must be"),
        (dict(d=2.5), "d must be"),
        (dict(d=-3), "d must be"),
        (dict(n_test=0), "n_test"),
        (dict(large_m=0, m=math.inf), "large_m"),
    ],
)
def test_bad_inputs_raise(kwargs, match):
    args = dict(d=10, psi_n=2.0, psi_p=2.0, t=0.5, lam=0.1, m=2, activation="relu")
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        simulate(**args)


def test_m_infinity_needs_sin_cos_or_large_m():
    with pytest.raises(ValueError, match="sin or cos"):
        simulate(10, 2.0, 2.0, 0.5, 0.1, math.inf, activation="relu")
    r = simulate(10, 2.0, 2.0, 0.5, 0.1, math.inf, activation="relu", large_m=8)
    ref = simulate(10, 2.0, 2.0, 0.5, 0.1, 8, activation="relu")
    assert r.m == math.inf and r.m_used == 8 and r.exact_m_infinity is False
    assert (r.test, r.train) == (ref.test, ref.train)
    # for sin the exact route is taken and large_m is ignored
    s = simulate(10, 2.0, 2.0, 0.5, 0.1, math.inf, activation="sin", large_m=8)
    assert s.exact_m_infinity and s.m_used == math.inf


# ----------------------------------------------------------------------------- result, docs


def test_result_is_frozen_and_reproducible():
    r = simulate(12, 2.0, 1.5, 0.5, 0.1, 2, activation="relu", seed=3)
    assert isinstance(r, SimulationResult)
    assert (r.d, r.n, r.p, r.m, r.seed) == (12, 24, 18, 2.0, 3)
    assert r.psi_n == 2.0 and r.psi_p == 1.5
    assert r.gap == r.test - r.train
    with pytest.raises(Exception):
        r.test = 0.0  # frozen
    assert simulate(12, 2.0, 1.5, 0.5, 0.1, 2, activation="relu", seed=3) == r
    assert simulate(12, 2.0, 1.5, 0.5, 0.1, 2, activation="relu", seed=4).test != r.test
    assert np.isfinite(simulate(12, 2.0, 1.5, 0.5, 0.1, 2, activation="relu", seed=None).test)


def test_activation_recognised_by_object_not_by_name_or_value():
    """The closed forms go to the named activations of ``pencils.activations`` (as objects or
    names); another Activation, even one equal to sin or one called "relu", takes the generic
    route: the Hermite series, which agrees with sin's closed form to its 1e-10 bound."""
    args = dict(d=10, psi_n=2.0, psi_p=2.0, t=0.5, lam=0.1)
    exact = simulate(**args, m=math.inf, activation="SIN")
    assert exact.exact_m_infinity and exact.test_method == "closed form"
    my_sine = activations.Activation("my_sine", np.sin, precision.Function("sin"))
    with pytest.raises(ValueError, match="sin or cos"):
        simulate(**args, m=math.inf, activation=my_sine)
    generic, closed = (simulate(**args, m=2, activation=act, seed=5) for act in (my_sine, activations.sin))
    assert (generic.test_method, closed.test_method) == ("hermite series", "closed form")
    assert generic.train == closed.train and generic.activation == "my_sine"
    assert abs(generic.test - closed.test) <= 1e-10
    not_relu = activations.Activation("relu", np.tanh, precision.Function("tanh"))
    assert simulate(**args, m=2, activation=not_relu, seed=5) == dataclasses.replace(
        simulate(**args, m=2, activation="tanh", seed=5), activation="relu")


def test_docstring_examples():
    failures, tried = doctest.testmod(simulation_dsm, verbose=False)
    assert tried > 0 and failures == 0


@pytest.mark.parametrize("lam", [0.05, 1e-6])
def test_dual_form_matches_brute_force(lam):
    """p > nm (the dual nm x nm system): train and the closed-form test error equal the direct
    p x p computation with full matrices (train to ~1e-9 at lam = 0.05; at lam = 1e-6 the
    brute-force train error is a cancellation of O(1) terms, so only its absolute size is
    compared), and the noise stream is the documented one."""
    args = dict(d=8, psi_n=1.0, psi_p=5.0, t=0.3, lam=lam, m=2)
    result = simulate(**args, activation="relu", seed=4)
    assert result.p > result.n * 2
    train, test, test_se = _brute_force_finite_m(**args, f=_relu, seed=4, draws=200000,
                                                 rng_test=np.random.default_rng(9))
    if lam > 1e-3:
        assert result.train == pytest.approx(train, rel=1e-9, abs=1e-12)
    else:
        assert 0.0 <= result.train < 1e-9 and abs(train) < 1e-6
    assert abs(result.test - test) <= 5.0 * test_se
