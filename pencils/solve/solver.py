r"""The solver of a numeric Dyson problem: it composes the compiled coefficients, the Dyson map,
continuation and the accuracy audit into the values of a limit and their derivatives."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import sympy

from .. import precision
from ..arguments import resolve_keys
from ..errors import ParameterError
from .accuracy import CHECKED_FRACTION, AccuracyAudit, FloatTarget, inaccurate_points, points_of, rounded, warn_imprecise
from .compiled import CompiledProblem, float_columns, shaped, to_mpmath
from .continuation import Continuation
from .dyson_map import DysonMap, PathPoint
from .linear_algebra import (
    ExtendedAlgebra, FloatAlgebra, MultiprecisionAlgebra, extended, single_threaded_blas, zeros,
)

__all__ = ["Solver"]


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

    max_newton = 60
    #: The most points of a batch solved from zero variance before continuation from neighbours.
    anchors = 4
    #: The promise of a float result: its relative error is at most this.  A point whose error bound
    #: (:meth:`AccuracyAudit.float_error`) is larger is finished in arbitrary precision or reported.
    float_accuracy = 1e-10
    #: The digits at which such points are finished before they are rounded to floats.
    finishing_dps = 30
    #: The largest system whose inaccurate float points are finished in arbitrary precision
    #: automatically; larger ones issue a :class:`pencils.errors.PrecisionWarning`.
    max_finished_unknowns = 80
    continuations = ("neighbours", "variance")

    def __init__(self, record: Mapping):
        self.record = dict(record)
        self.problem = CompiledProblem(self.record)
        self.parameters = self.problem.parameters
        self.dyson_map = DysonMap(self.record)
        self.continuation = Continuation(self.dyson_map, self.problem)
        self.audit = AccuracyAudit(self.dyson_map, self.problem)

    @property
    def unknowns(self) -> int:
        """The number of unknowns of the Dyson system."""
        return self.dyson_map.unknowns

    def _start(self, columns: list, lambdas, weights, continuation: str):
        if continuation not in self.continuations:
            raise ParameterError(f"continuation must be one of {', '.join(self.continuations)}; got {continuation!r}.")
        count = lambdas.shape[1] if lambdas.size else weights.shape[1]
        if continuation == "variance" or count == 1:
            return self.continuation.from_zero_variance(lambdas, weights, FloatAlgebra())
        return self.continuation.from_neighbours(columns, lambdas, weights, self.anchors)

    def _continue_in_parameters(self, floats: list, count: int, path_from: Mapping, continuation: str):
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
        lambdas, weights, _, _ = self.problem.coefficients(starts, count, multiprecision=False)
        g, inverse, reached = self._start(starts, lambdas, weights, continuation)
        self.audit.raise_if_failed(~reached, np.full(count, np.inf), starts, g)
        return self.continuation.between(starts, ends, g, inverse, FloatAlgebra())

    def solve(
        self, subs: Mapping, dps: int | None = None, path_from: Mapping | None = None,
        continuation: str = "neighbours",
    ) -> tuple:
        r"""Solve at every point of ``subs`` (broadcast).

        ``continuation`` is ``"neighbours"`` (each point continued from a solved
        neighbour of the batch, see :mod:`pencils.solve.continuation`) or ``"variance"`` (each
        point on its own path from zero variance: slower, and independent of
        the other points).

        Returns
        -------
        inverse : numpy.ndarray
            :math:`(\Lambda - \eta(g))^{-1}` at the solution, shape (P, K, K)
            (object dtype of mpmath numbers if ``dps``).
        scale : numpy.ndarray
            The scale of the target, shape (P,).
        shape : tuple
            The broadcast shape of the parameter values.
        """
        with np.errstate(all="ignore"), single_threaded_blas(), precision.digits(15 if dps is None else dps + 15):
            inverse, scale, shape, _ = self._solve(subs, dps, path_from, continuation)
        return inverse, scale, shape

    def _solve(self, subs: Mapping, dps: int | None, path_from: Mapping | None, continuation: str) -> tuple:
        """:meth:`solve`, and the float solution ``g`` (``inverse`` and ``g`` are those of Newton's last
        iteration: :meth:`AccuracyAudit.float_error` measures the residual between them)."""
        shape, columns, count = self.problem.points(subs, multiprecision=dps is not None)
        floats = float_columns(columns)
        coefficients = self.problem.coefficients(floats, count, multiprecision=False)
        self.problem.validate(coefficients, floats)
        lambdas, weights, _, scale = coefficients
        if path_from:
            g, inverse, reached = self._continue_in_parameters(floats, count, path_from, continuation)
        else:
            g, inverse, reached = self._start(floats, lambdas, weights, continuation)
        g, converged, relative, inverse = self.dyson_map.newton(
            lambdas, weights, g, 1.0, FloatAlgebra(), 4 * FloatAlgebra.epsilon, FloatAlgebra.residual_tolerance,
            self.max_newton, settled=16 * FloatAlgebra.epsilon, inverse=inverse,
        )
        converged &= reached
        if dps is None:
            # Points that the continuation reached (on the physical branch, to its tolerance) but where
            # rounding stops Newton above the residual tolerance are finished in extended precision and
            # rounded back; failed points are not.
            narrow = ~converged & reached
            self.audit.raise_if_failed(~converged & ~narrow, relative, floats, g)
            finish = np.flatnonzero(narrow)
            if finish.size:
                polished, _ = self._polish(columns, floats, g, np.ones(count, dtype=bool), finish, self.finishing_dps)
                inverse[finish] = np.array(polished.tolist(), dtype=inverse.dtype)
                g[finish] = inverse[finish][:, self.dyson_map.unknown_rows, self.dyson_map.unknown_cols]
            return inverse, scale, shape, g
        # Newton in arbitrary precision starts from the float solution wherever it nearly converged.
        near = converged | reached
        inverses, scales = self._polish(columns, floats, g, near, np.arange(count), dps)
        return inverses, scales, shape, g

    def _polish(self, columns: list, floats: list, g, converged, indices, dps: int) -> tuple:
        """Newton in mpmath at ``dps + 15`` digits for the points ``indices``.

        Starts from the float solution where it converged, else runs the
        continuation in mpmath.  Returns the inverses and scales (object arrays).
        """
        inverses, scales = [], []
        with precision.digits(dps + 15) as context:
            algebra = MultiprecisionAlgebra(dps)
            for index in indices:
                point = [c[index : index + 1] for c in columns]
                lambdas, weights, _, scale = self.problem.coefficients(point, 1, multiprecision=True)
                if converged[index]:
                    start = np.array([[to_mpmath(x) for x in g[index].tolist()]], dtype=object)
                else:
                    start, _, reached = self.continuation.from_zero_variance(lambdas, weights, algebra)
                    self.audit.raise_if_failed(~reached, [np.inf], [f[index : index + 1] for f in floats], start)
                _, ok, residual, inverse = self.dyson_map.newton(
                    lambdas, weights, start, 1, algebra, context.mpf(10) ** -(dps + 8), algebra.residual_tolerance,
                    self.max_newton,
                )
                self.audit.raise_if_failed(~ok, residual, [f[index : index + 1] for f in floats], continuation=False)
                inverses.append(inverse[0])
                scales.append(scale[0])
        return np.array(inverses, dtype=object), np.array(scales, dtype=object)

    def target(
        self, subs: Mapping, dps: int | None = None, path_from: Mapping | None = None,
        continuation: str = "neighbours", derivatives: Sequence = (),
    ):
        r"""The limit of the normalised trace at the parameter values ``subs``, and its derivatives.

        Returns a float (complex if the values are complex), a numpy array if any
        value is an array, or mpmath numbers (an object array for arrays) if ``dps``.
        ``path_from`` (see :func:`pencils.trace_limit`) gives start values for a
        continuation in the parameters; ``continuation`` is described in :meth:`solve`.

        A float result is within :attr:`float_accuracy` (relative) of the limit:
        each value carries a bound on its rounding error (:meth:`AccuracyAudit.float_error`),
        checked in extended precision where it exceeds a fraction of the promise
        (:meth:`tighten`); the points where it still exceeds it are computed again at
        :attr:`finishing_dps` digits and rounded, or, for a system of more than
        :attr:`max_finished_unknowns` unknowns, reported by a
        :class:`pencils.errors.PrecisionWarning`.

        With ``derivatives`` (parameter symbols), returns the tuple ``(value,
        d value / d theta_1, ...)``.  They are exact: with
        :math:`M = \Lambda - \eta(g)` and :math:`G = M^{-1}`, the solution moves by
        :math:`\partial_\theta g = J^{-1} [G\, \partial_\theta M|_g\, G]_S` (the tangent of
        :meth:`DysonMap.velocity`), and the target :math:`c\, G_{\mathrm{out},\mathrm{in}}` by
        :math:`\partial_\theta c\, G_{\mathrm{out},\mathrm{in}} - c\,(G\, \partial_\theta M\, G)_{\mathrm{out},\mathrm{in}}`,
        with :math:`\partial_\theta M = \partial_\theta \Lambda - \eta_{\partial_\theta w}(g) - \eta_w(\partial_\theta g)`:
        one linear solve per point and parameter.  A parameter the trace does not
        depend on has derivative 0.
        """
        if dps is None:
            result = self.float_target(subs, path_from, continuation, derivatives)
            values, errors, shape, columns = result.values, result.errors, result.shape, result.columns
            loose = np.flatnonzero(inaccurate_points(values, errors, self.float_accuracy * CHECKED_FRACTION))
            if loose.size:
                self.tighten(result, derivatives, loose)
            inaccurate = np.flatnonzero(inaccurate_points(values, errors, self.float_accuracy))
            if inaccurate.size and self.finishes:
                point = {p: column[inaccurate] for p, column in zip(self.parameters, columns)}
                start = points_of(path_from, (len(values[0]),), inaccurate)
                exact = self.target(point, self.finishing_dps, start, continuation, derivatives)
                for value, finished in zip(values, exact if derivatives else (exact,)):
                    value[inaccurate] = rounded(finished, value.dtype)
            elif inaccurate.size:
                where = self.problem.describe(float_columns(columns), inaccurate[0])
                warn_imprecise(inaccurate, values, errors, where, self.dyson_map.unknowns, self.float_accuracy,
                               stacklevel=4)
            results = [shaped(value, shape, None) for value in values]
            return tuple(results) if derivatives else results[0]
        with np.errstate(all="ignore"), single_threaded_blas(), precision.digits(dps + 15):
            inverse, scale, shape, _ = self._solve(subs, dps, path_from, continuation)
            values = [scale * inverse[:, self.record["out"], self.record["into"]]]
            if derivatives:
                _, columns, _ = self.problem.points(subs, multiprecision=True)
                values += self._derivatives(columns, inverse, scale, derivatives, dps)[0]
            results = [shaped(value, shape, dps) for value in values]
        return tuple(results) if derivatives else results[0]

    @property
    def finishes(self) -> bool:
        """Whether points that double precision cannot promise are finished in arbitrary precision automatically."""
        return len(self.dyson_map.unknown_rows) <= self.max_finished_unknowns

    def float_target(self, subs: Mapping, path_from: Mapping | None, continuation: str,
                     derivatives: Sequence) -> FloatTarget:
        """The float target and its ``derivatives`` at every point, each with a bound on its rounding error
        (first order, :meth:`AccuracyAudit.float_error`), and the float solution they come from."""
        with np.errstate(all="ignore"), single_threaded_blas():
            inverse, scale, shape, g = self._solve(subs, None, path_from, continuation)
            _, columns, count = self.problem.points(subs, multiprecision=False)
            floats = float_columns(columns)
            lambdas, weights, _, _ = self.problem.coefficients(floats, count, multiprecision=False)
            error, sensitivity, entries, adjoint = self.audit.float_error(lambdas, weights, g, inverse, scale)
            values, errors = [scale * inverse[:, self.record["out"], self.record["into"]]], [error]
            if derivatives:
                slopes, parts = self._derivatives(floats, inverse, scale, derivatives, None, (sensitivity, adjoint))
                # first order: each input of a derivative (the entries of G, the target's sensitivity
                # to M and the coefficients) is off by at most `inputs` relative
                with np.errstate(divide="ignore", invalid="ignore"):
                    inputs = np.maximum(entries, np.nan_to_num(error / np.abs(values[0]), nan=np.inf))
                rounding = FloatAlgebra.epsilon / 2 * (max(self.audit.rounding_steps[1], default=0) + 2)
                values += slopes
                errors += [(2 * inputs + rounding) * magnitude + solve for magnitude, solve in parts]
        return FloatTarget(values, errors, shape, columns, floats, g)

    def tighten(self, result: FloatTarget, derivatives: Sequence, points: np.ndarray) -> None:
        """Tighten the error bounds of ``result`` (from :meth:`float_target`, with these ``derivatives``) at
        ``points`` by the same values in extended precision (:meth:`extended_target`,
        :meth:`AccuracyAudit.tighten`); nothing is done where numpy has no extended precision."""
        if ExtendedAlgebra.available:
            self.audit.tighten(result, points, *self.extended_target(result, derivatives, points))

    def extended_target(self, result: FloatTarget, derivatives: Sequence, points: np.ndarray) -> tuple:
        r"""The target and its ``derivatives`` at ``points`` in extended precision, from the float solution of
        ``result``: ``(values, converged)``, one ``longdouble`` array per output and where the refinement converged.

        The float solution is refined by one Newton step with :class:`ExtendedAlgebra`
        (quadratic convergence from a solution accurate to :math:`\kappa u`), and
        the coefficients, the target and its derivatives are computed from it in
        extended precision.  A point counts as converged where the relative
        residual of the refined solution is at most :math:`64 u_e`.
        """
        algebra = ExtendedAlgebra()
        with np.errstate(all="ignore"), single_threaded_blas():
            columns = [extended(column[points]) for column in result.floats]
            lambdas, weights, _, scale = self.problem.coefficients(columns, points.size, multiprecision=False)
            start = extended(result.g[points])
            _, converged, _, inverse = self.dyson_map.newton(lambdas, weights, start, 1.0, algebra,
                                                             4 * algebra.epsilon, 64 * algebra.epsilon, 1)
            values = [scale * inverse[:, self.record["out"], self.record["into"]]]
            if derivatives:
                values += self._derivatives(columns, inverse, scale, derivatives, None, algebra=algebra)[0]
        return values, converged

    def _derivatives(self, columns: list, inverse, scale, parameters: Sequence, dps: int | None, adjoints=None,
                     algebra=None):
        r"""The derivatives of the target at solved points (see :meth:`target`), one array per parameter.

        Returns ``(derivatives, parts)``; ``parts`` (with ``adjoints``, the
        sensitivity :math:`S = \partial T/\partial M` and the adjoint :math:`y`
        of :meth:`AccuracyAudit.float_error`) holds for each derivative ``(magnitude, solve)``.
        ``algebra`` (by default that of ``dps``) is :class:`ExtendedAlgebra` for :meth:`extended_target`.
        The derivative is also :math:`\partial_\theta c\,G_{oi} + \sum_{kj} S_{kj}\,(\partial_\theta M|_g)_{kj}`,
        and its magnitude is the sum of the absolute values of these terms: a
        derivative whose inputs are off by :math:`\epsilon` relative is off by at
        most :math:`\epsilon` times its magnitude (to first order).  ``solve``
        bounds the error of the tangent's solve :math:`J v = b` in floats through
        its residual :math:`s = J\tilde v - b`: the derivative moves with
        :math:`v` as :math:`h^{\mathsf T} v`, so by at most
        :math:`|y|^{\mathsf T}(|s| + K u(|J||\tilde v| + |b|))`.
        """
        count, multiprecision = inverse.shape[0], dps is not None
        algebra = algebra or (MultiprecisionAlgebra(dps) if multiprecision else FloatAlgebra())
        lambdas, weights, _, _ = self.problem.coefficients(columns, count, multiprecision)
        g = inverse[:, self.dyson_map.unknown_rows, self.dyson_map.unknown_cols]
        zero = zeros(count, object if multiprecision else float)
        one = zero + 1
        out, into = self.record["out"], self.record["into"]
        results, parts = [], []
        if adjoints is not None:
            sensitivity, adjoint = adjoints
            jacobian = self.dyson_map.jacobian(self.dyson_map.jacobian_entries(weights, inverse, 1.0))
            rounding = len(self.dyson_map.unknown_rows) * FloatAlgebra.epsilon / 2
        for parameter in map(sympy.sympify, parameters):
            if parameter not in self.parameters:
                results.append(0 * scale)
                parts.append((np.zeros(count), np.zeros(count)))
                continue
            directions = [one if p == parameter else zero for p in self.parameters]
            d_lambdas, d_weights, d_scale = self.problem.changes(columns, directions, count, multiprecision)
            point = PathPoint(lambdas, weights, one, d_lambdas, d_weights, zero)
            moved = self.dyson_map.velocity(point, g, inverse, algebra)
            direct = self.dyson_map.matrix(d_lambdas, d_weights, g, 1, algebra)
            change = direct + self.dyson_map.matrix(0 * lambdas, weights, moved, 1, algebra)
            entry = (inverse[:, out, None, :] @ change @ inverse[:, :, into, None])[:, 0, 0]
            results.append(d_scale * inverse[:, out, into] - scale * entry)
            if adjoints is not None:
                magnitude = (np.abs(d_scale * inverse[:, out, into])
                             + np.sum(np.abs(sensitivity) * np.abs(direct), axis=(1, 2)))
                shift = (inverse @ direct @ inverse)[:, self.dyson_map.unknown_rows, self.dyson_map.unknown_cols]
                residual = np.abs((jacobian @ moved[:, :, None])[:, :, 0] - shift) + rounding * (
                    (np.abs(jacobian) @ np.abs(moved)[:, :, None])[:, :, 0] + np.abs(shift))
                parts.append((magnitude, np.sum(np.abs(adjoint) * residual, axis=1)))
        return results, parts
