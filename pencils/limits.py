"""The user-facing entry points: :func:`derive`, :func:`trace_limit` and :func:`limit`.

Rational expressions are derived and solved by :mod:`pencils.trace_limits`;
traces holding functions of matrices (:class:`pencils.MatrixFunction`) become
contour integrals of resolvent traces (:mod:`pencils.functions`).  This module
only sends each quantity to the right one.
"""

from __future__ import annotations

from typing import Mapping

import sympy

from .errors import ParameterError
from .functions import MatrixFunction, function_limit
from .solve import SolverOptions
from .trace_limits import derive, rational_limit, trace_limit
from .validation import check_solve_arguments

__all__ = ["derive", "trace_limit", "limit"]


def limit(
    quantity, dims: Mapping, subs: Mapping | None = None, dps: int | None = None,
    path_from: Mapping | None = None, continuation: str = "neighbours", options: SolverOptions | None = None,
    full_output: bool = False,
):
    r"""The large-dimension limit of a scalar expression in normalised traces (and their derivatives).

    ``quantity`` is a SymPy scalar expression containing :class:`sympy.Trace`
    terms, e.g. ``1 + (Trace(B*U*B.T) - 2*Trace(B*V.T)) / d``.  Each trace
    :math:`\operatorname{tr}(A)` is replaced by
    :math:`N_A\, N^{p_A}\, \tau_A`, where :math:`N^{p_A}` is the order of
    :math:`A` (see :mod:`pencils.expression`), :math:`N_A` its number of rows and
    :math:`\tau_A` the limit of :math:`\operatorname{tr}(N^{-p_A} A)/N_A` from
    :func:`trace_limit`; the result must then be free of the dimensions.

    A term ``sympy.Derivative(Trace(A), theta)`` (unevaluated, first order in a
    scalar parameter) is the derivative of that replacement, with
    :math:`\partial_\theta \tau_A` computed exactly from the same Dyson solution
    (see :meth:`pencils.solve.Solver.target`).  It turns a trace of a product of
    resolvents into one resolvent: :math:`\operatorname{tr}(R A R) =
    -\partial_t \operatorname{tr}\,(R^{-1} + tA)^{-1}` at :math:`t = 0`, a much
    smaller pencil.

    A list or tuple of quantities gives a list of limits, and each distinct
    trace is solved once for all of them.

    A trace may contain :class:`pencils.MatrixFunction` nodes :math:`f(H)`; it is then
    a contour integral of resolvent traces (:func:`pencils.functions.function_limit`),
    and the parameters of the functions may take arrays of values.

    Parameters
    ----------
    quantity : sympy.Expr, sympy.MatrixExpr, or a list or tuple of them
        A scalar expression of traces (a square matrix means its normalised trace).
    dims, subs, dps, path_from, continuation, options, full_output
        As in :func:`trace_limit` (``path_from`` applies to every trace; with
        ``full_output`` the residual is the largest over the traces, and
        ``value`` and ``relative_error`` are lists for a list of quantities).

    Raises
    ------
    MisScaledError
        If the quantity still depends on the dimensions once the traces are
        replaced (it grows or vanishes).
    UnsupportedOperationError
        For a derivative that is not a first derivative of one trace in one symbol.

    Examples
    --------
    The mean eigenvalue of a Wishart matrix, and its second moment minus one,
    for ``n = 2 d``:

    >>> import sympy
    >>> from pencils import Gaussian, limit
    >>> n, d, z = sympy.symbols("n d z")
    >>> X = Gaussian("X", n, d)
    >>> S = X.T * X / n
    >>> limit(sympy.Trace(S) / d, {n: 2 * d})
    1.0
    >>> limit(sympy.Trace(S * S) / d - 1, {n: 2 * d})
    0.5

    A derivative: :math:`\partial_z \operatorname{tr}(I - zS)^{-1}/d = \operatorname{tr} S/d` at
    :math:`z = 0`, with both quantities solved in one call:

    >>> resolvent = (sympy.Identity(d) - z * S).I
    >>> mean, slope = limit([sympy.Trace(S) / d, sympy.Derivative(sympy.Trace(resolvent), z) / d],
    ...                     {n: 2 * d}, {z: 0.0})
    >>> round(mean, 12), round(slope, 12)
    (1.0, 1.0)
    """
    quantities = quantity if isinstance(quantity, (list, tuple)) else [quantity]
    if not any(isinstance(q, sympy.Basic) and q.has(MatrixFunction) for q in quantities):
        return rational_limit(quantity, dims, subs, dps, path_from=path_from, continuation=continuation,
                              options=options, full_output=full_output)
    subs, dps, path_from = check_solve_arguments(subs, dps, path_from)
    if path_from is not None:
        raise ParameterError("path_from does not apply to a quantity with a MatrixFunction (its contour sets the paths).")
    if full_output:
        raise ParameterError("full_output is not available for a quantity with a MatrixFunction; pass "
                             "full_output=False (the default).")
    if isinstance(quantity, (list, tuple)):
        return [function_limit(q, dims, subs, dps) for q in quantity]
    return function_limit(quantity, dims, subs, dps)
