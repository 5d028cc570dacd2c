"""The user-facing entry points: derive the Dyson system of an expression and solve it.

What :func:`trace_limit` and :func:`limit` derive is kept in memory for the
process and on disk (:mod:`pencils.cache`) for the next ones, keyed by the
expression, the dimensions, the package version and the source of the modules
that derive it.  The disk entry holds the plain data of the numeric problem
(:meth:`pencils.dyson.DysonSystem.record`), so that a fresh process skips the
linearisation and the derivation.
"""

from __future__ import annotations

import hashlib
import math
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Mapping

import numpy as np
import sympy

from . import cache, precision
from .arguments import as_sympy, resolve_keys
from .dyson import DysonSystem, check_record
from .errors import (
    ConvergenceError, DimensionError, MisScaledError, ParameterError, SingularStartError, UnsupportedOperationError,
)
from .expression import Dimensions, check_rational, normalise, shape_symbols
from .functions import MatrixFunction, function_limit
from .pencil import linearize
from .serialization import decode, encode
from .solve import Solver
from .solve.accuracy import CHECKED_FRACTION, inaccurate_points, points_of, rounded, warn_imprecise
from .solve.compiled import compile_expressions, float_columns, shaped, to_mpmath
from .validation import check_shapes, check_solve_arguments

__all__ = ["derive", "trace_limit", "limit"]


def _key(dims: Mapping) -> tuple:
    if not isinstance(dims, Mapping):
        raise DimensionError(f"dims must be a dict {{dimension: multiple of the base}}, e.g. {{n: 2*d}}; got {dims!r}.")
    pairs = ((as_sympy(k, "dims", DimensionError), as_sympy(v, "dims", DimensionError)) for k, v in dims.items())
    return tuple(sorted(pairs, key=str))


@lru_cache(maxsize=256)
def _derive(expr, dims_key: tuple) -> DysonSystem:
    return DysonSystem(linearize(expr, dict(dims_key)))


