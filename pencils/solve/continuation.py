r"""Continuation: following the physical solution of the Dyson equation along paths.

The physical solution is the one connected to :math:`g = \Lambda^{-1}` at zero
variance.  A point is solved by following its *variance path* :math:`s: 0 \to 1`
(:meth:`Continuation.from_zero_variance`), or a straight line in the parameters
from a solved point (:meth:`Continuation.between`).  A batch of parameter
points is solved by *continuation from neighbours*
(:meth:`Continuation.from_neighbours`): a few anchors (one per cell of the
coarsest grids) follow the variance path; the others are visited coarse to fine
(cells of a dyadic grid in the normalised parameters, halved at each level) and
each is followed from a solved point of its parent cell (geometrically in
positive parameters, else on a straight line), with a second-order predictor
(componentwise rational, see :func:`predict`) and a branch guard.  A point
whose path fails falls back to its own variance path.  All points of a level
are solved together with batched numpy linear algebra.
"""

from __future__ import annotations

import numpy as np

from ..errors import SingularStartError
from .compiled import CompiledProblem
from .dyson_map import DysonMap, NewtonStop, PathPoint
from .linear_algebra import FloatAlgebra, zeros
from .options import SolverOptions

__all__ = ["Continuation", "anchor_points", "levels", "normalised_coordinates", "predict"]


def predict(start, velocity, acceleration, delta):
    r"""The predicted solution a distance ``delta`` along a path, from its value, tangent and second derivative.

    Each component :math:`x` is predicted by the [1/1] Padé approximant that
    matches its value, slope :math:`v` and curvature :math:`a`,

    .. math::  x + \frac{v\delta}{1 - b}, \qquad b = \frac{a\delta}{2v},

    exact for :math:`x_0 + c/(x_1 - \delta)`: the shape of a resolvent entry
    along the variance path, :math:`1/(\lambda + s c)`, which a polynomial only
    follows in steps much smaller than :math:`\lambda/c`.  Where its pole falls
    within the step (:math:`b \ge 0.9`, or :math:`v = 0`), and in arbitrary
    precision, the Taylor polynomial :math:`x + v\delta + a\delta^2/2` is used.
    """
    linear, quadratic = delta * velocity, delta**2 / 2 * acceleration
    if start.dtype == object:
        return start + linear + quadratic
    with np.errstate(all="ignore"):
        bend = quadratic / linear
    rational = np.isfinite(bend) & (bend.real < 0.9)
    return start + np.where(rational, linear / np.where(rational, 1 - bend, 1), linear + quadratic)


