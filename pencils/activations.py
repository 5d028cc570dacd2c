r"""Gaussian moments of activation functions.

Gaussian equivalence replaces a random feature :math:`\rho(w \cdot x)` by a
linear function of its pre-activation plus independent Gaussian noise, with
coefficients that are Gaussian moments of the activation :math:`\rho`.  For
standard normal variables :math:`g, g'` with correlation :math:`E[g g'] = r`,

.. math::

    \mu_0 = E\,\rho(g), \qquad
    \mu_1 = E\,g\,\rho(g), \qquad
    \|\rho\|^2 = E\,\rho(g)^2, \qquad
    c(r) = E\,\rho(g)\,\rho(g').

The kernel :math:`c` is defined on :math:`[-1, 1]`, with :math:`c(1) =
\|\rho\|^2`, :math:`c(0) = \mu_0^2` and :math:`c'(0) = \mu_1^2` (Mehler's
formula: :math:`c(r) = \sum_k r^k a_k^2 / k!` with :math:`a_k = E\,\rho(g)
He_k(g)`).

:class:`Activation` evaluates these in two arithmetics, chosen by the ``dps``
argument of every method:

* ``dps=None``: float64, vectorised over numpy arrays of correlations;
* ``dps=k``: mpmath numbers accurate to about ``k`` significant digits,
  computed with :data:`GUARD_DIGITS` extra digits in the calling thread's private
  context (:mod:`pencils.precision`; the global ``mpmath.mp`` is never changed).

Named activations (:data:`relu`, :data:`erf`, :data:`sin`, ...) use closed
forms where they exist; every other activation, including any Python callable
passed to :func:`get`, goes through the quadrature described below.

Quadrature
----------
Activations are assumed smooth (analytic) except possibly for a kink at 0, as
for ReLU or :math:`|x|`.  In float, the first moments fold the line at 0,

.. math::

    E\,f(g) = \frac{1}{\sqrt{2\pi}} \int_0^\infty e^{-x^2/2}
              \bigl(f(x) + f(-x)\bigr)\,dx ,

and use a Gauss rule for the half-range weight :math:`e^{-x^2/2}` on
:math:`(0, \infty)`; with mpmath, they use :func:`mpmath.quad` (tanh-sinh) on
:math:`(-\infty, 0)` and :math:`(0, \infty)`.  For the kernel, write
:math:`g = u`, :math:`g' = r u + \sqrt{1 - r^2}\,z` with :math:`u, z`
independent standard normals and pass to polar coordinates :math:`(u, z) =
R(\cos\theta, \sin\theta)`: then :math:`g = R\cos\theta`, :math:`g' =
R\cos(\theta - \alpha)` with :math:`\alpha = \arccos r`.  Substituting
:math:`\theta = \varphi + \pi/2` and folding :math:`\varphi \in [\pi, 2\pi)`
onto :math:`[0, \pi)`, which flips the signs of both :math:`g` and :math:`g'`,

.. math::

    c(r) = \frac{1}{2\pi} \int_0^\pi d\varphi \int_0^\infty R\,e^{-R^2/2}
    \Bigl(\rho(-R\sin\varphi)\,\rho\bigl(R\sin(\alpha-\varphi)\bigr)
        + \rho(R\sin\varphi)\,\rho\bigl(-R\sin(\alpha-\varphi)\bigr)\Bigr)\,dR .

On each of :math:`\varphi \in (0, \alpha)` and :math:`(\alpha, \pi)` neither
argument of :math:`\rho` changes sign, so the kink is never crossed: the
angular integrals use Gauss-Legendre rules on these two arcs, the radial one a
Gauss rule for the weight :math:`R\,e^{-R^2/2}` on :math:`(0, \infty)`, in
float and in mpmath alike.  Rule sizes run through 8, 11, 16, 23, ... (a
factor :math:`\sqrt 2`) until the estimated error is below :math:`10^{-13}`
(float) or :math:`10^{-\mathrm{dps}}` (mpmath) relative to the integral of
the absolute value of the integrand.  A :class:`RuntimeWarning` reports a
failure to converge, which is what kinks away from 0 (e.g. ReLU6) cause.

The half-range Gauss rules come from the moments of their weights by the
Chebyshev algorithm (run with about :math:`1.25 n` extra digits, as it loses
that many for :math:`n` nodes), then Golub-Welsch in float, polished by
Newton's method on the three-term recurrence for mpmath.  They are cached per
size and precision.

Accuracy and cost (measured against the closed forms and against nested
:func:`mpmath.quad` references):

* float: errors below :math:`10^{-13}` relative, whether smooth (tanh,
  sigmoid, erf, sin, polynomials) or kinked at 0 (ReLU, :math:`|x|`), in
  well under a millisecond per correlation.  A plain Gauss-Hermite rule
  would not do: on a ReLU-type integrand it converges algebraically, leaving
  an error near :math:`10^{-5}` with 200 nodes.
* mpmath: first moments in well under a second.  Kernels at ``dps=50`` take
  0.1 s for ReLU, 1-2 s for sin or cos and 20-70 s for erf (``mpmath.erf``
  is slow at large arguments); tanh takes about 3 s at ``dps=30``, as its
  poles at :math:`\pm i\pi/2` slow the convergence down (91 nodes per
  dimension, against 32 in float).  Nested :func:`mpmath.quad` is far slower,
  e.g. 35 s for one sine kernel value at ``dps=20``.

Closed forms
------------
Registered in :data:`REGISTRY`; :data:`tanh` and :data:`sigmoid` have none
and use the quadrature.  Each also has closed forms at any input variance
(:meth:`Activation.at_variance`).

``relu``, :math:`\max(x, 0)`
    :math:`\mu_0 = 1/\sqrt{2\pi}`, :math:`\mu_1 = \|\rho\|^2 = 1/2` and
    :math:`c(r) = \bigl(\sqrt{1-r^2} + r(\pi - \arccos r)\bigr)/(2\pi)`.  In
    the polar formula only :math:`\varphi \in (\alpha, \pi)` contributes,
    with integrand :math:`R^2\sin\varphi\,\sin(\varphi-\alpha)`; and
    :math:`\int_0^\infty R^3 e^{-R^2/2}dR = 2`, :math:`\int_\alpha^\pi
    \sin\varphi\,\sin(\varphi-\alpha)\,d\varphi = \bigl((\pi-\alpha)\cos
    \alpha + \sin\alpha\bigr)/2`.
``abs``, :math:`|x|`
    :math:`\mu_0 = \sqrt{2/\pi}`, :math:`\mu_1 = 0`, :math:`\|\rho\|^2 = 1`
    and :math:`c(r) = (2/\pi)\bigl(\sqrt{1-r^2} + r\arcsin r\bigr)`, from
    :math:`|x| = \mathrm{relu}(x) + \mathrm{relu}(-x)`, i.e.
    :math:`c(r) = 2c_\mathrm{relu}(r) + 2c_\mathrm{relu}(-r)`.
``erf``
    :math:`\mu_0 = 0`, :math:`\mu_1 = E\,\mathrm{erf}'(g) = (2/\sqrt\pi)\,
    E\,e^{-g^2} = 2/\sqrt{3\pi}` and :math:`c(r) = (2/\pi)\arcsin(2r/3)`,
    :math:`\|\rho\|^2 = (2/\pi)\arcsin(2/3)`: by Price's theorem
    :math:`c'(r) = E\,\rho'(g)\rho'(g') = (4/\pi)\,E\,e^{-g^2-g'^2} =
    (4/\pi)(9 - 4r^2)^{-1/2}`, and :math:`c(0) = \mu_0^2 = 0`.
``sin`` and ``cos``
    From :math:`E\,e^{i(ag + bg')} = e^{-(a^2 + 2abr + b^2)/2}`:
    :math:`E\cos(g \mp g') = e^{-(1 \mp r)}`, so
    :math:`c_{\sin}(r) = e^{-1}\sinh r` and :math:`c_{\cos}(r) = e^{-1}\cosh r`;
    :math:`\mu_1 = E\cos g = e^{-1/2}` for sin, :math:`\mu_0 = e^{-1/2}` for
    cos, the other first moments vanishing by parity, and
    :math:`\|\rho\|^2 = (1 \mp e^{-2})/2`.
``linear`` (also ``identity``), :math:`x`
    :math:`\mu_0 = 0`, :math:`\mu_1 = \|\rho\|^2 = 1`, :math:`c(r) = r`.

Split without cancellation
--------------------------
With the Hermite coefficients :math:`c_k = E\,\rho(g) He_k(g)/\sqrt{k!}`,
the shared and private variances of :meth:`Activation.correlated_split` are

.. math::

    c(r) - \mu_0^2 - r\mu_1^2 = \sum_{k \ge 2} c_k^2 r^k, \qquad
    \|\rho\|^2 - c(r) - (1 - r)\mu_1^2 = \sum_{k \ge 2} c_k^2 (1 - r^k),

sums of non-negative terms for :math:`r \in [0, 1]`, while the differences on
the left lose all digits as :math:`r \to 0` (the shared part is
:math:`O(r^2)`) or :math:`r \to 1` (the private part is :math:`O(1 - r)`, and
``1 - r`` itself is inexact unless given: see the ``complement`` argument).
They are computed as follows, to a few units of roundoff in float and to the
requested digits in mpmath, for every :math:`r \in [0, 1]`:

* ``relu`` and ``abs`` (ReLU is :math:`x/2 + |x|/2`, so its variances are a
  quarter of those of :math:`|x|`): with :math:`\varphi = \arcsin r` and
  :math:`\theta = \arccos r = 2\arcsin\sqrt{(1 - r)/2}`, the shared part of
  :math:`|x|` is :math:`(2/\pi)(\varphi\sin\varphi - 2\sin^2(\varphi/2))` (the
  two terms differ by a factor 2 at least) and the private part is
  :math:`(1 - r) - (2/\pi)(\sin\theta - \theta\cos\theta)`, the last term
  a power series below :math:`\theta = 1` and :math:`O((1 - r)^{3/2})`.
* ``erf``: shared :math:`(2/\pi)(\arcsin x - x)`, :math:`x = 2r/3`, by its
  power series; private :math:`(2/\pi)(\arcsin D - 2(1 - r)/3)` with
  :math:`\arcsin D = \arcsin(2/3) - \arcsin x` and
  :math:`D = (4/9)(1 - r)(1 + r)/(b\sqrt{1 - x^2} + x\sqrt{1 - b^2})`,
  :math:`b = 2/3`.
* ``sin``: shared :math:`e^{-1}(\sinh r - r)` by its series; private
  :math:`e^{-1}(4\sinh^2((1 + r)/4)\sinh(q/2) + 2(\sinh(q/2) - q/2))` with
  :math:`q = 1 - r`.  ``cos``: :math:`2e^{-1}\sinh^2(r/2)` and
  :math:`2e^{-1}\sinh((1 + r)/2)\sinh(q/2)`.
* Activations without these closed forms: the Hermite series, with
  :math:`1 - r^k = -\mathrm{expm1}(k\,\mathrm{log1p}(-q))`, and the
  coefficients from the folded half-range Gauss rule (256 in float; parity
  exact, so odd activations get exact zeros).  In float the series is used
  when its coefficients have converged (:math:`\sum k c_k^2` over the last
  eighth below :math:`10^{-15}\sum c_k^2`: tanh and sigmoid); otherwise
  (kinked activations) the shared part is the series for :math:`|r| \le 1/2`
  and the subtraction above, the private part the subtraction for
  :math:`q \ge 1/2` and the mpmath value below.  In mpmath the shared part is
  the series where 96 terms suffice, else the subtraction, and the private
  part the subtraction, both with the working precision raised by the digits
  the subtraction loses (:math:`\log_{10}` of :math:`\|\rho\|^2` over the
  leading term, and :math:`\log_{10}(1/q)`).

Measured against the subtractions evaluated at 400 digits, for
:math:`r = e^{-2t}`, :math:`t \in [10^{-12}, 100]`: within
:math:`3.2 \cdot 10^{-15}` relative in float (erf; :math:`4 \cdot 10^{-16}`
for the others) and :math:`10^{-48}` at ``dps=50``; tanh and sigmoid in
float against ``dps=20`` within :math:`4 \cdot 10^{-15}`.  The float series
converges for tanh and sigmoid; for a kinked activation, or tanh at input
variance 3, the private part near :math:`r = 1` comes from mpmath (seconds).

Examples
--------
>>> from pencils import activations
>>> act = activations.get("relu")
>>> act.mu0(), act.mu1(), act.second_moment()
(0.3989422804014327, 0.5, 0.5)
>>> split = act.correlated_split(0.25)
>>> bool(abs(split.shared + split.private - split.total) < 1e-15)
True
"""

