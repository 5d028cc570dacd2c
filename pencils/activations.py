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
  computed with :data:`GUARD_DIGITS` extra digits under :func:`mpmath.workdps`.

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
and use the quadrature.

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
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

import mpmath
import numpy as np

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
    ``one``, ``pi``, ``sqrt``, ``exp``, ``sinh``, ``cosh``, ``asin`` and
    ``acos``; those work on scalars and, for float, on numpy arrays.
    """

    dps: int | None  # None for float64, else the requested digits
    one: Real
    pi: Real
    sqrt: Callable[[Real], Real]
    exp: Callable[[Real], Real]
    sin: Callable[[Real], Real]
    sinh: Callable[[Real], Real]
    cosh: Callable[[Real], Real]
    asin: Callable[[Real], Real]
    acos: Callable[[Real], Real]
    tolerance: Real

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
        return np.frompyfunc(activation.mpmath_fn, 1, 1)

    def rule(self, kind: str, size: int) -> tuple[np.ndarray, np.ndarray]:
        """Nodes and weights of a Gauss rule (see :func:`_gauss_rule`)."""
        working = None if self.dps is None else mpmath.mp.dps
        return _gauss_rule(kind, size, working)

    def weighted_sum(self, weights: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Contract the last axis of ``values`` with (broadcast) ``weights``."""
        if self.dps is None:
            return np.sum(weights * values, axis=-1)
        rows = values.reshape(-1, values.shape[-1])
        weight_rows = np.broadcast_to(weights, values.shape).reshape(rows.shape)
        sums = [mpmath.fdot(w, v) for w, v in zip(weight_rows, rows)]
        return np.array(sums, dtype=object).reshape(values.shape[:-1])


_FLOAT = _Arithmetic(
    dps=None,
    one=1.0,
    pi=np.pi,
    sqrt=np.sqrt,
    exp=np.exp,
    sin=np.sin,
    sinh=np.sinh,
    cosh=np.cosh,
    asin=np.arcsin,
    acos=np.arccos,
    tolerance=_FLOAT_TOLERANCE,
)


def _mpmath_arithmetic(dps: int) -> _Arithmetic:
    """The mpmath arithmetic; to be built under the working precision."""

    def ufunc(function: Callable[[Any], Any]) -> Callable[[Any], Any]:
        return np.frompyfunc(function, 1, 1)

    return _Arithmetic(
        dps=dps,
        one=mpmath.mpf(1),
        pi=+mpmath.pi,
        sqrt=ufunc(mpmath.sqrt),
        exp=ufunc(mpmath.exp),
        sin=ufunc(mpmath.sin),
        sinh=ufunc(mpmath.sinh),
        cosh=ufunc(mpmath.cosh),
        asin=ufunc(mpmath.asin),
        acos=ufunc(mpmath.acos),
        tolerance=mpmath.mpf(10) ** (-dps),
    )


@contextmanager
def _arithmetic(dps: int | None) -> Iterator[_Arithmetic]:
    """Yield the arithmetic for ``dps``, inside ``workdps(dps + GUARD_DIGITS)``."""
    if dps is None:
        yield _FLOAT
        return
    dps = check_dps(dps)
    with mpmath.workdps(dps + GUARD_DIGITS):
        yield _mpmath_arithmetic(int(dps))


def _to_mpf(value: Any) -> mpmath.mpf:
    """Convert a real scalar (int, float, str, fraction, mpf, numpy scalar)."""
    if isinstance(value, numbers.Integral):
        return mpmath.mpf(int(value))
    if isinstance(value, numbers.Rational):
        return mpmath.mpf(int(value.numerator)) / int(value.denominator)
    return mpmath.mpf(value)


# --------------------------------------------------------------------------
# Gauss rules
# --------------------------------------------------------------------------


def _half_range_recurrence(power: int, size: int) -> tuple[list, list]:
    r"""Monic recurrence coefficients for :math:`x^p e^{-x^2/2}` on :math:`(0, \infty)`.

    Chebyshev's algorithm on the moments :math:`\int_0^\infty x^{k+p}
    e^{-x^2/2} dx = 2^{(k+p-1)/2}\,\Gamma((k+p+1)/2)`, run with extra digits
    because it loses about 1.2 digits per coefficient.
    """
    with mpmath.extradps(math.ceil(1.25 * size) + 10):
        half = mpmath.mpf(1) / 2
        moments = [
            2 ** ((k + power - 1) * half) * mpmath.gamma((k + power + 1) * half)
            for k in range(2 * size)
        ]
        alpha, beta = [moments[1] / moments[0]], [moments[0]]
        older, old = [mpmath.mpf(0)] * (2 * size), moments
        for k in range(1, size):
            new = [mpmath.mpf(0)] * (2 * size)
            for j in range(k, 2 * size - k):
                new[j] = old[j + 1] - alpha[-1] * old[j] - beta[-1] * older[j]
            alpha.append(new[k + 1] / new[k] - old[k] / old[k - 1])
            beta.append(new[k] / old[k - 1])
            older, old = old, new
    return [+a for a in alpha], [+b for b in beta]


