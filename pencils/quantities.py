r"""Scalar quantities of traces, compiled: their derivation into solvers and formulas, and their evaluation.

A quantity such as ``1 + (Trace(B*U*B.T) - 2*Trace(B*V.T)) / d`` is turned into
one Dyson system per distinct normalised trace (and derivative of a trace)
and a formula in their limits (:func:`limit_payload`, plain data for the disk
cache); :class:`CompiledLimit` compiles it, and :func:`evaluate` solves each
system once and evaluates the formulas, in floats with a bound on their
rounding error (finished in arbitrary precision where the bound exceeds the
promise) or in arbitrary precision.
"""

from __future__ import annotations

from functools import cached_property
from typing import Mapping

import numpy as np
import sympy

from . import precision
from .arguments import resolve_keys
from .dyson import check_record
from .errors import MisScaledError, ParameterError, UnsupportedOperationError
from .expression import Dimensions, check_rational, normalise, shape_symbols
from .serialization import decode, encode
from .solve import Solver, SolverOptions
from .solve.accuracy import CHECKED_FRACTION, inaccurate_points, points_of, rounded, warn_imprecise
from .solve.compiled import compile_expressions, shaped, to_mpmath
from .solve.linear_algebra import FloatAlgebra
from .solve.solver import IMPRECISE, STALLED

__all__ = ["CompiledLimit", "check_derivative", "evaluate", "limit_payload", "merge_traces", "trace_matrices"]


