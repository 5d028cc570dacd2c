r"""The accuracy audit of float solutions: a bound on their rounding error, and the reports of failures.

A float result promises a relative accuracy (``options.float_accuracy``, :class:`pencils.SolverOptions`):
each value carries a bound on its rounding error (:meth:`AccuracyAudit.float_error`),
the points where the bound exceeds a fraction of the promise are checked in
extended precision, which brings the bound to about the actual error
(:meth:`AccuracyAudit.tighten`), and those where it exceeds the promise
(:func:`inaccurate_points`) are finished in
arbitrary precision and rounded (:func:`rounded`), or reported by a
:class:`pencils.errors.PrecisionWarning` (:func:`warn_imprecise`).  A point
where the solution cannot be found raises a
:class:`pencils.errors.ConvergenceError` that says what helps
(:meth:`AccuracyAudit.raise_if_failed`).
"""

from __future__ import annotations

import warnings
from functools import cached_property
from typing import Mapping

import numpy as np
import sympy

from ..errors import ConvergenceError, PrecisionWarning
from .compiled import CompiledProblem
from .dyson_map import DysonMap
from .linear_algebra import ExtendedAlgebra, FloatAlgebra, zeros
from .options import SolverOptions

__all__ = ["AccuracyAudit", "CHECKED_FRACTION", "inaccurate_points", "points_of", "rounded", "warn_imprecise"]

#: The error of a value computed in extended precision is taken to be at most this many times the
#: first-order bound of the float value scaled to the extended unit roundoff (:meth:`AccuracyAudit.tighten`).
EXTENDED_MARGIN = 16
#: Points whose first-order bound exceeds this fraction of the promise are checked in extended precision
#: (:meth:`AccuracyAudit.tighten`), a margin for what a first-order bound leaves out (measured: the bound of a
#: derivative is at least 6.8 times its actual error on the DSM and 16-atom ridge curves, median 51 to 212).
CHECKED_FRACTION = 1 / 16