def derive(expr: sympy.MatrixExpr, dims: Mapping) -> DysonSystem:
    r"""Linearise ``expr`` and derive its self-consistent (Dyson) equations.

    The result is cached per ``(expr, dims)`` in the process.

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
    return _derive(expr, _key(dims))


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
    solver = _solver(expr, _key(dims))
    _, columns, count = solver.problem.points(subs, multiprecision=False)
    floats = float_columns(columns)
    with np.errstate(all="ignore"):  # a coefficient that is not finite is reported by name
        solver.problem.validate(solver.problem.coefficients(floats, count, multiprecision=False), floats)


@lru_cache(maxsize=1)
def _source_fingerprint() -> str:
    """A hash of the engine's source (part of every cache key): every module of the package and its
    subpackages but the command line, so that no change to what shapes a derivation can reuse an old entry."""
    digest = hashlib.sha256()
    root = Path(__file__).parent
    for path in sorted(root.rglob("*.py")):
        name = path.relative_to(root).as_posix()
        if name != "cli.py":
            digest.update(f"{name}\0".encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _cached(kind: str, expr, dims_key: tuple, build, make):
    """``make(payload)`` of the disk-cache entry of ``expr`` under ``kind``, where ``build(expr, dims_key)``
    makes the payload on a miss, or when ``make`` refuses the stored one (which is then rebuilt and
    replaced, with one :class:`pencils.errors.CacheWarning` per process)."""
    digest = cache.key(kind, sympy.srepr(expr), sympy.srepr(dims_key), _source_fingerprint())
    payload = cache.load(kind, digest)
    if payload is not None:
        try:
            return make(payload)
        except (ValueError, TypeError, LookupError, ArithmeticError, RecursionError) as error:
            cache.discard(kind, digest, f"holds a malformed {kind} payload ({type(error).__name__}: {error})")
    payload = build(expr, dims_key)
    made = make(payload)
    cache.store(kind, digest, payload)
    return made


def _trace_solver(payload: dict) -> Solver:
    """The solver of a ``"trace"`` payload, checked."""
    check_record(payload["record"])
    return Solver(payload["record"])


@lru_cache(maxsize=256)
def _solver(expr, dims_key: tuple) -> Solver:
    """The compiled solver of ``expr``: from memory, the disk cache, or a derivation."""
    return _cached("trace", expr, dims_key, lambda e, k: {"record": _derive(e, k).record()}, _trace_solver)


def trace_limit(
    expr: sympy.MatrixExpr,
    dims: Mapping,
    subs: Mapping | None = None,
    dps: int | None = None,
    path_from: Mapping | None = None,
    continuation: str = "neighbours",
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
        :attr:`pencils.solve.Solver.float_accuracy` (1e-10) of the limit,
        relative: each carries a bound on its rounding error, and where the bound
        is larger the point is computed again at 30 digits (a
        :class:`pencils.errors.PrecisionWarning` instead, for systems too large
        for that).
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
        other points); see :mod:`pencils.solve`.

    Returns
    -------
    float, complex, numpy.ndarray or mpmath number

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
    solver = _solver(expr, _key(dims))
    try:
        return _in_batches(lambda s, p: [solver.target(s, dps=dps, path_from=p, continuation=continuation)],
                           subs, path_from)[0]
    except SingularStartError:
        return _from_a_ridge(lambda e, s, p: trace_limit(e, dims, s, dps, p, continuation), expr, dims, subs, path_from)


def limit(
    quantity, dims: Mapping, subs: Mapping | None = None, dps: int | None = None,
    path_from: Mapping | None = None, continuation: str = "neighbours",
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
    dims, subs, dps, path_from, continuation
        As in :func:`trace_limit` (``path_from`` applies to every trace).

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
    subs, dps, path_from = check_solve_arguments(subs, dps, path_from)
    if any(isinstance(q, sympy.Basic) and q.has(MatrixFunction)
           for q in (quantity if isinstance(quantity, (list, tuple)) else [quantity])):
        if path_from is not None:
            raise ParameterError("path_from does not apply to a quantity with a MatrixFunction (its contour sets the paths).")
        if isinstance(quantity, (list, tuple)):
            return [function_limit(q, dims, subs, dps) for q in quantity]
        return function_limit(quantity, dims, subs, dps)
    if isinstance(quantity, (list, tuple)):
        if any(getattr(q, "is_Matrix", False) for q in quantity):
            quantity = [sympy.Trace(q) / q.shape[0] if getattr(q, "is_Matrix", False) else q for q in quantity]
        quantities = sympy.Tuple(*(as_sympy(q, "quantity") for q in quantity))
    elif getattr(quantity, "is_Matrix", False):
        return trace_limit(quantity, dims, subs, dps, path_from=path_from, continuation=continuation)
    else:
        quantities = sympy.Tuple(as_sympy(quantity, "quantity"))

    def evaluate(quantities, subs, path_from):
        return _in_batches(lambda s, p: _evaluate(quantities, dims, s, dps, p, continuation), subs, path_from)

    try:
        values = evaluate(quantities, subs, path_from)
    except SingularStartError:
        values = _from_a_ridge(evaluate, quantities, dims, subs, path_from)
    return list(values) if isinstance(quantity, (list, tuple)) else values[0]


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


#: The most points of an array solved at once.  Memory grows with the batch (measured: about 6 KB a
#: point for the DSM errors at m = inf, 170 KB at m = 4), so larger arrays are solved in consecutive
#: batches of this size and memory stays bounded whatever the array size.
batch_points = 2048


def _in_batches(evaluate, subs: dict, path_from: Mapping | None) -> list:
    """``evaluate(subs, path_from)`` (a list of results), on consecutive batches of at most
    :data:`batch_points` of the broadcast points, concatenated in the broadcast shape.

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


