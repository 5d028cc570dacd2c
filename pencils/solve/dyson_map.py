r"""The Dyson map of a numeric problem: its matrix, inverse, Jacobian, tangent, curvature and Newton's method.

The unknowns :math:`g_S` solve

.. math::  F(g; s, \theta) = \bigl[(\Lambda_\theta - s\,\eta_\theta(g))^{-1}\bigr]_S - g_S = 0

at :math:`s = 1`.  The *physical* solution is the one connected to
:math:`g = \Lambda^{-1}` at :math:`s = 0` (no randomness: :math:`s = \tau^2`
scales the variance of every Gaussian).  Newton's method uses the exact Jacobian

.. math::  \frac{\partial G_{ab}}{\partial g_u} = s \sum_{t:\,u_t = u} w_t\, G_{a i_t}\, G_{j_t b},

from :math:`dG = -G\,dM\,G` for :math:`M = \Lambda - s\,\eta(g)`, and the same
identity gives the tangent of any path in :math:`(s, \theta)`
(:meth:`DysonMap.velocity`) and, on an affine path, its curvature
(:meth:`DysonMap.acceleration`).  Every solved point carries its matrix
:math:`G = (\Lambda - s\,\eta(g))^{-1}`, which the last Newton iteration
computes for its residual: the tangent at that point and the final check at
the requested parameters reuse it instead of inverting again.
"""

from __future__ import annotations

import copy
from functools import cached_property
from typing import NamedTuple

import numpy as np

from ..graph import structurally_nonzero
from .compiled import NumericProblem
from .linear_algebra import BlockTriangular, per_point, zeros
from .options import SolverOptions

__all__ = ["DysonMap", "NewtonStop", "PathPoint"]


class PathPoint(NamedTuple):
    r"""The coefficients at one position of a continuation path, and their derivatives along it.

    The matrix is :math:`\Lambda - s\,\eta_w(g)`, with ``deterministic`` the entries of
    :math:`\Lambda` (the deterministic part of the pencil), ``weights`` those of :math:`w`
    and ``variance`` :math:`s`; ``d_deterministic``, ``d_weights`` and ``d_variance`` are
    their derivatives in the position.  ``affine``: they are affine in the position (the
    variance path), so that the second derivative of the solution is exact
    (:meth:`DysonMap.acceleration`).
    """

    deterministic: np.ndarray
    weights: np.ndarray
    variance: np.ndarray
    d_deterministic: np.ndarray
    d_weights: np.ndarray
    d_variance: np.ndarray
    affine: bool = False


class NewtonStop(NamedTuple):
    """When Newton's iteration stops (:meth:`DysonMap.newton`).

    A point stops when its relative Newton step is below ``tolerance``, or
    below ``accept`` and no longer halving (the rounding floor of an
    ill-conditioned point), or not finite, or after ``iterations`` steps; it
    has converged if its relative residual is at most ``accept``.
    """

    tolerance: float
    accept: float
    iterations: int


