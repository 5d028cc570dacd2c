"""Random-features ridge regression: the engine's limit against real training with the real activation."""

import mpmath
import numpy as np
import pytest

from pencils.errors import ParameterError
from pencils.models import random_features
from pencils.simulation.random_features import simulate

from extrapolation import extrapolate

SIZES_AND_SEEDS = [(100, 96), (200, 48), (400, 24)]
POINTS = [  # 13 s, 36 s and 104 s on a loaded machine (tanh: Monte Carlo test errors)
    dict(psi_n=2.0, psi_p=1.0, lam=0.1, noise=0.2, activation="relu"),
    pytest.param(dict(psi_n=1.0, psi_p=3.0, lam=0.05, noise=0.0, activation="relu"), marks=pytest.mark.slow),
    pytest.param(dict(psi_n=1.5, psi_p=2.0, lam=0.1, noise=0.1, activation="tanh"), marks=pytest.mark.slow),
]


@pytest.mark.parametrize("point", POINTS, ids=lambda p: "-".join(f"{k}={v}" for k, v in p.items()))
def test_limit_matches_training_extrapolated_in_one_over_d(point):
    """Mean over seeds at d = 100, 200, 400, extrapolated linearly in 1/d.

    The tolerance is four standard errors of the extrapolated value (from the
    seed-to-seed spread); the theory must also lie within the same band of the
    largest size once its fitted O(1/d) correction is removed.
    """
    theory = random_features.errors(point["psi_n"], point["psi_p"], point["lam"],
                                    activation=point["activation"], noise=point["noise"])
    samples = {
        d: [simulate(d, point["psi_n"], point["psi_p"], point["lam"], activation=point["activation"],
                     noise=point["noise"], seed=seed, n_test=20000) for seed in range(seeds)]
        for d, seeds in SIZES_AND_SEEDS
    }
    for name in ("test", "train"):
        values = [np.array([getattr(sample, name) for sample in samples[d]]) for d, _ in SIZES_AND_SEEDS]
        means = [v.mean() for v in values]
        errors = [v.std(ddof=1) / np.sqrt(len(v)) for v in values]
        limit, error = extrapolate([d for d, _ in SIZES_AND_SEEDS], means, errors)
        assert abs(limit - getattr(theory, name)) < 4 * error, (name, limit, error, getattr(theory, name), means)


def test_vectorised_over_parameters():
    psi_p = np.array([0.5, 1.0, 4.0])
    lam = np.array([[1e-3], [1e-1]])
    result = random_features.errors(2.0, psi_p, lam)
    assert result.test.shape == result.train.shape == (2, 3)
    single = random_features.errors(2.0, 4.0, 1e-1)
    assert abs(result.test[1, 2] - single.test) < 1e-12


def test_high_precision_agrees_with_float():
    floats = random_features.errors(2.0, 1.5, 0.1, noise=0.3)
    precise = random_features.errors(2.0, 1.5, 0.1, noise=0.3, dps=30)
    assert abs(float(precise.test) - floats.test) < 1e-12 * abs(floats.test)
    assert abs(float(precise.train) - floats.train) < 1e-12 * abs(floats.train)
    other = random_features.errors(2.0, 1.5, 0.1, noise=0.3, dps=45)
    with mpmath.workdps(40):
        assert abs(other.test - precise.test) < mpmath.mpf(10) ** -29


def test_no_features_limit():
    """Huge ridge: a -> 0, so test = signal + noise and train = signal + noise."""
    result = random_features.errors(2.0, 1.0, 1e8, signal=0.7, noise=0.2)
    assert abs(result.test - 0.9) < 1e-6 and abs(result.train - 0.9) < 1e-6


@pytest.mark.parametrize("kwargs", [dict(psi_n=-1.0), dict(psi_p=0.0), dict(lam=-0.1), dict(noise=-1.0)])
def test_bad_input(kwargs):
    arguments = dict(psi_n=2.0, psi_p=1.0, lam=0.1) | kwargs
    with pytest.raises(ParameterError):
        random_features.errors(**arguments)