class AccuracyAudit:
    """Rounding-error bounds and failure reports for the Dyson map ``dyson_map`` of the problem ``compiled``."""

    def __init__(self, dyson_map: DysonMap, compiled: CompiledProblem):
        self.dyson_map = dyson_map
        self.compiled = compiled

    @cached_property
    def rounding_steps(self) -> tuple[np.ndarray, np.ndarray, int, int]:
        """How many roundings each float quantity of :meth:`float_error` goes through (at most).

        ``(coefficients, weights, scale, product)``: per coefficient of
        :math:`\\Lambda`, its operations (:func:`sympy.count_ops` of its
        expression) plus one; per coupling, those of its weight plus the product
        with :math:`g`, the product with the variance, and the sum of the
        couplings that meet in its entry of :math:`M`; for the scale of the
        target, its operations plus the product with :math:`G_{oi}`; and for an
        entry of :math:`MG - I`, the non-zero entries of the densest row of
        :math:`M` plus one.
        """
        operations = np.array([int(sympy.count_ops(e)) for e in self.compiled.expressions])
        coefficients, weights, _, scale = np.split(operations, self.compiled.split)
        entries = self.dyson_map.rows * self.dyson_map.size + self.dyson_map.cols
        meeting = np.bincount(entries, minlength=self.dyson_map.size**2)[entries]
        per_row = np.bincount(np.unique(np.r_[self.dyson_map.identity_entry, entries]) // self.dyson_map.size,
                              minlength=self.dyson_map.size)
        return coefficients + 1, weights + 2 + meeting, int(scale[0]) + 1, int(per_row.max(initial=0)) + 1

    def float_error(self, deterministic, weights, g, inverse, scale, options: SolverOptions) -> tuple:
        r"""A bound on the rounding error of the float target at solved points (first order in the rounding).

        With :math:`M = \Lambda - \eta(g)` formed in floats from the float
        solution :math:`\tilde g` and :math:`\tilde G` its computed inverse, let
        :math:`R = M\tilde G - I` (so that :math:`\tilde G - M^{-1} = M^{-1}R`),
        :math:`\tilde r = [\tilde G]_S - \tilde g` the residual of the Dyson
        equation, :math:`\rho = \tilde r - [\tilde G R]_S` the residual of
        :math:`\tilde g` with the exact inverse, :math:`h_u = c\sum_{t:\,u_t = u} w_t G_{o i_t} G_{j_t i}`
        the gradient of the target :math:`T = c\,G_{oi}` in :math:`g`, and
        :math:`\Delta M`, :math:`\Delta c` the rounding of :math:`M` and of the
        scale.  To first order in the rounding,

        .. math::  \tilde T - T^* = c\,(\tilde G R)_{oi} + h^{\mathsf T} J^{-1}\rho
                   + \sum_{kj} S_{kj}\,\Delta M_{kj} + \Delta c\, G_{oi},

        with :math:`S = \partial T^*/\partial M` the sensitivity of the limit to
        the entries of :math:`M`.  The first two terms are computed: :math:`R`
        in extended precision where numpy has it (``longdouble``, unit roundoff
        :math:`u_e`; :math:`u_e = u = 2^{-53}` elsewhere), and
        :math:`J\tilde\delta = \rho` solved in floats, whose residual
        :math:`s = J\tilde\delta - \rho` gives :math:`h^{\mathsf T}J^{-1}\rho = h^{\mathsf T}\tilde\delta
        - y^{\mathsf T}s` with :math:`J^{\mathsf T}y = h` (the adjoint).  What is
        left is bounded term by term, a quantity formed in :math:`k` roundings
        being within :math:`k u` (relative) of its exact value
        (:attr:`rounding_steps`): :math:`|\Delta M| \le F = |\Lambda|\circ k_\Lambda u
        + \sum_t k_t u\,|w_t g_{u_t}|` and :math:`|R - \tilde R| \le E_R = u|\tilde R|
        + k_R u_e(|M||\tilde G| + I)`, so that

        .. math::  |\tilde T - T^*| \le \bigl|c(\tilde G\tilde R)_{oi} + h^{\mathsf T}\tilde\delta\bigr|
                   + |y|^{\mathsf T}\bigl(|s| + K u\,(|J||\tilde\delta| + |\rho|)
                   + [|\tilde G| E_R + K u\, |\tilde G||\tilde R|]_S\bigr)
                   + |c|(|\tilde G| E_R)_{oi} + K u\, |h|^{\mathsf T}|\tilde\delta|
                   + \sum |S| \circ F + k_c u |\tilde T|

        (:math:`K` the size of the system), the a-posteriori bounds of LAPACK's
        iterative refinement (Higham, *Accuracy and Stability of Numerical
        Algorithms*, 2nd ed., sections 7.2 and 12.1) carried through the fixed
        point.  The terms with :math:`|y|` carry a rounding of a quantity that is
        itself of the order of the error, and the computed first-order error
        keeps the cancellations that a sum of absolute values would lose.  It
        costs two solves with the Jacobian and a few products of :math:`K \times
        K` matrices per point.

        Returns ``(bound, S, E, y, Omega, step, slack)``, what the bound of a
        derivative needs (:meth:`pencils.solve.solver.Solver.float_target`).
        :math:`\Omega` writes the target's first-order change as
        :math:`dT = \langle\Omega, G\,dM\,G\rangle` (at each node,
        :math:`\Omega = \sum_u y_u w_{r_u} e_{r_u}e_{c_u}^{\mathsf T} - c\,w_o e_o e_i^{\mathsf T}`,
        :math:`w` the node weights of the averages, so that :math:`S = G^{\mathsf T}\Omega G^{\mathsf T}`).
        To first order the error of each node's :math:`\tilde G` against the exact :math:`G^*` is

        .. math::  \tilde G - G^* = \tilde G R - G\,\Delta M\,G + G\,\eta(\tilde g - g^*)\,G,

        and the first two terms are at most
        :math:`E = |\tilde G|(|\tilde R| + E_R) + |\tilde G|\,F\,|\tilde G|` entrywise.
        The last is the solution's error, :math:`\tilde g - g^* = J^{-1}\rho^*`,
        :math:`\rho^*` the residual of :math:`\tilde g` with the exact inverse of
        the exact :math:`M`: it is ``step`` :math:`\tilde\delta` plus
        :math:`J^{-1}(\rho^* - J\tilde\delta)`, where :math:`|\rho^* - J\tilde\delta|` is
        at most ``slack``, the terms bounded above,
        :math:`|s| + Ku(|J||\tilde\delta| + |\rho|) + [|\tilde G| E_R + Ku|\tilde G||\tilde R|]_S`,
        and the formation :math:`[|\tilde G| F |\tilde G|]_S`.  No entry is
        divided by the size of :math:`G`: one that vanishes at a point (a zero
        tilt, most atoms of a Diagonal) is bounded by the errors around it, not
        by 1 relative.
        """
        algebra, unit = FloatAlgebra(), FloatAlgebra.epsilon / 2
        coefficient_steps, weight_steps, scale_steps, product_steps = self.rounding_steps
        count, size = inverse.shape[0], inverse.shape[-1]
        unknowns = len(self.dyson_map.unknown_rows)
        out, into = self.compiled.problem.out, self.compiled.problem.into
        nodes, mean = self.dyson_map.nodes, self.dyson_map.mean  # per spectral node, then averaged
        matrix = self.dyson_map.matrix(deterministic, weights, g, 1.0, algebra)
        formation = self.dyson_map.matrix(unit * coefficient_steps[:, None, None] * np.abs(deterministic),
                                 -unit * weight_steps[:, None] * np.abs(weights), np.abs(g), 1.0, algebra).real
        extended = np.clongdouble if np.iscomplexobj(matrix) else np.longdouble
        identity = np.eye(size)
        product = (matrix.astype(extended) @ inverse.astype(extended) - identity).astype(matrix.dtype)
        product_error = unit * np.abs(product) + product_steps * float(np.finfo(extended).eps) / 2 * (
            np.abs(matrix) @ np.abs(inverse) + identity)
        size_of = np.abs(inverse)
        correction = inverse @ product  # G R: the first-order error of the inverse
        correction_error = size_of @ product_error + size * unit * (size_of @ np.abs(product))
        rho = mean(inverse - correction) - g
        row, column = inverse[:, :, out, :], inverse[:, :, :, into]
        scales = np.reshape(scale, (-1, 1))
        gradient = zeros((count, unknowns), inverse.dtype)
        terms = weights.T[:, None] * row[:, :, self.dyson_map.rows] * column[:, :, self.dyson_map.cols] * scales[:, :, None]
        np.add.at(gradient, (slice(None), self.dyson_map.sources),
                  nodes.weigh(terms, np.full(len(self.dyson_map.rows), out)))
        entries = self.dyson_map.jacobian_entries(weights, inverse, 1.0)
        jacobian = self.dyson_map.jacobian(entries)
        step = self.dyson_map.solve_linearised(weights, inverse, 1.0, rho, algebra, options)
        step_residual = (jacobian @ step[:, :, None])[:, :, 0] - rho
        adjoint = self.dyson_map.solve_linearised(weights, inverse, 1.0, gradient, algebra, options, transposed=True)
        first_order = np.reshape(scale, -1) * nodes.mean(correction, out, into) + np.sum(gradient * step, axis=1)
        carried = (np.abs(step_residual) + unknowns * unit * ((np.abs(jacobian) @ np.abs(step)[:, :, None])[:, :, 0]
                   + np.abs(rho)) + mean(correction_error))
        placed = zeros((count, size, size), inverse.dtype)
        placed[:, self.dyson_map.unknown_rows, self.dyson_map.unknown_cols] = adjoint
        node_weights = nodes.weights(float)  # row a of the average at node q weighs node_weights[a, q]
        averaging = placed[:, None] * node_weights.T[None, :, :, None]  # Omega: dT = <Omega, G dM G>
        averaging[:, :, out, into] -= scales * node_weights[out][None, :]
        sensitivity = np.swapaxes(inverse, -1, -2) @ averaging @ np.swapaxes(inverse, -1, -2)  # d target / d M(u_q)
        bound = (
            np.abs(first_order)
            + np.sum(np.abs(adjoint) * carried, axis=1)
            + np.abs(np.reshape(scale, -1)) * nodes.mean(correction_error, out, into)
            + unknowns * unit * np.sum(np.abs(gradient) * np.abs(step), axis=1)
            + np.sum(np.abs(sensitivity) * formation, axis=(1, 2, 3))
            + scale_steps * unit * np.abs(np.reshape(scale, -1) * nodes.mean(inverse, out, into))
        )
        # G~ - G* = G~R - G dM G + G eta(g~ - g*) G: the first two here, the last through the solution's error
        entry_error = size_of @ (np.abs(product) + product_error) + size_of @ formation @ size_of
        slack = carried + mean(size_of @ formation @ size_of)  # |rho* - J step|: what the step leaves
        return bound, sensitivity, entry_error, adjoint, averaging, step, slack

    @staticmethod
    def tighten(result, points: np.ndarray, precise: list, converged: np.ndarray) -> None:
        r"""Tighten the error bounds of ``result`` (a :class:`pencils.solve.solver.FloatEvaluation`) at ``points``
        given the same values computed in extended precision (``precise``, one array per output, where
        ``converged``); in place, the values unchanged.

        The extended values :math:`\hat v` come from the float solution refined
        by Newton's method and the same formulas evaluated, coefficients
        included, with unit roundoff :math:`u_e` (:class:`ExtendedAlgebra`;
        :math:`u_e/u = 2^{-11}` with x86's 64-bit significand).  Their error has
        the first-order terms of the float value's, with :math:`u_e` in place
        of :math:`u`, so that it is taken to be at most :math:`m\,(u_e/u)\,b`,
        :math:`b` the first-order bound of the float value and :math:`m` =
        :data:`EXTENDED_MARGIN` (measured: :math:`(u_e/u)\,b` is at least 2.4
        times the error of :math:`\hat v` over 403 random traces and
        derivatives, median 38; at least 0.3 times on the DSM curve at t = 1).
        The float value :math:`\tilde v` is then within

        .. math::  |\tilde v - \hat v| + m\,\frac{u_e}{u}\, b

        of the limit: its actual error, to :math:`m u_e/u = 1/128` of the
        first-order bound.  This replaces :math:`b` where the refinement
        converged.  The first-order bound of a derivative loses the
        cancellations between the errors of the entries of :math:`G` (the
        sensitivities are computed with their signs, the entry errors bounded in
        absolute value): on the DSM curve at t = 1 it is at least 29 times the
        actual error (median 212), on a 16-atom Diagonal ridge curve at least
        6.8 times (median 51).

        With quantile functions of Diagonals, :math:`b = a + q` also holds the
        quadrature's error :math:`q` (the change from the rule of the level below,
        ``result.quadrature``).  The extended value is computed with the same rule
        (its nodes and weights rounded to extended precision), so it shares that
        error: only :math:`a` shrinks, and the bound is
        :math:`|\tilde v - \hat v| + m\,(u_e/u)\,a + q`, computed as
        :math:`|\tilde v - \hat v| + m\,(u_e/u)\,b + (1 - m\,u_e/u)\,q` (no cancellation).
        """
        shrink = EXTENDED_MARGIN * ExtendedAlgebra.epsilon / FloatAlgebra.epsilon
        for value, error, quadrature, exact in zip(result.values, result.errors, result.quadrature, precise):
            # the quadrature's part q of b = a + q is shared by the extended value: a shrinks, q does not
            kept = (1 - shrink) * quadrature[points] if np.ndim(quadrature) else 0
            bound = np.abs(value[points] - exact).astype(float) + shrink * error[points] + kept
            error[points] = np.where(converged, bound, error[points])

    def raise_if_failed(self, failed: np.ndarray, relative, columns: list, g=None, continuation: bool = True) -> None:
        """Raise a :class:`pencils.errors.ConvergenceError` naming the first ``failed`` point, what went wrong
        there (the continuation stalled, or Newton's iteration with ``continuation=False``), its residual
        ``relative``, the spread of its unknowns ``g`` and the remedies (``path_from=``, ``dps=``)."""
        if not np.any(failed):
            return
        first = int(np.flatnonzero(failed)[0])
        residual = float(np.nan_to_num(np.asarray(relative[first], dtype=float), nan=np.inf))
        if continuation:
            reason = ("the continuation from zero variance (every Gaussian scaled by tau, tau from 0 to 1) "
                      "stalled before tau = 1")
            if np.isfinite(residual) and residual > FloatAlgebra.residual_tolerance:
                reason += f", where Newton's iteration leaves a relative residual {residual:.1e}"
        else:
            reason = f"Newton's iteration stalled at a relative residual {residual:.1e}"
        extreme = [(p, float(np.abs(columns[k][first]))) for k, p in enumerate(self.compiled.parameters)
                   if np.isfinite(np.abs(columns[k][first])) and not 1e-6 <= np.abs(columns[k][first]) <= 1e6
                   and np.abs(columns[k][first]) != 0]
        spread = ""
        sizes = np.abs(np.asarray(g[first], dtype=complex)) if g is not None else np.zeros(0)
        sizes = sizes[np.isfinite(sizes) & (sizes > 0)]
        if sizes.size and sizes.max() > 1e12 * sizes.min():
            spread = f" Its unknowns span {sizes.min():.0e} to {sizes.max():.0e}, more than double precision resolves."
        if extreme:
            names = ", ".join(f"{p}={v:g}" for p, v in extreme)
            spread += f" Parameters far from order one ({names}) spread the unknowns over many orders of magnitude"
            if any(not 1e-150 < v < 1e150 for _, v in extreme):
                spread += " (beyond 1e+150 or 1e-150 their products over- or underflow: use a less extreme value)"
            spread += "."
            parameter, value = extreme[0]
            start = f"{{{parameter}: {1e3 if value > 1 else 1e-3:g}}}"
        else:
            z_named = any(str(p) == "z" for p in self.compiled.parameters)
            start = "{z: x + 1j}" if z_named else "{parameter: a regular value}"
        raise ConvergenceError(
            f"the Dyson equation could not be solved at {int(np.sum(failed))} of {len(failed)} point(s); first at "
            f"{self.compiled.describe(columns, first)}: {reason}.{spread} What helps: dps=30 (arbitrary precision, "
            f"slow for this {self.dyson_map.unknowns}-unknown system) where rounding is the obstacle; path_from={start} "
            f"(a straight line from values where the solution is regular) where the default path meets a "
            f"singularity (a vanishing ridge at an interpolation threshold, a real spectral parameter inside the "
            f"spectrum); or moving the point.",
            parameters={str(p): columns[k][first] for k, p in enumerate(self.compiled.parameters)},
            residual=residual,
        )


