r"""Deterministic equivalents of ridge regression on anisotropic data, solved on their own.

The formulas of the literature (Hastie, Montanari, Rosset and Tibshirani 2022; Bach 2024,
"High-dimensional analysis of double descent for linear regression with random projections"),
with :math:`\mathbb E` the average over the spectral law of :math:`\Sigma` paired with the teacher
profile :math:`t` (:math:`\mathbb E\,\beta\beta^T = r^2T/d`), :math:`\psi = n/d`:

* the effective ridge :math:`\kappa > 0` solves
  :math:`\lambda = \kappa\bigl(1 - \psi^{-1}\,\mathbb E\,\frac{\lambda_\Sigma}{\lambda_\Sigma + \kappa}\bigr)`;
* with :math:`\mathrm{df}_2 = \psi^{-1}\,\mathbb E\,\frac{\lambda_\Sigma^2}{(\lambda_\Sigma + \kappa)^2}`:
  :math:`\mathrm{bias} = \kappa^2 r^2\,\mathbb E\,\frac{t\lambda_\Sigma}{(\lambda_\Sigma + \kappa)^2}/(1 - \mathrm{df}_2)`,
  :math:`\mathrm{variance} = \sigma^2\mathrm{df}_2/(1 - \mathrm{df}_2)`,
  test :math:`=` bias :math:`+` variance :math:`+\,\sigma^2`, train :math:`= (\lambda/\kappa)^2\,`test.
* :math:`\lambda = 0`: for :math:`\psi < 1`, :math:`\kappa` solves :math:`\psi = \mathbb E\,\lambda_\Sigma/(\lambda_\Sigma + \kappa)`
  and train :math:`= 0`; for :math:`\psi > 1`, :math:`\kappa = 0`, bias :math:`= 0`, variance
  :math:`= \sigma^2/(\psi - 1)` and train :math:`= \sigma^2(1 - 1/\psi)`.

:math:`\kappa` is found by :func:`mpmath.findroot` (Anderson's method on a bracket) and the
averages are finite sums over atoms or :func:`mpmath.quad` over :math:`u \in (0, 1)`: nothing is
shared with the engine.
"""

from __future__ import annotations

import mpmath
import sympy


def _average(function, covariance, weights=None, teacher=None):
    """``E f(lambda, t)`` over the law of the covariance paired with the teacher profile."""
    if isinstance(covariance, sympy.Lambda):
        quantile = sympy.lambdify(covariance.variables, covariance.expr, "mpmath")
        profile = (sympy.lambdify(teacher.variables, teacher.expr, "mpmath") if teacher is not None
                   else (lambda u: mpmath.mpf(1)))
        return mpmath.quad(lambda u: function(quantile(u), profile(u)), [0, 1])
    atoms = [mpmath.mpmathify(sympy.sympify(value).evalf(mpmath.mp.dps + 10)) for value in covariance]
    masses = ([mpmath.mpf(1) / len(atoms)] * len(atoms) if weights is None
              else [mpmath.mpmathify(sympy.sympify(w).evalf(mpmath.mp.dps + 10)) for w in weights])
    profile = ([mpmath.mpf(1)] * len(atoms) if teacher is None
               else [mpmath.mpmathify(sympy.sympify(v).evalf(mpmath.mp.dps + 10)) for v in teacher])
    return mpmath.fsum(w * function(x, t) for w, x, t in zip(masses, atoms, profile))


def ridge_equivalent(psi_n, lam, signal=1, noise=0, covariance=(1,), weights=None, teacher=None, dps=40) -> dict:
    """Bias, variance, test and train errors of ridge regression from the deterministic equivalent."""
    with mpmath.workdps(dps + 10):
        psi, lam, signal, noise = (mpmath.mpmathify(value) for value in (psi_n, lam, signal, noise))

        def average(function):
            return _average(function, covariance, weights, teacher)

        mean = average(lambda x, t: x)
        if lam == 0 and psi > 1:
            variance = noise / (psi - 1)
            values = {"bias": mpmath.mpf(0), "variance": variance, "train": noise * (1 - 1 / psi)}
        else:
            def equation(kappa):
                return kappa - lam - kappa * average(lambda x, t: x / (x + kappa)) / psi

            if lam > 0:
                bracket = (lam, lam + mean / psi)
            else:
                bracket = (mpmath.mpf(10) ** (-dps), mean * (1 / psi))  # E x/(x+k) <= E x / k
            kappa = mpmath.findroot(equation, bracket, solver="anderson", tol=mpmath.mpf(10) ** (-2 * dps))
            df2 = average(lambda x, t: x**2 / (x + kappa) ** 2) / psi
            bias = kappa**2 * signal * average(lambda x, t: t * x / (x + kappa) ** 2) / (1 - df2)
            variance = noise * df2 / (1 - df2)
            values = {"bias": bias, "variance": variance, "train": (lam / kappa) ** 2 * (bias + variance + noise)}
        values["test"] = values["bias"] + values["variance"] + noise
    with mpmath.workdps(dps):  # rounded to dps digits (mpmath numbers carry their precision)
        return {key: +value for key, value in values.items()}
