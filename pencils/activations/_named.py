"""The named activations (:data:`REGISTRY`), their closed forms at any input variance, and :func:`get`."""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import mpmath
import numpy as np

from .. import precision
from ..errors import ParameterError, ParameterTypeError
from ._activation import Activation, ClosedForm
from ._arithmetic import Real, in_thread_context
from ._split import absolute_split, cos_split, erf_split, relu_split, sin_split


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
        split=lambda r, q, m: erf_split(r, q, m, b(m)),
    )


def _sin_at_variance(variance: Any) -> ClosedForm:
    r"""sin of inputs of variance :math:`v`: :math:`c(r) = e^{-v}\sinh(vr)`, :math:`\mu_1 = \sqrt v e^{-v/2}`."""
    return ClosedForm(
        mu0=lambda m: 0 * m.one,
        mu1=lambda m: m.sqrt(m.number(variance)) * m.exp(-m.number(variance) / 2),
        second_moment=lambda m: -m.expm1(-2 * m.number(variance)) / 2,
        kernel=lambda r, m: m.exp(-m.number(variance)) * m.sinh(m.number(variance) * r),
        split=lambda r, q, m: sin_split(r, q, m, m.number(variance)),
    )


def _cos_at_variance(variance: Any) -> ClosedForm:
    r"""cos of inputs of variance :math:`v`: :math:`c(r) = e^{-v}\cosh(vr)`, :math:`\mu_0 = e^{-v/2}`."""
    return ClosedForm(
        mu0=lambda m: m.exp(-m.number(variance) / 2),
        mu1=lambda m: 0 * m.one,
        second_moment=lambda m: (1 + m.exp(-2 * m.number(variance))) / 2,
        kernel=lambda r, m: m.exp(-m.number(variance)) * m.cosh(m.number(variance) * r),
        split=lambda r, q, m: cos_split(r, q, m, m.number(variance)),
    )


_relu_at_variance = _homogeneous(
    ClosedForm(
        mu0=lambda m: 1 / m.sqrt(2 * m.pi),
        mu1=lambda m: m.one / 2,
        second_moment=lambda m: m.one / 2,
        kernel=lambda r, m: (m.sqrt(1 - r * r) + r * (m.pi - m.acos(r))) / (2 * m.pi),
        split=relu_split,
    )
)
_absolute_at_variance = _homogeneous(
    ClosedForm(
        mu0=lambda m: m.sqrt(2 / m.pi),
        mu1=lambda m: 0 * m.one,
        second_moment=lambda m: m.one,
        kernel=lambda r, m: 2 * (m.sqrt(1 - r * r) + r * m.asin(r)) / m.pi,
        split=absolute_split,
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


#: ReLU, ``max(x, 0)`` (closed forms in the docstring of :mod:`pencils.activations`).
relu = _with_closed_forms("relu", lambda x: np.maximum(x, 0.0), _mp_relu, _relu_at_variance)

#: Absolute value ``|x|``, registered as ``"abs"`` (closed forms in the docstring of :mod:`pencils.activations`).
absolute = _with_closed_forms("abs", np.abs, precision.Function("fabs"), _absolute_at_variance)

#: Error function (closed forms in the docstring of :mod:`pencils.activations`).
erf = _with_closed_forms("erf", _special("erf"), precision.Function("erf"), _erf_at_variance)

#: Sine (closed forms in the docstring of :mod:`pencils.activations`).
sin = _with_closed_forms("sin", np.sin, precision.Function("sin"), _sin_at_variance)

#: Cosine (closed forms in the docstring of :mod:`pencils.activations`).
cos = _with_closed_forms("cos", np.cos, precision.Function("cos"), _cos_at_variance)

#: Identity ``x``, also registered as ``"identity"`` (closed forms in the docstring of :mod:`pencils.activations`).
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
        in_thread_context(value, name)
        if not (hasattr(value, "_mpf_") or isinstance(value, numbers.Integral)):
            raise ParameterTypeError(f"{advice} (on an mpmath.mpf it returned {type(value).__name__})")
    return Activation(name, function, function)
