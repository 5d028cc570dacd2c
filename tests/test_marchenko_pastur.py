"""The Marchenko-Pastur model against the textbook closed forms."""

import numpy as np
import pytest

from pencils.errors import ParameterError
from pencils.models import marchenko_pastur


def closed_form_density(x, gamma):
    lower, upper = (1 - np.sqrt(gamma)) ** 2, (1 + np.sqrt(gamma)) ** 2
    inside = np.clip((upper - x) * (x - lower), 0, None)
    return np.sqrt(inside) / (2 * np.pi * gamma * x)


@pytest.mark.parametrize("gamma", [0.25, 1.0, 3.0])
def test_stieltjes_on_the_negative_axis(gamma):
    z = -np.logspace(-2, 1, 12)
    m = marchenko_pastur.stieltjes(z, gamma)
    root = np.sqrt((z - 1 - gamma) ** 2 - 4 * gamma)
    expected = (1 - gamma - z - root) / (2 * gamma * z)
    np.testing.assert_allclose(m, expected, rtol=1e-12)


@pytest.mark.parametrize("gamma", [0.3, 0.8])
def test_density(gamma):
    x = np.linspace(0.05, 4.0, 40)
    np.testing.assert_allclose(marchenko_pastur.density(x, gamma), closed_form_density(x, gamma), atol=1e-6)


def test_density_integrates_to_one():
    """Gauss-Legendre in theta, x = lower + (upper - lower)(1 - cos theta)/2, smooths the edges."""
    gamma = 0.5
    lower, upper = (1 - np.sqrt(gamma)) ** 2, (1 + np.sqrt(gamma)) ** 2
    nodes, weights = np.polynomial.legendre.leggauss(80)
    theta = np.pi * (nodes + 1) / 2
    x = lower + (upper - lower) * (1 - np.cos(theta)) / 2
    jacobian = (upper - lower) * np.sin(theta) / 2 * np.pi / 2
    total = np.sum(weights * marchenko_pastur.density(x, gamma, epsilon=1e-12) * jacobian)
    assert abs(total - 1) < 1e-8


def test_bad_ratio():
    with pytest.raises(ParameterError, match="gamma"):
        marchenko_pastur.stieltjes(-1.0, -0.5)
