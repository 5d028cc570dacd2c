r"""Gauss quadrature rules, Hermite polynomials and Mehler's series, in float and in arbitrary precision.

Three Gauss rules, each with ``size`` nodes and exact for polynomials of degree
below ``2 size`` against its weight:

* :func:`gauss_legendre`: weight 1 on an interval ``[lower, upper]``;
* :func:`half_range_gauss`: weight :math:`x^p e^{-x^2/2}` on :math:`(0, \infty)`,
  :math:`p = 0` or 1 (Gaussian integrals of functions with a kink at 0, folded
  onto the half line; the radial part of a two-dimensional Gaussian integral).

``dps=None`` gives float64 numpy arrays; ``dps=k`` gives numpy object arrays of
mpmath numbers of the calling thread's context (:mod:`pencils.precision`)
accurate to about ``k`` digits: pass the working precision
(``precision.context().dps``).

Every rule comes from the monic three-term recurrence of its weight (for the half-range
weights, from its moments :math:`\int_0^\infty x^{k+p} e^{-x^2/2} dx =
2^{(k+p-1)/2}\Gamma((k+p+1)/2)` by Chebyshev's algorithm, run with about
:math:`1.25\,n` extra digits as it loses that many for :math:`n` nodes): float
nodes by Golub-Welsch (the eigenvalues of the Jacobi matrix), with the weights
:math:`1/\sum_{k<n} p_k(x)^2` of the orthonormal polynomials, which unlike the
squared eigenvector components are accurate relative to themselves, also the tiny
weights of the outer nodes (:func:`numpy.polynomial.legendre.leggauss`'s outer weights
are off by :math:`10^{-11}` relative with 128 nodes, these by :math:`10^{-12}`).  In
arbitrary precision the float nodes are refined by Newton's method on the monic
polynomial (each step doubles the digits) and the weights come from the Christoffel
formula :math:`w = \beta_0 \cdots \beta_{n-1} / (\pi_{n-1}(x)\,\pi_n'(x))`.  Rules are cached
per size and precision
(a result never depends on the order of calls).

:func:`hermite_functions` runs the recurrence of the orthonormal Hermite
polynomials :math:`\mathrm{he}_k = He_k/\sqrt{k!}` (probabilists', orthonormal
under :math:`\mathcal N(0, 1)`), and :func:`mehler_series` sums Mehler's series
:math:`E\,f(g) h(g') = \sum_k a_k b_k r^k` for :math:`\mathrm{corr}(g, g') = r`
and Hermite coefficients :math:`a_k = E\,f(g)\mathrm{he}_k(g)`, :math:`b_k = E\,h(g)\mathrm{he}_k(g)`.

Examples
--------
>>> import numpy as np
>>> from pencils import quadrature
>>> x, w = quadrature.gauss_legendre(5, 0.0, 2.0)
>>> round(float(w @ x**9), 12)  # the integral of x^9 over [0, 2] is 2^10 / 10
102.4
>>> x, w = quadrature.half_range_gauss(0, 8)
>>> round(float(w @ x**2), 12) == round(float(np.sqrt(np.pi / 2)), 12)  # int_0^inf x^2 e^{-x^2/2} dx
True
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from . import precision

__all__ = ["gauss_legendre", "half_range_gauss", "hermite_functions", "mehler_series"]


def gauss_legendre(size: int, lower: Any = 0, upper: Any = 1, dps: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    r"""Gauss-Legendre rule with ``size`` nodes on ``[lower, upper]``: :math:`\int_a^b f \approx \sum_i w_i f(x_i)`.

    Parameters
    ----------
    size : int
        Number of nodes.
    lower, upper : real
        The interval (numbers of the thread's context, or exact numbers, with ``dps``).
    dps : int, optional
        Working precision in decimal digits; ``None`` for float64.

    Returns
    -------
    nodes, weights : numpy.ndarray
        Increasing nodes and their weights (object arrays of mpmath numbers with ``dps``).

    Examples
    --------
    >>> from pencils import precision
    >>> with precision.digits(40):
    ...     x, w = gauss_legendre(12, dps=40)
    ...     error = abs(sum(w * x**23) - precision.context().mpf(1) / 24)
    >>> bool(error < 1e-38)
    True
    """
    nodes, weights = _gauss_rule("legendre", size, dps)  # on (0, 1)
    if dps is not None:
        context = precision.context()
        lower, upper = context.mpf(lower), context.mpf(upper)
    return lower + (upper - lower) * nodes, (upper - lower) * weights


def half_range_gauss(power: int, size: int, dps: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    r"""Gauss rule with ``size`` nodes for the weight :math:`x^p e^{-x^2/2}` on :math:`(0, \infty)`, :math:`p = 0, 1`.

    Parameters
    ----------
    power : {0, 1}
        The power :math:`p` of :math:`x` in the weight.
    size : int
        Number of nodes.
    dps : int, optional
        Working precision in decimal digits; ``None`` for float64.

    Returns
    -------
    nodes, weights : numpy.ndarray

    Examples
    --------
    >>> x, w = half_range_gauss(1, 6)  # int_0^inf x^3 e^{-x^2/2} dx = 2
    >>> round(float(w @ x**2), 13)
    2.0
    """
    if power not in (0, 1):
        raise ValueError(f"power must be 0 or 1, got {power!r}")
    return _gauss_rule(f"half{power}", size, dps)


def hermite_functions(x: Any, count: int, sqrt: Callable[[int], Any] = math.sqrt) -> Iterator[Any]:
    r"""Yield the orthonormal Hermite polynomials :math:`\mathrm{he}_k(x) = He_k(x)/\sqrt{k!}`, :math:`k < \mathrm{count}`.

    By the recurrence :math:`\sqrt{k+1}\,\mathrm{he}_{k+1}(x) = x\,\mathrm{he}_k(x) - \sqrt k\,\mathrm{he}_{k-1}(x)`,
    elementwise on a float array or an object array of mpmath numbers (then pass the context's ``sqrt``).

    Examples
    --------
    >>> import numpy as np
    >>> values = list(hermite_functions(np.float64(2.0), 4))  # 1, x, (x^2 - 1)/sqrt 2, (x^3 - 3x)/sqrt 6
    >>> bool(np.allclose(values, [1, 2, 3 / np.sqrt(2), 2 / np.sqrt(6)], rtol=1e-15))
    True
    """
    older, old = 0 * x, 0 * x + 1
    for k in range(count):
        yield old
        older, old = old, (x * old - sqrt(k) * older) / sqrt(k + 1)


def mehler_series(products: Iterable[Any], correlation: Any, first: int = 0) -> Any:
    r""":math:`\sum_k P_k\,r^k`, Mehler's series for :math:`P_k = a_k b_k` (``products``, from :math:`k = \mathrm{first}`).

    Products and correlations broadcast together (e.g. ``np.outer(a_k, a_k)`` against a
    matrix of correlations); the powers of ``r`` are accumulated, term after term.

    Examples
    --------
    >>> import math
    >>> r = 0.3  # sin: a_k^2 = e^{-1}/k! for odd k, and E sin(g) sin(g') = e^{-1} sinh r
    >>> terms = (math.exp(-1) / math.factorial(k) if k % 2 else 0.0 for k in range(30))
    >>> bool(abs(mehler_series(terms, r) - math.exp(-1) * math.sinh(r)) < 1e-16)
    True
    """
    total = None
    power = correlation**first if first else 1 + 0 * correlation
    for product in products:
        term = product * power
        total = term if total is None else total + term
        power = power * correlation
    return 0 * correlation if total is None else total


# --------------------------------------------------------------------------
# Rules from three-term recurrences
# --------------------------------------------------------------------------


def _half_range_recurrence(power: int, size: int) -> tuple[list, list]:
    r"""Monic recurrence coefficients for :math:`x^p e^{-x^2/2}` on :math:`(0, \infty)`.

    Chebyshev's algorithm on the moments :math:`\int_0^\infty x^{k+p}
    e^{-x^2/2} dx = 2^{(k+p-1)/2}\,\Gamma((k+p+1)/2)`, run with extra digits
    because it loses about 1.2 digits per coefficient.
    """
    context = precision.context()
    with context.extradps(math.ceil(1.25 * size) + 10):
        half = context.mpf(1) / 2
        moments = [
            2 ** ((k + power - 1) * half) * context.gamma((k + power + 1) * half)
            for k in range(2 * size)
        ]
        alpha, beta = [moments[1] / moments[0]], [moments[0]]
        older, old = [context.mpf(0)] * (2 * size), moments
        for k in range(1, size):
            new = [context.mpf(0)] * (2 * size)
            for j in range(k, 2 * size - k):
                new[j] = old[j + 1] - alpha[-1] * old[j] - beta[-1] * older[j]
            alpha.append(new[k + 1] / new[k] - old[k] / old[k - 1])
            beta.append(new[k] / old[k - 1])
            older, old = old, new
    return [+a for a in alpha], [+b for b in beta]


def _legendre_recurrence(size: int) -> tuple[list, list]:
    """Monic recurrence coefficients for the weight 1 on (0, 1)."""
    context = precision.context()
    beta = [context.mpf(1)] + [context.mpf(k * k) / (4 * (4 * k * k - 1)) for k in range(1, size)]
    return [context.mpf(1) / 2] * size, beta


_RECURRENCES = {
    "half0": functools.partial(_half_range_recurrence, 0),  # e^{-x^2/2} on (0, inf)
    "half1": functools.partial(_half_range_recurrence, 1),  # x e^{-x^2/2} on (0, inf)
    "legendre": _legendre_recurrence,  # 1 on (0, 1)
}


def _monic_values(x: np.ndarray, alpha: list, beta: list) -> tuple[np.ndarray, ...]:
    """``pi_{n-1}(x)``, ``pi_n(x)`` and ``pi_n'(x)`` for the monic orthogonal polynomials."""
    # Arrays stay on the left of mpf operands: mpf.__mul__(ndarray) is slow.
    p_old, p, dp_old, dp = 0 * x, 0 * x + 1, 0 * x, 0 * x
    for a, b in zip(alpha, beta):
        shifted = x - a
        p_old, p, dp_old, dp = p, shifted * p - p_old * b, dp, p + shifted * dp - dp_old * b
    return p_old, p, dp


def _christoffel_weights(x: np.ndarray, alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """Gauss weights ``1 / sum_k p_k(x)^2`` (orthonormal ``p_k``) from the monic recurrence."""
    root_beta = np.sqrt(beta)
    p_old, p = np.zeros_like(x), np.full_like(x, 1 / root_beta[0])
    total = p * p
    for k in range(len(x) - 1):
        p_old, p = p, ((x - alpha[k]) * p - (root_beta[k] if k else 0) * p_old) / root_beta[k + 1]
        total += p * p
    return 1 / total


# Gauss rules by (kind, size, working precision or None for float).
_RULES: dict[tuple[str, int, int | None], tuple[np.ndarray, np.ndarray]] = {}


def _gauss_rule(kind: str, size: int, dps: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Gauss rule with ``size`` nodes for the weight ``kind`` (see the module docstring), cached.

    Rules are cached as numbers of ``mpmath.mp`` and returned in this thread's context.
    """
    key = (kind, size, dps)
    if key in _RULES:
        x, w = _RULES[key]
        if dps is None:
            return x, w
        context = precision.context()
        return tuple(np.array([context.mpf(v) for v in values], dtype=object) for values in (x, w))
    with precision.digits(17 if dps is None else dps) as context:
        alpha, beta = _RECURRENCES[kind](size)
        diagonal = np.array(alpha, dtype=float)
        off_diagonal = np.sqrt(np.array(beta[1:], dtype=float))
        import scipy.linalg  # here: importing scipy costs a fresh process 0.3 s

        nodes = scipy.linalg.eigh_tridiagonal(diagonal, off_diagonal, eigvals_only=True)
        if dps is None:
            x, w = nodes, _christoffel_weights(nodes, diagonal, np.array(beta, dtype=float))
        else:
            x = np.array([context.mpf(v) for v in nodes], dtype=object)
            # Newton from the float nodes doubles the digits at each step; the
            # weights use the polynomials at the last x, within a step of the root.
            accurate = context.mpf(10) ** (5 - dps) * max(abs(x))
            for _ in range(dps):
                p_old, p, dp = _monic_values(x, alpha, beta)
                step = p / dp
                x = x - step
                if max(abs(step)) <= accurate:
                    break
            w = 1 / (p_old * dp) * context.fprod(beta)
    _RULES[key] = (x, w) if dps is None else tuple(np.frompyfunc(precision.public, 1, 1)(v) for v in (x, w))
    return x, w