class DysonMap:
    r"""The map :math:`g \mapsto [(\Lambda - s\,\eta_w(g))^{-1}]_S - g` at a batch of points, and its derivatives.

    Parameters
    ----------
    problem : NumericProblem
        The size of the pencil, the entries of :math:`\Lambda`, the couplings
        ``(i, j, u)`` of :math:`\eta` (entry :math:`(i, j)` of :math:`M` gets
        :math:`-s\,w_t\,g_u`) and the entries of :math:`G` that are the unknowns.
    """

    def __init__(self, problem: NumericProblem, nodes):
        self.nodes = nodes
        self.size = size = problem.size
        identity, couplings, unknowns = problem.identity, problem.couplings, problem.unknowns  # couplings by unknown
        self.identity_rows, self.identity_cols = identity.T
        self.rows, self.cols, self.sources = couplings.T
        self.unknown_rows, self.unknown_cols = unknowns.T
        entries = self.rows * size + self.cols  # where each coupling writes, grouped by entry
        self._coupling_order = np.argsort(entries, kind="stable")
        sorted_entries = entries[self._coupling_order]
        self._coupling_start = np.flatnonzero(np.r_[True, np.diff(sorted_entries) != 0]) if entries.size else entries
        self._coupling_entry = sorted_entries[self._coupling_start]
        self.identity_entry = self.identity_rows * size + self.identity_cols
        self._jacobian_terms(identity, couplings, unknowns)

    @property
    def unknowns(self) -> int:
        """The number of unknowns."""
        return len(self.unknown_rows)

    def at_level(self, nodes) -> "DysonMap":
        """The same map with other spectral ``nodes``."""
        other = copy.copy(self)
        other.nodes = nodes
        return other

    def mean(self, matrices):
        r"""The unknowns' entries of matrices (P, Q, K, K) averaged over the spectral nodes,
        :math:`\mathbb E_u[\,\cdot\,]_S`, shape (P, U)."""
        return self.nodes.mean(matrices, self.unknown_rows, self.unknown_cols)

    def matrix(self, deterministic, weights, g, variance, algebra):
        r""":math:`\Lambda(u_q) - s\,\eta_w(g)` at every point and spectral node, shape (P, Q, K, K)
        (``deterministic`` of shape (C, P, Q))."""
        count, nodes = g.shape[0], deterministic.shape[2]
        matrix = zeros((count, nodes, self.size * self.size), np.result_type(deterministic, weights, g))
        matrix[:, :, self.identity_entry] = deterministic.transpose(1, 2, 0)
        if len(self.rows):
            values = np.reshape(variance, (-1, 1)) * weights.T * g[:, self.sources]
            coupled = np.add.reduceat(values[:, self._coupling_order], self._coupling_start, axis=1)
            matrix[:, :, self._coupling_entry] -= coupled[:, None, :]
        return matrix.reshape(count, nodes, self.size, self.size)

    def inverse(self, deterministic, weights, g, variance, algebra):
        r""":math:`(\Lambda(u_q) - s\,\eta(g))^{-1}` at every point and spectral node, shape (P, Q, K, K).

        (Block forward substitution over the matrix's components, as for the
        Jacobian, was measured as slow as LAPACK's inverse here: 18 to 21
        right-hand sides make its off-block products as costly as the inverse.)
        """
        return algebra.inv(self.matrix(deterministic, weights, g, variance, algebra))

    def _jacobian_terms(self, identity, couplings, unknowns) -> None:
        r"""The terms :math:`w_t\, G_{a_r i_t} G_{j_t b_r}` of the Jacobian that can be non-zero.

        :math:`G_{ab}` vanishes identically where the graph of :math:`\Lambda - \eta`
        has no path from ``a`` to ``b`` (:func:`pencils.graph.structurally_nonzero`);
        only 4 to 10 % of the pairs (equation ``r``, coupling ``t``) survive in the
        DSM systems.  The terms are grouped by Jacobian entry ``(r, u_t)``.
        """
        size, count = self.size, len(unknowns)
        terms = {(i, j, *unknowns[u]) for i, j, u in couplings}
        reach = structurally_nonzero(size, {tuple(pair) for pair in identity}, terms)
        rows_of, cols_of = unknowns.T
        equation, coupling = np.nonzero(reach[rows_of][:, self.rows] & reach[self.cols][:, cols_of].T)
        entry = equation * count + self.sources[coupling]
        order = np.argsort(entry, kind="stable")
        equation, coupling, entry = equation[order], coupling[order], entry[order]
        self._term_coupling = coupling
        self._term_block = rows_of[equation]  # the block whose spectral average the term belongs to
        self._term_left = rows_of[equation] * size + self.rows[coupling]  # G[a_r, i_t], flattened
        self._term_right = self.cols[coupling] * size + cols_of[equation]  # G[j_t, b_r]
        self._entry_start = np.flatnonzero(np.r_[True, np.diff(entry) != 0]) if entry.size else entry
        diagonal = np.arange(count) * (count + 1)
        self._pattern = np.union1d(entry[self._entry_start], diagonal)  # flat positions of the entries
        self._pattern_of_terms = np.searchsorted(self._pattern, entry[self._entry_start])
        self._pattern_of_diagonal = np.searchsorted(self._pattern, diagonal)

    def jacobian_entries(self, weights, inverse, variance):
        r"""The structurally non-zero entries of the Jacobian of ``F`` in ``g``, shape (P, E).

        Entry ``e`` is at the flat position ``_pattern[e]`` of the ``U x U``
        Jacobian (every diagonal entry included: :math:`J = \partial [G]_S/\partial g - I`).
        """
        count = inverse.shape[0]
        flat = inverse.reshape(count, inverse.shape[1], self.size * self.size)
        terms = weights.T[:, None, self._term_coupling] * flat[:, :, self._term_left] * flat[:, :, self._term_right]
        terms = self.nodes.weigh(terms, self._term_block)  # E_u[G G], not E_u[G] E_u[G]
        entries = zeros((count, len(self._pattern)), terms.dtype)
        if terms.shape[1]:
            entries[:, self._pattern_of_terms] = np.reshape(variance, (-1, 1)) * np.add.reduceat(terms, self._entry_start, axis=1)
        entries[:, self._pattern_of_diagonal] -= 1
        return entries

    def jacobian(self, entries):
        """The dense Jacobian, shape (P, U, U), from its entries."""
        count, unknowns = entries.shape[0], len(self.unknown_rows)
        jacobian = zeros((count, unknowns * unknowns), entries.dtype)
        jacobian[:, self._pattern] = entries
        return jacobian.reshape(count, unknowns, unknowns)

    def solve_linearised(self, weights, inverse, variance, right, algebra, options: SolverOptions,
                         transposed: bool = False):
        r"""Solve :math:`J x = \text{right}` (:math:`J^{\mathsf T} x` if ``transposed``) at every point,
        building :math:`J` for a chunk of points at a time.

        Chunks of at most ``options.chunk_entries`` intermediate values (terms or
        entries of the Jacobian) bound the memory of large systems and keep the
        work in cache.  Chunks of at least ``options.block_solve_points`` float
        points, and every multiprecision system (where each operation costs the
        same whatever the batch), are solved block by block (:class:`BlockTriangular`).
        """
        count = inverse.shape[0]
        variance = per_point(variance, count, inverse.dtype)
        chunk = max(1, options.chunk_entries // max(1, len(self._term_coupling) * inverse.shape[1],
                                                     len(self.unknown_rows) ** 2))
        parts = []
        for k in range(0, count, chunk):
            part = slice(k, k + chunk)
            entries = self.jacobian_entries(weights[:, part], inverse[part], variance[part])
            if inverse.dtype == object or entries.shape[0] >= options.block_solve_points:
                if transposed:
                    order, blocks = self._adjoint_blocks
                    parts.append(blocks.solve(entries[:, order], right[part], algebra))
                else:
                    parts.append(self._jacobian_blocks.solve(entries, right[part], algebra))
            else:
                jacobian = self.jacobian(entries)
                parts.append(algebra.solve(np.swapaxes(jacobian, 1, 2) if transposed else jacobian, right[part]))
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    @cached_property
    def _jacobian_blocks(self) -> "BlockTriangular":
        return BlockTriangular(self._pattern, len(self.unknown_rows))

    @cached_property
    def _adjoint_blocks(self) -> tuple[np.ndarray, "BlockTriangular"]:
        r"""The pattern of :math:`J^{\mathsf T}`: the order that sorts :math:`J`'s entries into it, and its blocks."""
        unknowns = len(self.unknown_rows)
        rows, cols = np.divmod(self._pattern, unknowns)
        positions = cols * unknowns + rows
        order = np.argsort(positions)
        return order, BlockTriangular(positions[order], unknowns)

    def velocity(self, point: PathPoint, g, inverse, algebra, options: SolverOptions):
        r"""The tangent :math:`dg/d\text{position}` of the solution path at ``g``, where :math:`G` is ``inverse``.

        With :math:`dM = d\Lambda - \eta_{s\,dw + ds\,w}(g)`, the equations move by
        :math:`-[G\,dM\,G]_S` at fixed ``g``, and the tangent solves
        :math:`J\,v = [G\,dM\,G]_S`.
        """
        change = self.matrix(point.d_deterministic, self.moving(point), g, 1, algebra)
        shift = self.mean(inverse @ change @ inverse)
        return self.solve_linearised(point.weights, inverse, point.variance, shift, algebra, options)

    @staticmethod
    def moving(point: PathPoint):
        """The derivative :math:`s'w + s w'` of the weights times the variance along the path."""
        variance, d_variance = np.reshape(point.variance, (1, -1)), np.reshape(point.d_variance, (1, -1))
        return variance * point.d_weights + d_variance * point.weights

    def acceleration(self, point: PathPoint, g, inverse, velocity, algebra, options: SolverOptions):
        r"""The second derivative :math:`a = g''` of an affine path (``point.affine``) at ``g``, tangent ``velocity``.

        Differentiating :math:`G = M^{-1}` twice, :math:`G'' = 2GM'GM'G - GM''G`, with
        :math:`M' = \Lambda' - \eta_{m}(g) - s\,\eta_w(g')` (:math:`m = s'w + sw'`) and,
        the coefficients being affine, :math:`M'' = -\eta_{2s'w'}(g) - 2\eta_m(g') - s\,\eta_w(a)`;
        the last term moves to the left as for the tangent, so :math:`J a = [GM''_0G]_S - 2[GM'GM'G]_S`
        with :math:`M''_0` the other two terms.  One more solve with the tangent's Jacobian.
        """
        moving = self.moving(point)
        zero = 0 * point.deterministic
        first = (self.matrix(point.d_deterministic, moving, g, 1, algebra)
                 + self.matrix(zero, point.weights, velocity, point.variance, algebra))
        cross = 2 * np.reshape(point.d_variance, (1, -1)) * point.d_weights  # 2 s' w'
        second = self.matrix(zero, cross, g, 1, algebra) + 2 * self.matrix(zero, moving, velocity, 1, algebra)
        left = inverse @ first
        right = inverse @ second @ inverse - 2 * (left @ left @ inverse)
        right = self.mean(right)
        return self.solve_linearised(point.weights, inverse, point.variance, right, algebra, options)

    def relative(self, vectors, g, algebra):
        """The largest entry of each vector relative to the largest entry of ``g`` (or absolute where g = 0)."""
        size, scale = algebra.norm(vectors), algebra.norm(g)
        if g.dtype != object:
            return size / np.where(scale != 0, scale, 1.0)
        return np.array([v / (s if s != 0 else 1) for v, s in zip(size, scale)], dtype=object)

    def newton(self, deterministic, weights, g, variance, algebra, stop: NewtonStop, options: SolverOptions,
               settled=None, inverse=None):
        """Newton iterations at fixed ``s``, from ``g`` (where :math:`G` is ``inverse``, if given).

        A point stops as ``stop`` says (:class:`NewtonStop`); the others go on.
        With ``settled``, a point whose relative residual is already below it takes no step (the solution of a converged
        continuation, whose last step was small enough for quadratic
        convergence to have reached rounding).  Returns ``(g, converged, relative residual,
        inverse)`` with ``converged`` where the relative residual
        :math:`\\|[G]_S - g\\|_\\infty / \\|g\\|_\\infty` is at most
        ``stop.accept`` and ``inverse`` the matrix :math:`G` at ``g`` (computed again only
        where ``g`` moved).
        """
        count = g.shape[0]
        g = g.copy()
        variance = per_point(variance, count, g.dtype)
        previous = np.full(count, np.inf, dtype=object if g.dtype == object else float)
        active = np.arange(count)
        if inverse is None:
            inverse = self.inverse(deterministic, weights, g, variance, algebra)
        current = inverse  # G at g[active]
        moved = np.zeros(count, dtype=bool)
        for iteration in range(stop.iterations):
            active_deterministic, active_weights = deterministic[:, active], weights[:, active]
            active_variance = variance[active]
            if iteration:
                current = self.inverse(active_deterministic, active_weights, g[active], active_variance, algebra)
            residual = self.mean(current) - g[active]
            if iteration == 0 and settled is not None:
                moving = ~(self.relative(residual, g[active], algebra) <= settled)
                active, active_deterministic = active[moving], active_deterministic[:, moving]
                active_weights, active_variance = active_weights[:, moving], active_variance[moving]
                current, residual = current[moving], residual[moving]
                if not active.size:
                    break
            delta = self.solve_linearised(active_weights, current, active_variance, -residual, algebra, options)
            g[active] = g[active] + delta
            moved[active] = True
            relative = self.relative(delta, g[active], algebra)
            done = (relative <= stop.tolerance) | ~algebra.finite(g[active])
            done |= (relative <= stop.accept) & (relative >= previous[active] / 2)
            previous[active] = relative
            active = active[~done]
            if not active.size:
                break
        if np.all(moved):
            inverse = self.inverse(deterministic, weights, g, variance, algebra)
        elif np.any(moved):
            inverse = inverse.copy()
            inverse[moved] = self.inverse(deterministic[:, moved], weights[:, moved], g[moved], variance[moved],
                                          algebra)
        relative = self.relative(self.mean(inverse) - g, g, algebra)
        finite = algebra.finite(g) & algebra.finite(inverse)
        if relative.dtype == object:
            converged = np.array([bool(ok and r <= stop.accept) for ok, r in zip(finite, relative)], dtype=bool)
        else:
            converged = finite & (relative <= stop.accept)
        return g, converged, relative, inverse