def _evaluate(quantities: sympy.Tuple, dims, subs, dps, path_from, continuation) -> list:
    """The limits of ``quantities`` (see :func:`limit`): each solver once, with the derivatives asked of it."""
    compiled = _compiled_limit(quantities, _key(dims))
    starts = _starts_by_trace(path_from, compiled.solvers)
    subs = resolve_keys(subs, {*compiled.arguments, *(p for s in compiled.solvers for p in s.parameters)}, "subs")
    missing = [symbol for symbol in compiled.arguments[len(compiled.outputs) :] if symbol not in subs]
    if missing:
        raise ParameterError(f"no value given for {missing[0]}; pass subs={{{missing[0]}: ...}}.")
    if dps is None:
        return _evaluate_floats(compiled, quantities, dims, subs, path_from, starts, continuation)
    values = _trace_limits(compiled, starts, lambda solver, start, parameters: solver.target(
        subs, dps=dps, path_from=start, continuation=continuation, derivatives=parameters))
    inputs = values + [subs[symbol] for symbol in compiled.arguments[len(values) :]]
    with precision.digits(dps + 15):
        function = compiled.mpmath
        inputs = [np.frompyfunc(to_mpmath, 1, 1)(v) if isinstance(v, np.ndarray) else to_mpmath(v) for v in inputs]
        if any(isinstance(v, np.ndarray) for v in inputs):
            count = len(quantities)  # np.frompyfunc wants a tuple for several outputs, the value for one
            each = (lambda *x: tuple(function(*x))) if count > 1 else (lambda *x: function(*x)[0])
            results = np.frompyfunc(each, len(inputs), count)(*inputs)
            results = list(results) if count > 1 else [results]
        else:
            results = list(function(*inputs))
    with precision.digits(dps):
        return [np.frompyfunc(lambda v: precision.public(+v), 1, 1)(r) if isinstance(r, np.ndarray) else precision.public(+r)
                for r in results]


def _trace_limits(compiled: "_CompiledLimit", starts: list, evaluate) -> list:
    """The limit of every trace and derivative of a trace in ``compiled.outputs``, in order.

    ``evaluate(solver, path_from, parameters)`` returns the value and the
    derivatives in ``parameters`` (a tuple if any are asked) of one solver.
    """
    values: list = [None] * len(compiled.outputs)
    for index, (solver, start) in enumerate(zip(compiled.solvers, starts)):
        wanted = [k for k, (record, _) in enumerate(compiled.outputs) if record == index]
        parameters = list(dict.fromkeys(p for k in wanted if (p := compiled.outputs[k][1]) is not None))
        results = evaluate(solver, start, parameters)
        results = results if parameters else (results,)
        for k in wanted:
            parameter = compiled.outputs[k][1]
            values[k] = results[0 if parameter is None else 1 + parameters.index(parameter)]
    return values


