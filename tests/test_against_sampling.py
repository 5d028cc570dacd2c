"""trace_limit against finite-size Monte Carlo (sample_trace) where no closed form is known.

For each expression the normalised trace is sampled at base sizes 50, 100 and 200 over several
seeds; the means are extrapolated linearly in 1/d (finite-size corrections are O(1/d)) and the
limit must lie within four standard errors of the extrapolated value.
"""

import numpy as np
import pytest
import sympy

from pencils import Gaussian, sample_trace, trace_limit

from extrapolation import extrapolate

d, n, p, lam = sympy.symbols("d n p lambda")
X, Y, W = Gaussian("X", n, d), Gaussian("Y", d, d), Gaussian("W", p, d)
I_d, I_p = sympy.Identity(d), sympy.Identity(p)
S = X.T * X / n
DIMS = {n: 2 * d, p: sympy.Rational(3, 2) * d}
VALUES = {lam: 0.3}

EXPRESSIONS = {
    "two resolvents around a Wishart": (S + lam * I_d).I * Y * Y.T / d * (S + lam * I_d).I,
    "nested inverse": (I_d + (Y * Y.T / d + lam * I_d).I * S).I,
    "non-symmetric square Gaussian": (Y / sympy.sqrt(d) + 3 * I_d).I * (Y.T / sympy.sqrt(d) + 3 * I_d).I,
    "random-features Gram": W * S * W.T / d * (W * S * W.T / d + lam * I_p).I,
}
SIZES_AND_SEEDS = [(50, 40), (100, 20), (200, 10)]


@pytest.mark.parametrize("name", list(EXPRESSIONS))
def test_limit_matches_sampling(name):
    expr = EXPRESSIONS[name]
    limit = trace_limit(expr, DIMS, VALUES)
    means, errors = [], []
    for size, seeds in SIZES_AND_SEEDS:
        estimate = sample_trace(expr, DIMS, VALUES, size=size, seeds=seeds)
        means.append(estimate.mean)
        errors.append(estimate.stderr)
    extrapolated, error = extrapolate([size for size, _ in SIZES_AND_SEEDS], means, errors)
    assert abs(extrapolated - limit) < 4 * error, (limit, extrapolated, error, means)


def test_sample_trace_vectorised_and_reproducible():
    values = {lam: np.array([0.1, 1.0])}
    first = sample_trace((S + lam * I_d).I, DIMS, values, size=30, seeds=[1, 2, 3])
    again = sample_trace((S + lam * I_d).I, DIMS, values, size=30, seeds=[1, 2, 3])
    assert first.mean.shape == (2,) and np.all(first.stderr > 0)
    np.testing.assert_array_equal(first.mean, again.mean)
