"""Checks of the arguments of every public entry point, with messages that say what to change.

Each function returns the checked value (converted where that is harmless, e.g.
a numpy integer to ``int``) or raises :class:`pencils.errors.ParameterError`
naming the argument, the value it got and what to give instead.  The engine
(:func:`pencils.trace_limit`, :func:`pencils.limit`, :func:`pencils.sample_trace`,
:meth:`pencils.DysonSystem.solve`), the sweeps and the models call them first,
so that bad input is refused before any work and never turns into a silent
``nan`` or a shifted grid.

Examples
--------
>>> from pencils.validation import check_dps, check_positive_int
>>> check_dps(30), check_dps(None)
(30, None)
>>> check_dps(False)
Traceback (most recent call last):
...
pencils.errors.ParameterTypeError: dps must be None (floats) or a whole number of digits from 1 to 1000; got False.
>>> check_positive_int(-2, "chunk_size")
Traceback (most recent call last):
...
pencils.errors.ParameterError: chunk_size must be a positive integer; got -2.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Mapping

import mpmath
import numpy as np
import sympy

from .errors import ParameterError, ParameterTypeError

__all__ = ["MAX_DPS", "check_dps", "check_number", "check_positive_int", "check_real", "check_shapes",
           "check_solve_arguments", "check_values"]

#: The most decimal digits :func:`check_dps` accepts (a solve at this precision takes minutes).
MAX_DPS = 1000


def check_dps(dps: Any) -> int | None:
    """``None`` (floats) or a number of decimal digits between 1 and :data:`MAX_DPS`.

    Booleans are refused: ``dps=False`` would otherwise be read as zero digits.  A value that is
    not an integer raises :class:`pencils.errors.ParameterTypeError` (also a :class:`TypeError`).
    """
    if dps is None:
        return None
    advice = f"dps must be None (floats) or a whole number of digits from 1 to {MAX_DPS}; got {dps!r}."
    if isinstance(dps, (bool, np.bool_)) or not isinstance(dps, numbers.Integral):
        raise ParameterTypeError(advice)
    if not 1 <= dps <= MAX_DPS:
        raise ParameterError(advice)
    return int(dps)


def check_positive_int(value: Any, name: str) -> int:
    """A positive integer (a numpy integer or an integral float such as ``4.0`` is accepted)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ParameterError(f"{name} must be a positive integer; got {value!r}.")
    if not math.isfinite(float(value)) or float(value) != int(value) or int(value) < 1:
        raise ParameterError(f"{name} must be a positive integer; got {value!r}.")
    return int(value)


def check_real(value: Any, name: str, minimum: float = 0.0, strict: bool = True, infinite: bool = False,
               strings: bool = False, hint: str = "") -> Any:
    """A real number or array of them, every element ``> minimum`` (``>=`` if not ``strict``).

    ``infinite=True`` also accepts ``+inf`` (e.g. ``m = math.inf`` noise draws), ``strings=True``
    numeric strings (read exactly in arbitrary precision).  Numbers may be mpmath or SymPy numbers
    (arbitrary precision); the value is returned unchanged.

    Examples
    --------
    >>> check_real([4.0, float("inf")], "m", minimum=1, strict=False, infinite=True)
    [4.0, inf]
    >>> check_real(0.5, "m", minimum=1, strict=False, infinite=True)
    Traceback (most recent call last):
    ...
    pencils.errors.ParameterError: m must be >= 1 (or inf); got 0.5.
    """
    numbers_ = _as_complex(value, name, "a real number", strings).reshape(-1)
    if numbers_.size == 0:
        raise ParameterError(f"{name} is an empty array; give at least one value.")
    if np.any(numbers_.imag != 0):
        raise ParameterError(f"{name} must be real; got {value!r}.{hint}")
    real = numbers_.real
    allowed = np.isfinite(real) | (infinite & (real == math.inf))
    allowed &= real > minimum if strict else real >= minimum
    if not np.all(allowed):
        bad = real[~allowed][0]
        bound = f"{'>' if strict else '>='} {minimum:g}" + (" (or inf)" if infinite else " and finite")
        raise ParameterError(f"{name} must be {bound}; got {bad}.{hint}")
    return value


def check_number(value: Any, name: str, minimum: float = 0.0, strict: bool = True, hint: str = "") -> float:
    """One real number ``> minimum`` (``>=`` if not ``strict``), as a float: :func:`check_real` without arrays.

    Examples
    --------
    >>> check_number(2, "psi_n")
    2.0
    >>> check_number([1.0, 2.0], "lam", strict=False)
    Traceback (most recent call last):
    ...
    pencils.errors.ParameterError: lam must be one number; got an array of shape (2,).
    """
    if np.ndim(value) != 0:
        raise ParameterError(f"{name} must be one number; got an array of shape {np.shape(value)}.{hint}")
    return float(check_real(value, name, minimum=minimum, strict=strict, hint=hint))


