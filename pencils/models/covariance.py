r"""Population covariances of the anisotropic models, as :class:`pencils.Diagonal` matrices.

A profile (a covariance :math:`\Sigma`, or a teacher profile :math:`T` aligned with it) is
given as the models accept it:

* a ``sympy.Lambda`` of one variable :math:`u`, the quantile function of the spectral law on
  :math:`(0, 1)` (e.g. ``Lambda(u, 1 + 3*u)``);
* a list of atoms, of equal masses;
* a pair ``(atoms, weights)`` (masses summing to 1).

A teacher profile takes the kind and the masses of its covariance: a ``Lambda`` of the same
:math:`u`, or one value per atom (paired by index, as :class:`pencils.Diagonal` matrices of one
dimension are).  The models use :func:`diagonal` for :math:`\Sigma^{s}` (the data
:math:`X = G\Sigma^{1/2}`, the population covariance :math:`\Sigma`) and :math:`T`.
"""

from __future__ import annotations

from typing import Any

import sympy

from .. import precision
from ..simulation.covariance import as_profile

__all__ = ["profile_key", "diagonal", "spectral_average", "mean", "power_law"]


def profile_key(profile: Any, name: str, like: Any = None) -> tuple | None:
    """The profile as a hashable ``(values, weights)`` of SymPy numbers (``None`` stays ``None``).

    Floats are read as the decimals they print as, so that weights such as 0.9 and 0.1 sum to 1 exactly.

    Examples
    --------
    >>> profile_key(([1, 4], [0.5, 0.5]), "covariance")
    ((1, 4), (1/2, 1/2))
    """
    if profile is None:
        return None
    values, weights = as_profile(profile, name, like)
    if isinstance(values, sympy.Lambda):
        return values, None
    masses = None if weights is None else tuple(map(_exact, weights))
    return tuple(map(_exact, values)), masses


def _exact(value: Any) -> sympy.Expr:
    """A number as SymPy holds it exactly: a float as the decimal it prints as (``0.9`` is ``9/10``)."""
    return sympy.nsimplify(value, rational=True) if isinstance(value, float) else sympy.sympify(value)


def diagonal(name: str, dim: sympy.Symbol, key: tuple, power: sympy.Expr = 1) -> sympy.MatrixExpr:
    r"""The :class:`pencils.Diagonal` of size ``dim`` with the profile ``key`` (:func:`profile_key`) to ``power``.

    Examples
    --------
    >>> d = sympy.Symbol("d")
    >>> diagonal("Sigma", d, profile_key([1, 4], "covariance"), sympy.Rational(1, 2)).shape
    (d, d)
    """
    from .. import Diagonal

    values, weights = key
    if isinstance(values, sympy.Lambda):
        (u,) = values.variables
        return Diagonal(name, dim, sympy.Lambda(u, values.expr**power), weights)
    return Diagonal(name, dim, [value**power for value in values], weights)


def spectral_average(key: tuple, function, digits: int = 15) -> sympy.Expr:
    r""":math:`\mathbb E\,f(\lambda) = \int_0^1 f(Q(u))\,du` over the law of a profile ``key`` (:func:`profile_key`).

    A finite sum over atoms (exact for exact atoms and an exact ``function``); for a quantile
    function the integral is evaluated to ``digits`` digits by :meth:`sympy.Integral.evalf`.

    Examples
    --------
    >>> spectral_average(profile_key(([1, 4], [0.25, 0.75]), "covariance"), lambda x: x)
    13/4
    >>> u = sympy.Symbol("u")
    >>> spectral_average(profile_key(sympy.Lambda(u, 1 + 3 * u), "covariance"), lambda x: x, 20)
    2.5000000000000000000
    """
    values, weights = key
    if isinstance(values, sympy.Lambda):
        (u,) = values.variables
        return sympy.Integral(function(values.expr), (u, 0, 1)).evalf(digits)
    masses = weights if weights is not None else (sympy.Rational(1, len(values)),) * len(values)
    return sympy.Add(*(mass * function(value) for mass, value in zip(masses, values)))


def mean(key: tuple, dps: int | None = None) -> Any:
    r""":math:`\tau = \operatorname{tr}\Sigma/d` of a profile: a float, or an mpmath number with ``dps +`` :data:`pencils.precision.GUARD_DIGITS` digits.

    Examples
    --------
    >>> mean(profile_key([1, 4], "covariance"))
    2.5
    """
    digits = (dps or 15) + 15
    value = spectral_average(key, lambda x: x, digits)
    if dps is None:
        return float(value)
    with precision.digits(digits) as context:
        return precision.public(context.mpmathify(str(sympy.Float(value, digits))))


def power_law(alpha: float, beta: float, size: int) -> dict:
    r"""Covariance eigenvalues :math:`k^{-\alpha}` and teacher profile :math:`k^{-\beta}`, :math:`k = 1, \dots,` ``size``.

    The spectrum of a covariance of dimension ``size`` truncated there, each atom of mass
    ``1/size``: at dimension :math:`d =` ``size`` this is the deterministic equivalent of a
    power-law problem, whose learning curves in :math:`n` follow the scaling laws of
    source and capacity conditions until :math:`n` reaches :math:`d`.  The result is given
    as the keyword arguments ``covariance`` and ``teacher`` of
    :func:`pencils.models.linear_regression.errors`.

    Examples
    --------
    >>> profile = power_law(2, 1, 3)
    >>> profile["covariance"], profile["teacher"]
    ((1, 1/4, 1/9), (1, 1/2, 1/3))
    """
    alpha, beta = _exact(alpha), _exact(beta)
    ks = range(1, int(size) + 1)
    return {"covariance": tuple(sympy.Integer(k) ** -alpha for k in ks),
            "teacher": tuple(sympy.Integer(k) ** -beta for k in ks)}
