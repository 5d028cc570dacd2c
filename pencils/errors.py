"""Exceptions raised by :mod:`pencils`.

Every error says what is wrong *and* what to change.  They all derive from
:class:`PencilsError`, itself a :class:`ValueError`, so that ``except ValueError``
keeps working for callers that do not care about the details.
"""

from __future__ import annotations

__all__ = [
    "PencilsError",
    "DimensionError",
    "MisScaledError",
    "UnsupportedOperationError",
    "ParameterError",
    "ParameterTypeError",
    "ConvergenceError",
    "SingularStartError",
    "EliminationTooLargeError",
]


class PencilsError(ValueError):
    """Base class of every error raised by :mod:`pencils`."""


class DimensionError(PencilsError):
    """A dimension is missing from ``dims``, not proportional to the base, or shapes clash."""


class MisScaledError(PencilsError):
    """The expression has no finite, non-trivial limit as the dimensions grow."""


class UnsupportedOperationError(PencilsError):
    """The expression uses an operation that has no linear pencil in this package."""


class ParameterError(PencilsError):
    """A parameter value is missing, of the wrong kind, or outside its domain."""


class ParameterTypeError(ParameterError, TypeError):
    """A parameter is of the wrong type (e.g. an activation that is neither a name nor a callable).

    Also a :class:`TypeError`, so that ``except TypeError`` keeps working.
    """


class ConvergenceError(PencilsError):
    """A self-consistent solve did not converge.

    Attributes
    ----------
    parameters : dict
        The parameter values of the first points that failed.
    residual : float
        The largest relative residual reached at those points.
    """

    def __init__(self, message: str, parameters: dict | None = None, residual: float | None = None):
        super().__init__(message)
        self.parameters = parameters or {}
        self.residual = residual


class SingularStartError(ConvergenceError):
    """The pencil is singular with every Gaussian set to zero, where the solution starts
    (e.g. ``S.I`` for a Wishart ``S``): :func:`pencils.trace_limit` and :func:`pencils.limit`
    then continue a ridge added to every inverse down to zero."""


class EliminationTooLargeError(PencilsError):
    """Eliminating every unknown of a reduced system into one polynomial would be too large
    (see :meth:`pencils.reduction.ReducedSystem.polynomial`)."""


class PrecisionWarning(UserWarning):
    """A float result may be less accurate than :attr:`pencils.SolverOptions.float_accuracy` (relative).

    Every float limit carries a first-order bound on its rounding error (see
    :meth:`pencils.solve.accuracy.AccuracyAudit.float_error`; for a quantity of several
    traces, combined with its sensitivity to each).  Where the bound exceeds the
    promise, the points are finished in arbitrary precision, unless a system is
    too large for that to be quick (more than
    :attr:`pencils.SolverOptions.max_finished_unknowns` unknowns): then this
    warning names the first point and the bound.  ``dps=30`` solves those points
    to 30 digits.
    """


class CacheWarning(UserWarning):
    """The on-disk cache (:mod:`pencils.cache`) ignored an entry or a setting.

    Issued, once per process for each kind of problem, when an entry is not a
    regular file inside the cache directory (a symbolic link, a FIFO, a
    device), is too large, damaged or malformed (it is removed and rebuilt:
    results are unaffected), or when ``PENCILS_CACHE_DIR`` is a relative path
    (the cache is then disabled).
    """