def _legendre_recurrence(size: int) -> tuple[list, list]:
    """Monic recurrence coefficients for the weight 1 on (0, 1)."""
    beta = [mpmath.mpf(1)] + [mpmath.mpf(k * k) / (4 * (4 * k * k - 1)) for k in range(1, size)]
    return [mpmath.mpf(1) / 2] * size, beta


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


# Gauss rules by (kind, size, float?), with the precision (dps) they were computed at.
_RULES: dict[tuple[str, int, bool], tuple[int, np.ndarray, np.ndarray]] = {}


def _gauss_rule(kind: str, size: int, dps: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Gauss rule with ``size`` nodes for the weight ``kind``, cached.

    Golub-Welsch in float.  For a working precision ``dps``, the float nodes
    are refined by Newton's method on the monic polynomial and the weights come
    from the Christoffel formula ``w = beta_0 ... beta_{n-1} / (pi_{n-1}(x)
    pi_n'(x))``; a rule cached at a higher precision serves as is.
    """
    key = (kind, size, dps is None)
    if key in _RULES and (dps is None or _RULES[key][0] >= dps):
        return _RULES[key][1:]
    with mpmath.workdps(17 if dps is None else dps):
        alpha, beta = _RECURRENCES[kind](size)
        diagonal = np.array(alpha, dtype=float)
        off_diagonal = np.sqrt(np.array(beta[1:], dtype=float))
        import scipy.linalg  # here: importing scipy costs a fresh process 0.3 s

        nodes, vectors = scipy.linalg.eigh_tridiagonal(diagonal, off_diagonal)
        if dps is None:
            x, w = nodes, float(beta[0]) * vectors[0] ** 2
        else:
            x = np.array([mpmath.mpf(v) for v in nodes], dtype=object)
            # Newton from the float nodes doubles the digits at each step; the
            # weights use the polynomials at the last x, within a step of the root.
            accurate = mpmath.mpf(10) ** (5 - dps) * max(abs(x))
            for _ in range(dps):
                p_old, p, dp = _monic_values(x, alpha, beta)
                step = p / dp
                x = x - step
                if max(abs(step)) <= accurate:
                    break
            w = 1 / (p_old * dp) * mpmath.fprod(beta)
    _RULES[key] = (dps, x, w)
    return x, w


# --------------------------------------------------------------------------
# Adaptive quadratures
# --------------------------------------------------------------------------


def _adaptive(
    estimate: Callable[[int], tuple[np.ndarray, np.ndarray]], m: _Arithmetic, what: str
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
        if size > m.max_size:
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

    @functools.lru_cache(maxsize=None)  # the three integrals share their nodes
    def weighted(x: mpmath.mpf) -> tuple[Any, mpmath.mpf]:
        return activation.mpmath_fn(x), mpmath.npdf(x)

    def expectation(f: Callable[[mpmath.mpf, Any], Any]) -> Real:
        value, error = mpmath.quad(
            lambda x: f(x, weighted(x)[0]) * weighted(x)[1],
            [-mpmath.inf, 0, mpmath.inf],
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
# Activations
# --------------------------------------------------------------------------


class ClosedForm(NamedTuple):
    r"""Closed-form Gaussian moments of an activation.

    Each entry takes an arithmetic namespace ``m`` (and ``kernel`` also the
    correlation ``r``) providing ``one``, ``pi``, ``sqrt``, ``exp``,
    ``sinh``, ``cosh``, ``asin`` and ``acos``, so that one formula serves
    both float64 (numpy, vectorised in ``r``) and mpmath.  Write rational
    constants as ``2 * m.one / 3``, not ``2 / 3``, to keep them exact.

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
        Scalar arbitrary-precision implementation, ``mpmath_fn(mpf) -> mpf``,
        evaluated at the current mpmath working precision.
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

    def __repr__(self) -> str:
        return f"Activation({self.name!r})"

    def __call__(self, x: Any) -> np.ndarray:
        """Evaluate the float implementation, ``numpy_fn(x)``."""
        return self.numpy_fn(x)

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
            return _kernel(self, _correlation(r, m), m)

    def correlated_split(self, r: Any, dps: int | None = None) -> CorrelatedSplit:
        r"""Variances of the shared and private nonlinear noise at correlation ``r``.

        See :class:`CorrelatedSplit`; ``r`` and ``dps`` as in :meth:`kernel`.

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
        mu0, mu1, second = _moments(self, dps)
        with _arithmetic(dps) as m:
            r = _correlation(r, m)
            kernel = _kernel(self, r, m)
            return CorrelatedSplit(
                shared=_to_output(kernel - mu0**2 - r * mu1**2, m),
                private=_to_output((second - kernel) - (1 - r) * mu1**2, m),
                total=_to_output(second - mu0**2 - mu1**2, m),
            )


def _correlation(r: Any, m: _Arithmetic) -> Real:
    """Convert ``r`` to the arithmetic ``m``, checking that it lies in [-1, 1]."""
    if m.dps is not None and np.ndim(r) != 0:
        raise ParameterTypeError("with dps set, r must be a scalar; loop over the values")
    value = m.number(r)
    if not np.all(abs(value) <= 1):
        raise ParameterError(f"correlation r must lie in [-1, 1], got {r!r}")
    return value


@functools.lru_cache(maxsize=1024)
def _moments(activation: Activation, dps: int | None) -> tuple[Real, Real, Real]:
    """``(mu0, mu1, ||rho||^2)``, cached per activation and precision."""
    with _arithmetic(dps) as m:
        if activation.closed_form is None:
            values = _float_moments(activation) if dps is None else _mpmath_moments(activation, m)
        else:
            form = activation.closed_form
            values = (form.mu0(m), form.mu1(m), form.second_moment(m))
        return tuple(_to_output(m.number(v), m) for v in values)


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
    return x if x > 0 else mpmath.mpf(0)


def _mp_sigmoid(x: mpmath.mpf) -> mpmath.mpf:
    return 1 / (1 + mpmath.exp(-x))


#: ReLU, ``max(x, 0)`` (closed forms in the module docstring).
relu = Activation(
    "relu",
    lambda x: np.maximum(x, 0.0),
    _mp_relu,
    closed_form=ClosedForm(
        mu0=lambda m: 1 / m.sqrt(2 * m.pi),
        mu1=lambda m: m.one / 2,
        second_moment=lambda m: m.one / 2,
        kernel=lambda r, m: (m.sqrt(1 - r * r) + r * (m.pi - m.acos(r))) / (2 * m.pi),
    ),
)

#: Absolute value ``|x|``, registered as ``"abs"`` (closed forms in the module docstring).
absolute = Activation(
    "abs",
    np.abs,
    mpmath.fabs,
    closed_form=ClosedForm(
        mu0=lambda m: m.sqrt(2 / m.pi),
        mu1=lambda m: 0 * m.one,
        second_moment=lambda m: m.one,
        kernel=lambda r, m: 2 * (m.sqrt(1 - r * r) + r * m.asin(r)) / m.pi,
    ),
)

def _special(name: str):
    """The numpy ufunc ``scipy.special.<name>``, imported at the first call (scipy is slow to import)."""

    def function(x):
        import scipy.special

        return getattr(scipy.special, name)(x)

    function.__name__ = name
    return function


#: Error function (closed forms in the module docstring).
erf = Activation(
    "erf",
    _special("erf"),
    mpmath.erf,
    closed_form=ClosedForm(
        mu0=lambda m: 0 * m.one,
        mu1=lambda m: 2 / m.sqrt(3 * m.pi),
        second_moment=lambda m: 2 * m.asin(2 * m.one / 3) / m.pi,
        kernel=lambda r, m: 2 * m.asin(2 * r / 3) / m.pi,
    ),
)

#: Sine (closed forms in the module docstring).
sin = Activation(
    "sin",
    np.sin,
    mpmath.sin,
    closed_form=ClosedForm(
        mu0=lambda m: 0 * m.one,
        mu1=lambda m: m.exp(-m.one / 2),
        second_moment=lambda m: (1 - m.exp(-2 * m.one)) / 2,
        kernel=lambda r, m: m.exp(-m.one) * m.sinh(r),
    ),
)

#: Cosine (closed forms in the module docstring).
cos = Activation(
    "cos",
    np.cos,
    mpmath.cos,
    closed_form=ClosedForm(
        mu0=lambda m: m.exp(-m.one / 2),
        mu1=lambda m: 0 * m.one,
        second_moment=lambda m: (1 + m.exp(-2 * m.one)) / 2,
        kernel=lambda r, m: m.exp(-m.one) * m.cosh(r),
    ),
)

#: Identity ``x``, also registered as ``"identity"`` (closed forms in the module docstring).
linear = Activation(
    "linear",
    lambda x: 1.0 * np.asarray(x),
    lambda x: x,
    closed_form=ClosedForm(
        mu0=lambda m: 0 * m.one,
        mu1=lambda m: m.one,
        second_moment=lambda m: m.one,
        kernel=lambda r, m: r * m.one,
    ),
)

#: Hyperbolic tangent: odd, so ``mu0 = 0``; other moments by quadrature.
tanh = Activation("tanh", np.tanh, mpmath.tanh)

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
        numpy arrays and mpmath numbers, such as ``lambda x: x**3``, wrapped
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
            value = function(mpmath.mpf(x))
        except Exception as exc:
            raise ParameterTypeError(f"{advice} (calling it on an mpmath.mpf failed: {exc})") from exc
        if not isinstance(value, (mpmath.mpf, numbers.Integral)):
            raise ParameterTypeError(f"{advice} (on an mpmath.mpf it returned {type(value).__name__})")
    return Activation(name, function, function)
