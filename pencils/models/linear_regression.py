r"""Ridge regression on anisotropic data, and least squares trained by gradient flow, from the engine.

Ridge (:func:`errors`).  Data :math:`X = G\Sigma^{1/2} \in \mathbb R^{n\times d}`
(:math:`G` with i.i.d. :math:`\mathcal N(0, 1)` entries, rows :math:`x_i \sim \mathcal N(0, \Sigma)`),
:math:`\Sigma` a :class:`pencils.Diagonal` with the given spectral law (:mod:`pencils.models.covariance`),
labels :math:`y = X\beta + \sigma\varepsilon` with a teacher aligned with :math:`\Sigma`,
:math:`\mathbb E\,\beta\beta^T = r^2T/d` (:math:`T` the teacher profile, :math:`I` by default).  The
ridge estimator :math:`w = (S + \lambda)^{-1}X^Ty/n`, :math:`S = X^TX/n`, minimises
:math:`\|y - Xw\|^2/n + \lambda\|w\|^2`.  With :math:`R = (S + \lambda I_d)^{-1}`,
:math:`\beta - w = \lambda R\beta - RX^T\varepsilon\sigma/n` and the residual
:math:`y - Xw = \lambda K^{-1}y`, :math:`K = XX^T/n + \lambda I_n`, so averaging over
:math:`\beta, \varepsilon`:

.. math::
   \mathrm{bias} &= \frac{\lambda^2 r^2}{d}\operatorname{tr} TR\Sigma R, \qquad
   \mathrm{variance} = \frac{\sigma^2}{n}\operatorname{tr}\Sigma RSR, \qquad
   \mathrm{test} = \mathrm{bias} + \mathrm{variance} + \sigma^2, \\
   \mathrm{train} &= \frac{\lambda^2 r^2}{d}\operatorname{tr} TRSR + \frac{\sigma^2}{n}\bigl(n - d + \lambda^2\operatorname{tr}R^2\bigr).

Each is one resolvent trace and its first derivatives (the *primal* form, used for
:math:`n \ge d`): with :math:`R_\epsilon = (S + \lambda + \epsilon\Sigma)^{-1}` (``symbols["tilt"]`` is
:math:`\epsilon`, at 0), :math:`R\Sigma R = -\partial_\epsilon R_\epsilon` and
:math:`RSR = R + \lambda\partial_\lambda R`.  For :math:`n < d` the :math:`n \times n` Gram matrix
is the well-conditioned one (the *dual* form, which also holds at :math:`\lambda = 0`, the
minimum-norm interpolator): :math:`\beta - w = P\beta - X^TK^{-1}\varepsilon\sigma/n` with
:math:`P = I_d - X^TK^{-1}X/n`, and with :math:`K_\epsilon = K + \epsilon X\Sigma X^T/n`

.. math::
   \mathrm{bias} &= \frac{r^2}{d}\Bigl[\operatorname{tr} T\Sigma\Bigl(I_d - \frac{2}{n}X^TK^{-1}X\Bigr)
                    - \frac1n\partial_\epsilon\operatorname{tr} XTX^TK_\epsilon^{-1}\Bigr], \qquad
   \mathrm{variance} = -\frac{\sigma^2}{n}\partial_\epsilon\operatorname{tr} K_\epsilon^{-1}, \\
   \mathrm{train} &= -\frac{\lambda^2}{n}\partial_\lambda\Bigl[\frac{r^2}{d}\operatorname{tr} XTX^TK^{-1}
                    + \sigma^2\operatorname{tr} K^{-1}\Bigr].

Both forms hold at any :math:`\lambda > 0`; :math:`\lambda = 0` is the ridgeless limit
:math:`\lambda \to 0^+` on either side of :math:`n = d` (where it diverges and is refused).

Gradient flow (:func:`gradient_flow`, isotropic data :math:`\Sigma = I`, :math:`T = I`).
Gradient flow on :math:`\|y - Xw\|^2/(2n) + \lambda\|w\|^2/2` from :math:`w(0) = 0` gives

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
from ..validation import check_dps, check_real, check_shapes
from .covariance import diagonal, power_law, profile_key

__all__ = ["Errors", "errors", "ridge_quantities", "power_law", "GradientFlow", "gradient_flow", "quantities",
           "symbols", "dims"]

n, d, x = sympy.symbols("n d x")
psi_n, time, lam, signal, noise, tilt = sympy.symbols("psi_n t lambda r^2 sigma^2 epsilon")
symbols = {"psi_n": psi_n, "time": time, "lam": lam, "signal": signal, "noise": noise, "tilt": tilt}
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


@dataclass(frozen=True)
class Errors:
    """Asymptotic errors of ridge regression, broadcast over the parameters.

    Attributes
    ----------
    test, train, bias, variance : numpy.ndarray or float
        Test error (label noise included), train error (mean squared residual), and the
        bias and variance parts of the excess test error.
    """

    test: np.ndarray | float
    train: np.ndarray | float
    bias: np.ndarray | float
    variance: np.ndarray | float


@lru_cache(maxsize=32)
def ridge_quantities(covariance: tuple | None = None, teacher: tuple | None = None, dual: bool = False) -> dict:
    r"""``bias``, ``variance``, ``test`` and ``train`` of ridge regression as traces (module notes).

    Parameters
    ----------
    covariance, teacher : tuple, optional
        Profiles as :func:`pencils.models.covariance.profile_key` gives them (``None``: identity).
    dual : bool
        The :math:`n \times n` (dual) form instead of the :math:`d \times d` (primal) one.

    Examples
    --------
    >>> from pencils.models import linear_regression
    >>> sorted(linear_regression.ridge_quantities())
    ['bias', 'test', 'train', 'variance']
    """
    Sigma = sympy.Identity(d) if covariance is None else diagonal("Sigma", d, covariance)
    root = sympy.Identity(d) if covariance is None else diagonal("Sigma^{1/2}", d, covariance, sympy.Rational(1, 2))
    T = sympy.Identity(d) if teacher is None else diagonal("T", d, teacher)
    X = Gaussian("X", n, d) * root
    Tr, Derivative = sympy.Trace, sympy.Derivative
    if dual:
        K = X * X.T / n + lam * sympy.Identity(n)
        tilted = (K + tilt * X * Sigma * X.T / n).I
        teacher_part = Tr(X * T * X.T * K.I)
        bias = signal * (Tr(T * Sigma * (sympy.Identity(d) - 2 * X.T * K.I * X / n))
                         - Derivative(Tr(X * T * X.T * tilted), tilt) / n) / d
        variance = -noise * Derivative(Tr(tilted), tilt) / n
        train = -lam**2 * (signal * Derivative(teacher_part, lam) / d + noise * Derivative(Tr(K.I), lam)) / n
    else:
        resolvent = (X.T * X / n + lam * sympy.Identity(d) + tilt * Sigma).I
        teacher_part, covariance_part = Tr(T * resolvent), Tr(Sigma * resolvent)
        bias = -lam**2 * signal * Derivative(teacher_part, tilt) / d
        variance = noise * (covariance_part + lam * Derivative(covariance_part, lam)) / n
        train = (lam**2 * signal * (teacher_part + lam * Derivative(teacher_part, lam)) / d
                 + noise * (1 - d / n - lam**2 * Derivative(Tr(resolvent), lam) / n))
    return {"bias": bias, "variance": variance, "test": bias + variance + noise, "train": train}


def errors(psi_n, lam, signal=1.0, noise=0.0, covariance=None, teacher=None, dps: int | None = None) -> Errors:
    r"""Limits of the test, train, bias and variance of ridge regression on anisotropic Gaussian data.

    Parameters
    ----------
    psi_n : float or array_like
        Samples per dimension :math:`n/d > 0`.
    lam : float or array_like
        Ridge :math:`\lambda \ge 0`; :math:`\lambda = 0` is the ridgeless limit
        :math:`\lambda \to 0^+` (least squares for :math:`n > d`, the minimum-norm
        interpolator for :math:`n < d`; refused at :math:`n = d`, where it diverges).
    signal, noise : float or array_like
        :math:`r^2` (:math:`\mathbb E\,\beta\beta^T = r^2T/d`) and the label-noise variance :math:`\sigma^2`.
    covariance : sympy.Lambda, list of atoms or (atoms, weights), optional
        The spectral law of :math:`\Sigma` (:mod:`pencils.models.covariance`); identity by default.
    teacher : sympy.Lambda or list, optional
        The teacher profile :math:`T`, aligned with ``covariance`` (a ``Lambda`` of the same
        :math:`u`, or one value per atom); identity by default.  :func:`power_law` gives both
        for scaling laws.
    dps : int, optional
        Decimal digits (mpmath) instead of floats.

    Returns
    -------
    Errors
        ``.test``, ``.train``, ``.bias`` and ``.variance``, broadcast.

    Examples
    --------
    Least squares on isotropic data at :math:`n = 2d`: variance :math:`\sigma^2/(\psi_n - 1)`:

    >>> from pencils.models import linear_regression
    >>> result = linear_regression.errors(2.0, 0.0, noise=0.25)
    >>> round(float(result.variance), 12), round(float(result.train), 12)
    (0.25, 0.125)

    Two levels of variance, half the directions at 1 and half at 4, with a teacher on the strong ones:

    >>> result = linear_regression.errors(0.5, 0.1, covariance=[1, 4], teacher=[0, 2])
    >>> 0 < result.train < result.bias
    True
    """
    values = {"psi_n": psi_n, "lam": lam, "signal": signal, "noise": noise}
    for name, value in values.items():
        check_real(value, name, strict=name == "psi_n")
    shape, dps = check_shapes(values), check_dps(dps)
    covariance_key = profile_key(covariance, "covariance")
    teacher_key = profile_key(teacher, "teacher", like=covariance)
    dtype = object if dps is not None else float
    arrays = {name: np.broadcast_to(np.asarray(value, dtype=dtype), shape) for name, value in values.items()}
    ratios = np.array([float(value) for value in arrays["psi_n"].ravel()]).reshape(shape)
    ridges = np.array([float(value) for value in arrays["lam"].ravel()]).reshape(shape)
    if np.any((ridges == 0) & (ratios == 1)):
        raise ParameterError("the ridgeless limit (lam = 0) diverges at psi_n = 1 (n = d); take lam > 0 or psi_n != 1.")
    results = {key: np.empty(shape, dtype=dtype) for key in ("test", "train", "bias", "variance")}
    for dual in (False, True):
        mask = ratios < 1 if dual else ratios >= 1
        if not np.any(mask):
            continue
        subs = {symbols[name]: array[mask] for name, array in arrays.items()}
        subs[tilt] = 0
        found = ridge_quantities(covariance_key, teacher_key, dual)
        keys = tuple(results)
        for key, value in zip(keys, limit([found[key] for key in keys], dims, subs, dps=dps)):
            results[key][mask] = value
    return Errors(**{key: value.item() if shape == () else value for key, value in results.items()})
