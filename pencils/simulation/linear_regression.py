r"""Ridge regression on anisotropic Gaussian data at finite size.

Draws :math:`X = G\Sigma^{1/2}` (:math:`n \times d`, :math:`G` with i.i.d.
:math:`\mathcal N(0, 1)` entries, :math:`\Sigma` diagonal with the finite-``d``
eigenvalues of :func:`pencils.simulation.covariance.profile_values`) and fits

.. math::  w = (S + \lambda I_d)^{-1} X^T y / n, \qquad S = X^TX/n,

on :math:`y = X\beta + \varepsilon`, :math:`\mathbb E\,\beta\beta^T = r^2 T/d`
(:math:`T` the teacher profile, diagonal in the same basis), :math:`\mathbb E\,\varepsilon\varepsilon^T = \sigma^2 I_n`.
For the drawn :math:`X` the errors are averaged over :math:`\beta` and
:math:`\varepsilon` exactly: with the singular value decomposition
:math:`X = U\operatorname{diag}(s)V^T` (full :math:`U`, :math:`V`) and
:math:`g_k = \lambda/(s_k^2/n + \lambda)` (1 on null directions, also at
:math:`\lambda = 0`, which gives the minimum-norm interpolator),

.. math::
   \mathrm{bias} = \frac{r^2}{d}\operatorname{tr} TP\Sigma P, \quad P = V\operatorname{diag}(g)V^T, \qquad
   \mathrm{variance} = \sigma^2\operatorname{tr} \Sigma AA^T, \quad A = V\operatorname{diag}\Bigl(\frac{s_k/n}{s_k^2/n + \lambda}\Bigr)U^T,

test :math:`=` bias :math:`+` variance :math:`+\,\sigma^2`, and with
:math:`Q = U\operatorname{diag}(g)U^T` (the residual map :math:`y \mapsto y - Xw`)
the train error :math:`\frac1n\bigl[\frac{r^2}{d}\operatorname{tr} TX^TQ^2X + \sigma^2\operatorname{tr} Q^2\bigr]`.
Only :math:`X` is random: the spread over seeds is that of the design.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..validation import check_positive_int, check_real
from .covariance import as_profile, profile_values

__all__ = ["RidgeSample", "simulate"]


@dataclass(frozen=True)
class RidgeSample:
    """Errors of one draw of the design, averaged over the teacher and the label noise."""

    test: float
    train: float
    bias: float
    variance: float
    d: int
    n: int
    seed: int


def simulate(d: int, psi_n: float, lam: float, signal: float = 1.0, noise: float = 0.0,
             covariance: Any = None, teacher: Any = None, seed: int = 0) -> RidgeSample:
    r"""Fit ridge regression once at dimension ``d`` (``n = round(psi_n d)``).

    Parameters
    ----------
    d : int
        Dimension.
    psi_n, lam, signal, noise, covariance, teacher
        As in :func:`pencils.models.linear_regression.errors` (``lam = 0``: minimum-norm least squares).
    seed : int
        Seed of the design.

    Examples
    --------
    Least squares at :math:`n = 2d` on isotropic data: variance
    :math:`\sigma^2\operatorname{tr}(X^TX)^{-1} \approx \sigma^2 d/(n - d)`:

    >>> from pencils.simulation.linear_regression import simulate
    >>> sample = simulate(200, 2.0, 0.0, noise=1.0, seed=1)
    >>> (sample.n, sample.bias < 1e-20, round(sample.variance, 1))
    (400, True, 1.0)
    """
    d = check_positive_int(d, "d")
    for name, value in (("psi_n", psi_n), ("lam", lam), ("signal", signal), ("noise", noise)):
        check_real(value, name, strict=name == "psi_n")
    n = max(1, round(psi_n * d))
    spectrum = np.ones(d) if covariance is None else profile_values(d, *as_profile(covariance, "covariance"))
    profile = np.ones(d) if teacher is None else profile_values(d, *as_profile(teacher, "teacher", like=covariance))
    X = np.random.default_rng(seed).standard_normal((n, d)) * np.sqrt(spectrum)
    U, s, Vt = np.linalg.svd(X, full_matrices=True)
    rank = int(np.sum(s > s[0] * max(n, d) * np.finfo(float).eps))
    eigenvalues = s[:rank] ** 2 / n
    shrink_d, shrink_n = np.ones(d), np.ones(n)  # g_k on the right and on the left singular vectors
    shrink_d[:rank] = shrink_n[:rank] = lam / (eigenvalues + lam) if lam > 0 else 0.0
    P = (Vt.T * shrink_d) @ Vt
    bias = signal / d * float(np.sum(P**2 * profile[:, None] * spectrum[None, :]))  # tr(T P Sigma P)
    gain = np.zeros(d)
    gain[:rank] = (s[:rank] / n) / (eigenvalues + lam)
    variance = noise * float(np.sum(spectrum[:, None] * (Vt.T * gain) ** 2))  # tr(Sigma A A^T)
    Q_X = (U * shrink_n) @ (U.T @ X)  # Q X, Q = U diag(g) U^T
    train = (signal / d * float(np.sum(Q_X**2 * profile)) + noise * float(np.sum(shrink_n**2))) / n
    return RidgeSample(bias + variance + noise, train, bias, variance, d, n, seed)
