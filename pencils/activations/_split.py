r"""The split of an activation's nonlinear variance into shared and private parts, without cancellation.

The formulas are derived in the docstring of :mod:`pencils.activations` ("Split
without cancellation"): closed forms for ReLU, :math:`|x|`, erf, sin and cos, and
for other activations the Hermite series (Mehler) or the subtraction from the
kernel at a precision raised by the digits it loses.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from .. import precision
from ._arithmetic import Arithmetic, Real, arithmetic
from ._integrals import COEFFICIENT_TOLERANCE, evaluate_kernel, evaluate_moments, hermite_squares

if TYPE_CHECKING:
    from ._activation import Activation

# Correlations up to this size take the shared variance from the Hermite series.
_SERIES_CORRELATION = 0.5


def power_series(coefficient: Callable[[int], Real], x: Real, m: Arithmetic, first: int) -> Real:
    r""":math:`\sum_{j \ge 0} a_j x^{\mathrm{first} + 2j}`, to the unit roundoff of ``m``.

    For the series below at :math:`|x| \le 1` (0.9 for arcsin); the terms are
    summed until none exceeds the roundoff of its partial sum.
    """
    power, square, total = x**first, x * x, 0 * x
    for j in range(10_000):
        term = coefficient(j) * power
        total = total + term
        if np.all(abs(term) <= m.epsilon * abs(total)):
            return total
        power = power * square
    raise AssertionError("power series did not converge")  # pragma: no cover


def sinh_minus_identity(x: Real, m: Arithmetic) -> Real:
    r""":math:`\sinh x - x`: its series :math:`\sum_{j \ge 0} x^{2j+3}/(2j+3)!` below 1, directly above."""
    small = m.select(abs(x) < 1, x, 0 * x)  # the branch not taken stays cheap
    series = power_series(lambda j: m.one / math.factorial(2 * j + 3), small, m, 3)
    return m.select(abs(x) < 1, series, m.sinh(x) - x)


def asin_minus_identity(x: Real, m: Arithmetic) -> Real:
    r""":math:`\arcsin x - x`: its series :math:`\sum_{j \ge 1} \binom{2j}{j} x^{2j+1} / (4^j (2j+1))`
    for :math:`|x| \le 0.9`, directly above (where it is at least a fifth of :math:`\arcsin x`)."""
    small = m.select(abs(x) <= 0.9, x, 0 * x)
    series = power_series(lambda j: m.one * math.comb(2 * j + 2, j + 1) / (4 ** (j + 1) * (2 * j + 3)), small, m, 3)
    return m.select(abs(x) <= 0.9, series, m.asin(x) - x)


def sin_minus_x_cos(x: Real, m: Arithmetic) -> Real:
    r""":math:`\sin x - x\cos x = \sum_{j \ge 1} (-1)^{j+1} 2j\,x^{2j+1}/(2j+1)!`, series below 1."""
    small = m.select(abs(x) < 1, x, 0 * x)  # the branch not taken stays cheap
    series = power_series(
        lambda j: (-1) ** j * m.one * (2 * j + 2) / math.factorial(2 * j + 3), small, m, 3
    )
    return m.select(abs(x) < 1, series, m.sin(x) - x * m.cos(x))


def absolute_split(r: Real, q: Real, m: Arithmetic) -> tuple[Real, Real]:
    r"""Shared and private variances of :math:`|x|` (see the docstring of :mod:`pencils.activations`)."""
    phi = m.asin(r)
    shared = 2 * (phi * m.sin(phi) - 2 * m.sin(phi / 2) ** 2) / m.pi
    theta = 2 * m.asin(m.sqrt(q / 2))  # arccos r, accurate for small q
    return shared, q - 2 * sin_minus_x_cos(theta, m) / m.pi


def relu_split(r: Real, q: Real, m: Arithmetic) -> tuple[Real, Real]:
    r"""ReLU is :math:`x/2 + |x|/2`: a quarter of the variances of :math:`|x|`."""
    shared, private = absolute_split(r, q, m)
    return shared / 4, private / 4


def erf_split(r: Real, q: Real, m: Arithmetic, b: Real) -> tuple[Real, Real]:
    r"""Shared and private variances of :math:`\mathrm{erf}(\sigma x)`, :math:`b = 2\sigma^2/(1 + 2\sigma^2)`."""
    x = b * r
    shared = 2 * asin_minus_identity(x, m) / m.pi
    x_plus = m.select(r >= 0, x, 0 * x)  # the closed-angle formula is for r >= 0
    difference = m.asin(b * b * q * (2 - q) / (b * m.sqrt(1 - x_plus**2) + x_plus * m.sqrt(1 - b * b)))
    difference = m.select(r >= 0, difference, m.asin(b) - m.asin(x))
    return shared, 2 * (difference - b * q) / m.pi


def sin_split(r: Real, q: Real, m: Arithmetic, v: Real) -> tuple[Real, Real]:
    r"""Shared and private variances of :math:`\sin(\sigma x)`, :math:`v = \sigma^2`."""
    shared = m.exp(-v) * sinh_minus_identity(v * r, m)
    private = 4 * m.sinh(v * (1 + r) / 4) ** 2 * m.sinh(v * q / 2) + 2 * sinh_minus_identity(v * q / 2, m)
    return shared, m.exp(-v) * private


def cos_split(r: Real, q: Real, m: Arithmetic, v: Real) -> tuple[Real, Real]:
    r"""Shared and private variances of :math:`\cos(\sigma x)`, :math:`v = \sigma^2`."""
    return 2 * m.exp(-v) * m.sinh(v * r / 2) ** 2, 2 * m.exp(-v) * m.sinh(v * (1 + r) / 2) * m.sinh(v * q / 2)



def power_complement(r: Real, q: Real, k: np.ndarray, m: Arithmetic) -> Real:
    r""":math:`1 - r^k` for :math:`q = 1 - r`: :math:`-\mathrm{expm1}(k\log(1 - q))` where :math:`r \ge 1/2`."""
    near = r >= 0.5
    return m.select(near, -m.expm1(k * m.log1p(-m.select(near, q, 0 * q))), 1 - r**k)


def series_split(squares: np.ndarray, r: Real, q: Real, m: Arithmetic) -> tuple[Real, Real]:
    r""":math:`\sum_{k \ge 2} c_k^2 r^k` (Mehler's series) and :math:`\sum_{k \ge 2} c_k^2 (1 - r^k)`."""
    k = np.arange(2, len(squares))
    if m.dps is None:  # pairwise sums of exact powers: more accurate than the running products of the series
        r, q = np.asarray(r)[..., np.newaxis], np.asarray(q)[..., np.newaxis]
        return np.sum(squares[2:] * r**k, axis=-1), np.sum(squares[2:] * power_complement(r, q, k, m), axis=-1)
    context = precision.context()
    shared = context.fsum(c * r**int(j) for c, j in zip(squares[2:], k))
    private = context.fsum(c * power_complement(r, q, int(j), m) for c, j in zip(squares[2:], k))
    return shared, private


def direct_split(activation: Activation, r: Real, q: Real, m: Arithmetic) -> tuple[Real, Real]:
    """The split by subtraction from the kernel: accurate unless it cancels."""
    mu0, mu1, second = (m.number(value) for value in evaluate_moments(activation, m.dps))
    kernel = evaluate_kernel(activation, r, m)
    return kernel - mu0**2 - r * mu1**2, (second - kernel) - q * mu1**2


def quadrature_split(activation: Activation, r: Real, q: Real, m: Arithmetic) -> tuple[Real, Real]:
    r"""The split of an activation without a closed-form split.

    Shared variance: the Hermite series where :math:`|r| \le 1/2`, else the
    subtraction.  Private variance: the subtraction where :math:`q \ge 1/2`;
    below, the Hermite series in float when its coefficients have converged
    (their tail :math:`\sum k c_k^2` is negligible), else the value computed in
    mpmath at a precision raised by the digits the subtraction loses.
    """
    if m.dps is not None:
        return mpmath_shared(activation, r, q, m), mpmath_private(activation, q, m)
    squares = hermite_squares(activation, None)
    k = np.arange(len(squares))
    if np.sum((k * squares)[-len(squares) // 8:]) <= COEFFICIENT_TOLERANCE * np.sum(squares[2:]):
        return series_split(squares, r, q, m)  # converged (a smooth activation)
    shared, private = np.empty_like(r), np.empty_like(r)
    series, near = abs(r) <= _SERIES_CORRELATION, q < 0.5
    shared[series] = series_split(squares, r[series], q[series], m)[0]
    direct = ~series | ~near
    if np.any(direct):
        shared_direct, private_direct = direct_split(activation, r[direct], q[direct], m)
        shared[direct & ~series] = shared_direct[~series[direct]]
        private[direct & ~near] = private_direct[~near[direct]]
    with arithmetic(16) as sixteen_digits:
        private[near] = [float(mpmath_private(activation, sixteen_digits.number(value), sixteen_digits))
                         for value in q[near]]
    return shared, private


def mpmath_shared(activation: Activation, r: Real, q: Real, m: Arithmetic) -> Real:
    """The shared variance in mpmath: the Hermite series, or the subtraction at raised precision."""
    squares = np.array([m.number(c) for c in hermite_squares(activation, m.dps)], dtype=object)
    nonzero = [k for k in range(2, len(squares)) if squares[k] != 0]
    if not nonzero or r == 0:
        return 0 * r
    first = nonzero[0]
    # Digits the subtraction loses (the kernel against the leading term), and the series truncation.
    context = precision.context()
    second = m.number(evaluate_moments(activation, m.dps)[2])
    lost = max(0, int(context.ceil(context.log10(second / (squares[first] * abs(r) ** first)))))
    if (len(squares) - first) * -context.log10(abs(r)) > context.dps + lost:
        return series_split(squares, r, q, m)[0]
    with arithmetic(m.dps + lost + 2) as raised:
        shared = direct_split(activation, raised.number(r), raised.number(q), raised)[0]
    return +shared


def mpmath_private(activation: Activation, q: Real, m: Arithmetic) -> Real:
    """The private variance in mpmath: the subtraction with log10(1/q) more digits."""
    if q == 0:
        return 0 * q
    context = precision.context()
    lost = max(0, int(context.ceil(-context.log10(q)))) if q < 0.5 else 0
    with arithmetic(m.dps + lost + 2) as raised:
        q_raised = raised.number(q)
        private = direct_split(activation, 1 - q_raised, q_raised, raised)[1]
    return +private
