r"""The solver of a numeric Dyson problem: it composes the compiled coefficients, the Dyson map,
continuation and the accuracy audit into the values of a limit and their derivatives.

(Why one module of some 520 lines: :class:`Solver` is the composition itself, the float pass,
its finishing in extended or arbitrary precision and the derivatives on one set of solved points;
each step it calls lives in its own module of this package.)"""

from __future__ import annotations

import copy
from typing import Mapping, NamedTuple, Sequence

import numpy as np
import sympy

from .. import precision
from ..arguments import resolve_keys
from ..errors import ConvergenceError, ParameterError
from .accuracy import CHECKED_FRACTION, AccuracyAudit, inaccurate_points, points_of, rounded, warn_imprecise
from .compiled import CompiledProblem, NumericProblem, float_columns, shaped, to_mpmath
from .continuation import Continuation
from .dyson_map import DysonMap, NewtonStop, PathPoint
from .linear_algebra import (
    ExtendedAlgebra, FloatAlgebra, MultiprecisionAlgebra, extended, single_threaded_blas, zeros,
)
from .options import DEFAULT_OPTIONS, SolverOptions
from .result import LimitResult, Solution
from .spectral import SpectralNodes

__all__ = ["FloatEvaluation", "Solver"]

#: Why a float point is finished in arbitrary precision (:attr:`LimitResult.finish_reason`).
STALLED = "Newton's iteration in floats stalled above its residual tolerance (rounding)"
IMPRECISE = "the bound on the float rounding error exceeded options.float_accuracy"


class _Solved(NamedTuple):
    """What :meth:`Solver._solve` finds: :class:`Solution`'s fields, the float solution ``g``, the relative
    residual at every point and the float points finished in arbitrary precision because Newton stalled."""

    inverse: np.ndarray
    scale: np.ndarray
    shape: tuple
    g: np.ndarray
    residual: np.ndarray
    finished: np.ndarray


class _Polished(NamedTuple):
    """What :meth:`Solver._polish` returns: inverses and scales (mpmath) and relative residuals (floats)."""

    inverse: np.ndarray
    scale: np.ndarray
    residual: np.ndarray


class FloatEvaluation(NamedTuple):
    """The float values of a target and its derivatives with their error bounds
    (:meth:`Solver.float_target`): flat arrays, one per output; the broadcast ``shape``, the parameter
    ``columns``, the relative ``residual``, the points ``finished`` in arbitrary precision and the float
    solution ``g`` the values come from; with quantile functions, the quadrature ``level`` of the values and
    the part of each bound that is the quadrature's error, ``quadrature`` (the change from the level below;
    0 for atoms and without Diagonals)."""

    values: list
    errors: list
    shape: tuple
    columns: list
    residual: np.ndarray
    finished: np.ndarray
    g: np.ndarray
    level: int
    quadrature: list


def point_shaped(values: np.ndarray, shape: tuple):
    """Per-point diagnostics in the shape of the parameter values (a scalar for scalar values)."""
    values = np.asarray(values).reshape(shape)
    return values if shape else values.item()


