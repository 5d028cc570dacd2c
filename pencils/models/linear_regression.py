r"""Least squares (and ridge) trained by gradient flow from zero, from the engine.

Data :math:`y = X\beta + \sigma\varepsilon`, :math:`X \in \mathbb R^{n\times d}` with
i.i.d. :math:`\mathcal N(0, 1)` entries, :math:`\varepsilon \sim \mathcal N(0, I_n)`
and an isotropic signal with :math:`\mathbb E\,\beta\beta^T = (r^2/d) I_d`.  Gradient
flow on :math:`\|y - Xw\|^2/(2n) + \lambda\|w\|^2/2` from :math:`w(0) = 0` gives, with
:math:`S = X^TX/n`,

.. math::  w(t) = F_t(S)\,X^Ty/n, \qquad F_t(x) = \frac{1 - e^{-t(x + \lambda)}}{x + \lambda}.

Averaging over :math:`\beta` and :math:`\varepsilon` (test error at a fresh point,
label noise included; train error the mean squared residual):

.. math::
   \mathrm{bias} &= r^2\, \tfrac1d\operatorname{tr}\,(I - SF_t(S))^2, \qquad
   \mathrm{variance} = \sigma^2\, \tfrac1n\operatorname{tr}\,SF_t(S)^2, \\
   \mathrm{test} &= \mathrm{bias} + \mathrm{variance} + \sigma^2, \\
   \mathrm{train} &= r^2\, \tfrac1d\operatorname{tr}\,S(I - SF_t(S))^2
      + \sigma^2\Bigl(1 - \tfrac1n\operatorname{tr}\,\bigl(2SF_t(S) - S^2F_t(S)^2\bigr)\Bigr),

each a trace of a :class:`pencils.MatrixFunction` of :math:`S`, whose limit
(:func:`pencils.limit`) is a contour integral of the Marchenko-Pastur
resolvent: the same solves serve every time.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import sympy
from sympy.codegen.cfunctions import expm1

from ..errors import ParameterError
from ..functions import MatrixFunction
from ..gaussian import Gaussian
from ..limits import limit

__all__ = ["GradientFlow", "gradient_flow", "quantities", "symbols", "dims"]

n, d, x = sympy.symbols("n d x")
psi_n, time, lam, signal, noise = sympy.symbols("psi_n t lambda r^2 sigma^2")
symbols = {"psi_n": psi_n, "time": time, "lam": lam, "signal": signal, "noise": noise}
#: ``n = psi_n d``.
dims = {d: d, n: psi_n * d}


@dataclass(frozen=True)
class GradientFlow:
    """Asymptotic errors along gradient flow, broadcast over the times."""

    test: np.ndarray | float
    train: np.ndarray | float
    bias: np.ndarray | float
    variance: np.ndarray | float


@lru_cache(maxsize=1)
def quantities() -> dict:
    r"""``bias``, ``variance``, ``test`` and ``train`` as SymPy expressions in traces of functions of :math:`S`.

    Examples
    --------
    >>> from pencils.models import linear_regression
    >>> sorted(linear_regression.quantities())
    ['bias', 'test', 'train', 'variance']
    """
    S = Gaussian("X", n, d).T * Gaussian("X", n, d) / n
    flow = -expm1(-time * (x + lam)) / (x + lam)  # F_t(x)

    def trace(expression):
        return sympy.Trace(MatrixFunction(sympy.Lambda(x, expression), S))

    bias = signal * trace((1 - x * flow) ** 2) / d
    variance = noise * trace(x * flow**2) / n
    train = signal * trace(x * (1 - x * flow) ** 2) / d + noise * (1 - trace(2 * x * flow - x**2 * flow**2) / n)
    return {"bias": bias, "variance": variance, "test": bias + variance + noise, "train": train}


def gradient_flow(psi_n, time, lam=0.0, signal=1.0, noise=0.25, dps: int | None = None) -> GradientFlow:
    r"""Test, train, bias and variance of least squares trained by gradient flow for a time ``time``.

    Parameters
    ----------
    psi_n : float
        Samples per dimension :math:`n/d`.
    time : float or array_like
        Training times :math:`t \ge 0` (an array is solved in one batch).
    lam : float
        Ridge :math:`\lambda \ge 0`.
    signal, noise : float
        :math:`r^2 = \mathbb E\|\beta\|^2` and the label-noise variance :math:`\sigma^2`.
    dps : int, optional
        mpmath numbers with about ``dps`` digits.

    Examples
    --------
    At :math:`t = 0` the predictor is 0: test error :math:`r^2 + \sigma^2`.  Long
    training without a ridge at :math:`n = 2d` reaches the least-squares error
    :math:`\sigma^2/(1 - d/n)`:

    >>> from pencils.models import linear_regression
    >>> flow = linear_regression.gradient_flow(2.0, [0.0, 400.0], noise=0.25)
    >>> [round(float(v), 10) for v in flow.test]
    [1.25, 0.5]
    """
    if np.ndim(psi_n) or np.ndim(lam) or np.ndim(signal) or np.ndim(noise):
        raise ParameterError("psi_n, lam, signal and noise must be scalars; time may be an array.")
    if psi_n <= 0 or lam < 0 or signal < 0 or noise < 0:
        raise ParameterError(f"need psi_n > 0, lam >= 0, signal >= 0 and noise >= 0; got {psi_n}, {lam}, {signal}, {noise}.")
    if np.any(np.asarray(time, dtype=float) < 0):
        raise ParameterError(f"the training time must be >= 0; got {time}.")
    times = np.asarray(time, dtype=object if dps is not None else float)
    subs = {symbols["psi_n"]: psi_n, symbols["time"]: times, symbols["lam"]: lam,
            symbols["signal"]: signal, symbols["noise"]: noise}
    forms = quantities()
    values = limit([forms["test"], forms["train"], forms["bias"], forms["variance"]], dims, subs, dps=dps)
    return GradientFlow(*values)