def check_values(values: Mapping | None, name: str = "subs", strings: bool = False) -> dict:
    """Values of scalar symbols: finite numbers, or non-empty arrays of them that broadcast together.

    With ``strings=True`` (arbitrary precision), numeric strings such as ``"0.05"`` are accepted:
    they are read exactly.

    A complex value is refused for a symbol declared real (``sympy.Symbol("x",
    real=True)`` or ``positive=True``).  Keys are returned as given.

    Examples
    --------
    >>> import numpy as np, sympy
    >>> from pencils.validation import check_values
    >>> x, y = sympy.symbols("x y")
    >>> check_values({x: float("nan")})
    Traceback (most recent call last):
    ...
    pencils.errors.ParameterError: subs[x] is nan; every value must be a finite number.
    >>> check_values({x: np.zeros(2), y: np.zeros(3)})
    Traceback (most recent call last):
    ...
    pencils.errors.ParameterError: the values in subs do not broadcast together: x has shape (2,), y has shape (3,); give arrays of one shape (or shapes numpy can broadcast, e.g. (n, 1) and (1, m)).
    """
    if values is None:
        return {}
    if not isinstance(values, Mapping):
        raise ParameterError(f"{name} must be a dict {{symbol: value}}; got {type(values).__name__}.")
    for key, value in values.items():
        label = f"{name}[{key}]"
        numbers_ = _as_complex(value, label, "a number", strings)
        if numbers_.size == 0:
            raise ParameterError(f"{label} is an empty array; give at least one value.")
        finite = np.isfinite(numbers_)
        if not np.all(finite):
            bad = numbers_[~finite].reshape(-1)[0]
            raise ParameterError(f"{label} is {bad.real if bad.imag == 0 else bad}; every value must be a finite number.")
        if getattr(key, "is_real", None) and np.any(numbers_.imag != 0):
            raise ParameterError(
                f"{label} is complex but {key} is declared real; give a real value or declare the symbol "
                f"without real=True/positive=True."
            )
    check_shapes(values, f"the values in {name}")
    return dict(values)


def check_shapes(values: Mapping, what: str = "the parameters") -> tuple:
    """The broadcast shape of ``values`` (a dict of numbers and arrays), or a :class:`ParameterError`
    naming the shapes that clash.

    Examples
    --------
    >>> import numpy as np
    >>> check_shapes({"psi_p": np.ones((3, 1)), "lam": np.ones(4), "t": 0.5})
    (3, 4)
    """
    shapes = {key: np.shape(value) for key, value in values.items()}
    try:
        return np.broadcast_shapes(*shapes.values())
    except ValueError:
        described = ", ".join(f"{key} has shape {shape}" for key, shape in shapes.items())
        raise ParameterError(
            f"{what} do not broadcast together: {described}; give arrays of one shape "
            f"(or shapes numpy can broadcast, e.g. (n, 1) and (1, m))."
        ) from None


def _as_complex(value: Any, name: str, kind: str, strings: bool = False) -> np.ndarray:
    """``value`` as a complex array (shape kept), refusing what is not a number."""
    if isinstance(value, np.ndarray) and value.dtype.kind in "iufc":
        return value.astype(complex, copy=False)
    array = np.asarray(value, dtype=object)
    flat = array.reshape(-1)
    converted = np.empty(flat.shape, dtype=complex)
    for index, item in enumerate(flat):
        converted[index] = _number(item, name, value, kind, strings)
    return converted.reshape(array.shape)


def _number(item: Any, name: str, whole: Any, kind: str, strings: bool) -> complex:
    if isinstance(item, (bool, np.bool_)):
        raise ParameterError(f"{name} is a boolean ({whole!r}); give {kind}.")
    if isinstance(item, numbers.Number) or hasattr(item, "_mpf_") or hasattr(item, "_mpc_"):  # mpmath, any context
        return complex(item)
    if isinstance(item, sympy.Basic) and item.is_number:
        try:
            return complex(item)
        except TypeError:
            pass
    if isinstance(item, str) and strings:
        try:
            return complex(mpmath.mpmathify(item))
        except (TypeError, ValueError):
            pass
    described = "None" if item is None else f"{item!r} ({type(item).__name__})"
    raise ParameterError(f"{name} must be {kind} or an array of them; got {described}.")


def check_solve_arguments(subs: Mapping | None, dps: Any, path_from: Mapping | None) -> tuple:
    """``(subs, dps, path_from)`` of a limit, checked by :func:`check_values` and :func:`check_dps`."""
    dps = check_dps(dps)
    strings = dps is not None
    return (check_values(subs, strings=strings), dps,
            check_values(path_from, "path_from", strings=strings) if path_from else None)