class Continuation:
    """Path following for the Dyson map ``dyson_map`` of the compiled problem ``compiled`` (see the module notes)."""

    def __init__(self, dyson_map: DysonMap, compiled: CompiledProblem):
        self.dyson_map = dyson_map
        self.compiled = compiled

    def from_zero_variance(self, deterministic, weights, algebra, options: SolverOptions):
        """Follow the physical branch from ``s = 0`` (``g = Lambda^{-1}``) to ``s = 1``.

        Returns ``(g, inverse, reached)``, see :meth:`follow`.
        """
        count = deterministic.shape[1] if deterministic.size else weights.shape[1]
        zero = zeros((count, len(self.dyson_map.unknown_rows)), np.result_type(deterministic, weights))
        unperturbed = self.dyson_map.inverse(deterministic, weights, zero, np.zeros(count), algebra)
        if np.any(~algebra.finite(unperturbed)):
            raise SingularStartError(
                "the deterministic part of the pencil is singular (the expression is undefined when "
                "every Gaussian is set to zero, e.g. an inverse with no ridge or shift), so the solution "
                "cannot start there. The limit may still exist (e.g. of S.I for S = X.T*X/n, n > d): add "
                "a ridge symbol to the inverse, (S + lam*Identity(d)).I, and solve at lam = 0 continued "
                "from lam = 1: trace_limit(expr, dims, {..., lam: 0.0}, path_from={lam: 1.0}) (it fails "
                "to converge where the limit does not exist)."
            )
        g = self.dyson_map.mean(unperturbed)

        def path(position, index):
            selected, weight = deterministic[:, index], weights[:, index]
            return PathPoint(selected, weight, position, 0 * selected, 0 * weight, np.ones(len(index)), affine=True)

        return self.follow(g, unperturbed, algebra, path, options.first_variance_step, options)

    def follow(self, g, inverse, algebra, path, first_step: float, options: SolverOptions):
        """Follow solutions ``g`` (with their matrices :math:`G`, ``inverse``) along
        ``path(position, index) -> PathPoint`` from position 0 to 1.

        Every point has its own position and step.  A step is accepted when
        Newton converges and its correction is small next to the predictor's
        move (at most ``options.max_correction_ratio``, 1/4 by default: a larger
        one means a jump to another branch or a sharp turn); the next step is
        scaled to aim at ``options.target_correction_ratio`` (1/10), by a factor
        between ``options.min_step_scale`` and ``options.max_step_scale`` (1/4
        and 4), and a rejected one is cut by at least ``options.min_step_scale``.  The predictor
        (:func:`predict`) is second order: the exact tangent, and the exact
        curvature on an affine path (:meth:`DysonMap.acceleration`) or else the change
        of the tangent since the last accepted point.  Returns ``(g, inverse,
        reached)`` at position 1 (the arrays given, updated in place),
        ``reached`` false where the step fell below ``options.min_step`` before it.
        """
        count = g.shape[0]
        tolerance = algebra.continuation_tolerance
        corrector = NewtonStop(tolerance, 100 * tolerance, options.corrector_iterations)
        position, step = np.zeros(count), np.full(count, first_step)
        last_position = np.full(count, np.nan)
        last_velocity = np.zeros_like(g)
        active = np.ones(count, dtype=bool)
        while np.any(active):
            index = np.flatnonzero(active)
            here, start = position[index], g[index]
            target = np.minimum(1.0, here + step[index])
            span = here - last_position[index]
            span = np.where(np.isfinite(span) & (span > 0), span, np.inf)[:, None]
            origin = path(here, index)
            velocity = self.dyson_map.velocity(origin, start, inverse[index], algebra, options)
            if origin.affine:
                acceleration = self.dyson_map.acceleration(origin, start, inverse[index], velocity, algebra, options)
            else:  # the change of the tangent since the last accepted point
                acceleration = (velocity - last_velocity[index]) / span
            predicted = predict(start, velocity, acceleration, (target - here)[:, None])
            point = path(target, index)
            candidate, converged, _, candidate_inverse = self.dyson_map.newton(
                point.deterministic, point.weights, predicted, point.variance, algebra, corrector, options,
            )
            # Stay on the branch: the corrector must move much less than the predictor did.
            # The ratio is O(step) for a smooth path; the next step aims at options.target_correction_ratio.
            correction = np.array(algebra.norm(candidate - predicted), dtype=float)
            move = (np.array(algebra.norm(predicted - start), dtype=float)
                    + options.relative_move_floor * np.array(algebra.norm(start), dtype=float))
            ratio = correction / np.maximum(move, 1e-300)
            ratio[~np.isfinite(ratio)] = np.inf  # a failed Newton: reject and cut the step fourfold
            converged &= ratio <= options.max_correction_ratio
            accepted, rejected = index[converged], index[~converged]
            last_position[accepted] = position[accepted]
            last_velocity[accepted] = velocity[converged]
            g[accepted], position[accepted] = candidate[converged], target[converged]
            inverse[accepted] = candidate_inverse[converged]
            scale = np.clip(options.target_correction_ratio / np.maximum(ratio, 1e-3),  # 1e-3: no division by 0
                            options.min_step_scale, options.max_step_scale)
            step[accepted] = np.minimum(step[accepted] * scale[converged], 1.0)
            step[rejected] *= np.minimum(scale[~converged], options.min_step_scale)
            active = (position < 1.0) & (step >= options.min_step)
        return g, inverse, position == 1.0

    def between(self, starts: list, ends: list, g, inverse, algebra, options: SolverOptions):
        """Follow the solutions ``g`` (matrices :math:`G` ``inverse``) at the parameter columns ``starts`` to ``ends``.

        A parameter that is positive at both ends moves geometrically
        (:math:`\\theta_0 (\\theta_1/\\theta_0)^x`, a straight line in its logarithm,
        the scale on which ratios and ridges act); the others move on a straight line.
        Position 1 is exactly ``ends``.  Returns ``(g, inverse, reached)`` like :meth:`follow`.
        """
        geometric = [
            not np.iscomplexobj(s) and not np.iscomplexobj(e) and bool(np.all(s > 0) and np.all(e > 0))
            for s, e in zip(starts, ends)
        ]
        rates = [np.log(e / s) if log else e - s for s, e, log in zip(starts, ends, geometric)]

        def path(position, index):
            columns, directions = [], []
            for s, e, rate, log in zip(starts, ends, rates, geometric):
                value = s[index] * np.exp(position * rate[index]) if log else s[index] + position * rate[index]
                columns.append(np.where(position == 1.0, e[index], value))
                directions.append(value * rate[index] if log else rate[index])
            deterministic, weight, _, _ = self.compiled.coefficients(columns, len(index), multiprecision=False)
            d_deterministic, d_weight, _ = self.compiled.changes(columns, directions, len(index), multiprecision=False)
            zeros = np.zeros(len(index))
            return PathPoint(deterministic, weight, zeros + 1, d_deterministic, d_weight, zeros)

        return self.follow(g, inverse, algebra, path, 1.0, options)

    def from_neighbours(self, columns: list, deterministic, weights, options: SolverOptions):
        """Solve every point by continuation from a solved neighbour (coarse to fine); see the module notes.

        The anchors (at most ``options.anchors``, one per cell of the coarsest
        grids) follow the variance path together; each finer level follows
        straight lines in the parameters from the level above.  Returns ``(g,
        inverse, reached)`` like :meth:`from_zero_variance`, which it falls back to for the
        points whose path from their neighbour fails.
        """
        count = deterministic.shape[1] if deterministic.size else weights.shape[1]
        algebra = FloatAlgebra()
        features, groups = normalised_coordinates(columns)
        anchors, representative, level = anchor_points(features, groups, options.anchors, options.max_grid_level)
        start, start_inverse, anchor_reached = self.from_zero_variance(
            deterministic[:, anchors], weights[:, anchors], algebra, options)
        g = np.zeros((count, start.shape[1]), dtype=start.dtype)
        inverse = np.zeros((count, *start_inverse.shape[1:]), dtype=start_inverse.dtype)
        reached, solved = np.ones(count, dtype=bool), np.zeros(count, dtype=bool)
        g[anchors], inverse[anchors], reached[anchors], solved[anchors] = start, start_inverse, anchor_reached, True
        for children, parents in levels(features, groups, solved, representative, level + 1, options.max_grid_level):
            g[children], inverse[children], reached[children] = self.between(
                [c[parents] for c in columns], [c[children] for c in columns], g[parents], inverse[parents], algebra,
                options,
            )
            reached[children] &= reached[parents]
        lost = np.flatnonzero(~reached)
        if lost.size:
            g[lost], inverse[lost], reached[lost] = self.from_zero_variance(
                deterministic[:, lost], weights[:, lost], algebra, options)
        return g, inverse, reached


