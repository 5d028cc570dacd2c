"""Real gradient descent on the DSM loss (fresh noise at every step, finite d) against the exact gradient flow
of the same draw and against the limit dsm.gradient_flow."""

import numpy as np
import pytest

from pencils.errors import ParameterError
from pencils.models import dsm
from pencils.simulation.dsm_descent import gradient_descent


@pytest.mark.slow
def test_descent_converges_to_the_flow_as_the_step_shrinks_and_matches_the_limit():
    """d = 100, psi_n = 2, psi_p = 1, t = 0.5, lam = 0.1, rho = sin, 3 seeds, steps eta = 0.01 and 0.005.

    The descent has mean E B_k = V(I - (I - eta M)^k) M^{-1} (M = U + lam) and a fluctuation of variance
    O(eta / n), so descent minus flow (same W, X) is O(eta) (measured 4.5e-4 at eta = 0.01, 2.2e-4 at
    eta = 0.005, tau = 2), and its Richardson extrapolation 2 E(eta/2) - E(eta) must vanish within 4 standard
    errors of the seed mean (plus 1e-5 for the O(eta^2) remainder).  The extrapolated descent must then match the limit within
    4 standard errors plus 1e-3, the finite-size offset at d = 100 (the flow at d = 100, 200, 400 extrapolates
    to the limit: test_dsm_gradient_flow.py::test_against_finite_size_gradient_flow; measured offsets here
    <= 6e-4 against a curve that falls by 0.15 over these times)."""
    psi_n, psi_p, t, lam, times = 2.0, 1.0, 0.5, 0.1, [0.5, 2.0]
    theory = dsm.gradient_flow(psi_n, psi_p, t, np.array(times), lam=lam, activation="sin")
    coarse, fine = ([gradient_descent(100, psi_n, psi_p, t, times, lam=lam, learning_rate=rate, seed=seed)
                     for seed in range(3)] for rate in (0.01, 0.005))
    for name, limit in (("test", theory.test), ("train", theory.train)):
        excess = {label: np.array([getattr(run, name) - getattr(run, "flow_" + name) for run in runs])
                  for label, runs in (("coarse", coarse), ("fine", fine))}
        richardson = 2 * excess["fine"] - excess["coarse"]
        error = richardson.std(axis=0, ddof=1) / np.sqrt(3)
        assert np.all(np.abs(richardson.mean(axis=0)) < 4 * error + 1e-5), (name, richardson, error)
        extrapolated = np.array([2 * getattr(f, name) - getattr(c, name) for f, c in zip(fine, coarse)])
        spread = extrapolated.std(axis=0, ddof=1) / np.sqrt(3)
        assert np.all(np.abs(extrapolated.mean(axis=0) - limit) < 4 * spread + 1e-3), (name, extrapolated, limit)


def test_time_zero_is_the_untrained_score_and_bad_input_raises():
    run = gradient_descent(20, 2.0, 1.0, 0.5, [0.0, 0.05], lam=0.1, learning_rate=0.01)
    assert run.test[0] == 1.0 and run.train[0] == 1.0 and run.flow_test[0] == 1.0
    np.testing.assert_allclose(run.time, [0.0, 0.05])
    with pytest.raises(ParameterError, match="activation"):
        gradient_descent(20, 2.0, 1.0, 0.5, 1.0, activation="relu")
    with pytest.raises(ParameterError, match="time"):
        gradient_descent(20, 2.0, 1.0, 0.5, [-1.0])
    with pytest.raises(ParameterError, match="unstable"):
        gradient_descent(20, 2.0, 1.0, 0.5, 20.0, learning_rate=5.0)