class CompiledLimit:
    """The solvers of the traces in scalar quantities, and the quantities as functions of their limits.

    Built from the plain data of :func:`limit_payload`: ``arguments`` (one
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


def evaluate(compiled: CompiledLimit, quantities: sympy.Tuple, subs, dps, path_from, continuation,
             options: SolverOptions) -> list:
    """The limits of ``quantities`` (see :func:`pencils.limit`), compiled as ``compiled``: each solver once, with
    the derivatives asked of it.

    Returns the values, then the diagnostics of :func:`_limit_result`: the relative residual (the largest
    over the traces), the reason each point was finished in arbitrary precision (``""`` if not), whether a
    :class:`pencils.errors.PrecisionWarning` named it, and the relative error of each value."""
    starts = _starts_by_trace(path_from, compiled.solvers)
    subs = resolve_keys(subs, {*compiled.arguments, *(p for s in compiled.solvers for p in s.parameters)}, "subs")
    missing = [symbol for symbol in compiled.arguments[len(compiled.outputs) :] if symbol not in subs]
    if missing:
        raise ParameterError(f"no value given for {missing[0]}; pass subs={{{missing[0]}: ...}}.")
    if dps is None:
        return _evaluate_floats(compiled, quantities, subs, path_from, starts, continuation, options)
    residuals = []

    def solve_trace(solver, start, parameters):
        result = solver.evaluate(subs, dps, start, continuation, parameters, options)
        residuals.append(result.residual)
        return (result.value, *result.derivatives) if parameters else result.value

    values = _trace_limits(compiled, starts, solve_trace)
    inputs = values + [subs[symbol] for symbol in compiled.arguments[len(values) :]]
    with precision.working(dps):
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
        results = [np.frompyfunc(lambda v: precision.public(+v), 1, 1)(r) if isinstance(r, np.ndarray)
                   else precision.public(+r) for r in results]
    shape = np.broadcast_shapes(*(np.shape(x) for x in results + residuals))
    residual = np.zeros(shape)
    for trace_residual in residuals:
        residual = np.maximum(residual, trace_residual)
    diagnostics = [residual, np.full(shape, "", dtype=object), np.zeros(shape, dtype=bool)]
    diagnostics += [np.full(shape, 10.0**-dps)] * len(results)
    return results + [x if shape else x.item() for x in diagnostics]


def _trace_limits(compiled: CompiledLimit, starts: list, solve_trace) -> list:
    """The limit of every trace and derivative of a trace in ``compiled.outputs``, in order.

    ``solve_trace(solver, path_from, parameters)`` returns the value and the
    derivatives in ``parameters`` (a tuple if any are asked) of one solver.
    """
    values: list = [None] * len(compiled.outputs)
    for index, (solver, start) in enumerate(zip(compiled.solvers, starts)):
        wanted = [k for k, (record, _) in enumerate(compiled.outputs) if record == index]
        parameters = list(dict.fromkeys(p for k in wanted if (p := compiled.outputs[k][1]) is not None))
        results = solve_trace(solver, start, parameters)
        results = results if parameters else (results,)
        for k in wanted:
            parameter = compiled.outputs[k][1]
            values[k] = results[0 if parameter is None else 1 + parameters.index(parameter)]
    return values


def _evaluate_floats(compiled: CompiledLimit, quantities, subs, path_from, starts, continuation,
                     options: SolverOptions) -> list:
    r"""The float limits of the quantities, kept to ``options.float_accuracy``.

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
    ``options.finishing_dps`` digits and rounded, if every
    system is small enough; otherwise a :class:`pencils.errors.PrecisionWarning` names them.
    """
    solves = []  # each trace's solver, evaluation and derivatives

    def solve_trace(solver, start, parameters):
        solves.append((solver, solver.float_target(subs, start, continuation, parameters, options), parameters))
        return _pairs(*solves[-1][1:])

    pairs = _trace_limits(compiled, starts, solve_trace)
    traces = [value for value, _ in pairs]
    inputs = traces + [subs[symbol] for symbol in compiled.arguments[len(traces) :]]
    errors = [error for _, error in pairs] + [0.0] * (len(inputs) - len(traces))
    results = compiled.numpy(*inputs)
    bounds = compiled.rounding(inputs, errors)
    shape = np.broadcast_shapes(*(np.shape(x) for x in list(results) + bounds))
    flat = [np.broadcast_to(x, shape).reshape(-1).copy() for x in results]
    loose = np.flatnonzero(inaccurate_points(flat, [np.broadcast_to(b, shape).reshape(-1) for b in bounds],
                                             options.float_accuracy * CHECKED_FRACTION))
    if loose.size:  # the traces' bounds there, checked in extended precision (the values are unchanged)
        for solver, evaluation, parameters in solves:
            where = np.broadcast_to(np.arange(len(evaluation.values[0])).reshape(evaluation.shape), shape)
            solver.tighten(evaluation, parameters, np.unique(where.reshape(-1)[loose]), options)
        replay = iter(solves)
        pairs = _trace_limits(compiled, starts, lambda *_: _pairs(*next(replay)[1:]))
        errors = [error for _, error in pairs] + errors[len(traces) :]
        bounds = compiled.rounding(inputs, errors)
    bounds = [np.broadcast_to(b, shape).reshape(-1).copy() for b in bounds]
    residual, reasons = np.zeros(len(flat[0])), np.full(len(flat[0]), "", dtype=object)
    for _, evaluation, _ in solves:
        residual = np.maximum(residual, np.broadcast_to(evaluation.residual.reshape(evaluation.shape),
                                                        shape).reshape(-1))
        reasons[np.broadcast_to(evaluation.finished.reshape(evaluation.shape), shape).reshape(-1)] = STALLED
    warned = np.zeros(len(flat[0]), dtype=bool)
    inaccurate = np.flatnonzero(inaccurate_points(flat, bounds, options.float_accuracy))
    if inaccurate.size and all(solver.finishes(options) for solver in compiled.solvers):
        exact = evaluate(compiled, quantities, points_of(subs, shape, inaccurate), options.finishing_dps,
                         points_of(path_from, shape, inaccurate), continuation, options)
        for values, bound, finished in zip(flat, bounds, exact):
            values[inaccurate] = rounded(finished, values.dtype)
            bound[inaccurate] = FloatAlgebra.epsilon / 2 * np.abs(values[inaccurate])  # the rounding
        residual[inaccurate], reasons[inaccurate] = exact[len(flat)], IMPRECISE
    elif inaccurate.size:
        where = ", ".join(f"{key}={np.broadcast_to(np.asarray(value), shape).reshape(-1)[inaccurate[0]]}"
                          for key, value in subs.items())
        unknowns = max(solver.unknowns for solver in compiled.solvers)
        warn_imprecise(inaccurate, flat, bounds, where, unknowns, options.float_accuracy, stacklevel=5)  # from limit()
        warned[inaccurate] = True
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = [np.where(values != 0, bound / np.abs(values), bound) for values, bound in zip(flat, bounds)]
    outputs = flat + [residual, reasons, warned] + relative
    return [x.reshape(shape) if shape else x.item() for x in outputs]


def _pairs(evaluation, parameters: list):
    """``(value, error bound)`` of each output of :meth:`pencils.solve.Solver.float_target` in the shape of the
    points, as :func:`_trace_limits` takes them (a tuple if ``parameters``)."""
    pairs = [(shaped(value, evaluation.shape, None), np.reshape(error, evaluation.shape))
             for value, error in zip(evaluation.values, evaluation.errors)]
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


def _traces(quantities: sympy.Tuple, dims_key: tuple) -> tuple:
    """The normalised matrices whose traces enter ``quantities`` (in the order of the payload's records), the
    quantities with every trace and derivative of a trace replaced by their limits, and the placeholders and
    outputs of :func:`limit_payload`."""
    check_rational(quantities)
    derivatives = sorted(set().union(*(q.atoms(sympy.Derivative) for q in quantities)), key=sympy.default_sort_key)
    for derivative in derivatives:
        check_derivative(derivative)
    hidden = {derivative: sympy.Dummy() for derivative in derivatives}
    originals, quantities = quantities, [q.xreplace(hidden) for q in quantities]
    matrices_in = [d.expr.arg for d in derivatives] + [t.arg for q in quantities for t in q.atoms(sympy.Trace)]
    symbols = set().union(*(shape_symbols(matrix) for matrix in matrices_in)) if matrices_in else set()
    dimensions = Dimensions.from_mapping(dict(dims_key), symbols)
    quantities = [merge_traces(q, sorted(q.atoms(sympy.Trace), key=sympy.default_sort_key), dimensions)
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
    replaced = [(original, quantity.subs(replacements).subs(dimensions.mapping))
                for original, quantity in zip(originals, quantities)]
    return matrices, replaced, placeholders, outputs, dimensions


def trace_matrices(quantities: sympy.Tuple, dims_key: tuple) -> list:
    """The normalised matrices whose traces enter ``quantities``, one per record of :func:`limit_payload`, in order."""
    return _traces(quantities, dims_key)[0]


def limit_payload(quantities: sympy.Tuple, dims_key: tuple, derive) -> dict:
    """The normalised matrices whose traces enter ``quantities``, derived by ``derive(matrix, dims_key)`` (a
    :class:`pencils.DysonSystem`), and the quantities as functions of their limits."""
    matrices, replaced, placeholders, outputs, dimensions = _traces(quantities, dims_key)
    formulas = []
    for original, quantity in replaced:
        reduced = sympy.simplify(quantity)
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
        "records": [derive(matrix, dims_key).record() for matrix in matrices],
        "outputs": outputs,
    }


def check_derivative(derivative: sympy.Derivative) -> None:
    """Refuse what is not a first derivative of one trace in one scalar symbol."""
    variables = derivative.variable_count
    if (not isinstance(derivative.expr, sympy.Trace) or len(variables) != 1 or variables[0][1] != 1
            or not isinstance(variables[0][0], sympy.Symbol)):
        raise UnsupportedOperationError(
            f"{derivative} is not a first derivative of one trace in one scalar symbol; write "
            f"sympy.Derivative(sympy.Trace(A), theta) with A a matrix expression (and nest nothing in it)."
        )


def merge_traces(quantity: sympy.Expr, traces: list, dimensions: Dimensions) -> sympy.Expr:
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
