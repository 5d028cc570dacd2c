"""The two arithmetics of the Gaussian moments: float64 numpy arrays, or numpy object arrays of mpmath numbers.

Closed forms and quadratures are written once against an :class:`Arithmetic`
namespace ``m`` and run in float (vectorised) or in the calling thread's private
mpmath context (:mod:`pencils.precision`) at ``dps +``
:data:`pencils.precision.GUARD_DIGITS` digits.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import mpmath
import numpy as np

from .. import precision, quadrature
from ..errors import ParameterError, ParameterTypeError
from ..validation import check_dps

if TYPE_CHECKING:
    from ._activation import Activation

Real = Any  # a float, a numpy array of floats, or an mpmath ``mpf``

# Rule sizes tried in turn by the adaptive quadrature (about sqrt(2) apart).
SIZES = (8, 11, 16, 23, 32, 45, 64, 91, 128, 181, 256)
_MAX_FLOAT_SIZE = 128
_FLOAT_TOLERANCE = 1e-13


# --------------------------------------------------------------------------
# Arithmetic: float64 numpy arrays, or numpy object arrays of mpmath numbers
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Arithmetic:
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
        return _MAX_FLOAT_SIZE if self.dps is None else SIZES[-1]

    def number(self, value: Any) -> Real:
        """Convert a scalar (or, in float, an array) to this arithmetic."""
        return np.asarray(value, dtype=float) if self.dps is None else to_mpf(value)

    def vectorize(self, activation: Activation) -> Callable[[np.ndarray], np.ndarray]:
        """The activation as an elementwise function on arrays of this arithmetic."""
        if self.dps is None:
            return lambda x: np.asarray(activation.numpy_fn(x), dtype=float)
        return np.frompyfunc(lambda x: in_thread_context(activation.mpmath_fn(x), activation.name), 1, 1)

    def select(self, condition: Any, if_true: Real, if_false: Real) -> Real:
        """Elementwise ``if_true`` where ``condition`` holds, else ``if_false``."""
        if self.dps is None:
            return np.where(condition, if_true, if_false)
        return if_true if condition else if_false

    def legendre(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        """Nodes and weights of the Gauss-Legendre rule on (0, 1) (:func:`pencils.quadrature.gauss_legendre`)."""
        return quadrature.gauss_legendre(size, dps=self._working_digits())

    def half_range(self, power: int, size: int) -> tuple[np.ndarray, np.ndarray]:
        """Nodes and weights of the Gauss rule for ``x**power exp(-x**2/2)`` on (0, inf)
        (:func:`pencils.quadrature.half_range_gauss`)."""
        return quadrature.half_range_gauss(power, size, self._working_digits())

    def _working_digits(self) -> int | None:
        return None if self.dps is None else precision.context().dps

    def weighted_sum(self, weights: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Contract the last axis of ``values`` with (broadcast) ``weights``."""
        if self.dps is None:
            return np.sum(weights * values, axis=-1)
        rows = values.reshape(-1, values.shape[-1])
        weight_rows = np.broadcast_to(weights, values.shape).reshape(rows.shape)
        sums = [precision.context().fdot(w, v) for w, v in zip(weight_rows, rows)]
        return np.array(sums, dtype=object).reshape(values.shape[:-1])


FLOAT = Arithmetic(
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


def mpmath_arithmetic(dps: int) -> Arithmetic:
    """The mpmath arithmetic of this thread's private context; to be built under the working precision."""
    context = precision.context()

    def ufunc(function: Callable[[Any], Any]) -> Callable[[Any], Any]:
        return np.frompyfunc(function, 1, 1)

    return Arithmetic(
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
def arithmetic(dps: int | None) -> Iterator[Arithmetic]:
    """Yield the arithmetic for ``dps``, at ``dps +`` :data:`pencils.precision.GUARD_DIGITS` digits of this thread's
    private context."""
    if dps is None:
        yield FLOAT
        return
    dps = check_dps(dps)
    with precision.working(dps):
        yield mpmath_arithmetic(int(dps))


def in_thread_context(value: Any, name: str) -> Any:
    """``value``, a result of an activation's ``mpmath_fn``, unless it is a number of the global ``mpmath.mp``."""
    if isinstance(value, (mpmath.mpf, mpmath.mpc)):
        raise ParameterTypeError(
            f"activation {name!r} computed in the global mpmath context (at mpmath.mp.dps digits, not those "
            f"requested): compute with arithmetic operators on its argument, or with "
            f"pencils.precision.Function('name') (e.g. Function('erf')) instead of mpmath.name"
        )
    return value


def to_mpf(value: Any) -> mpmath.mpf:
    """Convert a real scalar (int, float, str, fraction, mpf of any context, numpy scalar) to this thread's context."""
    context = precision.context()
    if isinstance(value, numbers.Integral):
        return context.mpf(int(value))
    if isinstance(value, numbers.Rational):
        return context.mpf(int(value.numerator)) / int(value.denominator)
    return context.mpf(value)


def to_correlation(r: Any, m: Arithmetic) -> Real:
    """Convert ``r`` to the arithmetic ``m``, checking that it lies in [-1, 1]."""
    if m.dps is not None and np.ndim(r) != 0:
        raise ParameterTypeError("with dps set, r must be a scalar; loop over the values")
    value = m.number(r)
    if not np.all(abs(value) <= 1):
        raise ParameterError(f"correlation r must lie in [-1, 1], got {r!r}")
    return value


def to_complement(complement: Any, r: Real, m: Arithmetic) -> Real:
    """Convert ``complement`` (``1 - r``) to ``m``, checking it against ``r``."""
    if m.dps is not None and np.ndim(complement) != 0:
        raise TypeError("with dps set, complement must be a scalar like r")
    q = m.number(complement)
    if np.shape(q) != np.shape(r):
        q = np.broadcast_to(q, np.shape(r)) if m.dps is None else q
    if not np.all(abs((1 - q) - r) <= 1e-10):  # a check against a wrong argument, not a precision test
        raise ValueError(f"complement must be 1 - r (to 10 digits at least); got {complement!r} for r = {r!r}")
    return q



def to_output(value: Real, m: Arithmetic) -> Real:
    """Python float for 0-d float results, a fresh array otherwise; mpf unchanged."""
    if m.dps is not None:
        return value
    return float(value) if np.ndim(value) == 0 else np.array(value, dtype=float)
