r"""Batched linear algebra of the solver, in floats and in arbitrary precision.

:class:`FloatAlgebra` and :class:`MultiprecisionAlgebra` offer the same
operations (inverse, solve, norm, finiteness) over a leading axis of points:
numpy's batched LAPACK calls in floats, numpy object arrays of mpmath numbers
point by point in arbitrary precision.  Newton's linear systems :math:`J x = b`
are solved by block forward substitution over the strongly connected
components of the Jacobian's pattern (:class:`BlockTriangular`) for large
float batches and in arbitrary precision, where they cut the work most; small
float batches use one dense LAPACK call.  In arbitrary precision each block is
solved by mixed-precision refinement (:func:`refined_solve`: a double-precision
inverse, residuals at the working precision), with elimination in mpmath
(:func:`gauss_solve`) only where that does not contract.
"""

from __future__ import annotations

import contextlib
import threading

import mpmath
import numpy as np
from threadpoolctl import ThreadpoolController

from .. import precision

__all__ = [
    "BlockTriangular", "FloatAlgebra", "MultiprecisionAlgebra", "gauss_solve", "per_point", "refined_solve",
    "single_threaded_blas", "zeros",
]


_blas_lock = threading.Lock()
_blas_users = 0
_blas_limiter = None


@contextlib.contextmanager
def single_threaded_blas():
    """One BLAS thread while batched small matrices are solved (many threads only add contention:
    measured 100x slower on a loaded 2-core machine).

    ``threadpoolctl.threadpool_limits`` is not re-entrant across threads: two
    overlapping calls each save the limit they find, and the later one
    restores the limit the earlier one set.  Here the first of overlapping
    calls sets the limit and the last one restores what the first found.
    """
    global _blas_users, _blas_limiter
    with _blas_lock:
        if _blas_users == 0:
            _blas_limiter = ThreadpoolController().limit(limits=1, user_api="blas")
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0:
                _blas_limiter.restore_original_limits()
                _blas_limiter = None


def per_point(value, count: int, dtype) -> np.ndarray:
    """``value`` (a number or an array of ``count`` values) as an array of ``count`` values (object if ``dtype`` is)."""
    if isinstance(value, np.ndarray) and value.shape == (count,) and (value.dtype == object) == (dtype == object):
        return value
    return np.broadcast_to(np.reshape(np.asarray(value, dtype=object if dtype == object else None), -1), (count,))


def zeros(shape, dtype) -> np.ndarray:
    """Zeros of ``dtype``; mpmath zeros (of this thread's context) in object arrays, so that their
    arithmetic stays in mpmath.

    Filled in place: a fresh array from ``np.zeros`` is paged in on first write,
    slow for large batches.
    """
    array = np.empty(shape, dtype=dtype)
    array[...] = precision.context().zero if array.dtype == object else 0
    return array


class FloatAlgebra:
    """Batched float64 / complex128 linear algebra over a leading axis of points."""

    epsilon = float(np.finfo(float).eps)
    continuation_tolerance = 1e-9
    residual_tolerance = 1e-12

    @staticmethod
    def _batched(function, like, *arrays):
        """``function`` on the whole batch; if a point is singular, point by point with NaN there
        (handled as non-converged) instead of failing every point."""
        try:
            return function(*arrays)
        except np.linalg.LinAlgError:
            result = np.full_like(like, np.nan)
            for k, items in enumerate(zip(*arrays)):
                try:
                    result[k] = function(*items)
                except np.linalg.LinAlgError:
                    pass
            return result

    def inv(self, matrices):
        return self._batched(np.linalg.inv, matrices, matrices)

    def solve(self, matrices, vectors):
        return self._batched(lambda m, v: np.linalg.solve(m, v[..., None])[..., 0], vectors, matrices, vectors)

    @staticmethod
    def norm(vectors):
        if vectors.shape[-1] == 0:
            return np.zeros(vectors.shape[:-1])
        return np.abs(vectors).max(axis=-1)

    @staticmethod
    def finite(array) -> np.ndarray:
        return np.isfinite(array).reshape(array.shape[0], -1).all(axis=1)


