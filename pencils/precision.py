"""Arbitrary precision in a private mpmath context of each thread.

The global ``mpmath.mp`` belongs to the caller: a precision set there by one
thread is seen by every other, so that ``mpmath.workdps`` in concurrent calls
silently changes the digits the others compute with.  Every arbitrary-precision
computation of the package therefore runs in :func:`context`, an
:class:`mpmath.MPContext` of the calling thread, at the precision set by
:func:`digits`; numbers handed back to the caller are converted to
``mpmath.mp``'s types by :func:`public`.

Numbers of one context are of other classes than those of another (test for
an mpmath real with ``hasattr(x, "_mpf_")``, not ``isinstance(x, mpmath.mpf)``),
and arithmetic between numbers of two contexts runs at the precision of the
left operand's: numbers shared between threads (caches) are converted into the
calling thread's context before they are used.

Every computation asked for ``dps`` correct digits works at ``dps +``
:data:`GUARD_DIGITS` digits (:func:`working`): the digits lost to rounding in
sums, Newton steps and continuation stay below the guard, so that the ``dps``
digits handed back are right where the problem is well conditioned.

Examples
--------
>>> import mpmath
>>> from pencils import precision
>>> with precision.digits(30) as context:
...     third = precision.public(context.mpf(1) / 3)
>>> mpmath.mp.dps, mpmath.nstr(third, 30)
(15, '0.333333333333333333333333333333')
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Iterator

import mpmath

__all__ = ["GUARD_DIGITS", "Function", "ThreadMpmath", "context", "digits", "public", "working"]

#: Extra decimal digits carried by every arbitrary-precision computation asked for ``dps`` digits.
GUARD_DIGITS = 15

_thread_state = threading.local()


def context() -> mpmath.MPContext:
    """This thread's private :class:`mpmath.MPContext` (created on first use, at 15 digits)."""
    private = getattr(_thread_state, "context", None)
    if private is None:
        private = _thread_state.context = mpmath.MPContext()
    return private


@contextlib.contextmanager
def digits(dps: int) -> Iterator[mpmath.MPContext]:
    """Work at ``dps`` decimal digits in this thread's private context (:func:`context`), restored on exit."""
    private = context()
    saved = private.prec
    private.dps = dps
    try:
        yield private
    finally:
        private.prec = saved


@contextlib.contextmanager
def working(dps: int) -> Iterator[mpmath.MPContext]:
    """Work at ``dps +`` :data:`GUARD_DIGITS` digits, the working precision of a result asked for ``dps`` digits.

    Examples
    --------
    >>> from pencils import precision
    >>> with precision.working(30) as context:
    ...     context.dps == 30 + precision.GUARD_DIGITS
    True
    """
    with digits(dps + GUARD_DIGITS) as private:
        yield private


def public(value: Any) -> Any:
    """An mpmath number of a private context as the same number of ``mpmath.mp``'s types, unrounded
    (anything else unchanged)."""
    if hasattr(value, "_mpc_"):
        return mpmath.mp.make_mpc(value._mpc_)
    return mpmath.mp.make_mpf(value._mpf_) if hasattr(value, "_mpf_") else value


class ThreadMpmath:
    """Stands for the ``mpmath`` module in compiled functions: each name is looked up in the calling
    thread's private context, so that a function compiled once computes at that thread's precision."""

    def __getattr__(self, name: str) -> Any:
        return getattr(context(), name)


class Function:
    """The mpmath function ``name`` (such as ``"tanh"``) of the calling thread's private context.

    Examples
    --------
    >>> import mpmath
    >>> from pencils import precision
    >>> with precision.digits(25):
    ...     e = precision.public(precision.Function("exp")(1))
    >>> mpmath.nstr(e, 25)
    '2.718281828459045235360287'
    """

    def __init__(self, name: str):
        self.name = name

    def __call__(self, x: Any) -> Any:
        return getattr(context(), self.name)(x)

    def __repr__(self) -> str:
        return f"mpmath.{self.name} (in the thread's context)"
