"""The Marchenko-Pastur model against the textbook closed forms."""

import numpy as np
import pytest

from closed_forms import marchenko_pastur_density, marchenko_pastur_edges, marchenko_pastur_stieltjes
from pencils import quadrature
from pencils.errors import ParameterError
from pencils.models import marchenko_pastur


@pytest.mark.parametrize("gamma", [0.25, 1.0, 3.0])
def test_stieltjes_on_the_negative_axis(gamma):
    z = -np.logspace(-2, 1, 12)
    np.testing.assert_allclose(marchenko_pastur.stieltjes(z, gamma), marchenko_pastur_stieltjes(z, gamma), rtol=1e-12)


@pytest.mark.parametrize("gamma", [0.3, 0.8])
def test_density(gamma):
    x = np.linspace(0.05, 4.0, 40)
    np.testing.assert_allclose(marchenko_pastur.density(x, gamma), marchenko_pastur_density(x, gamma), atol=1e-6)


def test_density_integrates_to_one():
    """Gauss-Legendre in theta, x = lower + (upper - lower)(1 - cos theta)/2, smooths the edges."""
    gamma = 0.5
    lower, upper = (float(edge) for edge in marchenko_pastur_edges(gamma))
    theta, weights = quadrature.gauss_legendre(80, 0.0, np.pi)
    x = lower + (upper - lower) * (1 - np.cos(theta)) / 2
    jacobian = (upper - lower) * np.sin(theta) / 2
    total = np.sum(weights * marchenko_pastur.density(x, gamma, epsilon=1e-12) * jacobian)
    assert abs(total - 1) < 1e-8


def test_bad_ratio():
    with pytest.raises(ParameterError, match="gamma"):
        marchenko_pastur.stieltjes(-1.0, -0.5)