class Solver:
    r"""Compiled solvers for the numeric problem of a :class:`pencils.dyson.DysonSystem`.

    Parameters
    ----------
    record : dict
        The problem as plain data, from :meth:`pencils.dyson.DysonSystem.record`
        (or the on-disk cache).  The coefficients (:math:`\Lambda`, the weights
        of :math:`\eta`, the block ratios and the scale of the target) are
        compiled with :func:`sympy.lambdify`: for numpy at once, for mpmath and
        their derivatives along a direction in the parameters when first needed.

    Examples
    --------
    >>> import sympy
    >>> from pencils import Gaussian, derive
    >>> n, d, z = sympy.symbols("n d z")
    >>> X = Gaussian("X", n, d)
    >>> solver = derive((X.T * X / n - z * sympy.Identity(d)).I, {n: 2 * d}).solver
    >>> round(float(solver.target({z: -1.0})), 12)
    0.561552812809
    """

    continuations = ("neighbours", "variance")

    def __init__(self, record: Mapping):
        self.record = dict(record)
        self.problem = NumericProblem.from_record(self.record)
        self.parameters = self.problem.parameters
        nodes = SpectralNodes(self.problem.spectral, self.parameters, self.problem.size)
        self.compiled = CompiledProblem(self.problem, nodes)
        self.dyson_map = DysonMap(self.problem, nodes)
        self.continuation = Continuation(self.dyson_map, self.compiled)
        self.audit = AccuracyAudit(self.dyson_map, self.compiled)
        self._levels: dict = {}

    def _at_level(self, level: int) -> "Solver":
        """This solver with the quadrature rules of quantile functions at ``level`` (see
        :class:`pencils.solve.spectral.SpectralNodes`), sharing the compiled functions."""
        if level not in self._levels:
            other = copy.copy(self)
            nodes = self.compiled.nodes.at_level(level)
            other.compiled, other.dyson_map = self.compiled.at_level(nodes), self.dyson_map.at_level(nodes)
            other.continuation = Continuation(other.dyson_map, other.compiled)
            other.audit = copy.copy(self.audit)
            other.audit.dyson_map, other.audit.compiled = other.dyson_map, other.compiled
            self._levels[level] = other
        return self._levels[level]

    def _refined(self, evaluate, tolerance) -> tuple:
        r"""``evaluate(solver) -> (values, details)`` (``values`` a list of flat arrays) with the quantile
        functions of Diagonals integrated to ``tolerance``: at successive quadrature levels (the nodes double)
        until two agree, relative, at every point.  Returns ``(values, details, changes)`` at the finer level,
        ``changes`` the change of each value from the coarser one (0 without quantile functions, whose
        averages are finite sums over atoms)."""
        nodes = self.compiled.nodes
        if not nodes.quantile:
            values, details = evaluate(self)
            return values, details, [0] * len(values)
        previous = None
        for level in range(nodes.first_level, nodes.last_level + 1):
            values, details = evaluate(self._at_level(level))
            if previous is not None:
                changes = [np.abs(value - old) for value, old in zip(values, previous)]
                if all(np.all(change <= tolerance * np.abs(value)) for change, value in zip(changes, values)):
                    return values, details, changes
            previous = values
        worst = max(float(np.max(np.asarray(change / np.abs(value), dtype=float)))
                    for change, value in zip(changes, values))
        raise ConvergenceError(
            f"the averages over the quantile functions of the Diagonals did not converge to a relative "
            f"{float(tolerance):.0e} with {self._at_level(level).compiled.nodes.count} quadrature nodes (the "
            f"relative change from half as many is {worst:.1e}): the resolvent is nearly singular at some u "
            f"(a spectral parameter close to the spectrum, a vanishing ridge) or the quantile function is rough; "
            f"move the point, or split the law into atoms."
        )

    @property
    def unknowns(self) -> int:
        """The number of unknowns of the Dyson system."""
        return self.dyson_map.unknowns

    def _start(self, columns: list, deterministic, weights, continuation: str, options: SolverOptions):
        if continuation not in self.continuations:
            raise ParameterError(f"continuation must be one of {', '.join(self.continuations)}; got {continuation!r}.")
        count = deterministic.shape[1] if deterministic.size else weights.shape[1]
        if continuation == "variance" or count == 1:
            return self.continuation.from_zero_variance(deterministic, weights, FloatAlgebra(), options)
        return self.continuation.from_neighbours(columns, deterministic, weights, options)

    def _continue_in_parameters(self, floats: list, count: int, path_from: Mapping, continuation: str,
                                options: SolverOptions):
        """Solve at the ``path_from`` values, then follow the straight line to the requested ones."""
        path_from = resolve_keys(path_from, self.parameters, "path_from")
        unknown = [str(key) for key in path_from if key not in self.parameters]
        if unknown:
            raise ParameterError(f"path_from names {', '.join(unknown)}, which the expression does not use.")
        starts = [
            np.broadcast_to(np.asarray(path_from[p]), np.shape(f)).reshape(-1) if p in path_from else f
            for p, f in zip(self.parameters, floats)
        ]
        dtype = np.result_type(*starts, *floats) if floats else float
        starts, ends = [np.asarray(s, dtype=dtype) for s in starts], [np.asarray(f, dtype=dtype) for f in floats]
        deterministic, weights, _, _ = self.compiled.coefficients(starts, count, multiprecision=False)
        g, inverse, reached = self._start(starts, deterministic, weights, continuation, options)
        self.audit.raise_if_failed(~reached, np.full(count, np.inf), starts, g)
        return self.continuation.between(starts, ends, g, inverse, FloatAlgebra(), options)

    def solve(
        self, subs: Mapping, dps: int | None = None, path_from: Mapping | None = None,
        continuation: str = "neighbours", options: SolverOptions | None = None,
    ) -> Solution:
        r"""Solve at every point of ``subs`` (broadcast).

        ``continuation`` is ``"neighbours"`` (each point continued from a solved
        neighbour of the batch, see :mod:`pencils.solve.continuation`) or ``"variance"`` (each
        point on its own path from zero variance: slower, and independent of
        the other points).  ``options`` (:class:`pencils.SolverOptions`) tunes the solver.

        Returns
        -------
        Solution
            ``(inverse, scale, shape)``: :math:`(\Lambda - \eta(g))^{-1}` at the
            solution, shape (P, K, K) (object dtype of mpmath numbers if ``dps``;
            averaged over the spectral variables of Diagonals, with quantile
            functions at the first quadrature level that agrees with the next),
            the scale of the target, shape (P,), and the broadcast shape of the values.
        """
        options = options or DEFAULT_OPTIONS

        def evaluate(solver: "Solver") -> tuple:
            solved = solver._solve(subs, dps, path_from, continuation, options)
            inverse = solver.compiled.nodes.average(solved.inverse)
            return [inverse.reshape(len(inverse), -1)], solved

        with (np.errstate(all="ignore"), single_threaded_blas(),
              (precision.digits(15) if dps is None else precision.working(dps)) as context):
            tolerance = options.float_accuracy / 10 if dps is None else context.mpf(10) ** -dps
            (inverse,), solved, _ = self._refined(evaluate, tolerance)
        return Solution(inverse.reshape(len(inverse), self.problem.size, self.problem.size), solved.scale,
                        solved.shape)

    def _solve(self, subs: Mapping, dps: int | None, path_from: Mapping | None, continuation: str,
               options: SolverOptions, polish: bool = True) -> _Solved:
        """:meth:`solve`, with the float solution ``g`` (``inverse`` and ``g`` are those of Newton's last
        iteration: :meth:`AccuracyAudit.float_error` measures the residual between them), the relative
        residual and the float points finished in arbitrary precision because Newton stalled.  Without
        ``polish``, the float solution of values given for ``dps`` digits (exact numbers, mpmath numbers)."""
        shape, columns, count = self.compiled.points(subs, multiprecision=dps is not None)
        floats = float_columns(columns)
        coefficients = self.compiled.coefficients(floats, count, multiprecision=False)
        self.compiled.validate(coefficients, floats)
        deterministic, weights, _, scale = coefficients
        if path_from:
            g, inverse, reached = self._continue_in_parameters(floats, count, path_from, continuation, options)
        else:
            g, inverse, reached = self._start(floats, deterministic, weights, continuation, options)
        stop = NewtonStop(4 * FloatAlgebra.epsilon, FloatAlgebra.residual_tolerance, options.max_newton)
        g, converged, relative, inverse = self.dyson_map.newton(
            deterministic, weights, g, 1.0, FloatAlgebra(), stop, options, settled=16 * FloatAlgebra.epsilon,
            inverse=inverse,
        )
        converged &= reached
        if dps is None or not polish:
            # Points that the continuation reached (on the physical branch, to its tolerance) but where
            # rounding stops Newton above the residual tolerance are finished in extended precision and
            # rounded back; failed points are not.
            narrow = ~converged & reached
            self.audit.raise_if_failed(~converged & ~narrow, relative, floats, g)
            finish = np.flatnonzero(narrow)
            if finish.size:
                polished = self._polish(columns, floats, g, np.ones(count, dtype=bool), finish,
                                        options.finishing_dps, options)
                inverse[finish] = np.array(polished.inverse.tolist(), dtype=inverse.dtype)
                g[finish] = self.dyson_map.mean(inverse[finish])
                relative[finish] = polished.residual
            return _Solved(inverse, scale, shape, g, relative, narrow)
        # Newton in arbitrary precision starts from the float solution wherever it nearly converged.
        near = converged | reached
        polished = self._polish(columns, floats, g, near, np.arange(count), dps, options)
        return _Solved(polished.inverse, polished.scale, shape, g, polished.residual, np.zeros(count, dtype=bool))

    def _polish(self, columns: list, floats: list, g, converged, indices, dps: int,
                options: SolverOptions) -> _Polished:
        """Newton in mpmath at ``dps +`` :data:`pencils.precision.GUARD_DIGITS` digits for the points ``indices``.

        Starts from the float solution where it converged, else runs the
        continuation in mpmath.  Returns the inverses and scales (object arrays)
        and the relative residuals (floats).
        """
        inverses, scales, residuals = [], [], []
        with precision.working(dps) as context:
            algebra = MultiprecisionAlgebra(dps)
            for index in indices:
                point = [c[index : index + 1] for c in columns]
                deterministic, weights, _, scale = self.compiled.coefficients(point, 1, multiprecision=True)
                if converged[index]:
                    start = np.array([[to_mpmath(x) for x in g[index].tolist()]], dtype=object)
                else:
                    start, _, reached = self.continuation.from_zero_variance(deterministic, weights, algebra, options)
                    self.audit.raise_if_failed(~reached, [np.inf], [f[index : index + 1] for f in floats], start)
                stop = NewtonStop(context.mpf(10) ** -(dps + 8), algebra.residual_tolerance, options.max_newton)
                _, ok, residual, inverse = self.dyson_map.newton(
                    deterministic, weights, start, 1, algebra, stop, options)
                self.audit.raise_if_failed(~ok, residual, [f[index : index + 1] for f in floats], continuation=False)
                inverses.append(inverse[0])
                scales.append(scale[0])
                residuals.append(float(residual[0]))
        return _Polished(np.array(inverses, dtype=object), np.array(scales, dtype=object), np.array(residuals))

    def target(
        self, subs: Mapping, dps: int | None = None, path_from: Mapping | None = None,
        continuation: str = "neighbours", options: SolverOptions | None = None,
    ):
        r"""The limit of the normalised trace at the parameter values ``subs``.

        Returns a float (complex if the values are complex), a numpy array if any
        value is an array, or mpmath numbers (an object array for arrays) if ``dps``:
        the ``value`` of :meth:`evaluate`, which also gives derivatives and diagnostics.
        ``path_from`` (see :func:`pencils.trace_limit`) gives start values for a
        continuation in the parameters; ``continuation`` is described in :meth:`solve`.
        """
        return self.evaluate(subs, dps, path_from, continuation, options=options).value

    def evaluate(
        self, subs: Mapping, dps: int | None = None, path_from: Mapping | None = None,
        continuation: str = "neighbours", derivatives: Sequence = (), options: SolverOptions | None = None,
    ) -> LimitResult:
        r"""The limit of the normalised trace at ``subs``, its ``derivatives`` and how they were computed.

        A float result is within ``options.float_accuracy`` (relative, 1e-10 by
        default, see :class:`pencils.SolverOptions`) of the limit: each value
        carries a bound on its rounding error (:meth:`AccuracyAudit.float_error`),
        checked in extended precision where it exceeds a fraction of the promise
        (:meth:`tighten`); the points where it still exceeds it are computed again at
        ``options.finishing_dps`` digits and rounded, or, for a system of more than
        ``options.max_finished_unknowns`` unknowns, reported by a
        :class:`pencils.errors.PrecisionWarning`.

        The ``derivatives`` (parameter symbols) are exact: with
        :math:`M = \Lambda - \eta(g)` and :math:`G = M^{-1}`, the solution moves by
        :math:`\partial_\theta g = J^{-1} [G\, \partial_\theta M|_g\, G]_S` (the tangent of
        :meth:`DysonMap.velocity`), and the target :math:`c\, G_{oi}` by
        :math:`\partial_\theta c\, G_{oi} - c\,(G\, \partial_\theta M\, G)_{oi}`,
        with :math:`\partial_\theta M = \partial_\theta \Lambda - \eta_{\partial_\theta w}(g)
        - \eta_w(\partial_\theta g)`: one linear solve per point and parameter.  A
        parameter the trace does not depend on has derivative 0.  In arbitrary precision, a system with
        reduced equations (see :attr:`SolverOptions.max_reduced_unknowns`) is polished on them instead, and
        its derivatives follow from them (:meth:`pencils.solve.reduced.ReducedEquations.derivatives`).

        Returns
        -------
        LimitResult
            ``value``, ``derivatives`` (in the order asked) and the diagnostics.
        """
        options = options or DEFAULT_OPTIONS
        if dps is None:
            return self._evaluate_floats(subs, path_from, continuation, derivatives, options)
        reduced = self._reduced_equations(options)
        if reduced is not None:
            try:
                return self._evaluate_reduced(reduced, subs, dps, path_from, continuation, derivatives, options)
            except (ConvergenceError, ZeroDivisionError):
                pass  # the full system's path finds it (continuation in arbitrary precision where floats failed)

        def evaluate(solver: "Solver") -> tuple:
            solved = solver._solve(subs, dps, path_from, continuation, options)
            values = [solved.scale * solver.compiled.nodes.mean(solved.inverse, self.problem.out, self.problem.into)]
            if derivatives:
                _, columns, _ = solver.compiled.points(subs, multiprecision=True)
                values += solver._derivatives(columns, solved.inverse, solved.scale, derivatives, dps, options)[0]
            return values, solved

        with np.errstate(all="ignore"), single_threaded_blas(), precision.working(dps) as context:
            values, solved, _ = self._refined(evaluate, context.mpf(10) ** -dps)
            results = [shaped(value, solved.shape, dps) for value in values]
        return _multiprecision_result(results, solved.residual, solved.shape, dps)

    #: Set by the derivation store (:mod:`pencils.derivations`) for the solvers it keeps: returns the
    #: :class:`pencils.solve.reduced.ReducedEquations` of the system, from the store (kept on disk).
    reduced_source = None

    def _reduced_equations(self, options: SolverOptions):
        """The reduced equations for an evaluation in arbitrary precision, or ``None`` where the full system's path
        is taken: Diagonals, more than ``options.max_reduced_unknowns`` unknowns, no store, or a reduction that
        keeps more than half the unknowns (its equations are then larger than the full system's and slower to
        compile and to evaluate: 16 -> 14 unknowns for ``tr((FF^T/n + lambda)^{-2})`` of random features, 11 s
        cold and 71 ms warm at 50 digits against 0.16 s and 34 ms on the full path)."""
        if self.problem.spectral or self.unknowns > options.max_reduced_unknowns or self.reduced_source is None:
            return None
        reduced = self.reduced_source()
        return reduced if 2 * len(reduced.unknowns) <= self.unknowns else None

    def _evaluate_reduced(self, reduced, subs: Mapping, dps: int, path_from: Mapping | None, continuation: str,
                          derivatives: Sequence, options: SolverOptions) -> LimitResult:
        r"""The limit at ``dps`` digits from the reduced equations: the full system solved in floats (on the
        physical branch), its unknowns :math:`\sum c\, G_{lm}` polished by Newton's method on the reduced
        equations in mpmath (:meth:`pencils.solve.reduced.ReducedEquations.newton`); the ``derivatives`` by the
        implicit function theorem on them (:meth:`pencils.solve.reduced.ReducedEquations.derivatives`)."""
        with np.errstate(all="ignore"), single_threaded_blas():
            solved = self._solve(subs, dps, path_from, continuation, options, polish=False)
        with precision.working(dps):
            shape, columns, count = self.compiled.points(subs, multiprecision=True)
            inverse = self.compiled.nodes.average(solved.inverse)
            inverse = inverse.reshape(len(inverse), self.problem.size, self.problem.size)
            start = reduced.start(inverse, float_columns(columns), None)
            unknowns, target, step = reduced.newton(start, columns, count, dps, options.max_newton)
            slopes = reduced.derivatives(unknowns, columns, count, dps, derivatives) if derivatives else []
            values = [shaped(value, shape, dps) for value in (target, *slopes)]
        return _multiprecision_result(values, np.array([float(s) for s in step]), shape, dps)

    def _evaluate_floats(self, subs: Mapping, path_from: Mapping | None, continuation: str, derivatives: Sequence,
                         options: SolverOptions) -> LimitResult:
        """:meth:`evaluate` in floats: the values, their error bounds, and finishing where a bound is too large."""
        evaluation = self.float_target(subs, path_from, continuation, derivatives, options)
        values, errors, shape, columns = evaluation.values, evaluation.errors, evaluation.shape, evaluation.columns
        residual = evaluation.residual.copy()
        reasons = np.where(evaluation.finished, STALLED, "").astype(object)
        warned = np.zeros(len(residual), dtype=bool)
        loose = np.flatnonzero(inaccurate_points(values, errors, options.float_accuracy * CHECKED_FRACTION))
        if loose.size:
            self.tighten(evaluation, derivatives, loose, options)
        inaccurate = np.flatnonzero(inaccurate_points(values, errors, options.float_accuracy))
        if inaccurate.size and self.finishes(options):
            point = {p: column[inaccurate] for p, column in zip(self.parameters, columns)}
            start = points_of(path_from, (len(values[0]),), inaccurate)
            exact = self.evaluate(point, options.finishing_dps, start, continuation, derivatives, options)
            for value, error, finished in zip(values, errors, (exact.value, *exact.derivatives)):
                value[inaccurate] = rounded(finished, value.dtype)
                error[inaccurate] = FloatAlgebra.epsilon / 2 * np.abs(value[inaccurate])  # the rounding
            residual[inaccurate] = exact.residual
            reasons[inaccurate] = IMPRECISE
        elif inaccurate.size:
            where = self.compiled.describe(float_columns(columns), inaccurate[0])
            warn_imprecise(inaccurate, values, errors, where, self.dyson_map.unknowns, options.float_accuracy,
                           stacklevel=6)  # from DysonSystem.solve through target()
            warned[inaccurate] = True
        results = [shaped(value, shape, None) for value in values]
        with np.errstate(divide="ignore", invalid="ignore"):
            relative = np.where(values[0] != 0, errors[0] / np.abs(values[0]), errors[0])
        return LimitResult(
            value=results[0], derivatives=tuple(results[1:]),
            converged=point_shaped((residual <= FloatAlgebra.residual_tolerance) | (reasons != ""), shape),
            residual=point_shaped(residual, shape), relative_error=point_shaped(relative, shape),
            finished=point_shaped(reasons != "", shape), finish_reason=point_shaped(reasons, shape),
            warned=point_shaped(warned, shape), dps=None,
        )

    def finishes(self, options: SolverOptions = DEFAULT_OPTIONS) -> bool:
        """Whether points that double precision cannot promise are finished in arbitrary precision automatically."""
        return self.dyson_map.unknowns <= options.max_finished_unknowns

    def float_target(self, subs: Mapping, path_from: Mapping | None, continuation: str, derivatives: Sequence,
                     options: SolverOptions = DEFAULT_OPTIONS) -> FloatEvaluation:
        """The float target and its ``derivatives`` at every point, each with a bound on its rounding error
        (and, with quantile functions, on the quadrature error: the change from half as many nodes).

        Returns a :class:`FloatEvaluation`: flat arrays (one per output) of the
        values and their error bounds, the broadcast shape, the parameter
        columns, the relative residual and the points Newton left to arbitrary precision.
        """
        def evaluate(solver: "Solver") -> tuple:
            evaluation = solver._float_values(subs, path_from, continuation, derivatives, options)
            return evaluation.values, evaluation

        _, evaluation, changes = self._refined(evaluate, options.float_accuracy / 10)
        return evaluation._replace(errors=[error + change for error, change in zip(evaluation.errors, changes)],
                                   quadrature=changes)

    def _float_values(self, subs: Mapping, path_from: Mapping | None, continuation: str, derivatives: Sequence,
                      options: SolverOptions) -> FloatEvaluation:
        """:meth:`float_target` at this solver's quadrature level."""
        with np.errstate(all="ignore"), single_threaded_blas():
            solved = self._solve(subs, None, path_from, continuation, options)
            inverse, scale, g = solved.inverse, solved.scale, solved.g
            _, columns, count = self.compiled.points(subs, multiprecision=False)
            floats = float_columns(columns)
            deterministic, weights, _, _ = self.compiled.coefficients(floats, count, multiprecision=False)
            error, *audit = self.audit.float_error(deterministic, weights, g, inverse, scale, options)
            values, errors = [scale * self.compiled.nodes.mean(inverse, self.problem.out, self.problem.into)], [error]
            if derivatives:
                slopes, parts = self._derivatives(floats, inverse, scale, derivatives, None, options, audit)
                rounding = FloatAlgebra.epsilon / 2 * (max(self.audit.rounding_steps[1], default=0) + 2)
                values += slopes
                errors += [rounding * magnitude + inputs for magnitude, inputs in parts]
        return FloatEvaluation(values, errors, solved.shape, columns, solved.residual, solved.finished, g,
                               self.compiled.nodes.level, [0] * len(values))


    def tighten(self, evaluation: FloatEvaluation, derivatives: Sequence, points: np.ndarray,
                options: SolverOptions = DEFAULT_OPTIONS) -> None:
        """Tighten the error bounds of ``evaluation`` (from :meth:`float_target`, with these ``derivatives``) at
        ``points`` by the same values in extended precision (:meth:`extended_target`,
        :meth:`AccuracyAudit.tighten`); nothing is done where numpy has no extended precision."""
        if ExtendedAlgebra.available:
            self.audit.tighten(evaluation, points, *self.extended_target(evaluation, derivatives, points, options))

    def extended_target(self, evaluation: FloatEvaluation, derivatives: Sequence, points: np.ndarray,
                        options: SolverOptions = DEFAULT_OPTIONS) -> tuple:
        r"""The target and its ``derivatives`` at ``points`` in extended precision, from the float solution of
        ``evaluation``: ``(values, converged)``, one ``longdouble`` array per output and where the refinement
        converged.

        The float solution is refined by one Newton step with :class:`ExtendedAlgebra`
        (quadratic convergence from a solution accurate to :math:`\kappa u`), and
        the coefficients, the target and its derivatives are computed from it in
        extended precision.  With Diagonals, their eigenvalues at the nodes and the
        weights of the averages are extended too: exact atoms and masses, and the
        nodes and weights of the quadrature rule of ``evaluation``'s level, each
        rounded from :data:`pencils.solve.compiled.EXTENDED_DIGITS` digits
        (:class:`pencils.solve.spectral.SpectralNodes`, :func:`pencils.diagonal.extended_rule`),
        so that the extended value has the float value's quadrature error and not its rounding.  A point counts
        as converged where the relative residual of the refined solution is at most :math:`64 u_e`.
        """
        if evaluation.level != self.compiled.nodes.level:
            return self._at_level(evaluation.level).extended_target(evaluation, derivatives, points, options)
        algebra = ExtendedAlgebra()
        with np.errstate(all="ignore"), single_threaded_blas():
            columns = [extended(column[points]) for column in float_columns(evaluation.columns)]
            deterministic, weights, _, scale = self.compiled.coefficients(columns, points.size, multiprecision=False)
            stop = NewtonStop(4 * algebra.epsilon, 64 * algebra.epsilon, 1)
            _, converged, _, inverse = self.dyson_map.newton(deterministic, weights, extended(evaluation.g[points]),
                                                             1.0, algebra, stop, options)
            values = [scale * self.compiled.nodes.mean(inverse, self.problem.out, self.problem.into)]
            if derivatives:
                values += self._derivatives(columns, inverse, scale, derivatives, None, options, algebra=algebra)[0]
        return values, converged

    def _derivatives(self, columns: list, inverse, scale, parameters: Sequence, dps: int | None,
                     options: SolverOptions, adjoints=None, algebra=None):
        r"""The derivatives of the target at solved points (see :meth:`target`), one array per parameter.

        Returns ``(derivatives, parts)``; ``parts`` (with ``adjoints``, the
        ``(S, E, y, Omega)`` of :meth:`AccuracyAudit.float_error`) holds for each
        derivative ``(magnitude, inputs)``.
        ``algebra`` (by default that of ``dps``) is :class:`ExtendedAlgebra` for :meth:`extended_target`.
        The derivative is :math:`D = c'\,t - c\,\mathbb E[G\,\Delta M\,G]_{oi}` with
        :math:`t = \mathbb E[G]_{oi}`, :math:`\Delta M = \partial_\theta M|_g - \eta(v)`
        and :math:`J v = [G\,\partial_\theta M|_g\,G]_S`; it is also
        :math:`c' t + \sum_{kj} S_{kj}\,(\partial_\theta M|_g)_{kj}`, and ``magnitude``,
        the sum of the absolute values of these terms, times the relative
        rounding of the coefficients bounds their part (added by the caller).

        ``inputs`` bounds the rest.  The entries of :math:`G` are off by
        :math:`\delta G`, and :math:`\partial_\theta M|_g` moves with :math:`g = [G]_S` as
        :math:`-\eta_{\partial_\theta w}(\delta g)`.  With
        :math:`Q = \delta G\,\Delta M\,G + G\,\Delta M\,\delta G + G\,\delta(\partial_\theta M|_g)\,G`,
        the tangent moves by :math:`\delta v = J^{-1}[Q]_S` and

        .. math::  \delta D = c'\,\delta t - c\,\mathbb E[Q]_{oi} + h^{\mathsf T}J^{-1}[Q]_S
                   = c'\,\delta t + \langle \Omega, Q\rangle = \langle \Gamma, \delta G\rangle,

        .. math::  \Gamma = \Omega (\Delta M G)^{\mathsf T} + (G\Delta M)^{\mathsf T}\Omega
                   + \sum_u \sigma_u w_{r_u} e_{r_u} e_{c_u}^{\mathsf T} + c'\,w_o e_o e_i^{\mathsf T},
                   \qquad \sigma_u = -\sum_{t:\,u_t = u} \partial_\theta w_t\, S_{i_t j_t},

        at each node: the sensitivity of the derivative to each entry of
        :math:`G`, with its signs, through the adjoint :math:`y = J^{-\mathsf T}h` of
        the target (so that the amplification by the tangent's solve is in it).
        :math:`\delta G = \tilde G - G^*` has a part bounded entrywise by :math:`E`
        and the part :math:`G\,\eta(\tilde g - g^*)\,G` of the solution's error,
        on which :math:`D` moves by :math:`\kappa^{\mathsf T}(\tilde g - g^*)`,
        :math:`\kappa_u = \sum_{t:\,u_t = u} w_t \sum_q (G^{\mathsf T}\Gamma G^{\mathsf T})_{i_t j_t}`;
        with :math:`\tilde g - g^* = J^{-1}\rho^* = \tilde\delta + J^{-1}(\rho^* - J\tilde\delta)`
        (:meth:`AccuracyAudit.float_error`, whose ``slack`` bounds :math:`|\rho^* - J\tilde\delta|`), to first order

        .. math::  |\delta D| \le \langle |\Gamma|, E\rangle + |\kappa^{\mathsf T}\tilde\delta|
                   + |J^{-\mathsf T}\kappa|^{\mathsf T}\,\mathrm{slack},

        no entry of :math:`G` divided by its size.

        To it are added the roundings of the products that form the derivative,
        :math:`(2K + k)\,u\,(|c|\,\mathbb E[|G|\,|\Delta M|_e\,|G|]_{oi} +
        |y|^{\mathsf T}[|G|\,|\partial_\theta M|_g|\,|G|]_S)` with
        :math:`|\Delta M|_e = |\partial_\theta M|_g| + |\eta|(|v|)`, and the error
        of the tangent's solve in floats through its residual
        :math:`s = J\tilde v - b`: the derivative moves with :math:`v` as
        :math:`h^{\mathsf T} v`, so by at most
        :math:`|y|^{\mathsf T}(|s| + K u(|J||\tilde v| + |b|))`.
        """
        count, multiprecision = inverse.shape[0], dps is not None
        algebra = algebra or (MultiprecisionAlgebra(dps) if multiprecision else FloatAlgebra())
        deterministic, weights, _, _ = self.compiled.coefficients(columns, count, multiprecision)
        g = self.dyson_map.mean(inverse)
        zero = zeros(count, object if multiprecision else float)
        one = zero + 1
        out, into = self.problem.out, self.problem.into
        results, parts = [], []
        if adjoints is not None:
            sensitivity, entry_error, adjoint, averaging, step, slack = adjoints
            jacobian = self.dyson_map.jacobian(self.dyson_map.jacobian_entries(weights, inverse, 1.0))
            rounding = len(self.dyson_map.unknown_rows) * FloatAlgebra.epsilon / 2
            products = (2 * self.dyson_map.size + max(self.audit.rounding_steps[1], default=0) + 2) * (
                FloatAlgebra.epsilon / 2)
            size_of, node_weights = np.abs(inverse), self.compiled.nodes.weights(float)
            at_entries = np.sum(sensitivity[:, :, self.dyson_map.rows, self.dyson_map.cols], axis=1)
        for parameter in map(sympy.sympify, parameters):
            if parameter not in self.parameters:
                results.append(0 * scale)
                parts.append((np.zeros(count), np.zeros(count)))
                continue
            directions = [one if p == parameter else zero for p in self.parameters]
            d_deterministic, d_weights, d_scale = self.compiled.changes(columns, directions, count, multiprecision)
            point = PathPoint(deterministic, weights, one, d_deterministic, d_weights, zero)
            moved = self.dyson_map.velocity(point, g, inverse, algebra, options)
            direct = self.dyson_map.matrix(d_deterministic, d_weights, g, 1, algebra)
            change = direct + self.dyson_map.matrix(0 * deterministic, weights, moved, 1, algebra)
            nodes = self.compiled.nodes
            entry = nodes.weigh((inverse[:, :, out, None, :] @ change @ inverse[:, :, :, into, None])[:, :, :, 0], [out])
            target = nodes.mean(inverse, out, into)
            results.append(d_scale * target - scale * entry[:, 0])
            if adjoints is not None:
                magnitude = (np.abs(d_scale * target)
                             + np.sum(np.abs(sensitivity) * np.abs(direct), axis=(1, 2, 3)))
                shift = self.dyson_map.mean(inverse @ direct @ inverse)
                residual = np.abs((jacobian @ moved[:, :, None])[:, :, 0] - shift) + rounding * (
                    (np.abs(jacobian) @ np.abs(moved)[:, :, None])[:, :, 0] + np.abs(shift))
                # the derivative moves with the entries of G as <gradient, dG> (see the docstring)
                gradient = (averaging @ np.swapaxes(change @ inverse, -1, -2)
                            + np.swapaxes(inverse @ change, -1, -2) @ averaging)
                sigma = zeros((count, len(adjoint[0])), gradient.dtype)
                np.add.at(sigma, (slice(None), self.dyson_map.sources), -d_weights.T * at_entries)
                placed = zeros(gradient.shape[:1] + gradient.shape[2:], gradient.dtype)
                placed[:, self.dyson_map.unknown_rows, self.dyson_map.unknown_cols] = sigma
                gradient += placed[:, None] * node_weights.T[None, :, :, None]
                gradient[:, :, out, into] += np.reshape(d_scale, (-1, 1)) * node_weights[out][None, :]
                # and with g~ - g* = J^-1 rho* (G* moves by G eta(dg) G) as kappa^T J^-1 rho*
                pulled = np.sum((np.swapaxes(inverse, -1, -2) @ gradient @ np.swapaxes(inverse, -1, -2))[
                    :, :, self.dyson_map.rows, self.dyson_map.cols], axis=1)
                kappa = zeros((count, len(adjoint[0])), gradient.dtype)
                np.add.at(kappa, (slice(None), self.dyson_map.sources), weights.T * pulled)
                # J^T dual = kappa densely with the Jacobian formed above for the residuals, where
                # AccuracyAudit.float_error's adjoint goes through DysonMap.solve_linearised, which forms J's
                # entries again and solves block by block: the derivatives with their bounds measured 25 % slower
                # that way on a 12-unknown system (DSM at m = inf, 100 x 100 grid), 7 % faster at 45 unknowns.
                dual = np.linalg.solve(np.swapaxes(jacobian, 1, 2), kappa[:, :, None])[:, :, 0]
                inputs = (np.sum(entry_error * np.abs(gradient), axis=(1, 2, 3))
                          + np.abs(np.sum(kappa * step, axis=1)) + np.sum(np.abs(dual) * slack, axis=1))
                tangent = self.dyson_map.matrix(np.zeros((1, count, inverse.shape[1])), -np.abs(weights),
                                                np.abs(moved), 1, algebra).real + np.abs(direct)
                formed = products * (np.abs(scale) * nodes.mean(size_of @ tangent @ size_of, out, into)
                                     + np.sum(np.abs(adjoint) * self.dyson_map.mean(
                                         size_of @ np.abs(direct) @ size_of), axis=1))
                parts.append((magnitude, inputs + formed + np.sum(np.abs(adjoint) * residual, axis=1)))
        return results, parts


def _multiprecision_result(results: list, residual: np.ndarray, shape: tuple, dps: int) -> LimitResult:
    """The :class:`LimitResult` of an evaluation at ``dps`` digits: ``results`` the value and its derivatives,
    ``residual`` the relative residual (or last Newton step) at each point."""
    count = len(residual)
    nothing = np.zeros(count, dtype=bool)
    return LimitResult(
        value=results[0], derivatives=tuple(results[1:]),
        converged=point_shaped(residual <= 10.0**-dps, shape),
        residual=point_shaped(residual, shape),
        relative_error=point_shaped(np.full(count, 10.0**-dps), shape),
        finished=point_shaped(nothing, shape), finish_reason=point_shaped(np.full(count, ""), shape),
        warned=point_shaped(nothing, shape), dps=dps,
    )
