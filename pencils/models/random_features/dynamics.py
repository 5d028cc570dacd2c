r"""Random-features regression trained by gradient flow on the second layer: errors along training time.

With the conventions of :mod:`pencils.models.random_features.ridge` (features
:math:`F \in \mathbb R^{p\times n}`, Gaussian-equivalent to
:math:`\mu_1WX/\sqrt d + v\,\Xi`, labels :math:`y = X^T\beta + \varepsilon`), the
second layer :math:`a` follows gradient flow from :math:`a(0) = 0` on

.. math::  L(a) = \frac1n\|y - F^Ta\|^2 + \frac{p\lambda}{d}\|a\|^2,
           \qquad \frac{da}{d\tau} = -\frac12\nabla L(a) = \frac{Fy}{n} - (G + \kappa)a,

with :math:`G = FF^T/n`, :math:`\kappa = p\lambda/d` (the time unit of
:func:`pencils.models.dsm.gradient_flow`: the Hessian of :math:`L/2` is
:math:`G + \kappa`).  Hence

.. math::  a(\tau) = \varphi_\tau(G)\,\frac{Fy}{n}, \qquad
           \varphi_\tau(x) = \frac{1 - e^{-\tau(x + \kappa)}}{x + \kappa},

and :math:`\tau \to \infty` (with :math:`\lambda > 0`) gives the ridge estimator
:math:`a = (G + \kappa)^{-1}Fy/n` of :func:`pencils.models.random_features.errors`.
Averaging over :math:`\beta` (:math:`\mathbb E\,\beta\beta^T = \texttt{signal}\,I/d`)
and :math:`\varepsilon`, with :math:`M = \mu_1^2WW^T/d + v^2I_p` the feature
covariance at a fresh input, the test error is that of the ridge formula with
:math:`K^{-1}` replaced by :math:`\varphi_\tau(G)`; the term of the noise folds into one
function, :math:`\varphi_\tau(G)FF^T\varphi_\tau(G)/n^2 = (x\varphi_\tau^2)(G)/n`:

.. math::
   \mathcal E_{\rm test}(\tau) = \texttt{noise} + \texttt{signal}\Bigl(1
      - \frac{2\mu_1}{nd\sqrt d}\operatorname{tr} W^T\varphi_\tau(G)FX^T
      + \frac{1}{n^2d}\operatorname{tr} M\varphi_\tau(G)FX^TXF^T\varphi_\tau(G)\Bigr)
      + \frac{\texttt{noise}}{n}\operatorname{tr} M\,(x\varphi_\tau^2)(G).

The training residual is :math:`y - F^Ta = P_\tau y` with
:math:`P_\tau = I_n - F^T\varphi_\tau(G)F/n = \pi_\tau(H)`, a function of the
:math:`n\times n` Gram matrix :math:`H = F^TF/n` (:math:`F^T\varphi(G) = \varphi(H)F^T`),
:math:`\pi_\tau(x) = 1 - x\varphi_\tau(x)`, so both parts of the train error are one
function of :math:`H` each:

.. math::
   \mathcal E_{\rm train}(\tau) = \frac{\texttt{signal}}{nd}\operatorname{tr} X^TX\,\pi_\tau^2(H)
      + \frac{\texttt{noise}}{n}\operatorname{tr}\pi_\tau^2(H).

At :math:`\tau = 0`, :math:`a = 0`: both errors are :math:`\texttt{signal} + \texttt{noise}`.
Every trace is a contour integral of resolvents (:class:`pencils.MatrixFunction`),
solved once for all the times of a curve.  The traces are written with functions of
:math:`G` alone (:func:`gradient_flow_quantities`; for :math:`p > n` its spectrum has an
atom at 0, enclosed by the contours like its bulk).  Everything here is re-exported by
:mod:`pencils.models.random_features`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import sympy
from sympy.codegen.cfunctions import expm1

from ... import activations
from ...errors import ParameterError
from ...functions import MatrixFunction
from ...gaussian import Gaussian
from ...limits import limit
from ...validation import check_dps, check_real
from .. import difference
from .ridge import d, dims, mu1, n, noise, p, signal, symbols, v2

__all__ = ["GradientFlow", "gradient_flow", "gradient_flow_quantities", "training_time"]

#: The training time :math:`\tau` and the ridge :math:`\kappa = p\lambda/d` of the flow's filter in
#: :func:`gradient_flow_quantities` (a symbol of its own: the dimension ratios may not be parameters of a function).
training_time, flow_ridge = sympy.symbols("tau_train kappa", nonnegative=True)


@lru_cache(maxsize=2)
def gradient_flow_quantities(features_side: bool = True) -> dict:
    r"""The test and train errors along gradient flow, as traces of functions of one Gram matrix (module notes).

    ``features_side``: functions of :math:`G = FF^T/n` (:math:`p \times p`, used by :func:`gradient_flow`),
    else the same errors written with functions of :math:`H = F^TF/n` (:math:`n \times n`).  The two are
    exchanged by
    :math:`F^Tf(G) = f(H)F^T` and :math:`\pi_\tau^2(H) = I_n - F^T(2\varphi_\tau - x\varphi_\tau^2)(G)F/n`.

    Examples
    --------
    >>> from pencils.models import random_features
    >>> sorted(random_features.gradient_flow_quantities())
    ['test', 'train']
    """
    x = sympy.Dummy("x")
    W, X, Xi = Gaussian("W", p, d), Gaussian("X", d, n), Gaussian("Xi", p, n)
    F = mu1 * W * X / sympy.sqrt(d) + sympy.sqrt(v2) * Xi
    M = mu1**2 * W * W.T / d + v2 * sympy.Identity(p)
    flow = -expm1(-training_time * (x + flow_ridge)) / (x + flow_ridge)
    Tr = sympy.Trace

    def function(expression):
        return MatrixFunction(sympy.Lambda(x, expression), F * F.T / n if features_side else F.T * F / n)

    phi = function(flow)
    # each trace argument is of order one, as the contour integrals need (the scalings inside)
    if features_side:
        cross = Tr(W.T * phi * F * X.T / (n * sympy.sqrt(d)))
        fitted = Tr(M * phi * F * X.T * X * F.T * phi / n**2)
        fitted_noise = Tr(M * function(x * flow**2)) / n
        explained = function(2 * flow - x * flow**2)  # x times it is 1 - pi^2
        residual_signal = Tr(X.T * X) / (n * d) - Tr(F * X.T * X * F.T * explained / n**2) / d
        residual_noise = 1 - Tr(function(x * (2 * flow - x * flow**2))) / n
    else:
        cross = Tr(W.T * F * phi * X.T / (n * sympy.sqrt(d)))
        fitted = Tr(M * F * phi * X.T * X * phi * F.T / n**2)
        fitted_noise = Tr(F.T * M * F * function(flow**2) / n) / n
        residual = function((1 - x * flow) ** 2)
        residual_signal = Tr(X.T * X * residual / d) / n
        residual_noise = Tr(residual) / n
    test = noise + signal - 2 * mu1 * signal * cross / d + signal * fitted / d + noise * fitted_noise
    train = signal * residual_signal + noise * residual_noise
    return {"test": test, "train": train}


@dataclass(frozen=True)
class GradientFlow:
    r"""Asymptotic random-features errors along gradient flow, broadcast over the training times.

    Attributes
    ----------
    time : numpy.ndarray or float
        The training times :math:`\tau`.
    test, train : numpy.ndarray or float
        Test error (label noise included) and train error (mean squared residual).
    """

    time: np.ndarray | float
    test: np.ndarray | float
    train: np.ndarray | float

    @property
    def gap(self):
        """The generalization gap ``test - train``."""
        return difference(self.test, self.train)


def gradient_flow(psi_n, psi_p, time, lam=0.0, activation="relu", signal=1.0, noise=0.0,
                  dps: int | None = None) -> GradientFlow:
    r"""Test and train errors of random features whose second layer is trained by gradient flow for a time ``time``.

    From :math:`a(0) = 0`, :math:`da/d\tau = -\frac12\nabla L` on
    :math:`L(a) = \|y - F^Ta\|^2/n + (p\lambda/d)\|a\|^2` gives
    :math:`a(\tau) = \varphi_\tau(G)Fy/n`,
    :math:`\varphi_\tau(x) = (1 - e^{-\tau(x + p\lambda/d)})/(x + p\lambda/d)`, :math:`G = FF^T/n`; the
    errors (module notes, :func:`gradient_flow_quantities`) are contour integrals of
    resolvent traces, solved once for all the times.  :math:`\tau \to \infty` with
    :math:`\lambda > 0` gives :func:`pencils.models.random_features.errors`; with
    :math:`\lambda = 0` the curve shows epoch-wise double descent near :math:`p = n`.

    Parameters
    ----------
    psi_n, psi_p : float
        :math:`n/d` and :math:`p/d` (positive scalars).
    time : float or array_like
        Training times :math:`\tau \ge 0` (an array is one batch).
    lam : float
        Ridge :math:`\lambda \ge 0` in the :math:`(p\lambda/d)\|a\|^2` normalisation.
    activation : str, callable or Activation
        See :func:`pencils.activations.get`.
    signal, noise : float
        :math:`\|\beta\|^2` and the label-noise variance (both :math:`\ge 0`).
    dps : int, optional
        Decimal digits (mpmath) instead of floats.

    Returns
    -------
    GradientFlow
        ``.time``, ``.test``, ``.train`` and ``.gap``.

    Raises
    ------
    pencils.errors.ParameterError
        If a parameter other than ``time`` is an array, or out of range.
    pencils.errors.ConvergenceError
        If the contour quadrature does not converge.

    Examples
    --------
    At :math:`\tau = 0` the model is 0 (both errors ``signal + noise``); long training
    with a ridge reaches the ridge estimator:

    >>> from pencils.models import random_features
    >>> flow = random_features.gradient_flow(2.0, 1.0, [0.0, 1e4], lam=0.1, noise=0.25)
    >>> [round(float(v), 10) for v in flow.test]
    [1.25, 0.9511423812]
    >>> round(float(random_features.errors(2.0, 1.0, 0.1, noise=0.25).test), 10)
    0.9511423812
    """
    for name, value in (("psi_n", psi_n), ("psi_p", psi_p), ("lam", lam), ("signal", signal), ("noise", noise)):
        if np.ndim(value):
            raise ParameterError(
                f"{name} must be a scalar in random_features.gradient_flow (only time may be an array); got {value}.")
    check_real(psi_n, "psi_n")
    check_real(psi_p, "psi_p")
    for name, value in (("lam", lam), ("signal", signal), ("noise", noise), ("time", time)):
        check_real(value, name, minimum=0, strict=False)
    dps = check_dps(dps)
    times = np.asarray(time, dtype=object if dps is not None else float)
    constants = activations.get(activation)
    subs = {symbols["psi_n"]: psi_n, symbols["psi_p"]: psi_p, symbols["lam"]: lam, symbols["signal"]: signal,
            symbols["noise"]: noise, mu1: constants.mu1(dps=dps), v2: constants.correlated_split(1, dps=dps).total,
            flow_ridge: psi_p * lam, training_time: times}
    forms = gradient_flow_quantities()
    test, train = limit([forms["test"], forms["train"]], dims, subs, dps=dps)
    return GradientFlow(times if np.ndim(times) else times.item(), test, train)

