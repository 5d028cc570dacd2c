"""Random features trained by gradient flow: the engine's limit against its end points and exact finite-d training."""

import numpy as np
import pytest

from pencils import activations
from pencils.errors import ParameterError
from pencils.models import random_features

from extrapolation import extrapolate


def test_time_zero_is_the_zero_predictor():
    """a = 0: the test and train errors are both signal + noise (independent of the features)."""
    flow = random_features.gradient_flow(1.5, 2.0, 0.0, lam=0.0, signal=0.7, noise=0.3)
    assert flow.test == pytest.approx(1.0, abs=1e-12)
    assert flow.train == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("psi_n, psi_p", [(2.0, 1.0), (1.5, 2.0)])
def test_initial_slopes(psi_n, psi_p):
    r"""At small times a = tau F y / n, so the slopes at 0 are moments of Gaussian matrices, by hand:
    test'(0) = -2 signal mu1^2 psi_p and
    train'(0) = -2 [signal psi_p (mu1^2 (psi_n + 1) + v^2) + noise psi_p (mu1^2 + v^2)] / psi_n,
    from the errors at tau and 2 tau (the tau^2 term eliminated; what is left is O(tau^2) = 1e-6)."""
    relu, signal, noise, step = activations.get("relu"), 0.7, 0.3, 1e-3
    mu1_squared, v_squared = relu.mu1() ** 2, relu.correlated_split(1).total
    flow = random_features.gradient_flow(psi_n, psi_p, [step, 2 * step], signal=signal, noise=noise)
    for name, expected in (
        ("test", -2 * signal * mu1_squared * psi_p),
        ("train", -2 * (signal * psi_p * (mu1_squared * (psi_n + 1) + v_squared)
                        + noise * psi_p * (mu1_squared + v_squared)) / psi_n),
    ):
        values = getattr(flow, name) - (signal + noise)
        slope = (4 * values[0] - values[1]) / (2 * step)
        assert slope == pytest.approx(expected, rel=1e-5), name


@pytest.mark.slow
def test_long_time_is_the_ridge_estimator():
    """tau = 1e4 with p lam / d = 0.1: exp(-1000) is below any rounding, so the flow is the ridge estimator,
    whose errors random_features.errors solves without any function of a matrix (a resolvent at -kappa)."""
    flow = random_features.gradient_flow(2.0, 1.0, 1e4, lam=0.1, noise=0.25)
    ridge = random_features.errors(2.0, 1.0, 0.1, noise=0.25)
    assert abs(flow.test - ridge.test) < 1e-10
    assert abs(flow.train - ridge.train) < 1e-10


@pytest.mark.slow
def test_the_two_gram_matrices_agree():
    """The same errors written with functions of G = F F^T / n (p x p, with an atom at 0 here) and of
    H = F^T F / n (n x n): different traces, contours and spectra."""
    from pencils.limits import limit
    from pencils.models.random_features import dims, gradient_flow_quantities, symbols
    from pencils.models.random_features.dynamics import flow_ridge, training_time

    relu = activations.get("relu")
    subs = {symbols["psi_n"]: 1.5, symbols["psi_p"]: 2.0, symbols["lam"]: 0.05, symbols["signal"]: 1.0,
            symbols["noise"]: 0.2, symbols["mu1"]: relu.mu1(), symbols["v2"]: relu.correlated_split(1).total,
            flow_ridge: 0.1, training_time: np.array([0.5, 2.0])}
    features, samples = (limit([forms["test"], forms["train"]], dims, subs)
                         for forms in (gradient_flow_quantities(True), gradient_flow_quantities(False)))
    np.testing.assert_allclose(np.array(features), np.array(samples), rtol=0, atol=1e-10)


def trained_by_gradient_flow(d, psi_n, psi_p, lam, times, noise, seed):
    r"""Test and train errors at ``times`` of the second layer trained by gradient flow from 0 at size ``d``
    with the real ReLU: :math:`a(\tau) = V\varphi_\tau(\Lambda)V^TF^Ty/n` from the eigendecomposition
    :math:`F^TF/n + \kappa = V(\Lambda + \kappa)V^T`, test error exact from the ReLU kernel (as in
    :func:`pencils.simulation.random_features.simulate`)."""
    relu = activations.get("relu")
    rng = np.random.default_rng(seed)
    n, p = round(psi_n * d), round(psi_p * d)
    X = rng.standard_normal((n, d))
    beta = rng.standard_normal(d)
    beta /= np.linalg.norm(beta)
    y = X @ beta + np.sqrt(noise) * rng.standard_normal(n)
    W = rng.standard_normal((p, d))
    F = relu(X @ W.T / np.sqrt(d))
    kappa = p * lam / d
    eigenvalues, vectors = np.linalg.eigh(F.T @ F / n)
    shifted = eigenvalues + kappa
    filters = -np.expm1(-np.outer(times, shifted)) / shifted  # (times, p)
    a = ((vectors.T @ (F.T @ y / n)) * filters) @ vectors.T  # (times, p)
    train = np.mean((y - a @ F.T) ** 2, axis=1)
    sigma = np.linalg.norm(W, axis=1) / np.sqrt(d)
    correlation = np.clip(W @ W.T / d / np.outer(sigma, sigma), -1.0, 1.0)
    second = np.outer(sigma, sigma) * relu.kernel(correlation)
    cross = W @ beta / np.sqrt(d) * relu.mu1()
    test = noise + 1.0 - 2 * a @ cross + np.einsum("ti,ij,tj->t", a, second, a)
    return test, train


SIZES_AND_SEEDS = [(100, 96), (200, 48), (400, 24)]


@pytest.mark.slow
def test_limit_matches_exact_gradient_flow_extrapolated_in_one_over_d():
    """Ridgeless gradient flow at psi_n = 2, psi_p = 1 with label noise, times 0.5 and 2 (the test error
    still falling, then near its early-stopping minimum): seed means at d = 100, 200, 400 extrapolated
    linearly in 1/d, within four standard errors of the extrapolated value."""
    times, psi_n, psi_p, noise = np.array([0.5, 2.0]), 2.0, 1.0, 0.2
    theory = random_features.gradient_flow(psi_n, psi_p, times, lam=0.0, noise=noise)
    samples = {d: np.array([trained_by_gradient_flow(d, psi_n, psi_p, 0.0, times, noise, seed) for seed in range(seeds)])
               for d, seeds in SIZES_AND_SEEDS}  # (seeds, test/train, times)
    for which, name in enumerate(("test", "train")):
        for index, time in enumerate(times):
            values = [samples[d][:, which, index] for d, _ in SIZES_AND_SEEDS]
            means = [v.mean() for v in values]
            errors = [v.std(ddof=1) / np.sqrt(len(v)) for v in values]
            limit, error = extrapolate([d for d, _ in SIZES_AND_SEEDS], means, errors)
            expected = getattr(theory, name)[index]
            assert abs(limit - expected) < 4 * error, (name, time, limit, error, expected, means)


@pytest.mark.parametrize("kwargs", [
    dict(psi_n=-1.0), dict(psi_p=[1.0, 2.0]), dict(lam=-0.1), dict(time=-1.0), dict(noise=-0.1),
])
def test_bad_input(kwargs):
    arguments = dict(psi_n=2.0, psi_p=1.0, time=1.0)
    arguments.update(kwargs)
    with pytest.raises(ParameterError):
        random_features.gradient_flow(**arguments)
