"""Robustness of the DSM solution on log grids (the full 60 x 60 version is benchmarks/robustness.py).

Every (t, lam) of the robustness benchmark on a 12 x 12 grid of (psi_n, psi_p) in [0.1, 100] whose diagonal has
psi_p = psi_n exactly: every point converges, none is NaN, the test error stays above its
optimum a^2 and the train error above 0, and the diagonal point, where a small ridge makes
the problem hardest, agrees with an independent path (each point alone from zero variance,
then Newton at 30 digits).
"""

import math
import warnings

import mpmath
import numpy as np
import pytest

from pencils.errors import PrecisionWarning
from pencils.models import dsm

PSI = np.geomspace(0.1, 100, 12)


@pytest.mark.slow
@pytest.mark.parametrize("t", [1e-3, 1e-2, 1.0])
@pytest.mark.parametrize("lam", [1e-9, 1e-3, 1.0])
def test_infinite_m_grid(t, lam):
    result = dsm.errors(PSI[:, None], PSI[None, :], t, lam)
    assert not np.any(np.isnan(result.test)) and not np.any(np.isnan(result.train))
    assert np.all(result.test >= math.exp(-2 * t) * (1 - 1e-9))
    assert np.all(result.train >= 0)
    k = 7  # psi_n = psi_p = 5.3
    reference = dsm.errors(PSI[k], PSI[k], t, lam, dps=30, continuation="variance")
    with mpmath.workdps(30):
        assert abs(result.test[k, k] - reference.test) <= 1e-10 * abs(reference.test)
        assert abs(result.train[k, k] - reference.train) <= 1e-10 * abs(reference.train)


@pytest.mark.slow
@pytest.mark.parametrize("lam", [1e-3, 1.0])
def test_finite_m_grid(lam):
    """m = 4 (106 and 195 unknowns) on a coarser grid: converges, no NaN; where double precision
    limits the result, a PrecisionWarning says so (p > n m at lam = 1e-3)."""
    psi = PSI[::2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PrecisionWarning)
        result = dsm.errors(psi[:, None], psi[None, :], 0.1, lam, m=4.0)
    assert not np.any(np.isnan(result.test)) and not np.any(np.isnan(result.train))
    assert np.all(result.test >= math.exp(-0.2) * (1 - 1e-9))


@pytest.mark.slow
@pytest.mark.parametrize("m", [1.0, 4.0])
def test_finite_m_grid_at_a_tiny_ridge(m):
    """lam = 1e-9: the primal form for p <= n m and the dual (block) form beyond, both continued in
    the ridge from 1e-2.  Every point converges, none is NaN; for m = 1 the diagonal is the
    interpolation threshold p = n m itself (test errors ~ 1e3 to 1e4, finished in arbitrary precision
    where the float residual stalls, with a PrecisionWarning).  Where p >= 2 n m the train error is
    lam^2 times a constant (the dual form's lam^2 tr(Z K^-2 Z^T)), so lam = 1e-9 and 1e-8 agree on
    train / lam^2 to O(lam) relative (1e-4 allows a gap to the threshold down to ~1e-4)."""
    psi = PSI[::3]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PrecisionWarning)
        result = dsm.errors(psi[:, None], psi[None, :], 0.1, 1e-9, m=m)
    assert not np.any(np.isnan(result.test)) and not np.any(np.isnan(result.train))
    assert np.all(result.test >= math.exp(-0.2) * (1 - 1e-9))
    assert np.all(result.train >= 0)
    psi_n, psi_p = np.broadcast_arrays(psi[:, None], psi[None, :])
    wide = psi_p >= 2 * m * psi_n
    larger = dsm.errors(psi_n[wide], psi_p[wide], 0.1, 1e-8, m=m)
    np.testing.assert_allclose(result.train[wide] / 1e-18, larger.train / 1e-16, rtol=1e-4)