def _evaluate_floats(compiled, quantities, dims, subs, path_from, starts, continuation) -> list:
    r"""The float limits of the quantities, kept to :attr:`pencils.solve.Solver.float_accuracy`.

    Each trace comes with a bound on its rounding error
    (:meth:`pencils.solve.accuracy.AccuracyAudit.float_error`), and a quantity
    :math:`f(x_1, \dots, x_k)` of traces and scalars gets, to first order,

    .. math::  |\Delta f| \le \sum_k |\partial_k f|\,(e_k + \gamma_f |x_k|),

    with :math:`e_k` the bound of input :math:`k` (0 for a given scalar) and
    :math:`\gamma_f = (\text{operations of } f + 1)\,u` the rounding of its own
    evaluation: every intermediate result of a sum or product is bounded by
    the sum of :math:`|\partial_k f\, x_k|` over its inputs.  Cancellation
    between large terms (a sum of traces merged into one whose parts cancel, or
    order-one terms of opposite signs) shows in these sums.  Where a bound
    exceeds a fraction of the promise, the bounds of the traces are checked in
    extended precision (:meth:`pencils.solve.Solver.tighten`); the points where
    it then exceeds the promise are evaluated again at
    :attr:`pencils.solve.Solver.finishing_dps` digits and rounded, if every
    system is small enough; otherwise a :class:`pencils.errors.PrecisionWarning` names them.
    """
    solved = []

    def evaluate(solver, start, parameters):
        solved.append((solver, solver.float_target(subs, start, continuation, parameters), parameters))
        return _pairs(*solved[-1][1:])

    pairs = _trace_limits(compiled, starts, evaluate)
    traces = [value for value, _ in pairs]
    inputs = traces + [subs[symbol] for symbol in compiled.arguments[len(traces) :]]
    errors = [error for _, error in pairs] + [0.0] * (len(inputs) - len(traces))
    results = compiled.numpy(*inputs)
    bounds = compiled.rounding(inputs, errors)
    shape = np.broadcast_shapes(*(np.shape(x) for x in list(results) + bounds))
    flat = [np.broadcast_to(x, shape).reshape(-1).copy() for x in results]
    loose = np.flatnonzero(inaccurate_points(flat, [np.broadcast_to(b, shape).reshape(-1) for b in bounds],
                                             Solver.float_accuracy * CHECKED_FRACTION))
    if loose.size:  # the traces' bounds there, checked in extended precision (the values are unchanged)
        for solver, result, parameters in solved:
            where = np.broadcast_to(np.arange(len(result.values[0])).reshape(result.shape), shape).reshape(-1)
            solver.tighten(result, parameters, np.unique(where[loose]))
        replay = iter(solved)
        pairs = _trace_limits(compiled, starts, lambda *_: _pairs(*next(replay)[1:]))
        errors = [error for _, error in pairs] + errors[len(traces) :]
        bounds = compiled.rounding(inputs, errors)
    inaccurate = np.flatnonzero(inaccurate_points(flat, [np.broadcast_to(b, shape).reshape(-1) for b in bounds],
                                            Solver.float_accuracy))
    if inaccurate.size and all(solver.finishes for solver in compiled.solvers):
        exact = _evaluate(quantities, dims, points_of(subs, shape, inaccurate), Solver.finishing_dps,
                          points_of(path_from, shape, inaccurate), continuation)
        for values, finished in zip(flat, exact):
            values[inaccurate] = rounded(finished, values.dtype)
    elif inaccurate.size:
        where = ", ".join(f"{key}={np.broadcast_to(np.asarray(value), shape).reshape(-1)[inaccurate[0]]}"
                          for key, value in subs.items())
        unknowns = max(solver.unknowns for solver in compiled.solvers)
        bounds = [np.broadcast_to(b, shape).reshape(-1) for b in bounds]
        warn_imprecise(inaccurate, flat, bounds, where, unknowns, Solver.float_accuracy, stacklevel=5)  # from limit()
    return [values.reshape(shape) if shape else values.item() for values in flat]


def _pairs(result, parameters: list):
    """``(value, error bound)`` of each output of :meth:`pencils.solve.Solver.float_target` in the shape of the
    points, as :func:`_trace_limits` takes them (a tuple if ``parameters``)."""
    pairs = [(shaped(value, result.shape, None), np.reshape(error, result.shape))
             for value, error in zip(result.values, result.errors)]
    return tuple(pairs) if parameters else pairs[0]


def _starts_by_trace(path_from: Mapping | None, solvers: list) -> list:
    """``path_from`` restricted to the parameters of each trace's solver (``None`` where it names none)."""
    if not path_from:
        return [None] * len(solvers)
    used = set().union(*(solver.parameters for solver in solvers)) if solvers else set()
    path_from = resolve_keys(path_from, used, "path_from")
    unused = [str(key) for key in path_from if key not in used]
    if unused:
        raise ParameterError(f"path_from names {', '.join(unused)}, which the quantity does not use.")
    starts = [{key: value for key, value in path_from.items() if key in solver.parameters} for solver in solvers]
    return [start or None for start in starts]


