r"""Random-features ridge regression at finite size, with the real activation.

Draws :math:`x_i \sim \mathcal N(0, \Sigma)` (:math:`\Sigma = I_d` unless a ``covariance`` is
given: then diagonal with the eigenvalues of :func:`pencils.simulation.covariance.profile_values`),
:math:`\beta` uniform on the sphere
of radius :math:`\sqrt{\texttt{signal}}`, :math:`y_i = \langle\beta, x_i\rangle + \varepsilon_i`,
:math:`W` with :math:`\mathcal N(0,1)` entries, fits

.. math::  a = \Bigl(\frac{F^T F}{n} + \frac{p\lambda}{d} I_p\Bigr)^{-1}\frac{F^T y}{n},
           \qquad F = \rho(X W^T/\sqrt d) \in \mathbb R^{n \times p},

and returns the training error and the test error
:math:`\texttt{noise} + \mathbb E_x(\langle\beta, x\rangle - a^T\rho(Wx/\sqrt d))^2`.
For positively homogeneous activations (ReLU, linear) that expectation is
exact: with :math:`u = Wx/\sqrt d` jointly Gaussian of covariance
:math:`C = W\Sigma W^T/d`, :math:`\mathbb E\rho(u_k)\rho(u_l) = \sigma_k\sigma_l\,c(r_{kl})`,
:math:`\mathbb E\langle\beta,x\rangle^2 = \beta^T\Sigma\beta` and, by Stein's lemma,
:math:`\mathbb E[\langle\beta,x\rangle\rho(u_k)] = (W\Sigma\beta)_k/\sqrt d\;\mathbb E\rho'(\sigma_k g)`.
Otherwise it is a Monte Carlo average over ``n_test`` fresh inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import activations as activation_module
from ..validation import check_number, check_positive_int
from .covariance import as_profile, profile_values

__all__ = ["RandomFeaturesSample", "simulate"]

# Positively homogeneous activations, rho(s x) = s rho(x): exact test error from their kernel.
_HOMOGENEOUS = (activation_module.relu, activation_module.linear)


@dataclass(frozen=True)
class RandomFeaturesSample:
    """One finite-size draw: errors and the sizes they were measured at."""

    test: float
    train: float
    d: int
    n: int
    p: int
    seed: int
    exact_test: bool


def simulate(
    d: int,
    psi_n: float,
    psi_p: float,
    lam: float,
    activation="relu",
    signal: float = 1.0,
    noise: float = 0.0,
    seed: int = 0,
    n_test: int = 20000,
    covariance: Any = None,
) -> RandomFeaturesSample:
    r"""Train random-features ridge regression once at dimension ``d``.

    Parameters
    ----------
    d : int
        Input dimension; ``n = round(psi_n d)``, ``p = round(psi_p d)``.
    psi_n, psi_p, lam, activation, signal, noise
        As in :func:`pencils.models.random_features.errors`.
    seed : int
        Seed of every draw.
    n_test : int
        Fresh inputs for the Monte Carlo test error (non-homogeneous activations only).
    covariance : optional
        The covariance profile of the inputs, as in :func:`pencils.models.random_features.errors`.

    Examples
    --------
    >>> from pencils.simulation.random_features import simulate
    >>> sample = simulate(d=50, psi_n=2.0, psi_p=1.0, lam=1e-2, seed=1)
    >>> (sample.n, sample.p, sample.exact_test)
    (100, 50, True)
    >>> 0 < sample.train < sample.test
    True
    """
    d, n_test = check_positive_int(d, "d"), check_positive_int(n_test, "n_test")
    for name, value in (("psi_n", psi_n), ("psi_p", psi_p), ("lam", lam), ("signal", signal), ("noise", noise)):
        check_number(value, name, strict=name not in ("signal", "noise"), hint=" A simulation takes one value.")
    act = activation_module.get(activation)
    rng = np.random.default_rng(seed)
    n, p = max(1, round(psi_n * d)), max(1, round(psi_p * d))
    scales = np.ones(d) if covariance is None else np.sqrt(profile_values(d, *as_profile(covariance, "covariance")))
    X = rng.standard_normal((n, d)) * scales
    beta = rng.standard_normal(d)
    beta *= np.sqrt(signal) / np.linalg.norm(beta)
    y = X @ beta + np.sqrt(noise) * rng.standard_normal(n)
    W = rng.standard_normal((p, d))
    F = act(X @ W.T / np.sqrt(d))
    a = np.linalg.solve(F.T @ F / n + p * lam / d * np.eye(p), F.T @ y / n)
    train = float(np.mean((y - F @ a) ** 2))
    exact = act in _HOMOGENEOUS
    if exact:
        sigma = np.linalg.norm(W * scales, axis=1) / np.sqrt(d)
        correlation = np.clip(((W * scales) @ (W * scales).T / d) / np.outer(sigma, sigma), -1.0, 1.0)
        second = np.outer(sigma, sigma) * act.kernel(correlation)
        cross = (W @ (scales**2 * beta)) / np.sqrt(d) * act.mu1()  # E rho'(sigma g) = E rho'(g) = mu1
        power = signal if covariance is None else float(np.sum(scales**2 * beta**2))  # E <beta, x>^2
        test = noise + power - 2 * a @ cross + a @ second @ a
    else:
        residuals = []
        for start in range(0, n_test, 4096):
            x = rng.standard_normal((min(4096, n_test - start), d)) * scales
            residuals.append(x @ beta - act(x @ W.T / np.sqrt(d)) @ a)
        test = noise + float(np.mean(np.concatenate(residuals) ** 2))
    return RandomFeaturesSample(float(test), train, d, n, p, seed, exact)