def inaccurate_points(values: list, errors: list, accuracy: float) -> np.ndarray:
    """The points where some value's error bound exceeds ``accuracy`` times its size (or is not finite)."""
    return np.any([~(error <= accuracy * np.abs(value)) for value, error in zip(values, errors)], axis=0)


def points_of(mapping: Mapping | None, shape: tuple, indices: np.ndarray) -> dict | None:
    """The values of ``mapping`` (numbers, or arrays that broadcast to ``shape``) at the flat ``indices``."""
    if not mapping:
        return mapping
    return {key: np.broadcast_to(np.asarray(value), shape).reshape(-1)[indices] for key, value in mapping.items()}


def rounded(values, dtype) -> np.ndarray:
    """mpmath numbers (a scalar or an array) as an array of ``dtype`` (float or complex)."""
    values = np.asarray(values, dtype=object).reshape(-1)
    return np.array([complex(v) if dtype.kind == "c" else float(v) for v in values], dtype=dtype)


def warn_imprecise(points: np.ndarray, values: list, errors: list, where: str, unknowns: int, accuracy: float,
                   stacklevel: int) -> None:
    """Issue the :class:`pencils.errors.PrecisionWarning` for ``points`` whose float values cannot be promised
    to the relative ``accuracy`` (``stacklevel`` counts the calls up to the user's, this one included)."""
    first = int(points[0])
    relative = max(float(error[first] / abs(value[first])) if value[first] != 0 else np.inf
                   for value, error in zip(values, errors))
    warnings.warn(
        f"double precision cannot promise a relative accuracy of {accuracy:.0e} at {points.size} of "
        f"{len(values[0])} point(s): at {where} the rounding error may reach {relative:.1e} of the value (a tiny "
        f"ridge, or a cancellation between large terms), and the {unknowns}-unknown system is "
        f"too large to be finished in arbitrary precision automatically. Pass dps=30 for these points (slow), "
        f"or use a larger ridge.",
        PrecisionWarning,
        stacklevel=stacklevel,
    )