class _CompiledLimit:
    """The solvers of the traces in scalar quantities, and the quantities as functions of their limits.

    Built from the plain data of :func:`_limit_payload`: ``arguments`` (one
    placeholder per trace or derivative of a trace, then the other scalars),
    ``formulas``, one solver record per distinct trace, and ``outputs``: for
    each placeholder, its record and the parameter it is differentiated in
    (``None`` for the trace itself); expressions as the trees of
    :mod:`pencils.serialization`.  A payload of any other structure raises
    ``ValueError``, ``TypeError`` or ``LookupError``.
    """

    def __init__(self, payload: dict):
        self.arguments = tuple(decode(tree) for tree in payload["arguments"])
        self.formulas = [decode(tree) for tree in payload["formulas"]]
        for record in payload["records"]:
            check_record(record)
        self.solvers = [Solver(record) for record in payload["records"]]
        self.outputs = [(record, decode(tree) if tree is not None else None) for record, tree in payload["outputs"]]
        if len(self.outputs) > len(self.arguments) or not all(0 <= r < len(self.solvers) for r, _ in self.outputs):
            raise ValueError("the outputs of a limit payload do not match its arguments and records")
        self.numpy = compile_expressions(self.arguments, self.formulas, "numpy")

    @cached_property
    def mpmath(self):
        return compile_expressions(self.arguments, self.formulas, "mpmath")

    @cached_property
    def _partials(self):
        """The partial derivatives of every formula in every argument, compiled for numpy (formula by formula)."""
        return compile_expressions(self.arguments, [f.diff(x) for f in self.formulas for x in self.arguments], "numpy")

    def rounding(self, inputs: list, errors: list) -> list:
        """First-order bounds on the error of each formula at ``inputs`` whose errors are bounded by ``errors``
        (see :func:`_evaluate_floats`)."""
        unit = float(np.finfo(float).eps) / 2
        partials = self._partials(*inputs)
        count = len(self.arguments)
        bounds = []
        for k, formula in enumerate(self.formulas):
            rounding = unit * (int(sympy.count_ops(formula)) + 1)
            terms = (np.abs(partials[k * count + j]) * (errors[j] + rounding * np.abs(inputs[j])) for j in range(count))
            bounds.append(sum(terms, np.zeros(())))
        return bounds


@lru_cache(maxsize=64)
def _compiled_limit(quantities: sympy.Tuple, dims_key: tuple) -> _CompiledLimit:
    return _cached("limit", quantities, dims_key, _limit_payload, _CompiledLimit)


