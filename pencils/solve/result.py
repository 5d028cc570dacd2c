"""What a solve returns: the solution of the Dyson equation, and a limit with its diagnostics."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import sympy

__all__ = ["LimitResult", "Solution"]


class Solution(NamedTuple):
    r"""The solution of the Dyson equation at a batch of points (:meth:`pencils.solve.Solver.solve`).

    Attributes
    ----------
    inverse : numpy.ndarray
        :math:`G = (\Lambda - \eta(g))^{-1}` at the solution, shape (P, K, K)
        (object dtype of mpmath numbers in arbitrary precision).
    scale : numpy.ndarray
        The scale of the target, shape (P,): the target is ``scale * inverse[:, out, into]``.
    shape : tuple
        The broadcast shape of the parameter values (P is its product).
    """

    inverse: np.ndarray
    scale: np.ndarray
    shape: tuple


@dataclass(frozen=True)
class LimitResult:
    r"""A limit and how it was computed, in the spirit of :class:`scipy.optimize.OptimizeResult`.

    Returned by :func:`pencils.trace_limit`, :func:`pencils.limit` (with
    ``full_output=True``) and :meth:`pencils.solve.Solver.evaluate`.  Arrays
    have the broadcast shape of the parameter values (scalars for scalar values).

    Attributes
    ----------
    value : float, complex, numpy.ndarray, mpmath number, or list of them
        What the plain call returns (a list for a list of quantities).
    derivatives : tuple
        The derivatives asked of :meth:`pencils.solve.Solver.evaluate`, in order (empty otherwise).
    converged : bool or numpy.ndarray
        Whether the relative residual of the Dyson equation met its tolerance
        (``1e-12`` in floats, :math:`10^{-\mathrm{dps}}` in arbitrary precision);
        a point that does not meet it either raises
        :class:`pencils.errors.ConvergenceError` or is finished in arbitrary precision.
    residual : float or numpy.ndarray
        The relative residual :math:`\|[G]_S - g\|_\infty / \|g\|_\infty` of the
        solution (the largest over the traces of a quantity).
    relative_error : float, numpy.ndarray, or list of them
        In floats, the bound on the relative rounding error of each value (one
        per value, as ``value``); after finishing, the rounding to a float.  In
        arbitrary precision :math:`10^{-\mathrm{dps}}`, the precision asked for,
        which Newton's method reaches where the problem is well conditioned (an
        estimate, not a bound).
    finished : bool or numpy.ndarray
        The float points that were computed again in arbitrary precision and rounded.
    finish_reason : str or numpy.ndarray
        Why each finished point was (``""`` for the others): Newton's iteration in
        floats stalled above its tolerance, or the rounding-error bound exceeded
        :attr:`pencils.SolverOptions.float_accuracy`.
    warned : bool or numpy.ndarray
        The points reported by a :class:`pencils.errors.PrecisionWarning`
        (too large a system to finish them automatically).
    dps : int or None
        The decimal digits asked for (``None`` for floats).

    Examples
    --------
    >>> import sympy
    >>> from pencils import Gaussian, trace_limit
    >>> n, d, z = sympy.symbols("n d z")
    >>> X = Gaussian("X", n, d)
    >>> result = trace_limit((X.T * X / n - z * sympy.Identity(d)).I, {n: 2 * d}, {z: -1.0}, full_output=True)
    >>> round(result.value, 12), bool(result.converged), bool(result.digits > 14)
    (0.561552812809, True, True)
    """

    value: Any
    derivatives: tuple
    converged: Any
    residual: Any
    relative_error: Any
    finished: Any
    finish_reason: Any
    warned: Any
    dps: int | None

    @property
    def digits(self):
        """The correct decimal digits that :attr:`relative_error` promises (``inf`` for an exact zero error)."""
        def digits_of(error):
            with np.errstate(divide="ignore"):
                return -np.log10(np.asarray(error, dtype=float)) if np.ndim(error) else (
                    -math.log10(float(error)) if float(error) > 0 else math.inf)

        if isinstance(self.relative_error, list):
            return [digits_of(error) for error in self.relative_error]
        return digits_of(self.relative_error)

    def __repr__(self) -> str:
        lines = []
        for name in ("value", "derivatives", "converged", "residual", "relative_error", "finished",
                     "finish_reason", "warned", "dps"):
            text = repr(getattr(self, name)).replace("\n", "\n" + " " * 16)
            lines.append(f"{name:>14}: {text}")
        return "\n".join(lines)

    def _repr_latex_(self) -> str:
        values = self.value if isinstance(self.value, list) else [self.value]
        shown = []
        for value in values:
            if np.ndim(value):
                shown.append(rf"\text{{array of shape }} {sympy.latex(sympy.Tuple(*np.shape(value)))}")
            else:
                shown.append(sympy.latex(sympy.sympify(complex(value) if np.iscomplexobj(value) else value)))
        points = np.size(self.converged)
        converged, finished, warned = (int(np.sum(flags)) for flags in (self.converged, self.finished, self.warned))
        summary = (rf"\text{{{converged} of {points} point(s) converged, {finished} finished in arbitrary "
                   rf"precision, {warned} warned}}")
        return "$" + r",\ ".join(shown) + r"\quad " + summary + "$"
