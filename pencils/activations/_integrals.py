r"""Gaussian moments, kernels and Hermite coefficients of an activation without closed forms, by quadrature.

The rules (:mod:`pencils.quadrature`) and the adaptive refinement over their sizes
are described in the docstring of :mod:`pencils.activations` ("Quadrature").
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import mpmath
import numpy as np

from .. import precision, quadrature
from ._arithmetic import FLOAT, SIZES, Arithmetic, Real, arithmetic, to_output

if TYPE_CHECKING:
    from ._activation import Activation

# Correlations processed at once by the float kernel quadrature (bounds memory).
_CHUNK = 64
# Hermite coefficients computed for the series, in float and in mpmath.
_FLOAT_COEFFICIENTS = 256
_MPMATH_COEFFICIENTS = 96
COEFFICIENT_TOLERANCE = 1e-15


def adaptive(
    estimate: Callable[[int], tuple[np.ndarray, np.ndarray]], m: Arithmetic, what: str, max_size: int | None = None
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
    for size in SIZES:
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
    warn_unconverged(what, change)
    return values


def warn_unconverged(what: str, error: Real) -> None:
    warnings.warn(
        f"quadrature for {what} did not converge (relative error estimate {float(error):.1e}); "
        "the activation may be non-smooth away from 0",
        RuntimeWarning,
        stacklevel=6,
    )


def float_moments(activation: Activation) -> tuple[float, float, float]:
    """``(mu0, mu1, ||rho||^2)`` in float by the folded half-range Gauss rule."""
    rho = FLOAT.vectorize(activation)

    def estimate(size: int) -> tuple[np.ndarray, np.ndarray]:
        x, w = FLOAT.half_range(0, size)
        w = w / np.sqrt(2 * np.pi)
        plus, minus = rho(x), rho(-x)
        integrands = np.stack([plus + minus, x * (plus - minus), plus * plus + minus * minus])
        modulus = abs(plus) + abs(minus)
        magnitudes = np.stack([modulus, x * modulus, integrands[2]])
        return integrands @ w, magnitudes @ w

    mu0, mu1, second = adaptive(estimate, FLOAT, f"the moments of {activation.name}")
    return mu0, mu1, second


def mpmath_moments(activation: Activation, m: Arithmetic) -> tuple[Real, Real, Real]:
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
            warn_unconverged(f"a moment of {activation.name}", relative_error)
        return value

    return (
        expectation(lambda x, y: y),
        expectation(lambda x, y: x * y),
        expectation(lambda x, y: y * y),
    )


def quadrature_kernel(activation: Activation, r: np.ndarray, m: Arithmetic) -> np.ndarray:
    """``c(r)`` for a 1-D array ``r`` by the polar formula of the docstring of :mod:`pencils.activations`."""
    rho = m.vectorize(activation)
    alpha = m.acos(r)[:, np.newaxis]  # (len(r), 1)
    # Arcs (0, alpha) and (alpha, pi) as (start, length); one is empty if r = +-1.
    arcs = [(0 * alpha, alpha), (alpha, m.pi - alpha)]
    arcs = [(start, length) for start, length in arcs if np.any(length != 0)]

    def estimate(size: int) -> tuple[np.ndarray, np.ndarray]:
        t, w_t = m.legendre(size)
        radius, w_radius = m.half_range(1, size)
        phi = np.concatenate([start + length * t for start, length in arcs], axis=1)
        w_phi = np.concatenate([length * w_t for _, length in arcs], axis=1) / (2 * m.pi)
        u = m.sin(phi)[..., np.newaxis] * radius  # -g, shape (len(r), angles, radii)
        v = m.sin(alpha - phi)[..., np.newaxis] * radius  # g'
        integrand = rho(-u) * rho(v) + rho(u) * rho(-v)
        radial = m.weighted_sum(w_radius, np.stack([integrand, abs(integrand)]))
        values, magnitudes = m.weighted_sum(w_phi, radial)
        return values, magnitudes

    return adaptive(estimate, m, f"the kernel of {activation.name}")


@functools.lru_cache(maxsize=256)
def hermite_squares(activation: Activation, dps: int | None) -> np.ndarray:
    r"""Squares :math:`c_k^2` of the normalised Hermite coefficients, :math:`k = 0, 1, \dots`.

    :math:`c_k = E\,\rho(g)\,He_k(g)/\sqrt{k!}` by the folded half-range Gauss
    rule (:math:`He_k(-x) = (-1)^k He_k(x)`, so that parity is exact), with
    :math:`He_k/\sqrt{k!}` from its three-term recurrence.  A coefficient
    within the quadrature's accuracy of zero is set to zero.
    """
    count = _FLOAT_COEFFICIENTS if dps is None else _MPMATH_COEFFICIENTS
    with arithmetic(dps) as m:
        rho = m.vectorize(activation)
        scale: list = []

        def estimate(size: int) -> tuple[np.ndarray, np.ndarray]:
            x, w = m.half_range(0, size)
            w = w / m.sqrt(2 * m.pi)
            plus, minus = rho(x), rho(-x)
            parts = (plus + minus, plus - minus)
            hermite = quadrature.hermite_functions(x, count, m.sqrt)
            integrands = np.stack([parts[k % 2] * he for k, he in enumerate(hermite)])
            magnitudes = m.weighted_sum(w, abs(integrands))
            scale[:] = [magnitudes]
            return m.weighted_sum(w, integrands), magnitudes

        # Up to the largest rule: a Gauss rule of n nodes integrates He_k exactly only for k < 2n.
        # Coefficients are small against their integrands: converge to the roundoff.
        precise = dataclasses.replace(m, tolerance=COEFFICIENT_TOLERANCE) if m.dps is None else m
        coefficients = adaptive(estimate, precise, f"the Hermite coefficients of {activation.name}", SIZES[-1])
        noise = abs(coefficients) <= 10 * m.tolerance * scale[0]
        squares = [precision.public(0 * m.one if zero else c**2) for c, zero in zip(coefficients, noise)]
        return np.array(squares, dtype=coefficients.dtype)


@functools.lru_cache(maxsize=1024)
def evaluate_moments(activation: Activation, dps: int | None) -> tuple[Real, Real, Real]:
    """``(mu0, mu1, ||rho||^2)``, cached per activation and precision."""
    with arithmetic(dps) as m:
        if activation.closed_form is None:
            values = float_moments(activation) if dps is None else mpmath_moments(activation, m)
        else:
            form = activation.closed_form
            values = (form.mu0(m), form.mu1(m), form.second_moment(m))
        return tuple(precision.public(to_output(m.number(v), m)) for v in values)


def evaluate_kernel(activation: Activation, r: Real, m: Arithmetic) -> Real:
    """``c(r)`` for ``r`` already converted to the arithmetic ``m``."""
    if activation.closed_form is not None:
        value = m.number(activation.closed_form.kernel(r, m))
        return to_output(np.broadcast_to(value, np.shape(r)) if m.dps is None else value, m)
    if m.dps is not None:
        return quadrature_kernel(activation, np.array([r], dtype=object), m)[0]
    flat = r.ravel()
    values = np.empty_like(flat)
    # A loop rather than a comprehension, which would add a frame to the stack
    # that warn_unconverged's stacklevel counts (before Python 3.12).
    for start in range(0, flat.size, _CHUNK):
        chunk = slice(start, start + _CHUNK)
        values[chunk] = quadrature_kernel(activation, flat[chunk], m)
    return to_output(values.reshape(r.shape), m)
