"""Limits of rational expressions: derive the Dyson system of an expression and solve it.

:func:`derive`, :func:`trace_limit` and :func:`rational_limit` (a scalar
expression of traces) keep what they derive in the derivation store
(:mod:`pencils.derivations`: in memory and on disk); the compiled scalar
quantities and their evaluation are in :mod:`pencils.quantities`, the solver in
:mod:`pencils.solve`.  Functions of matrices (:mod:`pencils.functions`) build on
these, and :mod:`pencils.limits` holds the entry points that dispatch to both.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import sympy

from .arguments import as_sympy
from .derivations import dims_key, store
from .dyson import DysonSystem
from .errors import ConvergenceError, ParameterError, SingularStartError
from .expression import Dimensions, check_rational, normalise, shape_symbols
from . import quantities as compiled_quantities
from .solve import LimitResult, SolverOptions
from .solve.compiled import float_columns
from .solve.linear_algebra import FloatAlgebra
from .solve.options import DEFAULT_OPTIONS
from .validation import check_shapes, check_solve_arguments

__all__ = ["check_trace_arguments", "derive", "rational_limit", "trace_limit"]


def derive(expr: sympy.MatrixExpr, dims: Mapping) -> DysonSystem:
    r"""Linearise ``expr`` and derive its self-consistent (Dyson) equations.

    The result is kept per ``(expr, dims)`` in the process (:data:`pencils.derivations.store`).

    Parameters
    ----------
    expr : sympy.MatrixExpr
        A square rational expression in :class:`pencils.Gaussian` matrices.
    dims : dict
        Each dimension symbol as a multiple of one base symbol.

    Returns
    -------
    DysonSystem

    Examples
    --------
    >>> import sympy
    >>> from pencils import Gaussian, derive
    >>> n, d, z = sympy.symbols("n d z")
    >>> X = Gaussian("X", n, d)
    >>> derive((X.T * X / n - z * sympy.Identity(d)).I, {n: 2 * d})
    DysonSystem(2 unknowns, 2 blocks, parameters z)
    """
    _check_square(expr)
    return store.system(expr, dims_key(dims))


def _check_square(expr) -> None:
    check_rational(expr)
    if not getattr(expr, "is_Matrix", False) or expr.shape[0] != expr.shape[1]:
        shape = getattr(expr, "shape", None)
        raise ParameterError(
            f"trace limits need a square matrix expression; got {expr} of shape {shape}. "
            f"Multiply by a transpose (e.g. X.T*X) or pick a square sub-expression."
        )


def check_trace_arguments(expr: sympy.MatrixExpr, dims: Mapping, subs: Mapping) -> None:
    """Refuse what :func:`trace_limit` refuses before it solves: an expression with no pencil,
    bad ``dims``, and values that are missing, not numbers, or give a negative dimension ratio or a
    coefficient that is not finite (used by :func:`pencils.sample_trace`, which must agree)."""
    _check_square(expr)
    solver = store.solver(expr, dims_key(dims))
    _, columns, count = solver.compiled.points(subs, multiprecision=False)
    floats = float_columns(columns)
    with np.errstate(all="ignore"):  # a coefficient that is not finite is reported by name
        solver.compiled.validate(solver.compiled.coefficients(floats, count, multiprecision=False), floats)


def trace_limit(
    expr: sympy.MatrixExpr,
    dims: Mapping,
    subs: Mapping | None = None,
    dps: int | None = None,
    path_from: Mapping | None = None,
    continuation: str = "neighbours",
    options: SolverOptions | None = None,
    full_output: bool = False,
):
    r"""The limit :math:`\lim \mathbb E[\operatorname{tr}(r)/N_r]` as all dimensions grow proportionally.

    ``N_r`` is the number of rows of ``expr``.  The expression is normalised,
    linearised (:func:`pencils.linearize`), its Dyson equation derived
    (:func:`derive`) and solved on the physical branch.

    Parameters
    ----------
    expr : sympy.MatrixExpr
        A square rational expression in :class:`pencils.Gaussian` matrices
        (``N(0, 1)`` entries) with explicit scalings.
    dims : dict
        Each dimension symbol as a multiple of one base symbol, e.g.
        ``{n: 2*d, p: Rational(3, 2)*d}``; ratios may be parameter symbols.
    subs : dict, optional
        Values of the remaining scalar symbols: numbers, or numpy arrays that broadcast.
    dps : int, optional
        ``None`` for floats (arrays if any value is an array); ``k`` for mpmath
        numbers correct to about ``k`` digits.  A float is within
        ``options.float_accuracy`` (1e-10 by default) of the limit, relative:
        each carries a bound on its rounding error, and where the bound is
        larger the point is computed again at ``options.finishing_dps`` (30)
        digits (a :class:`pencils.errors.PrecisionWarning` instead, for systems
        too large for that).
    path_from : dict, optional
        Start values of some parameters.  By default the physical branch is
        followed from zero variance (every Gaussian scaled by ``tau``, ``tau``
        from 0 to 1); with ``path_from`` the solution is found at those values
        and then followed along the straight line to ``subs``.  Use it where the
        default path meets a singularity, e.g. a spectral parameter just above
        the real axis inside the spectrum: ``path_from={z: x + 1j}``.
    continuation : {"neighbours", "variance"}
        How the points of an array are reached: from solved neighbours in the
        array (fast), or each on its own from zero variance (independent of the
        other points); see :mod:`pencils.solve.continuation`.
    options : SolverOptions, optional
        The solver's tolerances, promises and work sizes (:class:`pencils.SolverOptions`).
    full_output : bool
        Return a :class:`pencils.LimitResult` (the value, residuals, error
        estimates and which points were finished in arbitrary precision and why)
        instead of the value alone.

    Returns
    -------
    float, complex, numpy.ndarray, mpmath number, or LimitResult

    Examples
    --------
    The Marchenko-Pastur Stieltjes transform at ``z = -1`` for ``n = 2 d``, whose
    closed form is ``(sqrt(17) - 3) / 2``:

    >>> import mpmath, sympy
    >>> from pencils import Gaussian, trace_limit
    >>> n, d, z = sympy.symbols("n d z")
    >>> X = Gaussian("X", n, d)
    >>> resolvent = (X.T * X / n - z * sympy.Identity(d)).I
    >>> round(trace_limit(resolvent, {n: 2 * d}, {z: -1.0}), 12)
    0.561552812809
    >>> mpmath.nstr(trace_limit(resolvent, {n: 2 * d}, {z: -1}, dps=40), 40)
    '0.5615528128088302749107049279870385125736'
    >>> mpmath.mp.dps = 40; mpmath.nstr((mpmath.sqrt(17) - 3) / 2, 40); mpmath.mp.dps = 15
    '0.5615528128088302749107049279870385125736'
    """
    subs, dps, path_from = check_solve_arguments(subs, dps, path_from)
    _check_square(expr)
    solver, options = store.solver(expr, dims_key(dims)), options or DEFAULT_OPTIONS

    def solve(subs, path_from):
        result = solver.evaluate(subs, dps, path_from, continuation, options=options)
        return [result.value, result.residual, result.finish_reason, result.warned, result.relative_error]

    try:
        outputs = _in_batches(solve, subs, path_from, options.batch_points)
    except SingularStartError:
        return _from_a_ridge(lambda e, s, p: trace_limit(e, dims, s, dps, p, continuation, options, full_output),
                             expr, dims, subs, path_from)
    return _limit_result(outputs, 1, dps, many=False) if full_output else outputs[0]


def rational_limit(
    quantity, dims: Mapping, subs: Mapping | None = None, dps: int | None = None,
    path_from: Mapping | None = None, continuation: str = "neighbours", options: SolverOptions | None = None,
    full_output: bool = False,
):
    r"""The limit of a scalar expression in normalised traces of rational expressions: :func:`pencils.limit`
    without functions of matrices (the same arguments and result).

    Examples
    --------
    >>> import sympy
    >>> from pencils import Gaussian
    >>> from pencils.trace_limits import rational_limit
    >>> n, d = sympy.symbols("n d")
    >>> X = Gaussian("X", n, d)
    >>> rational_limit(sympy.Trace(X.T * X / n) / d, {n: 2 * d})
    1.0
    """
    subs, dps, path_from = check_solve_arguments(subs, dps, path_from)
    options = options or DEFAULT_OPTIONS
    if isinstance(quantity, (list, tuple)):
        if any(getattr(q, "is_Matrix", False) for q in quantity):
            quantity = [sympy.Trace(q) / q.shape[0] if getattr(q, "is_Matrix", False) else q for q in quantity]
        quantities = sympy.Tuple(*(as_sympy(q, "quantity") for q in quantity))
    elif getattr(quantity, "is_Matrix", False):
        return trace_limit(quantity, dims, subs, dps, path_from=path_from, continuation=continuation, options=options,
                           full_output=full_output)
    else:
        quantities = sympy.Tuple(as_sympy(quantity, "quantity"))

    def solve(quantities, subs, path_from):
        compiled = store.compiled_limit(quantities, dims_key(dims))
        return _in_batches(lambda s, p: compiled_quantities.evaluate(compiled, quantities, s, dps, p, continuation,
                                                                     options), subs, path_from, options.batch_points)

    try:
        outputs = solve(quantities, subs, path_from)
    except SingularStartError:
        outputs = _from_a_ridge(solve, quantities, dims, subs, path_from)
    many = isinstance(quantity, (list, tuple))
    if full_output:
        return _limit_result(outputs, len(quantities), dps, many)
    return list(outputs[: len(quantities)]) if many else outputs[0]


def _limit_result(outputs: list, count: int, dps: int | None, many: bool) -> LimitResult:
    """The :class:`pencils.LimitResult` of the ``outputs`` of :func:`pencils.quantities.evaluate`: ``count`` values, the
    residual, the reasons for finishing, the warned points and ``count`` relative errors."""
    values, (residual, reasons, warned), relative = outputs[:count], outputs[count : count + 3], outputs[count + 3 :]
    finished = np.not_equal(reasons, "") if np.ndim(reasons) else reasons != ""
    tolerance = FloatAlgebra.residual_tolerance if dps is None else 10.0**-dps
    converged = (np.asarray(residual) <= tolerance) | finished
    return LimitResult(
        value=list(values) if many else values[0], derivatives=(),
        converged=converged if np.ndim(converged) else bool(converged),
        residual=residual, relative_error=list(relative) if many else relative[0], finished=finished,
        finish_reason=reasons, warned=warned, dps=dps,
    )


#: The ridge added to every inverse where the solution cannot start (see :func:`_from_a_ridge`).
RIDGE = sympy.Symbol("pencils_ridge", nonnegative=True)


def _from_a_ridge(solve, expr, dims: Mapping, subs: dict, path_from: Mapping | None):
    r"""``solve(expr', subs', path_from')`` for an expression whose pencil is singular with every
    Gaussian set to zero (e.g. :math:`\operatorname{tr} S^{-1}` for a Wishart :math:`S`).

    ``expr'`` adds :math:`r N^{p} I` inside every inverse (:math:`N^p` the order of the inverted
    matrix); the solution starts at :math:`r = 1`, where it is defined, and is continued to
    :math:`r = 0`, where ``expr'`` is ``expr``.  The limit is reached wherever the path stays regular,
    i.e. where the inverted matrices stay invertible in the limit.
    """
    dimensions = Dimensions.from_mapping(dims, _shape_symbols_of(expr))

    def shifted(node):
        arguments = [shifted(argument) for argument in node.args]
        if arguments != list(node.args):
            node = node.func(*arguments)
        inverted = node.arg if isinstance(node, sympy.Inverse) else node.base if (
            isinstance(node, sympy.MatPow) and node.exp.is_negative) else None
        if inverted is None:
            return node
        _, power, _ = normalise(inverted, dimensions)
        base = inverted + RIDGE * dimensions.base**power * sympy.Identity(inverted.rows)
        return base.I if isinstance(node, sympy.Inverse) else sympy.MatPow(base, node.exp)

    try:
        return solve(shifted(expr), {**subs, RIDGE: 0}, {**(path_from or {}), RIDGE: 1})
    except ConvergenceError as error:
        point = ", ".join(f"{key}={value}" for key, value in error.parameters.items() if key != str(RIDGE))
        raise ConvergenceError(
            f"{expr} is undefined with every Gaussian set to zero, and following a ridge r*Identity added to "
            f"each inverse from r = 1 down to r = 0 failed{' at ' + point if point else ''}. The limit "
            f"probably does not exist there: an inverted matrix is singular in the limit (e.g. X.T*X/n with "
            f"d > n). Add a ridge to that inverse.",
            parameters=error.parameters, residual=error.residual,
        ) from None


def _shape_symbols_of(expr) -> set:
    """The dimension symbols of the matrices in ``expr`` (a matrix, or scalars containing traces)."""
    matrices = [expr] if getattr(expr, "is_Matrix", False) else [t.arg for t in expr.atoms(sympy.Trace)]
    return set().union(*(shape_symbols(matrix) for matrix in matrices)) if matrices else set()


def _in_batches(evaluate, subs: dict, path_from: Mapping | None, batch_points: int) -> list:
    """``evaluate(subs, path_from)`` (a list of results), on consecutive batches of at most
    ``batch_points`` of the broadcast points (:attr:`pencils.SolverOptions.batch_points`), concatenated
    in the broadcast shape (memory grows with the batch, and stays bounded whatever the array size).

    ``path_from`` values are scalars or arrays of the shape of the points.  An array with no more
    points than a batch is evaluated in one call, exactly as without batching.
    """
    shape = check_shapes(subs)
    count = math.prod(shape)
    if count <= batch_points:
        return evaluate(subs, path_from)

    def flat(values: Mapping) -> dict:
        return {key: np.broadcast_to(np.asarray(value), shape).reshape(-1) if np.ndim(value) else value
                for key, value in values.items()}

    subs, starts = flat(subs), flat(path_from or {})
    pieces = []
    for start in range(0, count, batch_points):
        batch = slice(start, start + batch_points)
        pieces.append(evaluate({key: v[batch] if np.ndim(v) else v for key, v in subs.items()},
                               {key: v[batch] if np.ndim(v) else v for key, v in starts.items()} or None))
    return [np.concatenate([piece[k] for piece in pieces]).reshape(shape) for k in range(len(pieces[0]))]