class ExtendedAlgebra(FloatAlgebra):
    r"""The same operations in numpy's extended precision (``longdouble``: a 64-bit significand on x86).

    Factorisations are in double precision; a solve is refined with residuals
    in extended precision, :math:`x \leftarrow x + \tilde A^{-1}(b - Ax)`, and an
    inverse by Newton-Schulz steps :math:`X \leftarrow X + X(I - AX)`.  From a
    relative error :math:`\epsilon = \kappa(A)\,u` in double precision, each
    step of a solve multiplies it by :math:`\epsilon` and each step of an
    inverse squares it, down to the extended unit roundoff: three steps reach
    it for :math:`\kappa(A)` up to about :math:`10^{11}` (solves) and
    :math:`10^{14}` (inverses).  Used by :meth:`pencils.solve.solver.Solver.extended_target`.
    """

    epsilon = float(np.finfo(np.longdouble).eps)
    #: Whether numpy's ``longdouble`` is wider than double here (not on every platform).
    available = epsilon < FloatAlgebra.epsilon
    refinements = 3

    @staticmethod
    def _double(array: np.ndarray) -> np.ndarray:
        return array.astype(complex if np.iscomplexobj(array) else float)

    def inv(self, matrices):
        inverse = super().inv(self._double(matrices)).astype(matrices.dtype)
        identity = np.eye(matrices.shape[-1], dtype=matrices.dtype)
        for _ in range(self.refinements):
            inverse = inverse + inverse @ (identity - matrices @ inverse)
        return inverse

    def solve(self, matrices, vectors):
        dtype, factor = np.result_type(matrices, vectors), self._double(matrices)
        solution = super().solve(factor, self._double(vectors)).astype(dtype)
        for _ in range(self.refinements):
            residual = vectors - (matrices @ solution[..., None])[..., 0]
            solution = solution + super().solve(factor, self._double(residual)).astype(dtype)
        return solution


def extended(array: np.ndarray) -> np.ndarray:
    """A float or complex array in numpy's extended precision (``longdouble`` or ``clongdouble``)."""
    return array.astype(np.clongdouble if np.iscomplexobj(array) else np.longdouble)


class MultiprecisionAlgebra:
    """The same operations on object arrays of mpmath numbers, point by point."""

    def __init__(self, dps: int):
        context = precision.context()
        self.epsilon = context.mpf(10) ** (-dps)
        self.continuation_tolerance = context.mpf(10) ** -12
        self.residual_tolerance = self.epsilon

    @staticmethod
    def inv(matrices):
        identity = zeros(matrices.shape[-2:], object)
        np.fill_diagonal(identity, precision.context().one)
        flat = matrices.reshape(-1, *matrices.shape[-2:])
        return np.array([gauss_solve(matrix, identity) for matrix in flat], dtype=object).reshape(matrices.shape)

    @staticmethod
    def solve(matrices, vectors):
        solutions = [refined_solve(matrix, vector) for matrix, vector in zip(matrices, vectors)]
        return np.array(solutions, dtype=object).reshape(vectors.shape)

    @staticmethod
    def norm(vectors):
        return np.array([max((abs(x) for x in row), default=precision.context().zero) for row in vectors], dtype=object)

    @staticmethod
    def finite(array) -> np.ndarray:
        return np.array([all(mpmath.isfinite(x) for x in row.ravel()) for row in array])


def refined_solve(matrix: np.ndarray, right: np.ndarray) -> np.ndarray:
    r"""Solve ``matrix @ x = right`` (object arrays of mpmath numbers) by mixed-precision refinement.

    With :math:`\tilde A^{-1}` the inverse in double precision,
    :math:`x \leftarrow x + \tilde A^{-1}(b - Ax)` with the residual in the
    working precision gains about :math:`-\log_{10}(\kappa(A)\,10^{-16})`
    digits per step, at :math:`O(n^2)` multiprecision operations instead of the
    :math:`O(n^3)` of elimination; where it does not contract (:math:`\kappa(A)
    \gtrsim 10^{15}`) the system is solved by :func:`gauss_solve`.
    """
    context = precision.context()
    complex_values = any(hasattr(x, "_mpc_") for x in matrix.ravel()) or any(hasattr(x, "_mpc_") for x in right)
    kind = complex if complex_values else float
    try:
        approximate = np.linalg.inv(np.array(matrix.tolist(), dtype=kind))
    except (np.linalg.LinAlgError, OverflowError):
        approximate = None
    if approximate is None or not np.all(np.isfinite(approximate)):
        return gauss_solve(matrix, right[:, None])[:, 0]
    convert = np.frompyfunc(context.mpc if complex_values else context.mpf, 1, 1)
    floor = context.mpf(2) ** (-context.prec + 4) * max(abs(x) for x in right.ravel()) if right.size else 0
    x = convert(approximate @ np.array(right.tolist(), dtype=kind))
    previous = None
    for _ in range(200):
        residual = right - matrix @ x
        size = max((abs(r) for r in residual), default=context.zero)
        if size <= floor * (1 + max(abs(v) for v in x.ravel())):
            return x
        if previous is not None and size > previous / 2:
            break
        previous = size
        x = x + convert(approximate @ np.array(residual.tolist(), dtype=kind))
    return gauss_solve(matrix, right[:, None])[:, 0]