from __future__ import annotations

import functools
import math
import numbers
import warnings
import dataclasses
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

import mpmath
import numpy as np

from . import precision
from .errors import ParameterError, ParameterTypeError
from .validation import check_dps

__all__ = [
    "GUARD_DIGITS",
    "REGISTRY",
    "Activation",
    "ClosedForm",
    "CorrelatedSplit",
    "absolute",
    "cos",
    "erf",
    "get",
    "linear",
    "relu",
    "sigmoid",
    "sin",
    "tanh",
]

#: Extra decimal digits carried by mpmath computations requested at ``dps``.
GUARD_DIGITS = 10

Real = Any  # a float, a numpy array of floats, or an mpmath ``mpf``

# Rule sizes tried in turn by the adaptive quadrature (about sqrt(2) apart).
_SIZES = (8, 11, 16, 23, 32, 45, 64, 91, 128, 181, 256)
_MAX_FLOAT_SIZE = 128
_FLOAT_TOLERANCE = 1e-13
# Correlations processed at once by the float kernel quadrature (bounds memory).
_CHUNK = 64


# --------------------------------------------------------------------------
# Arithmetic: float64 numpy arrays, or numpy object arrays of mpmath numbers
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Arithmetic:
    """The number system of one computation.

    Closed forms receive an instance as their namespace ``m`` and use only
    ``one``, ``pi``, ``sqrt``, ``exp``, ``expm1``, ``log1p``, ``sin``,
    ``cos``, ``sinh``, ``cosh``, ``asin`` and ``acos``; those work on scalars
    and, for float, on numpy arrays.  ``epsilon`` is the unit roundoff.
    """

    dps: int | None  # None for float64, else the requested digits
    one: Real
    pi: Real
    sqrt: Callable[[Real], Real]
    exp: Callable[[Real], Real]
    expm1: Callable[[Real], Real]
    log1p: Callable[[Real], Real]
    sin: Callable[[Real], Real]
    cos: Callable[[Real], Real]
    sinh: Callable[[Real], Real]
    cosh: Callable[[Real], Real]
    asin: Callable[[Real], Real]
    acos: Callable[[Real], Real]
    tolerance: Real
    epsilon: Real

    @property
    def max_size(self) -> int:
        return _MAX_FLOAT_SIZE if self.dps is None else _SIZES[-1]

    def number(self, value: Any) -> Real:
        """Convert a scalar (or, in float, an array) to this arithmetic."""
        return np.asarray(value, dtype=float) if self.dps is None else _to_mpf(value)

    def vectorize(self, activation: Activation) -> Callable[[np.ndarray], np.ndarray]:
        """The activation as an elementwise function on arrays of this arithmetic."""
        if self.dps is None:
            return lambda x: np.asarray(activation.numpy_fn(x), dtype=float)
        return np.frompyfunc(lambda x: _in_thread_context(activation.mpmath_fn(x), activation.name), 1, 1)

    def select(self, condition: Any, if_true: Real, if_false: Real) -> Real:
        """Elementwise ``if_true`` where ``condition`` holds, else ``if_false``."""
        if self.dps is None:
            return np.where(condition, if_true, if_false)
        return if_true if condition else if_false

    def rule(self, kind: str, size: int) -> tuple[np.ndarray, np.ndarray]:
        """Nodes and weights of a Gauss rule (see :func:`_gauss_rule`)."""
        working = None if self.dps is None else precision.context().dps
        return _gauss_rule(kind, size, working)

    def weighted_sum(self, weights: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Contract the last axis of ``values`` with (broadcast) ``weights``."""
        if self.dps is None:
            return np.sum(weights * values, axis=-1)
        rows = values.reshape(-1, values.shape[-1])
        weight_rows = np.broadcast_to(weights, values.shape).reshape(rows.shape)
        sums = [precision.context().fdot(w, v) for w, v in zip(weight_rows, rows)]
        return np.array(sums, dtype=object).reshape(values.shape[:-1])


_FLOAT = _Arithmetic(
    dps=None,
    one=1.0,
    pi=np.pi,
    sqrt=np.sqrt,
    exp=np.exp,
    expm1=np.expm1,
    log1p=np.log1p,
    sin=np.sin,
    cos=np.cos,
    sinh=np.sinh,
    cosh=np.cosh,
    asin=np.arcsin,
    acos=np.arccos,
    tolerance=_FLOAT_TOLERANCE,
    epsilon=np.finfo(float).eps / 2,
)


def _mpmath_arithmetic(dps: int) -> _Arithmetic:
    """The mpmath arithmetic of this thread's private context; to be built under the working precision."""
    context = precision.context()

    def ufunc(function: Callable[[Any], Any]) -> Callable[[Any], Any]:
        return np.frompyfunc(function, 1, 1)

    return _Arithmetic(
        dps=dps,
        one=context.mpf(1),
        pi=+context.pi,
        sqrt=ufunc(context.sqrt),
        exp=ufunc(context.exp),
        expm1=ufunc(context.expm1),
        log1p=ufunc(context.log1p),
        sin=ufunc(context.sin),
        cos=ufunc(context.cos),
        sinh=ufunc(context.sinh),
        cosh=ufunc(context.cosh),
        asin=ufunc(context.asin),
        acos=ufunc(context.acos),
        tolerance=context.mpf(10) ** (-dps),
        epsilon=+context.eps,
    )


@contextmanager
def _arithmetic(dps: int | None) -> Iterator[_Arithmetic]:
    """Yield the arithmetic for ``dps``, at ``dps + GUARD_DIGITS`` digits of this thread's private context."""
    if dps is None:
        yield _FLOAT
        return
    dps = check_dps(dps)
    with precision.digits(dps + GUARD_DIGITS):
        yield _mpmath_arithmetic(int(dps))


def _in_thread_context(value: Any, name: str) -> Any:
    """``value``, a result of an activation's ``mpmath_fn``, unless it is a number of the global ``mpmath.mp``."""
    if isinstance(value, (mpmath.mpf, mpmath.mpc)):
        raise ParameterTypeError(
            f"activation {name!r} computed in the global mpmath context (at mpmath.mp.dps digits, not those "
            f"requested): compute with arithmetic operators on its argument, or with "
            f"pencils.precision.Function('name') (e.g. Function('erf')) instead of mpmath.name"
        )
    return value


def _to_mpf(value: Any) -> mpmath.mpf:
    """Convert a real scalar (int, float, str, fraction, mpf of any context, numpy scalar) to this thread's context."""
    context = precision.context()
    if isinstance(value, numbers.Integral):
        return context.mpf(int(value))
    if isinstance(value, numbers.Rational):
        return context.mpf(int(value.numerator)) / int(value.denominator)
    return context.mpf(value)


# --------------------------------------------------------------------------
# Gauss rules
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


# Gauss rules by (kind, size, float?), with the precision (dps) they were computed at.
_RULES: dict[tuple[str, int, int | None], tuple[np.ndarray, np.ndarray]] = {}


def _gauss_rule(kind: str, size: int, dps: int | None) -> tuple[np.ndarray, np.ndarray]:
    r"""Gauss rule with ``size`` nodes for the weight ``kind``, cached.

    Golub-Welsch nodes in float, with the weights
    :math:`1/\sum_{k<n} p_k(x)^2` from the orthonormal polynomials: unlike
    the squared eigenvector components, they are accurate relative to
    themselves, also the tiny weights of the outer nodes (where a Hermite
    polynomial times the weight is not small).  For a working precision ``dps``, the float nodes
    are refined by Newton's method on the monic polynomial and the weights come
    from the Christoffel formula ``w = beta_0 ... beta_{n-1} / (pi_{n-1}(x)
    pi_n'(x))``.  Rules are cached per precision (so that a result never depends on the
    order of calls) as numbers of ``mpmath.mp``, and returned in this thread's context.
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


# --------------------------------------------------------------------------
# Adaptive quadratures
# --------------------------------------------------------------------------


def _adaptive(
    estimate: Callable[[int], tuple[np.ndarray, np.ndarray]], m: _Arithmetic, what: str, max_size: int | None = None
) -> np.ndarray:
    """Refine ``estimate(size) -> (values, magnitudes)`` over growing rule sizes.

    Changes between successive sizes are measured relative to the magnitudes
    (the same rules applied to the absolute values of the integrands).  With ``d`` the largest relative
    change between the last two sizes and ``d_prev`` the one before, the
    error of the last values is estimated as ``d * min(1, d / d_prev)``: the
    previous change measures the previous error, and convergence does not slow
    down along the geometric sequence of sizes (true of errors ``exp(-c
    n**b)``).  Stop once it is below the tolerance.
    """
    values = previous = change = None
    for size in _SIZES:
        if size > (max_size or m.max_size):
            break
        values, magnitudes = estimate(size)
        if previous is not None:
            scale = np.where(magnitudes > 0, magnitudes, 1)
            new_change = max(np.ravel(abs(values - previous) / scale))
            error = new_change if not change else new_change * min(1, new_change / change)
            if error <= m.tolerance:
                return values
            change = new_change
        previous = values
    _warn_unconverged(what, change)
    return values


def _warn_unconverged(what: str, error: Real) -> None:
    warnings.warn(
        f"quadrature for {what} did not converge (relative error estimate {float(error):.1e}); "
        "the activation may be non-smooth away from 0",
        RuntimeWarning,
        stacklevel=6,
    )


def _float_moments(activation: Activation) -> tuple[float, float, float]:
    """``(mu0, mu1, ||rho||^2)`` in float by the folded half-range Gauss rule."""
    rho = _FLOAT.vectorize(activation)

    def estimate(size: int) -> tuple[np.ndarray, np.ndarray]:
        x, w = _FLOAT.rule("half0", size)
        w = w / np.sqrt(2 * np.pi)
        plus, minus = rho(x), rho(-x)
        integrands = np.stack([plus + minus, x * (plus - minus), plus * plus + minus * minus])
        modulus = abs(plus) + abs(minus)
        magnitudes = np.stack([modulus, x * modulus, integrands[2]])
        return integrands @ w, magnitudes @ w

    mu0, mu1, second = _adaptive(estimate, _FLOAT, f"the moments of {activation.name}")
    return mu0, mu1, second


def _mpmath_moments(activation: Activation, m: _Arithmetic) -> tuple[Real, Real, Real]:
    """``(mu0, mu1, ||rho||^2)`` by ``mpmath.quad`` on (-inf, 0) and (0, inf)."""
    context = precision.context()

    @functools.lru_cache(maxsize=None)  # the three integrals share their nodes
    def weighted(x: mpmath.mpf) -> tuple[Any, mpmath.mpf]:
        return activation.mpmath_fn(x), context.npdf(x)

    def expectation(f: Callable[[mpmath.mpf, Any], Any]) -> Real:
        value, error = context.quad(
            lambda x: f(x, weighted(x)[0]) * weighted(x)[1],
            [-context.inf, 0, context.inf],
            error=True,
        )
        relative_error = error / max(1, abs(value))
        if relative_error > m.tolerance:
            _warn_unconverged(f"a moment of {activation.name}", relative_error)
        return value

    return (
        expectation(lambda x, y: y),
        expectation(lambda x, y: x * y),
        expectation(lambda x, y: y * y),
    )


def _quadrature_kernel(activation: Activation, r: np.ndarray, m: _Arithmetic) -> np.ndarray:
    """``c(r)`` for a 1-D array ``r`` by the polar formula of the module docstring."""
    rho = m.vectorize(activation)
    alpha = m.acos(r)[:, np.newaxis]  # (len(r), 1)
    # Arcs (0, alpha) and (alpha, pi) as (start, length); one is empty if r = +-1.
    arcs = [(0 * alpha, alpha), (alpha, m.pi - alpha)]
    arcs = [(start, length) for start, length in arcs if np.any(length != 0)]

    def estimate(size: int) -> tuple[np.ndarray, np.ndarray]:
        t, w_t = m.rule("legendre", size)
        radius, w_radius = m.rule("half1", size)
        phi = np.concatenate([start + length * t for start, length in arcs], axis=1)
        w_phi = np.concatenate([length * w_t for _, length in arcs], axis=1) / (2 * m.pi)
        u = m.sin(phi)[..., np.newaxis] * radius  # -g, shape (len(r), angles, radii)
        v = m.sin(alpha - phi)[..., np.newaxis] * radius  # g'
        integrand = rho(-u) * rho(v) + rho(u) * rho(-v)
        radial = m.weighted_sum(w_radius, np.stack([integrand, abs(integrand)]))
        values, magnitudes = m.weighted_sum(w_phi, radial)
        return values, magnitudes

    return _adaptive(estimate, m, f"the kernel of {activation.name}")


# --------------------------------------------------------------------------
# The split of the nonlinear variance, without cancellation
# --------------------------------------------------------------------------

# Correlations up to this size take the shared variance from the Hermite series.
_SERIES_CORRELATION = 0.5
# Hermite coefficients computed for the series, in float and in mpmath.
_FLOAT_COEFFICIENTS = 256
_MPMATH_COEFFICIENTS = 96
_COEFFICIENT_TOLERANCE = 1e-15


def _power_series(coefficient: Callable[[int], Real], x: Real, m: _Arithmetic, first: int) -> Real:
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


def _sinh_minus_identity(x: Real, m: _Arithmetic) -> Real:
    r""":math:`\sinh x - x`: its series :math:`\sum_{j \ge 0} x^{2j+3}/(2j+3)!` below 1, directly above."""
    small = m.select(abs(x) < 1, x, 0 * x)  # the branch not taken stays cheap
    series = _power_series(lambda j: m.one / math.factorial(2 * j + 3), small, m, 3)
    return m.select(abs(x) < 1, series, m.sinh(x) - x)


def _asin_minus_identity(x: Real, m: _Arithmetic) -> Real:
    r""":math:`\arcsin x - x`: its series :math:`\sum_{j \ge 1} \binom{2j}{j} x^{2j+1} / (4^j (2j+1))`
    for :math:`|x| \le 0.9`, directly above (where it is at least a fifth of :math:`\arcsin x`)."""
    small = m.select(abs(x) <= 0.9, x, 0 * x)
    series = _power_series(lambda j: m.one * math.comb(2 * j + 2, j + 1) / (4 ** (j + 1) * (2 * j + 3)), small, m, 3)
    return m.select(abs(x) <= 0.9, series, m.asin(x) - x)


def _sin_minus_x_cos(x: Real, m: _Arithmetic) -> Real:
    r""":math:`\sin x - x\cos x = \sum_{j \ge 1} (-1)^{j+1} 2j\,x^{2j+1}/(2j+1)!`, series below 1."""
    small = m.select(abs(x) < 1, x, 0 * x)  # the branch not taken stays cheap
    series = _power_series(
        lambda j: (-1) ** j * m.one * (2 * j + 2) / math.factorial(2 * j + 3), small, m, 3
    )
    return m.select(abs(x) < 1, series, m.sin(x) - x * m.cos(x))


def _absolute_split(r: Real, q: Real, m: _Arithmetic) -> tuple[Real, Real]:
    r"""Shared and private variances of :math:`|x|` (see the module docstring)."""
    phi = m.asin(r)
    shared = 2 * (phi * m.sin(phi) - 2 * m.sin(phi / 2) ** 2) / m.pi
    theta = 2 * m.asin(m.sqrt(q / 2))  # arccos r, accurate for small q
    return shared, q - 2 * _sin_minus_x_cos(theta, m) / m.pi


def _relu_split(r: Real, q: Real, m: _Arithmetic) -> tuple[Real, Real]:
    r"""ReLU is :math:`x/2 + |x|/2`: a quarter of the variances of :math:`|x|`."""
    shared, private = _absolute_split(r, q, m)
    return shared / 4, private / 4


def _erf_split(r: Real, q: Real, m: _Arithmetic, b: Real) -> tuple[Real, Real]:
    r"""Shared and private variances of :math:`\mathrm{erf}(\sigma x)`, :math:`b = 2\sigma^2/(1 + 2\sigma^2)`."""
    x = b * r
    shared = 2 * _asin_minus_identity(x, m) / m.pi
    x_plus = m.select(r >= 0, x, 0 * x)  # the closed-angle formula is for r >= 0
    difference = m.asin(b * b * q * (2 - q) / (b * m.sqrt(1 - x_plus**2) + x_plus * m.sqrt(1 - b * b)))
    difference = m.select(r >= 0, difference, m.asin(b) - m.asin(x))
    return shared, 2 * (difference - b * q) / m.pi


def _sin_split(r: Real, q: Real, m: _Arithmetic, v: Real) -> tuple[Real, Real]:
    r"""Shared and private variances of :math:`\sin(\sigma x)`, :math:`v = \sigma^2`."""
    shared = m.exp(-v) * _sinh_minus_identity(v * r, m)
    private = 4 * m.sinh(v * (1 + r) / 4) ** 2 * m.sinh(v * q / 2) + 2 * _sinh_minus_identity(v * q / 2, m)
    return shared, m.exp(-v) * private


def _cos_split(r: Real, q: Real, m: _Arithmetic, v: Real) -> tuple[Real, Real]:
    r"""Shared and private variances of :math:`\cos(\sigma x)`, :math:`v = \sigma^2`."""
    return 2 * m.exp(-v) * m.sinh(v * r / 2) ** 2, 2 * m.exp(-v) * m.sinh(v * (1 + r) / 2) * m.sinh(v * q / 2)


@functools.lru_cache(maxsize=256)
def _hermite_squares(activation: Activation, dps: int | None) -> np.ndarray:
    r"""Squares :math:`c_k^2` of the normalised Hermite coefficients, :math:`k = 0, 1, \dots`.

    :math:`c_k = E\,\rho(g)\,He_k(g)/\sqrt{k!}` by the folded half-range Gauss
    rule (:math:`He_k(-x) = (-1)^k He_k(x)`, so that parity is exact), with
    :math:`He_k/\sqrt{k!}` from its three-term recurrence.  A coefficient
    within the quadrature's accuracy of zero is set to zero.
    """
    count = _FLOAT_COEFFICIENTS if dps is None else _MPMATH_COEFFICIENTS
    with _arithmetic(dps) as m:
        rho = m.vectorize(activation)
        scale: list = []

        def estimate(size: int) -> tuple[np.ndarray, np.ndarray]:
            x, w = m.rule("half0", size)
            w = w / m.sqrt(2 * m.pi)
            plus, minus = rho(x), rho(-x)
            parts = (plus + minus, plus - minus)
            older, old, rows = 0 * x, 0 * x + 1, []
            for k in range(count):
                rows.append(parts[k % 2] * old)
                older, old = old, (x * old - m.sqrt(m.one * k) * older) / m.sqrt(m.one * (k + 1))
            integrands = np.stack(rows)
            magnitudes = m.weighted_sum(w, abs(integrands))
            scale[:] = [magnitudes]
            return m.weighted_sum(w, integrands), magnitudes

        # Up to the largest rule: a Gauss rule of n nodes integrates He_k exactly only for k < 2n.
        # Coefficients are small against their integrands: converge to the roundoff.
        precise = dataclasses.replace(m, tolerance=_COEFFICIENT_TOLERANCE) if m.dps is None else m
        coefficients = _adaptive(estimate, precise, f"the Hermite coefficients of {activation.name}", _SIZES[-1])
        noise = abs(coefficients) <= 10 * m.tolerance * scale[0]
        squares = [precision.public(0 * m.one if zero else c**2) for c, zero in zip(coefficients, noise)]
        return np.array(squares, dtype=coefficients.dtype)


def _power_complement(r: Real, q: Real, k: np.ndarray, m: _Arithmetic) -> Real:
    r""":math:`1 - r^k` for :math:`q = 1 - r`: :math:`-\mathrm{expm1}(k\log(1 - q))` where :math:`r \ge 1/2`."""
    near = r >= 0.5
    return m.select(near, -m.expm1(k * m.log1p(-m.select(near, q, 0 * q))), 1 - r**k)


def _series_split(squares: np.ndarray, r: Real, q: Real, m: _Arithmetic) -> tuple[Real, Real]:
    r""":math:`\sum_{k \ge 2} c_k^2 r^k` and :math:`\sum_{k \ge 2} c_k^2 (1 - r^k)`, along a last axis of ``k``."""
    k = np.arange(2, len(squares))
    if m.dps is None:
        r, q = np.asarray(r)[..., np.newaxis], np.asarray(q)[..., np.newaxis]
        return np.sum(squares[2:] * r**k, axis=-1), np.sum(squares[2:] * _power_complement(r, q, k, m), axis=-1)
    context = precision.context()
    shared = context.fsum(c * r**int(j) for c, j in zip(squares[2:], k))
    private = context.fsum(c * _power_complement(r, q, int(j), m) for c, j in zip(squares[2:], k))
    return shared, private


def _direct_split(activation: Activation, r: Real, q: Real, m: _Arithmetic) -> tuple[Real, Real]:
    """The split by subtraction from the kernel: accurate unless it cancels."""
    mu0, mu1, second = (m.number(value) for value in _moments(activation, m.dps))
    kernel = _kernel(activation, r, m)
    return kernel - mu0**2 - r * mu1**2, (second - kernel) - q * mu1**2


def _quadrature_split(activation: Activation, r: Real, q: Real, m: _Arithmetic) -> tuple[Real, Real]:
    r"""The split of an activation without a closed-form split.

    Shared variance: the Hermite series where :math:`|r| \le 1/2`, else the
    subtraction.  Private variance: the subtraction where :math:`q \ge 1/2`;
    below, the Hermite series in float when its coefficients have converged
    (their tail :math:`\sum k c_k^2` is negligible), else the value computed in
    mpmath at a precision raised by the digits the subtraction loses.
    """
    if m.dps is not None:
        return _mpmath_shared(activation, r, q, m), _mpmath_private(activation, q, m)
    squares = _hermite_squares(activation, None)
    k = np.arange(len(squares))
    if np.sum((k * squares)[-len(squares) // 8:]) <= _COEFFICIENT_TOLERANCE * np.sum(squares[2:]):
        return _series_split(squares, r, q, m)  # converged (a smooth activation)
    shared, private = np.empty_like(r), np.empty_like(r)
    series, near = abs(r) <= _SERIES_CORRELATION, q < 0.5
    shared[series] = _series_split(squares, r[series], q[series], m)[0]
    direct = ~series | ~near
    if np.any(direct):
        shared_direct, private_direct = _direct_split(activation, r[direct], q[direct], m)
        shared[direct & ~series] = shared_direct[~series[direct]]
        private[direct & ~near] = private_direct[~near[direct]]
    with _arithmetic(16) as sixteen_digits:
        private[near] = [float(_mpmath_private(activation, sixteen_digits.number(value), sixteen_digits))
                         for value in q[near]]
    return shared, private


def _mpmath_shared(activation: Activation, r: Real, q: Real, m: _Arithmetic) -> Real:
    """The shared variance in mpmath: the Hermite series, or the subtraction at raised precision."""
    squares = np.array([m.number(c) for c in _hermite_squares(activation, m.dps)], dtype=object)
    nonzero = [k for k in range(2, len(squares)) if squares[k] != 0]
    if not nonzero or r == 0:
        return 0 * r
    first = nonzero[0]
    # Digits the subtraction loses (the kernel against the leading term), and the series truncation.
    context = precision.context()
    second = m.number(_moments(activation, m.dps)[2])
    lost = max(0, int(context.ceil(context.log10(second / (squares[first] * abs(r) ** first)))))
    if (len(squares) - first) * -context.log10(abs(r)) > context.dps + lost:
        return _series_split(squares, r, q, m)[0]
    with _arithmetic(m.dps + lost + 2) as raised:
        shared = _direct_split(activation, raised.number(r), raised.number(q), raised)[0]
    return +shared


def _mpmath_private(activation: Activation, q: Real, m: _Arithmetic) -> Real:
    """The private variance in mpmath: the subtraction with log10(1/q) more digits."""
    if q == 0:
        return 0 * q
    context = precision.context()
    lost = max(0, int(context.ceil(-context.log10(q)))) if q < 0.5 else 0
    with _arithmetic(m.dps + lost + 2) as raised:
        q_raised = raised.number(q)
        private = _direct_split(activation, 1 - q_raised, q_raised, raised)[1]
    return +private


# --------------------------------------------------------------------------
# Activations
# --------------------------------------------------------------------------


class ClosedForm(NamedTuple):
    r"""Closed-form Gaussian moments of an activation.

    Each entry takes an arithmetic namespace ``m`` (and ``kernel`` also the
    correlation ``r``) providing ``one``, ``pi``, ``sqrt``, ``exp``,
    ``expm1``, ``log1p``, ``sin``, ``cos``, ``sinh``, ``cosh``, ``asin``,
    ``acos`` and ``select(condition, a, b)``, so that one formula serves
    both float64 (numpy, vectorised in ``r``) and mpmath.  Write rational
    constants as ``2 * m.one / 3``, not ``2 / 3``, to keep them exact.

    The optional ``split(r, q, m)``, with ``q = 1 - r`` given separately,
    returns the ``(shared, private)`` variances of
    :meth:`Activation.correlated_split` written without cancellation; without
    it they come from the kernel and the Hermite series (see "Split without
    cancellation" in the module docstring).

    Examples
    --------
    The activation :math:`\rho(x) = x^2` has :math:`\mu_0 = 1`, :math:`\mu_1 = 0`,
    :math:`\|\rho\|^2 = 3` and :math:`c(r) = 1 + 2r^2`:

    >>> square = Activation(
    ...     "square", np.square, lambda x: x * x,
    ...     closed_form=ClosedForm(
    ...         mu0=lambda m: m.one,
    ...         mu1=lambda m: 0 * m.one,
    ...         second_moment=lambda m: 3 * m.one,
    ...         kernel=lambda r, m: 1 + 2 * r * r,
    ...     ),
    ... )
    >>> square.kernel(np.array([0.0, 0.5]))
    array([1. , 1.5])
    """

    mu0: Callable[[Any], Real]
    mu1: Callable[[Any], Real]
    second_moment: Callable[[Any], Real]
    kernel: Callable[[Real, Any], Real]
    split: Callable[[Real, Real, Any], tuple[Real, Real]] | None = None


class CorrelatedSplit(NamedTuple):
    r"""Gaussian-equivalent split of the centred activation for two correlated inputs.

    For :math:`g, g'` standard normal with correlation :math:`r`, write
    :math:`\rho(g) - \mu_0 = \mu_1 g + \eta` and :math:`\rho(g') - \mu_0 =
    \mu_1 g' + \eta'`.  The nonlinear parts :math:`\eta, \eta'` have variance
    ``total`` and covariance ``shared``; Gaussian equivalence models them as
    :math:`\eta = \xi_0 + \xi`, :math:`\eta' = \xi_0 + \xi'` with independent
    centred Gaussians of variances ``shared`` (:math:`\xi_0`) and ``private``
    (:math:`\xi, \xi'`).

    Attributes
    ----------
    shared : float, numpy.ndarray or mpmath.mpf
        :math:`c(r) - \mu_0^2 - r\mu_1^2`, the nonlinear variance common to
        both inputs (``v0**2`` in the diffusion application, where
        :math:`r = a^2 = e^{-2t}`).
    private : float, numpy.ndarray or mpmath.mpf
        :math:`(\|\rho\|^2 - \mu_0^2) - (c(r) - \mu_0^2) - (1 - r)\mu_1^2`,
        the nonlinear variance independent between the inputs (``s**2``).
    total : float or mpmath.mpf
        :math:`\|\rho\|^2 - \mu_0^2 - \mu_1^2 =` ``shared + private``, the
        whole nonlinear variance (``v**2``); it does not depend on :math:`r`.
    """

    shared: Real
    private: Real
    total: Real


@dataclass(frozen=True, eq=False)
class Activation:
    r"""An activation function with its Gaussian moments.

    Parameters
    ----------
    name : str
        Label used in messages and in :data:`REGISTRY`.
    numpy_fn : callable
        Vectorised float implementation, ``numpy_fn(x_array) -> array``.
    mpmath_fn : callable
        Scalar arbitrary-precision implementation, ``mpmath_fn(mpf) -> mpf``.
        It receives numbers of the calling thread's private mpmath context
        (:mod:`pencils.precision`; test for them with ``hasattr(x, "_mpf_")``)
        and must compute in it: with arithmetic operators, or with that
        context's functions (``pencils.precision.Function("erf")``).  The
        global ``mpmath.erf`` would compute at the caller's ``mpmath.mp.dps``
        and is refused.
    closed_form : ClosedForm, optional
        Exact moments; without them the moments come from the quadrature
        described in the module docstring, which assumes that the activation
        is smooth except possibly at 0.

    Notes
    -----
    Every method takes ``dps``: ``None`` gives float64 results (numpy arrays
    where ``r`` is an array), an integer ``k`` gives mpmath numbers accurate
    to about ``k`` digits (``r`` must then be a scalar; pass it as a string,
    integer, fraction or ``mpf`` to avoid binary rounding of decimals).
    ``mu0``, ``mu1`` and ``second_moment`` are cached per ``(activation,
    dps)``.  Instances compare and hash by identity.

    Examples
    --------
    >>> act = Activation("cube", lambda x: x**3, lambda x: x**3)
    >>> round(act.mu1(), 12), round(act.second_moment(), 12)
    (3.0, 15.0)
    >>> act(np.array([-1.0, 2.0]))
    array([-1.,  8.])
    """

    name: str
    numpy_fn: Callable[[np.ndarray], np.ndarray]
    mpmath_fn: Callable[[Any], Any]
    closed_form: ClosedForm | None = field(default=None, kw_only=True)
    closed_form_at_variance: Callable[[Any], ClosedForm] | None = field(default=None, kw_only=True)

    def __repr__(self) -> str:
        return f"Activation({self.name!r})"

    def __call__(self, x: Any) -> np.ndarray:
        """Evaluate the float implementation, ``numpy_fn(x)``."""
        return self.numpy_fn(x)

    def at_variance(self, variance: Any) -> Activation:
        r"""The activation seen by inputs of variance :math:`v`: :math:`x \mapsto \rho(\sqrt v\,x)`.

        Its moments are those of :math:`\rho` for :math:`g \sim \mathcal N(0, v)`
        (e.g. :math:`\mu_1 = E\,g\rho(\sqrt v g)`, with :math:`g` standard).
        The named activations keep closed forms (``closed_form_at_variance``):
        ReLU, :math:`|x|` and :math:`x` scale (:math:`\mu` by :math:`\sqrt v`,
        second moments by :math:`v`); erf has :math:`c(r) = (2/\pi)\arcsin(br)`
        with :math:`b = 2v/(1 + 2v)` and :math:`\mu_1 = \sqrt{2b/\pi}`; sin
        and cos have :math:`c(r) = e^{-v}\sinh(vr)` and :math:`e^{-v}\cosh(vr)`.
        Other activations use the quadrature.

        Parameters
        ----------
        variance : float, str, fraction or mpmath number
            :math:`v > 0`; pass a string or fraction to keep it exact at high precision.

        Examples
        --------
        >>> wide = erf.at_variance(2)
        >>> round(wide.mu1(), 15) == round(2 * math.sqrt(2 / (5 * math.pi)), 15)
        True
        >>> round(relu.at_variance(4).second_moment(), 15)  # 4 * 1/2
        2.0
        >>> round(tanh.at_variance("0.5").mu1(), 12)  # E g tanh(g / sqrt 2), by quadrature
        0.513588407994
        """
        try:
            value = float(variance)
        except (TypeError, ValueError):
            raise ParameterError(f"variance must be a positive real number; got {variance!r}.") from None
        if not (0 < value < math.inf):
            raise ParameterError(f"variance must be a positive, finite real number; got {variance!r}.")
        scale = math.sqrt(value)

        def numpy_fn(x: np.ndarray) -> np.ndarray:
            return self.numpy_fn(scale * np.asarray(x))

        def mpmath_fn(x: mpmath.mpf) -> mpmath.mpf:
            return self.mpmath_fn(precision.context().sqrt(_to_mpf(variance)) * x)

        family = self.closed_form_at_variance
        return Activation(f"{self.name} at variance {variance}", numpy_fn, mpmath_fn,
                          closed_form=None if family is None else family(variance))

    def mu0(self, dps: int | None = None) -> Real:
        r"""Mean :math:`\mu_0 = E\,\rho(g)`.

        Examples
        --------
        >>> relu.mu0()  # 1/sqrt(2 pi)
        0.3989422804014327
        >>> mpmath.nstr(relu.mu0(dps=30), 30)
        '0.398942280401432677939946059934'
        """
        return _moments(self, dps)[0]

    def mu1(self, dps: int | None = None) -> Real:
        r"""Linear coefficient :math:`\mu_1 = E\,g\,\rho(g) = E\,\rho'(g)`.

        Examples
        --------
        >>> erf.mu1()  # 2/sqrt(3 pi)
        0.6514700158705599
        >>> round(tanh.mu1(), 12)
        0.605705509602
        """
        return _moments(self, dps)[1]

    def second_moment(self, dps: int | None = None) -> Real:
        r"""Second moment :math:`\|\rho\|^2 = E\,\rho(g)^2 = c(1)`.

        Examples
        --------
        >>> relu.second_moment()
        0.5
        >>> mpmath.nstr(sin.second_moment(dps=25), 25)  # (1 - e^{-2}) / 2
        '0.4323323583816936540530003'
        """
        return _moments(self, dps)[2]

    def kernel(self, r: Any, dps: int | None = None) -> Real:
        r"""Kernel :math:`c(r) = E\,\rho(g)\rho(g')` for :math:`\mathrm{corr}(g, g') = r`.

        Parameters
        ----------
        r : float, array_like or (with ``dps``) a real scalar
            Correlation(s) in :math:`[-1, 1]`.
        dps : int, optional
            Decimal digits; ``None`` for float64.

        Returns
        -------
        float, numpy.ndarray or mpmath.mpf
            Same shape as ``r`` in float.

        Raises
        ------
        ValueError
            If some ``r`` lies outside :math:`[-1, 1]` (or is NaN).

        Examples
        --------
        >>> relu.kernel([0.0, 1.0])  # mu0^2 = 1/(2 pi), ||relu||^2 = 1/2
        array([0.15915494, 0.5       ])
        >>> mpmath.nstr(erf.kernel("0.75", dps=20), 20)  # (2/pi) asin(1/2) = 1/3
        '0.33333333333333333333'
        >>> round(tanh.kernel(0.5), 12)
        0.186324413203
        """
        with _arithmetic(dps) as m:
            return precision.public(_kernel(self, _correlation(r, m), m))

    def correlated_split(self, r: Any, dps: int | None = None, *, complement: Any = None) -> CorrelatedSplit:
        r"""Variances of the shared and private nonlinear noise at correlation ``r``.

        See :class:`CorrelatedSplit`; ``r`` and ``dps`` as in :meth:`kernel`.
        Both variances are sums of non-negative Hermite terms,
        :math:`\sum_{k\ge2} c_k^2 r^k` and :math:`\sum_{k\ge2} c_k^2 (1 - r^k)`,
        and are computed without the cancellation of the defining differences
        (see "Split without cancellation" in the module docstring): to full
        relative accuracy even for :math:`r` near 0 or 1, for
        :math:`r \in [0, 1]`.

        Parameters
        ----------
        complement : float, array_like or real scalar, optional
            :math:`1 - r`, when it is known more accurately than by subtracting
            ``r`` from 1 (e.g. ``-expm1(-2 t)`` for ``r = exp(-2 t)``); it fixes
            the private variance near :math:`r = 1`.  It must match ``1 - r``
            to at least 10 digits.

        Examples
        --------
        >>> split = linear.correlated_split(0.3)  # a linear map has no noise
        >>> split.shared, split.private, split.total
        (0.0, 0.0, 0.0)
        >>> split = relu.correlated_split(np.array([0.0, 0.5, 1.0]))
        >>> split.shared  # zero at r = 0, the whole nonlinear variance at r = 1
        array([0.        , 0.02034395, 0.09084506])
        >>> bool(np.allclose(split.shared + split.private, split.total))
        True
        """
        with _arithmetic(dps) as m:
            mu0, mu1, second = (m.number(value) for value in _moments(self, dps))
            r = _correlation(r, m)
            q = 1 - r if complement is None else _complement(complement, r, m)
            form = self.closed_form
            if form is not None and form.split is not None:
                shared, private = (np.broadcast_to(m.number(v), np.shape(r)) if m.dps is None else v
                                   for v in form.split(r, q, m))
            else:
                shared, private = _quadrature_split(self, np.asarray(r) if m.dps is None else r, q, m)
            return CorrelatedSplit(
                shared=precision.public(_to_output(shared, m)),
                private=precision.public(_to_output(private, m)),
                total=precision.public(_to_output(second - mu0**2 - mu1**2, m)),
            )


def _correlation(r: Any, m: _Arithmetic) -> Real:
    """Convert ``r`` to the arithmetic ``m``, checking that it lies in [-1, 1]."""
    if m.dps is not None and np.ndim(r) != 0:
        raise ParameterTypeError("with dps set, r must be a scalar; loop over the values")
    value = m.number(r)
    if not np.all(abs(value) <= 1):
        raise ParameterError(f"correlation r must lie in [-1, 1], got {r!r}")
    return value


def _complement(complement: Any, r: Real, m: _Arithmetic) -> Real:
    """Convert ``complement`` (``1 - r``) to ``m``, checking it against ``r``."""
    if m.dps is not None and np.ndim(complement) != 0:
        raise TypeError("with dps set, complement must be a scalar like r")
    q = m.number(complement)
    if np.shape(q) != np.shape(r):
        q = np.broadcast_to(q, np.shape(r)) if m.dps is None else q
    if not np.all(abs((1 - q) - r) <= 1e-10):  # a check against a wrong argument, not a precision test
        raise ValueError(f"complement must be 1 - r (to 10 digits at least); got {complement!r} for r = {r!r}")
    return q


@functools.lru_cache(maxsize=1024)
def _moments(activation: Activation, dps: int | None) -> tuple[Real, Real, Real]:
    """``(mu0, mu1, ||rho||^2)``, cached per activation and precision."""
    with _arithmetic(dps) as m:
        if activation.closed_form is None:
            values = _float_moments(activation) if dps is None else _mpmath_moments(activation, m)
        else:
            form = activation.closed_form
            values = (form.mu0(m), form.mu1(m), form.second_moment(m))
        return tuple(precision.public(_to_output(m.number(v), m)) for v in values)


def _kernel(activation: Activation, r: Real, m: _Arithmetic) -> Real:
    """``c(r)`` for ``r`` already converted to the arithmetic ``m``."""
    if activation.closed_form is not None:
        value = m.number(activation.closed_form.kernel(r, m))
        return _to_output(np.broadcast_to(value, np.shape(r)) if m.dps is None else value, m)
    if m.dps is not None:
        return _quadrature_kernel(activation, np.array([r], dtype=object), m)[0]
    flat = r.ravel()
    values = np.empty_like(flat)
    # A loop rather than a comprehension, which would add a frame to the stack
    # that _warn_unconverged's stacklevel counts (before Python 3.12).
    for start in range(0, flat.size, _CHUNK):
        chunk = slice(start, start + _CHUNK)
        values[chunk] = _quadrature_kernel(activation, flat[chunk], m)
    return _to_output(values.reshape(r.shape), m)


def _to_output(value: Real, m: _Arithmetic) -> Real:
    """Python float for 0-d float results, a fresh array otherwise; mpf unchanged."""
    if m.dps is not None:
        return value
    return float(value) if np.ndim(value) == 0 else np.array(value, dtype=float)


# --------------------------------------------------------------------------
# Named activations
# --------------------------------------------------------------------------


def _mp_relu(x: mpmath.mpf) -> mpmath.mpf:
    return x if x > 0 else precision.context().zero


def _mp_sigmoid(x: mpmath.mpf) -> mpmath.mpf:
    return 1 / (1 + precision.context().exp(-x))


def _homogeneous(form: ClosedForm) -> Callable[[Any], ClosedForm]:
    """Closed forms at input variance ``v`` of a positively homogeneous activation, ``rho(s x) = s rho(x)``."""

    def at_variance(variance: Any) -> ClosedForm:
        def scale(m: Any, power: int) -> Real:  # s^power with s = sqrt(v)
            v = m.number(variance)
            return v if power == 2 else m.sqrt(v)

        return ClosedForm(
            mu0=lambda m: scale(m, 1) * form.mu0(m),
            mu1=lambda m: scale(m, 1) * form.mu1(m),
            second_moment=lambda m: scale(m, 2) * form.second_moment(m),
            kernel=lambda r, m: scale(m, 2) * form.kernel(r, m),
            split=lambda r, q, m: tuple(scale(m, 2) * value for value in form.split(r, q, m)),
        )

    return at_variance


def _erf_at_variance(variance: Any) -> ClosedForm:
    r"""erf of inputs of variance :math:`v`: with :math:`b = 2v/(1 + 2v)`, :math:`c(r) = (2/\pi)\arcsin(br)`."""

    def b(m: Any) -> Real:
        v = m.number(variance)
        return 2 * v / (1 + 2 * v)

    return ClosedForm(
        mu0=lambda m: 0 * m.one,
        mu1=lambda m: m.sqrt(2 * b(m) / m.pi),  # (2 s/sqrt(pi)) / sqrt(1 + 2 v)
        second_moment=lambda m: 2 * m.asin(b(m)) / m.pi,
        kernel=lambda r, m: 2 * m.asin(b(m) * r) / m.pi,
        split=lambda r, q, m: _erf_split(r, q, m, b(m)),
    )


def _sin_at_variance(variance: Any) -> ClosedForm:
    r"""sin of inputs of variance :math:`v`: :math:`c(r) = e^{-v}\sinh(vr)`, :math:`\mu_1 = \sqrt v e^{-v/2}`."""
    return ClosedForm(
        mu0=lambda m: 0 * m.one,
        mu1=lambda m: m.sqrt(m.number(variance)) * m.exp(-m.number(variance) / 2),
        second_moment=lambda m: -m.expm1(-2 * m.number(variance)) / 2,
        kernel=lambda r, m: m.exp(-m.number(variance)) * m.sinh(m.number(variance) * r),
        split=lambda r, q, m: _sin_split(r, q, m, m.number(variance)),
    )


def _cos_at_variance(variance: Any) -> ClosedForm:
    r"""cos of inputs of variance :math:`v`: :math:`c(r) = e^{-v}\cosh(vr)`, :math:`\mu_0 = e^{-v/2}`."""
    return ClosedForm(
        mu0=lambda m: m.exp(-m.number(variance) / 2),
        mu1=lambda m: 0 * m.one,
        second_moment=lambda m: (1 + m.exp(-2 * m.number(variance))) / 2,
        kernel=lambda r, m: m.exp(-m.number(variance)) * m.cosh(m.number(variance) * r),
        split=lambda r, q, m: _cos_split(r, q, m, m.number(variance)),
    )


_relu_at_variance = _homogeneous(
    ClosedForm(
        mu0=lambda m: 1 / m.sqrt(2 * m.pi),
        mu1=lambda m: m.one / 2,
        second_moment=lambda m: m.one / 2,
        kernel=lambda r, m: (m.sqrt(1 - r * r) + r * (m.pi - m.acos(r))) / (2 * m.pi),
        split=_relu_split,
    )
)
_absolute_at_variance = _homogeneous(
    ClosedForm(
        mu0=lambda m: m.sqrt(2 / m.pi),
        mu1=lambda m: 0 * m.one,
        second_moment=lambda m: m.one,
        kernel=lambda r, m: 2 * (m.sqrt(1 - r * r) + r * m.asin(r)) / m.pi,
        split=_absolute_split,
    )
)
_linear_at_variance = _homogeneous(
    ClosedForm(
        mu0=lambda m: 0 * m.one,
        mu1=lambda m: m.one,
        second_moment=lambda m: m.one,
        kernel=lambda r, m: r * m.one,
        split=lambda r, q, m: (0 * r * m.one, 0 * r * m.one),
    )
)


def _special(name: str):
    """The numpy ufunc ``scipy.special.<name>``, imported at the first call (scipy is slow to import)."""

    def function(x):
        import scipy.special

        return getattr(scipy.special, name)(x)

    function.__name__ = name
    return function


def _with_closed_forms(name: str, numpy_fn: Callable, mpmath_fn: Callable,
                       at_variance: Callable[[Any], ClosedForm]) -> Activation:
    """A named activation with its closed forms at variance 1 and at any variance."""
    return Activation(name, numpy_fn, mpmath_fn, closed_form=at_variance(1), closed_form_at_variance=at_variance)


#: ReLU, ``max(x, 0)`` (closed forms in the module docstring).
relu = _with_closed_forms("relu", lambda x: np.maximum(x, 0.0), _mp_relu, _relu_at_variance)

#: Absolute value ``|x|``, registered as ``"abs"`` (closed forms in the module docstring).
absolute = _with_closed_forms("abs", np.abs, precision.Function("fabs"), _absolute_at_variance)

#: Error function (closed forms in the module docstring).
erf = _with_closed_forms("erf", _special("erf"), precision.Function("erf"), _erf_at_variance)

#: Sine (closed forms in the module docstring).
sin = _with_closed_forms("sin", np.sin, precision.Function("sin"), _sin_at_variance)

#: Cosine (closed forms in the module docstring).
cos = _with_closed_forms("cos", np.cos, precision.Function("cos"), _cos_at_variance)

#: Identity ``x``, also registered as ``"identity"`` (closed forms in the module docstring).
linear = _with_closed_forms("linear", lambda x: 1.0 * np.asarray(x), lambda x: x, _linear_at_variance)

#: Hyperbolic tangent: odd, so ``mu0 = 0``; other moments by quadrature.
tanh = Activation("tanh", np.tanh, precision.Function("tanh"))

#: Logistic sigmoid ``1 / (1 + exp(-x))``: ``mu0 = 1/2`` by symmetry; the rest by quadrature.
sigmoid = Activation("sigmoid", _special("expit"), _mp_sigmoid)

#: Named activations, by lower-case name (read-only).
REGISTRY: Mapping[str, Activation] = MappingProxyType(
    {
        "relu": relu,
        "abs": absolute,
        "erf": erf,
        "sin": sin,
        "cos": cos,
        "linear": linear,
        "identity": linear,
        "tanh": tanh,
        "sigmoid": sigmoid,
    }
)


def get(activation: str | Activation | Callable[[Any], Any]) -> Activation:
    """Resolve an activation given by name, as an :class:`Activation`, or as a callable.

    Parameters
    ----------
    activation : str, Activation or callable
        A name from :data:`REGISTRY` (case-insensitive); an
        :class:`Activation`, returned as is; or a function that accepts both
        numpy arrays and mpmath numbers (of the calling thread's context, see
        :class:`Activation`), such as ``lambda x: x**3``, wrapped
        without closed forms (its moments come from quadrature, which assumes
        smoothness except possibly at 0).

    Returns
    -------
    Activation

    Raises
    ------
    ParameterError
        For an unknown name (a :class:`ValueError`), or a callable that is not finite at ``x = +-0.5``.
    ParameterTypeError
        For a non-callable, or a callable that fails on numpy arrays or on
        mpmath numbers (or returns floats for them, which would lose the
        precision); pass an :class:`Activation` with separate numpy and
        mpmath functions instead.

    Examples
    --------
    >>> get("ReLU") is relu
    True
    >>> cube = get(lambda x: x**3)
    >>> round(cube.kernel(0.5), 12)  # E g^3 g'^3 = 9r + 6r^3
    5.25
    >>> get("swish")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    pencils.errors.ParameterError: unknown activation 'swish'; known names: abs, cos, erf, identity, ...
    """
    if isinstance(activation, Activation):
        return activation
    if isinstance(activation, str):
        try:
            return REGISTRY[activation.strip().lower()]
        except KeyError:
            known = ", ".join(sorted(REGISTRY))
            raise ParameterError(f"unknown activation {activation!r}; known names: {known}") from None
    if not callable(activation):
        raise ParameterTypeError(
            "activation must be a name, an Activation or a callable, "
            f"got {type(activation).__name__}"
        )
    return _wrap(activation)


def _wrap(function: Callable[[Any], Any]) -> Activation:
    """An :class:`Activation` using ``function`` for both numpy and mpmath."""
    name = getattr(function, "__name__", type(function).__name__)
    advice = (
        f"activation {name!r} must accept both numpy arrays and mpmath numbers; "
        "otherwise pass an Activation with separate numpy and mpmath functions"
    )
    probe = (-0.5, 0.5)
    try:
        values = np.asarray(function(np.array(probe)), dtype=float)
    except Exception as exc:
        raise ParameterTypeError(f"{advice} (calling it on a numpy array failed: {exc})") from exc
    if values.shape != (len(probe),):
        raise ParameterTypeError(f"{advice} (on a numpy array it returned shape {values.shape})")
    if not np.all(np.isfinite(values)):
        raise ParameterError(
            f"activation {name!r} returned {values.tolist()} at {list(probe)}; it must be finite on the real line."
        )
    for x in probe:
        try:
            value = function(precision.context().mpf(x))
        except Exception as exc:
            raise ParameterTypeError(f"{advice} (calling it on an mpmath.mpf failed: {exc})") from exc
        _in_thread_context(value, name)
        if not (hasattr(value, "_mpf_") or isinstance(value, numbers.Integral)):
            raise ParameterTypeError(f"{advice} (on an mpmath.mpf it returned {type(value).__name__})")
    return Activation(name, function, function)