# --------------------------------------------------------------------- the order of a batch

def normalised_coordinates(columns: list) -> tuple[np.ndarray, np.ndarray]:
    """Normalised coordinates of the points, and groups that no path may leave.

    Each varying real coordinate (real and imaginary parts of complex
    parameters) maps to [0, 1], logarithmically where it is positive.  Points
    whose complex parameters lie on different sides of the real axis are in
    different groups: the straight line between them would cross the real
    axis, where a spectral parameter meets its branch cut.
    """
    count = len(columns[0]) if columns else 1
    features, signs = [], []
    for column in columns:
        column = np.asarray(column)
        parts = [column.real, column.imag] if np.iscomplexobj(column) else [column]
        if np.iscomplexobj(column):
            signs.append(np.sign(column.imag).astype(int))
        for part in parts:
            part = np.asarray(part, dtype=float)
            if np.all(part > 0):
                part = np.log(part)
            low, high = np.min(part), np.max(part)
            if high > low and np.isfinite(high - low):
                features.append((part - low) / (high - low))
    features = np.column_stack(features) if features else np.zeros((count, 0))
    if not signs:
        return features, np.zeros(count, dtype=int)
    _, groups = np.unique(np.column_stack(signs), axis=0, return_inverse=True)
    return features, groups.reshape(-1)


