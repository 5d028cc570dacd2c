r"""DSM trained by gradient flow from :math:`B = 0`: errors along training time, memorisation and early stopping.

With the conventions of :mod:`pencils.models.dsm.ridge` (:math:`m = \infty`: the loss is
quadratic in :math:`B` with Hessian :math:`U + \lambda I_p`), gradient flow from
:math:`B = 0` gives :math:`B(\tau) = V(I - e^{-\tau(U + \lambda)})(U + \lambda)^{-1}`.
The test and train errors are traces of :math:`A = WW^T/d` and functions of
:math:`U` (:class:`pencils.MatrixFunction`), solved once for all the training
times.  Everything here is re-exported by :mod:`pencils.models.dsm`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import sympy
from sympy.codegen.cfunctions import expm1

from ... import activations
from ...errors import ConvergenceError, ParameterError
from ...functions import MatrixFunction
from ...gaussian import Gaussian
from ...limits import limit
from ...validation import check_dps, check_real
from .. import difference
from .ridge import (
    a, check_parameters, d, dims, errors, feature_matrix, h, k, lam, m, mu1, n, optimum, p, s_squared, scale,
    substitutions, tilt, training_time, v0_squared, v_squared,
)

__all__ = ["GradientFlow", "gradient_flow", "gradient_flow_quantities", "memorization_time", "early_stopping_time"]

@lru_cache(maxsize=2)
def gradient_flow_quantities(finite_m: bool = False) -> dict:
    r"""The :math:`m = \infty` test and train errors along gradient flow, as traces of functions of :math:`U`.

    Gradient flow on the :math:`m = \infty` loss from :math:`B = 0` gives
    :math:`B(\tau) = Vg_\tau(U)` with
    :math:`g_\tau(x) = (1 - e^{-\tau(x + \lambda)})/(x + \lambda)` (``symbols["time"]``
    is :math:`\tau`).  With :math:`A = WW^T/d`, :math:`V^TV = h\mu_1^2A` and
    :math:`U_{\rm test} = V^TV/h + v^2I_p`, so every trace is of :math:`A` and
    functions of :math:`U` alone:

    .. math::
       E_{\rm test} &= 1 + \frac{h\mu_1^2}{d}\operatorname{tr} A\,(v^2g_\tau^2 - 2g_\tau)(U)
                      + \frac{h\mu_1^4}{d}\operatorname{tr} A\,g_\tau(U)\,A\,g_\tau(U), \\
       E_{\rm train} &= 1 + \frac{h\mu_1^2}{d}\operatorname{tr} A\,(xg_\tau^2 - 2g_\tau)(U).

    :math:`V` vanishes on the null space of :math:`U - s^2I_p` (the range of
    :math:`W` lies in that of :math:`U - s^2I_p`), so the atom of :math:`U` at
    :math:`s^2` contributes nothing: the contour around the bulk alone gives the
    traces.  The two-occurrence trace is symmetric in its two resolvents, which
    :func:`pencils.limit` uses.

    ``finite_m=True``: :math:`m` noise draws per point, in the rotated form of
    :func:`pencils.models.dsm.quantities` (feature blocks :math:`F_a, F_b`, noise blocks
    :math:`Z_a, Z_b`).  The loss is quadratic with Hessian :math:`G + \lambda I_p`,
    :math:`G = (F_aF_a^T + F_bF_b^T)/(nm)`, so :math:`B(\tau) = Q g_\tau(G)` with
    :math:`Q = (Z_aF_a^T + Z_bF_b^T)/(nm)`, and (:math:`\|Z\|^2/(nmd) \to 1`)

    .. math::
       E_{\rm test} &= 1 + \frac1d\operatorname{tr} Q^TQ\,g_\tau(G)\,U_{\rm test}\,g_\tau(G)
                      - \frac2d\operatorname{tr} V^TQ\,g_\tau(G), \\
       E_{\rm train} &= 1 + \frac1d\operatorname{tr} Q^TQ\,(xg_\tau^2 - 2g_\tau)(G).

    :math:`Q` vanishes on the null space of :math:`G` (an atom at 0 when :math:`p > nm`),
    which therefore contributes nothing.

    Examples
    --------
    >>> from pencils.models import dsm
    >>> sorted(dsm.gradient_flow_quantities())
    ['test', 'train']
    """
    x = sympy.Dummy("x")
    W = Gaussian("W", p, d)
    A = W * W.T / d
    flow = -expm1(-training_time * (x + lam)) / (x + lam)
    if finite_m:
        return _finite_m_flow_quantities(W, x, flow)
    U = feature_matrix()

    def function(expression):
        return MatrixFunction(sympy.Lambda(x, expression), U)

    g = function(flow)
    test = 1 + (h * mu1**2 * sympy.Trace(A * function(v_squared * flow**2 - 2 * flow))
                + h * mu1**4 * sympy.Trace(A * g * A * g)) / d
    train = 1 + h * mu1**2 * sympy.Trace(A * function(x * flow**2 - 2 * flow)) / d
    return {"test": test, "train": train}


def _finite_m_flow_quantities(W, x, flow) -> dict:
    """The finite-m errors of :func:`gradient_flow_quantities` (rotated blocks as in :func:`pencils.models.dsm.quantities`)."""
    sqrt, Tr = sympy.sqrt, sympy.Trace
    X, Xi0 = Gaussian("X", d, n), Gaussian("Xi_0", p, n)
    Za, Zb = Gaussian("Z_a", d, n), Gaussian("Z_b", d, k)
    Xia, Xib = Gaussian("Xi_a", p, n), Gaussian("Xi_b", p, k)
    Fa = mu1 * W * (a * sqrt(m) * X + sqrt(h) * Za) / sqrt(d) + sqrt(v0_squared * m) * Xi0 + sqrt(s_squared) * Xia
    Fb = mu1 * sqrt(h) * W * Zb / sqrt(d) + sqrt(s_squared) * Xib
    Q = (Za * Fa.T + Zb * Fb.T) / (n * m)
    G = (Fa * Fa.T + Fb * Fb.T) / (n * m)
    V = sqrt(h) * mu1 * W.T / sqrt(d)
    U_test = mu1**2 * W * W.T / d + v_squared * sympy.Identity(p)

    def function(expression):
        return MatrixFunction(sympy.Lambda(x, expression), G)

    g = function(flow)
    test = 1 + (Tr(Q.T * Q * g * U_test * g) - 2 * Tr(V.T * Q * g)) / d
    train = 1 + Tr(Q.T * Q * function(x * flow**2 - 2 * flow)) / d
    return {"test": test, "train": train}


@dataclass(frozen=True)
class GradientFlow:
    r"""Asymptotic DSM errors along gradient flow (:math:`m = \infty`), broadcast over the training times.

    Attributes
    ----------
    time : numpy.ndarray or float
        The training times :math:`\tau`.
    test, train : numpy.ndarray or float
        Test and train errors (divided by ``d``).
    optimum : float
        The best possible test error :math:`e^{-2t}`.
    """

    time: np.ndarray | float
    test: np.ndarray | float
    train: np.ndarray | float
    optimum: float

    @property
    def gap(self):
        """The generalization gap ``test - train``."""
        return difference(self.test, self.train)


def gradient_flow(psi_n, psi_p, t, time, lam=0.0, m=math.inf, activation="relu", dps: int | None = None) -> GradientFlow:
    r"""DSM test and train errors of the score trained by gradient flow from :math:`B = 0` for a time ``time``.

    For :math:`m = \infty` the loss is quadratic in :math:`B` with Hessian
    :math:`U + \lambda I_p` and gradient flow gives
    :math:`B(\tau) = V(I - e^{-\tau(U + \lambda)})(U + \lambda)^{-1}`; its errors
    (:func:`gradient_flow_quantities`) are contour integrals of resolvent traces of
    :math:`U` (:class:`pencils.MatrixFunction`), solved once for all the times.
    :math:`\tau \to \infty` gives the ridge errors of :func:`errors`.

    Parameters
    ----------
    psi_n, psi_p, t : float
        :math:`n/d`, :math:`p/d` and the diffusion time (scalars).
    time : float or array_like
        Training times :math:`\tau \ge 0` (an array is one batch).
    lam : float
        Ridge :math:`\lambda \ge 0` (:math:`\lambda = 0`: plain gradient flow).
    m : float
        Noise draws per data point (``>= 1``, or ``math.inf``); finite ``m`` uses the rotated
        finite-:math:`m` form of :func:`gradient_flow_quantities` (``finite_m=True``).
    activation : str, callable or Activation
        See :func:`pencils.activations.get`.
    dps : int, optional
        Decimal digits (mpmath) instead of floats.

    Returns
    -------
    GradientFlow
        ``.time``, ``.test``, ``.train``, ``.optimum`` and ``.gap``.

    Raises
    ------
    pencils.errors.ConvergenceError
        If the contour quadrature does not converge.  Long times (up to
        :math:`\tau \sim 10^4` and beyond) are integrated on a hyperbola
        (:mod:`pencils.functions`), which needs the pole :math:`-\lambda` of the
        filter left of the spectrum of :math:`U` (always: :math:`U \ge s^2 > 0`).

    Examples
    --------
    At :math:`\tau = 0` the score is 0 (test and train error 1); long training
    with a ridge reaches the ridge estimator of :func:`errors`:

    >>> from pencils.models import dsm
    >>> flow = dsm.gradient_flow(2.0, 1.0, 0.5, [0.0, 1e3], lam=0.1)
    >>> [round(float(v), 10) for v in flow.test]
    [1.0, 0.6748501664]
    >>> round(dsm.errors(2.0, 1.0, 0.5, 0.1).test, 10)
    0.6748501664
    """
    for name, value in (("psi_n", psi_n), ("psi_p", psi_p), ("t", t), ("lam", lam), ("m", m)):
        if np.ndim(value):
            raise ParameterError(f"{name} must be a scalar in dsm.gradient_flow (only time may be an array); got {value}.")
    check_parameters(psi_n=psi_n, psi_p=psi_p, t=t, m=m)
    finite_m = float(m) != math.inf
    check_real(lam, "lam", minimum=0, strict=False)
    check_real(time, "time", minimum=0, strict=False)
    dps = check_dps(dps)
    times = np.asarray(time, dtype=object if dps is not None else float)
    subs = substitutions(psi_n, psi_p, t, lam, m=m, activation=activations.get(activation), dps=dps)
    subs = {key: value for key, value in subs.items() if key not in (tilt, scale)}
    subs[training_time] = times
    forms = gradient_flow_quantities(finite_m)
    finite_dims = dims if finite_m else {key: value for key, value in dims.items() if key != k}
    test, train = limit([forms["test"], forms["train"]], finite_dims, subs, dps=dps)
    optimum_value = optimum(t, dps=dps)
    return GradientFlow(times if np.ndim(times) else times.item(), test, train, optimum_value)


#: Log-spaced training times per decade scanned by :func:`memorization_time` and :func:`early_stopping_time`.
TIME_SCAN_PER_DECADE = 8


def _time_scan(psi_n, psi_p, t, lam, activation, span):
    """The log-spaced times of ``span`` and :func:`gradient_flow` on them (one batch)."""
    if not (0 < span[0] < span[1] < math.inf):
        raise ParameterError(f"span must be two training times 0 < low < high; got {span}.")
    decades = math.log10(span[1] / span[0])
    times = np.geomspace(span[0], span[1], max(8, int(round(TIME_SCAN_PER_DECADE * decades)) + 1))
    return times, gradient_flow(psi_n, psi_p, t, times, lam=lam, activation=activation)


def memorization_time(psi_n, psi_p, t, lam, activation="relu", fraction: float = 0.5,
                      span: tuple[float, float] = (1e-2, 1e4)) -> float:
    r"""The training time at which memorisation sets in: the gap reaches ``fraction`` of its final value.

    With the generalisation gap :math:`G(\tau) = E_{\rm test}(\tau) - E_{\rm train}(\tau)`
    of :func:`gradient_flow` (:math:`m = \infty`, :math:`G(0) = 0`) and its
    :math:`\tau = \infty` value :math:`G_\infty` (the ridge estimator, :func:`errors`),
    the memorisation time :math:`\tau_{\rm mem}` is the first :math:`\tau` with
    :math:`G(\tau) = ` ``fraction`` :math:`\cdot\,G_\infty`.  It is located on the
    continuous curve: a log-spaced scan of ``span`` (one batch), then
    :func:`scipy.optimize.brentq` in :math:`\log\tau` on the first cell where the
    sign changes (every evaluation reuses the resolvents solved for the scan).

    Parameters
    ----------
    psi_n, psi_p, t : float
        As in :func:`gradient_flow`.
    lam : float
        Ridge :math:`\lambda > 0` (:math:`G_\infty` is the ridge estimator's gap).
    activation : str, callable or Activation
        See :func:`pencils.activations.get`.
    fraction : float
        In :math:`(0, 1)`.
    span : (float, float)
        The training times searched.

    Raises
    ------
    ConvergenceError
        If the gap does not reach ``fraction`` of :math:`G_\infty` inside ``span``.

    Examples
    --------
    >>> from pencils.models import dsm
    >>> time = dsm.memorization_time(2.0, 1.0, 0.5, lam=0.1, span=(1e-2, 1e2))
    >>> final = dsm.errors(2.0, 1.0, 0.5, 0.1)
    >>> flow = dsm.gradient_flow(2.0, 1.0, 0.5, time, lam=0.1)
    >>> round(float(flow.gap / final.gap), 10)
    0.5
    """
    from scipy.optimize import brentq

    if not 0 < fraction < 1:
        raise ParameterError(f"fraction must be in (0, 1); got {fraction}.")
    check_real(lam, "lam")
    final = errors(psi_n, psi_p, t, lam, activation=activation).gap
    times, flow = _time_scan(psi_n, psi_p, t, lam, activation, span)
    excess = flow.gap - fraction * final
    above = np.flatnonzero(excess >= 0)
    if above.size == 0 or above[0] == 0:
        raise ConvergenceError(
            f"the gap does not cross {fraction} of its final value {final:.3g} for training times in {span} "
            f"(it ranges over [{flow.gap.min():.3g}, {flow.gap.max():.3g}]); widen span."
        )

    def crossing(log_time):
        return float(gradient_flow(psi_n, psi_p, t, math.exp(log_time), lam=lam, activation=activation).gap
                     - fraction * final)

    cell = above[0]
    return math.exp(brentq(crossing, math.log(times[cell - 1]), math.log(times[cell]), xtol=1e-12, rtol=1e-14))


def early_stopping_time(psi_n, psi_p, t, lam, activation="relu", span: tuple[float, float] = (1e-2, 1e4)) -> float:
    r"""The training time of the smallest test error of :func:`gradient_flow` (the best early stop).

    The smallest test error of a log-spaced scan of ``span`` is refined by
    :func:`scipy.optimize.minimize_scalar` (bounded, in :math:`\log\tau`) between
    its neighbours; a minimum at an end of ``span`` raises (as with a ridge large
    enough that the test error decreases all along the flow, below).

    Examples
    --------
    >>> from pencils.models import dsm
    >>> dsm.early_stopping_time(2.0, 1.0, 0.5, lam=0.1, span=(1e-2, 1e2))
    Traceback (most recent call last):
    ...
    pencils.errors.ConvergenceError: the test error is smallest at an end of span=(0.01, 100.0) (tau=100); widen span.
    """
    from scipy.optimize import minimize_scalar

    check_real(lam, "lam", strict=False)
    times, flow = _time_scan(psi_n, psi_p, t, lam, activation, span)
    best = int(np.argmin(flow.test))
    if best in (0, len(times) - 1):
        raise ConvergenceError(f"the test error is smallest at an end of span={span} (tau={times[best]:.3g}); widen span.")
    found = minimize_scalar(
        lambda log_time: float(gradient_flow(psi_n, psi_p, t, math.exp(log_time), lam=lam, activation=activation).test),
        bounds=(math.log(times[best - 1]), math.log(times[best + 1])), method="bounded", options={"xatol": 1e-10},
    )
    return math.exp(found.x)