def _limit_payload(quantities: sympy.Tuple, dims_key: tuple) -> dict:
    """The normalised matrices whose traces enter ``quantities``, derived, and the quantities in their limits."""
    check_rational(quantities)
    derivatives = sorted(set().union(*(q.atoms(sympy.Derivative) for q in quantities)), key=sympy.default_sort_key)
    for derivative in derivatives:
        _check_derivative(derivative)
    hidden = {derivative: sympy.Dummy() for derivative in derivatives}
    originals, quantities = quantities, [q.xreplace(hidden) for q in quantities]
    matrices_in = [d.expr.arg for d in derivatives] + [t.arg for q in quantities for t in q.atoms(sympy.Trace)]
    symbols = set().union(*(shape_symbols(matrix) for matrix in matrices_in)) if matrices_in else set()
    dimensions = Dimensions.from_mapping(dict(dims_key), symbols)
    quantities = [_merge_traces(q, sorted(q.atoms(sympy.Trace), key=sympy.default_sort_key), dimensions)
                  for q in quantities]
    matrices: list = []
    placeholders: list = []
    outputs: list = []

    def placeholder(trace, parameter) -> tuple:
        """The placeholder of the limit of ``trace`` (differentiated in ``parameter``), and the trace's size N_A N^p."""
        _, power, _ = normalise(trace.arg, dimensions)
        matrix = trace.arg * dimensions.base ** (-power)
        if matrix not in matrices:
            matrices.append(matrix)
        key = [matrices.index(matrix), encode(parameter) if parameter is not None else None]
        if key not in outputs:
            outputs.append(key)
            placeholders.append(sympy.Dummy(f"tau{len(placeholders)}", dummy_index=len(placeholders)))
        size = (trace.arg.shape[0] * dimensions.base**power).subs(dimensions.mapping)
        return placeholders[outputs.index(key)], size

    replacements = {}
    for trace in sorted(set().union(*(q.atoms(sympy.Trace) for q in quantities)), key=sympy.default_sort_key):
        tau, size = placeholder(trace, None)
        replacements[trace] = size * tau
    for derivative in derivatives:
        trace, parameter = derivative.expr, derivative.variables[0]
        tau, size = placeholder(trace, None)
        slope, _ = placeholder(trace, parameter)
        replacements[hidden[derivative]] = sympy.diff(size, parameter) * tau + size * slope
    formulas = []
    for original, quantity in zip(originals, quantities):
        reduced = sympy.simplify(quantity.subs(replacements).subs(dimensions.mapping))
        if dimensions.base in reduced.free_symbols:
            raise MisScaledError(
                f"the quantity {original} still depends on {dimensions.base} once every trace is "
                f"replaced by its limit ({reduced}); divide each trace by the dimension of its matrix."
            )
        formulas.append(reduced)
    others = sorted(set().union(*(f.free_symbols for f in formulas)) - set(placeholders), key=str)
    return {
        "arguments": [encode(s) for s in placeholders + others],
        "formulas": [encode(f) for f in formulas],
        "records": [_derive(matrix, dims_key).record() for matrix in matrices],
        "outputs": outputs,
    }


def _check_derivative(derivative: sympy.Derivative) -> None:
    variables = derivative.variable_count
    if (not isinstance(derivative.expr, sympy.Trace) or len(variables) != 1 or variables[0][1] != 1
            or not isinstance(variables[0][0], sympy.Symbol)):
        raise UnsupportedOperationError(
            f"{derivative} is not a first derivative of one trace in one scalar symbol; write "
            f"sympy.Derivative(sympy.Trace(A), theta) with A a matrix expression (and nest nothing in it)."
        )


def _merge_traces(quantity: sympy.Expr, traces: list, dimensions: Dimensions) -> sympy.Expr:
    r"""Write :math:`\sum_k c_k \operatorname{tr} A_k` as one trace per shape and order.

    Where ``quantity`` is linear in its traces, the traces of matrices with the
    same number of rows whose terms :math:`c_k \operatorname{tr} A_k` have the same
    order in :math:`N` are merged into :math:`\operatorname{tr}(\sum_k c_k A_k)`,
    so that one Dyson system is solved instead of several.  A trace alone in its
    group is kept as it is (the same matrix may be needed for a derivative).
    """
    expanded = sympy.expand(quantity, deep=False)
    coefficients = {trace: expanded.coeff(trace) for trace in traces}
    rest = sympy.expand(expanded - sum(c * t for t, c in coefficients.items()), deep=False)
    if any(rest.has(t) or c.has(sympy.Trace) for t, c in coefficients.items()):
        return quantity
    groups: dict = {}
    for trace, coefficient in coefficients.items():
        _, power, _ = normalise(trace.arg, dimensions)
        _, scalar_power = dimensions.split_power(coefficient)
        groups.setdefault((trace.arg.shape[0], power + scalar_power), []).append((coefficient, trace))
    merged = [
        sympy.Trace(sympy.MatAdd(*(c * t.arg for c, t in terms))) if len(terms) > 1 else terms[0][0] * terms[0][1]
        for terms in groups.values()
    ]
    return rest + sum(merged)