def _cells(features: np.ndarray, groups: np.ndarray, level: int) -> np.ndarray:
    """The cell of every point in a grid of ``2**level`` cells per coordinate, within its group."""
    cells = np.minimum((features * 2**level).astype(np.int64), 2**level - 1)
    if level * features.shape[1] + int(groups.max(initial=0)).bit_length() < 63:
        # one integer per cell (mixed radix): np.unique of a vector, much faster than of rows
        key = groups.astype(np.int64)
        for column in cells.T:
            key = key * 2**level + column
        _, cell = np.unique(key, return_inverse=True)
    else:
        _, cell = np.unique(np.column_stack([groups, cells]), axis=0, return_inverse=True)
    return cell.reshape(-1)


def anchor_points(features: np.ndarray, groups: np.ndarray, budget: int, depth: int) -> tuple:
    """One point per cell of the finest grid with at most ``budget`` occupied cells (at least one per group).

    The grids have ``2**level`` cells per coordinate, ``level`` at most ``depth``.  Returns
    ``(anchors, representative, level)``: the anchor of every point's cell, and the level.
    """
    level, cell = 0, _cells(features, groups, 0)
    while features.shape[1] and level < depth and cell.max() + 1 < len(cell):
        finer = _cells(features, groups, level + 1)
        if finer.max() + 1 > budget:
            break
        level, cell = level + 1, finer
    order = np.argsort(cell, kind="stable")
    anchors = order[np.searchsorted(cell[order], np.arange(cell.max() + 1))]
    return anchors, anchors[cell], level


def levels(features: np.ndarray, groups: np.ndarray, solved: np.ndarray, representative: np.ndarray, first: int,
           depth: int):
    """Yield ``(children, parents)`` level by level, coarse to fine, from level ``first`` to ``depth``.

    At level ``l`` the points fall into the cells of a grid of ``2**l`` cells
    per coordinate (within their group).  A cell with no solved point gets one
    child, solved from the representative of its parent cell; after the last
    level the points left (duplicates) start from the representative of their
    cell.  ``representative`` holds, for every point, a solved point of its
    current cell.
    """
    solved = solved.copy()
    for level in range(first, depth + 1 if features.shape[1] else first):
        if np.all(solved):
            return
        cell = _cells(features, groups, level)
        chosen = np.full(cell.max() + 1, -1)
        done = np.flatnonzero(solved)
        chosen[cell[done]] = done
        missing = np.flatnonzero(chosen < 0)
        if missing.size:
            order = np.argsort(cell, kind="stable")
            children = order[np.searchsorted(cell[order], missing)]
            yield children, representative[children]
            chosen[missing] = children
            solved[children] = True
        representative = chosen[cell]
    rest = np.flatnonzero(~solved)
    if rest.size:
        yield rest, representative[rest]
