r"""Random-features ridge regression, from the engine.

Convention.  Inputs :math:`x \sim \mathcal N(0, I_d)`, labels
:math:`y = \langle \beta, x\rangle + \varepsilon` with :math:`\|\beta\|^2 = \texttt{signal}`
and :math:`\operatorname{Var}\varepsilon = \texttt{noise}`; the model
:math:`f(x) = \sum_{k=1}^p a_k\,\rho(\langle w_k, x\rangle/\sqrt d)` with
:math:`w_k \sim \mathcal N(0, I_d)`, trained on :math:`n` samples by

.. math::  a = \arg\min_a \frac1n \sum_{i=1}^n (y_i - f(x_i))^2 + \frac{p\lambda}{d}\|a\|^2,

with :math:`n = \psi_n d`, :math:`p = \psi_p d`, :math:`d \to \infty`.

Gaussian equivalence replaces the features :math:`F = \rho(W X/\sqrt d)`
(:math:`p \times n`) by :math:`\mu_1 W X/\sqrt d + v\,\Xi` with
:math:`v^2 = \|\rho\|^2 - \mu_0^2 - \mu_1^2` (the mean :math:`\mu_0` drops out of
the limit), so that with :math:`K = F F^T/n + (p\lambda/d) I_p` and
:math:`M = \mu_1^2 W W^T/d + v^2 I_p`, averaging over :math:`\beta` and
:math:`\varepsilon`,

.. math::
   \mathcal E_{\rm test} &= \texttt{noise} + \texttt{signal}\Bigl(1
      - \frac{2\mu_1}{n d\sqrt d}\operatorname{tr} W^T K^{-1} F X^T
      + \frac{1}{n^2 d}\operatorname{tr} M K^{-1} F X^T X F^T K^{-1}\Bigr)
      + \frac{\texttt{noise}}{n^2}\operatorname{tr} M K^{-1} F F^T K^{-1},\\
   \mathcal E_{\rm train} &= \frac{\texttt{signal}}{n d}\operatorname{tr} P X^T X P
      + \frac{\texttt{noise}}{n}\operatorname{tr} P^2,
      \qquad P = I_n - F^T K^{-1} F/n.

Anisotropic inputs (``covariance=``).  :math:`x = \Sigma^{1/2}g`, :math:`\Sigma` a
:class:`pencils.Diagonal` (:mod:`pencils.models.covariance`), :math:`\beta` isotropic
(:math:`\mathbb E\,\beta\beta^T = \texttt{signal}\,I/d`).  The pre-activations
:math:`\langle w_k, x\rangle/\sqrt d` have variance :math:`w_k^T\Sigma w_k/d \to \tau = \operatorname{tr}\Sigma/d`,
so the constants are those of :math:`\rho` at input variance :math:`\tau`
(:meth:`pencils.activations.Activation.at_variance`: :math:`\mu_1(\tau) = \mathbb E\,g\rho(\sqrt\tau g)`,
:math:`v^2(\tau)`), and the linear part acts on :math:`x`: :math:`F = (\mu_1(\tau)/\sqrt\tau)\,WX/\sqrt d + v(\tau)\Xi`
with :math:`X = \Sigma^{1/2}G`.  Then :math:`M = (\mu_1^2/\tau)W\Sigma W^T/d + v^2I_p`, the signal
term is :math:`\texttt{signal}\operatorname{tr}\Sigma/d` and the cross term
:math:`\operatorname{tr}\Sigma W^TK^{-1}FX^T`; with :math:`\Sigma = I` everything reduces to the above.

These expressions are handed to :func:`pencils.limit`; nothing is derived by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import sympy

from ... import activations
from ...gaussian import Gaussian
from ...limits import limit
from .. import difference
from ...simulation.random_features import RandomFeaturesSample, simulate
from ...validation import check_dps, check_real, check_shapes
from ..covariance import diagonal, mean, profile_key

__all__ = ["Errors", "errors", "quantities", "simulate", "RandomFeaturesSample", "symbols", "dims"]

d, n, p = sympy.symbols("d n p")
psi_n, psi_p, lam, mu1, v2, signal, noise, tau = sympy.symbols("psi_n psi_p lambda mu_1 v^2 signal noise tau")
symbols = {"psi_n": psi_n, "psi_p": psi_p, "lam": lam, "mu1": mu1, "v2": v2, "signal": signal, "noise": noise,
           "tau": tau}
dims = {d: d, n: psi_n * d, p: psi_p * d}


@lru_cache(maxsize=8)
def quantities(covariance: tuple | None = None) -> dict:
    r"""The test and train errors as SymPy expressions in traces.

    ``covariance``: a profile as :func:`pencils.models.covariance.profile_key` gives it
    (``None``: isotropic inputs); then ``symbols["tau"]`` is :math:`\operatorname{tr}\Sigma/d`.

    Examples
    --------
    >>> from pencils.models import random_features
    >>> sorted(random_features.quantities())
    ['test', 'train']
    """
    Tr = sympy.Trace
    if covariance is None:
        Sigma = root = sympy.Identity(d)
        slope, power = mu1, signal
    else:
        Sigma, root = diagonal("Sigma", d, covariance), diagonal("Sigma^{1/2}", d, covariance, sympy.Rational(1, 2))
        slope, power = mu1 / sympy.sqrt(tau), signal * Tr(Sigma) / d
    W, X, Xi = Gaussian("W", p, d), root * Gaussian("X", d, n), Gaussian("Xi", p, n)
    F = slope * W * X / sympy.sqrt(d) + sympy.sqrt(v2) * Xi
    K_inv = (F * F.T / n + p * lam / d * sympy.Identity(p)).I
    M = slope**2 * W * Sigma * W.T / d + v2 * sympy.Identity(p)
    P = sympy.Identity(n) - F.T * K_inv * F / n
    test = (
        noise
        + power
        - 2 * slope * signal * Tr(Sigma * W.T * K_inv * F * X.T) / (n * d * sympy.sqrt(d))
        + signal * Tr(M * K_inv * F * X.T * X * F.T * K_inv) / (n**2 * d)
        + noise * Tr(M * K_inv * F * F.T * K_inv) / n**2
    )
    train = signal * Tr(P * X.T * X * P) / (n * d) + noise * Tr(P * P) / n
    return {"test": test, "train": train}


@dataclass(frozen=True)
class Errors:
    """Asymptotic test and train errors (arrays broadcast over the parameters)."""

    test: np.ndarray | float
    train: np.ndarray | float

    @property
    def gap(self):
        """The generalization gap ``test - train``."""
        return difference(self.test, self.train)


def errors(psi_n, psi_p, lam, activation="relu", signal=1.0, noise=0.0, dps: int | None = None,
           covariance=None) -> Errors:
    r"""Limits of the test and train errors of random-features ridge regression.

    Parameters
    ----------
    psi_n, psi_p : float or array_like
        :math:`n/d` and :math:`p/d`, positive.
    lam : float or array_like
        The ridge :math:`\lambda > 0` in the :math:`(p\lambda/d)\|a\|^2` normalisation.
    activation : str, callable or Activation
        See :func:`pencils.activations.get`.
    signal, noise : float or array_like
        :math:`\|\beta\|^2` and the label-noise variance (both :math:`\ge 0`).
    dps : int, optional
        Decimal digits (mpmath) instead of floats.
    covariance : sympy.Lambda, list of atoms or (atoms, weights), optional
        Inputs :math:`\mathcal N(0, \Sigma)` with this spectral law of :math:`\Sigma`
        (:mod:`pencils.models.covariance`; module notes); isotropic by default.

    Returns
    -------
    Errors
        ``.test``, ``.train`` and ``.gap``.

    Examples
    --------
    >>> from pencils.models import random_features
    >>> result = random_features.errors(psi_n=2.0, psi_p=1.0, lam=1e-2)
    >>> 0 < result.train < result.test < 1
    True
    """
    values = {"psi_n": psi_n, "psi_p": psi_p, "lam": lam, "signal": signal, "noise": noise}
    for name, value in values.items():
        check_real(value, name, strict=name not in ("signal", "noise"))
    check_shapes(values)
    dps = check_dps(dps)
    constants = activations.get(activation)
    key = profile_key(covariance, "covariance")
    subs = {symbols["psi_n"]: psi_n, symbols["psi_p"]: psi_p, symbols["lam"]: lam,
            symbols["signal"]: signal, symbols["noise"]: noise}
    if key is not None:
        subs[tau] = mean(key, dps)
        constants = constants.at_variance(subs[tau])
    subs[mu1], subs[v2] = constants.mu1(dps=dps), constants.correlated_split(1, dps=dps).total
    found = quantities(key)
    return Errors(*(limit(found[key], dims, subs, dps=dps) for key in ("test", "train")))