def gauss_solve(matrix: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Solve ``matrix @ x = right`` for object arrays of mpmath numbers (partial pivoting).

    Row operations run as numpy object-array operations, much faster than
    element-wise :class:`mpmath.matrix` access; a singular matrix gives NaN.
    """
    a, b = matrix.copy(), right.copy()
    size = a.shape[0]
    for k in range(size):
        pivot = k + int(np.argmax([abs(x) for x in a[k:, k]]))
        if a[pivot, k] == 0:
            return np.full(right.shape, precision.context().nan, dtype=object)
        if pivot != k:
            a[[k, pivot]], b[[k, pivot]] = a[[pivot, k]], b[[pivot, k]]
        factors = a[k + 1 :, k] / a[k, k]
        a[k + 1 :, k:] -= np.multiply.outer(factors, a[k, k:])
        b[k + 1 :] -= np.multiply.outer(factors, b[k])
    x = np.empty_like(b)
    for k in range(size - 1, -1, -1):
        x[k] = (b[k] - a[k, k + 1 :] @ x[k + 1 :]) / a[k, k]
    return x


class BlockTriangular:
    r"""Batched solves with matrices of one sparsity pattern, by block forward substitution.

    The strongly connected components of the pattern's graph (row ``r``
    depends on column ``u`` where entry ``(r, u)`` may be non-zero) are put in
    levels: one more than the highest level a component depends on (the
    condensation of a graph is acyclic).  For each component :math:`C`, level
    by level,

    .. math::  A_{CC}\, x_C = b_C - \sum_{u \notin C} A_{Cu}\, x_u,

    where only earlier levels contribute; the components of a level with the
    same size are one batched solve (a division for size one).  This is
    Gaussian elimination with pivoting inside each diagonal block only, exact
    for the block-triangular structure.  The Jacobians of the finite-m DSM
    systems split into blocks of at most 12 of 106 and 195 unknowns, so a large
    batch of their solves costs a fraction of dense LAPACK calls.

    Parameters
    ----------
    positions : numpy.ndarray
        The sorted flat positions ``r * n + u`` of the entries that may be non-zero.
    n : int
        The size of the matrices.
    """

    def __init__(self, positions: np.ndarray, n: int):
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        rows, cols = np.divmod(positions, n)
        where = np.full((n, n), -1)
        where[rows, cols] = np.arange(len(rows))
        graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n)).tocsr()
        components, label = connected_components(graph, directed=True, connection="strong")
        needs = [set() for _ in range(components)]
        for r, u in zip(label[rows], label[cols]):
            if r != u:
                needs[r].add(u)
        level = np.full(components, -1)

        def depth(component: int) -> int:
            if level[component] < 0:
                level[component] = 1 + max((depth(other) for other in needs[component]), default=-1)
            return level[component]

        for component in range(components):
            depth(component)
        self.groups = []
        for value in range(level.max() + 1 if components else 0):
            by_size: dict = {}
            for component in np.flatnonzero(level == value):
                members = np.flatnonzero(label == component)
                by_size.setdefault(len(members), []).append(members)
            for members in map(np.array, by_size.values()):
                self.groups.append(self._group(members, rows, cols, label, where))

    @staticmethod
    def _group(members: np.ndarray, rows, cols, label, where) -> dict:
        """``unknowns`` (the rows of the group, component by component), ``block`` (the entries of
        the diagonal blocks, shape (G, k, k), -1 where structurally zero), and the off-block entries
        ``needed`` with the columns ``sources`` they multiply, the group rows they add to and where
        each row's run starts (``rows``, ``starts``)."""
        unknowns = members.reshape(-1)
        row_of = np.full(len(where), -1)
        row_of[unknowns] = np.arange(len(unknowns))
        outside = np.flatnonzero((row_of[rows] >= 0) & (label[rows] != label[cols]))
        outside = outside[np.argsort(row_of[rows[outside]], kind="stable")]
        run_rows = row_of[rows[outside]]
        starts = np.flatnonzero(np.r_[True, np.diff(run_rows) != 0]) if run_rows.size else run_rows
        return {
            "unknowns": unknowns, "block": where[members[:, :, None], members[:, None, :]],
            "needed": outside, "sources": cols[outside], "rows": run_rows[starts], "starts": starts,
        }

    def solve(self, entries: np.ndarray, right: np.ndarray, algebra) -> np.ndarray:
        """Solve :math:`A x = b` at every point: ``entries`` (P, E) of :math:`A`, ``right`` (P, n)."""
        count = right.shape[0]
        x = zeros(right.shape, np.result_type(entries, right))
        for group in self.groups:
            unknowns, block = group["unknowns"], group["block"]
            rhs = right[:, unknowns].copy()
            if group["needed"].size:
                products = entries[:, group["needed"]] * x[:, group["sources"]]
                rhs[:, group["rows"]] -= np.add.reduceat(products, group["starts"], axis=1)
            groups, size = block.shape[:2]
            if size == 1:  # a diagonal entry: a division (0 gives inf, reported as not converged)
                x[:, unknowns] = rhs / entries[:, block.reshape(-1)]
                continue
            matrices = np.where(block >= 0, entries[:, block], 0).reshape(count * groups, size, size)
            x[:, unknowns] = algebra.solve(matrices, rhs.reshape(count * groups, size)).reshape(count, groups * size)
        return x
