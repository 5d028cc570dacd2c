r"""Numeric solution of the Dyson equation: vectorised numpy and arbitrary-precision mpmath.

The unknowns :math:`g_S` solve

.. math::  F(g; s, \theta) = \bigl[(\Lambda_\theta - s\,\eta_\theta(g))^{-1}\bigr]_S - g_S = 0

at :math:`s = 1`.  The *physical* solution is the one connected to
:math:`g = \Lambda^{-1}` at :math:`s = 0` (no randomness: :math:`s = \tau^2`
scales the variance of every Gaussian).  Newton's method uses the exact Jacobian

.. math::  \frac{\partial G_{ab}}{\partial g_u} = s \sum_{t:\,u_t = u} w_t\, G_{a i_t}\, G_{j_t b},

from :math:`dG = -G\,dM\,G` for :math:`M = \Lambda - s\,\eta(g)`, and the same
identity gives the tangent of any path in :math:`(s, \theta)`.

A batch of parameter points is solved by *continuation from neighbours*: a few
anchors (one per cell of the coarsest grids) follow the variance path
:math:`s: 0 \to 1`; the others are visited coarse to fine (cells of a dyadic grid
in the normalised parameters, halved at each level) and each is followed from a
solved point of its parent cell (geometrically in positive parameters, else on a
straight line), with a second-order predictor (componentwise rational, see
:func:`_predict`) and a branch guard.  A point whose path fails falls back to
its own variance path.  The same tangent gives exact derivatives of a limit in
any parameter (:meth:`Solver.target`).  The float solution is then checked
per unknown: ill-conditioned points are finished in arbitrary precision or
reported.  All points of a level are solved together with batched numpy linear
algebra; the mpmath path polishes the float solution with Newton's method
(quadratic: a few extra iterations for any precision).  Every solved point
carries its matrix :math:`G = (\Lambda - s\,\eta(g))^{-1}`, which the last
Newton iteration computes for its residual: the tangent at that point and the
final check at the requested parameters reuse it instead of inverting again.

Newton's linear systems :math:`J x = b` are solved by block forward
substitution over the strongly connected components of the Jacobian's pattern
(:class:`_BlockTriangular`) for large float batches and in arbitrary precision,
where they cut the work most; small float batches use one dense LAPACK call.
In arbitrary precision each block is solved by mixed-precision refinement (a
double-precision inverse, residuals at the working precision), with
elimination in mpmath only where that does not contract.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from functools import cached_property
from typing import Mapping, NamedTuple, Sequence

import mpmath
import numpy as np
import sympy
from threadpoolctl import ThreadpoolController

from .arguments import resolve_keys
from .dyson import _structurally_nonzero
from . import precision
from .errors import ConvergenceError, ParameterError, PrecisionWarning, SingularStartError
from .serialization import decode

__all__ = ["Solver"]


_blas_lock = threading.Lock()
_blas_users = 0
_blas_limiter = None


@contextlib.contextmanager
def _single_threaded_blas():
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


def _compile(arguments, expressions, module: str):
    """``sympy.lambdify(arguments, expressions)`` for ``module`` "numpy" or "mpmath", quick to build.

    The arguments are renamed ``x0, x1, ...`` (parameters such as ``s^2`` are not
    Python identifiers) and the code is printed fully qualified (``numpy.exp``),
    so that only that module is put in its namespace: lambdify's default
    namespace imports every numpy submodule, 0.15 s in a fresh process.
    """
    from sympy.printing.numpy import NumPyPrinter
    from sympy.printing.pycode import MpmathPrinter

    names = sympy.symbols(f"x0:{len(arguments)}")
    renaming = dict(zip(arguments, names))
    if isinstance(expressions, list):
        renamed = [sympy.sympify(e).xreplace(renaming) for e in expressions]
    else:
        renamed = sympy.sympify(expressions).xreplace(renaming)
    stray = sympy.Tuple(*renamed if isinstance(renamed, list) else [renamed]).free_symbols - set(names)
    if stray or not all(isinstance(a, sympy.Symbol) for a in arguments):
        # Only x0, x1, ... may reach the generated code: a symbol's name is never printed into it.
        raise ValueError(f"cannot compile expressions in {', '.join(map(str, stray)) or 'non-symbols'}: not arguments")
    printer, namespace = {
        "numpy": (NumPyPrinter, {"numpy": np}),
        "mpmath": (MpmathPrinter, {"mpmath": precision.ThreadMpmath()}),
    }[module]
    settings = {"fully_qualified_modules": True, "inline": True, "allow_unknown_functions": True, "user_functions": {}}
    return sympy.lambdify(names, renamed, modules=[namespace], printer=printer(settings), dummify=False, cse=True)


class _PathPoint(NamedTuple):
    r"""The coefficients at one position of a continuation path, and their derivatives along it.

    The matrix is :math:`\Lambda - s\,\eta_w(g)`; ``d_lambdas``, ``d_weights``
    and ``d_step`` are the derivatives of :math:`\Lambda`, :math:`w` and :math:`s`
    in the position.  ``affine``: they are affine in the position (the
    variance path), so that the second derivative of the solution is exact
    (:meth:`Solver._acceleration`).
    """

    lambdas: np.ndarray
    weights: np.ndarray
    step: np.ndarray
    d_lambdas: np.ndarray
    d_weights: np.ndarray
    d_step: np.ndarray
    affine: bool = False


def _to_mpmath(value):
    """An mpmath number of this thread's context (:func:`pencils.precision.context`) at its precision
    (strings and SymPy numbers are exact)."""
    context = precision.context()
    if isinstance(value, sympy.Basic):
        value = sympy.N(value, context.dps)
        real, imaginary = (context.mpf(part) for part in value.as_real_imag())
        return real if imaginary == 0 else context.mpc(real, imaginary)
    return context.mpmathify(value)


def _predict(start, velocity, acceleration, delta):
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


def _per_point(value, count: int, dtype) -> np.ndarray:
    """``value`` (a number or an array of ``count`` values) as an array of ``count`` values (object if ``dtype`` is)."""
    if isinstance(value, np.ndarray) and value.shape == (count,) and (value.dtype == object) == (dtype == object):
        return value
    return np.broadcast_to(np.reshape(np.asarray(value, dtype=object if dtype == object else None), -1), (count,))


def _zeros(shape, dtype) -> np.ndarray:
    """Zeros of ``dtype``; mpmath zeros (of this thread's context) in object arrays, so that their
    arithmetic stays in mpmath.

    Filled in place: a fresh array from ``np.zeros`` is paged in on first write,
    slow for large batches.
    """
    array = np.empty(shape, dtype=dtype)
    array[...] = precision.context().zero if array.dtype == object else 0
    return array


class _Float:
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


class _Multiprecision:
    """The same operations on object arrays of mpmath numbers, point by point."""

    def __init__(self, dps: int):
        context = precision.context()
        self.epsilon = context.mpf(10) ** (-dps)
        self.continuation_tolerance = context.mpf(10) ** -12
        self.residual_tolerance = self.epsilon

    @staticmethod
    def inv(matrices):
        identity = _zeros(matrices.shape[-2:], object)
        np.fill_diagonal(identity, precision.context().one)
        return np.array([_gauss_solve(matrix, identity) for matrix in matrices], dtype=object).reshape(matrices.shape)

    @staticmethod
    def solve(matrices, vectors):
        solutions = [_refined_solve(matrix, vector) for matrix, vector in zip(matrices, vectors)]
        return np.array(solutions, dtype=object).reshape(vectors.shape)

    @staticmethod
    def norm(vectors):
        return np.array([max((abs(x) for x in row), default=precision.context().zero) for row in vectors], dtype=object)

    @staticmethod
    def finite(array) -> np.ndarray:
        return np.array([all(mpmath.isfinite(x) for x in row.ravel()) for row in array])


def _refined_solve(matrix: np.ndarray, right: np.ndarray) -> np.ndarray:
    r"""Solve ``matrix @ x = right`` (object arrays of mpmath numbers) by mixed-precision refinement.

    With :math:`\tilde A^{-1}` the inverse in double precision,
    :math:`x \leftarrow x + \tilde A^{-1}(b - Ax)` with the residual in the
    working precision gains about :math:`-\log_{10}(\kappa(A)\,10^{-16})`
    digits per step, at :math:`O(n^2)` multiprecision operations instead of the
    :math:`O(n^3)` of elimination; where it does not contract (:math:`\kappa(A)
    \gtrsim 10^{15}`) the system is solved by :func:`_gauss_solve`.
    """
    context = precision.context()
    complex_values = any(hasattr(x, "_mpc_") for x in matrix.ravel()) or any(hasattr(x, "_mpc_") for x in right)
    kind = complex if complex_values else float
    try:
        approximate = np.linalg.inv(np.array(matrix.tolist(), dtype=kind))
    except (np.linalg.LinAlgError, OverflowError):
        approximate = None
    if approximate is None or not np.all(np.isfinite(approximate)):
        return _gauss_solve(matrix, right[:, None])[:, 0]
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
    return _gauss_solve(matrix, right[:, None])[:, 0]


def _gauss_solve(matrix: np.ndarray, right: np.ndarray) -> np.ndarray:
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
    #: (:meth:`_float_error`) is larger is finished in arbitrary precision or reported.
    float_accuracy = 1e-10
    #: The digits at which such points are finished before they are rounded to floats.
    finishing_dps = 30
    #: The largest system whose inaccurate float points are finished in arbitrary precision
    #: automatically; larger ones issue a :class:`pencils.errors.PrecisionWarning`.
    max_finished_unknowns = 80
    #: The most intermediate values of a Jacobian built at once (8 bytes each).
    chunk_entries = 2**20
    #: Float batches of at least this many points solve Newton's linear systems block by block
    #: (see ``_BlockTriangular``, as do all multiprecision ones); smaller float batches cost per
    #: numpy call and are solved densely.
    block_solve_points = 64
    continuations = ("neighbours", "variance")

    def __init__(self, record: Mapping):
        self.record = dict(record)
        self.parameters = tuple(decode(tree) for tree in record["parameters"])
        self.size = size = int(record["size"])
        identity = np.array(record["identity"], dtype=int).reshape(-1, 2)
        couplings = np.array(record["couplings"], dtype=int).reshape(-1, 3)  # sorted by unknown
        unknowns = np.array(record["unknowns"], dtype=int).reshape(-1, 2)
        self._identity_rows, self._identity_cols = identity.T
        self._rows, self._cols, self._sources = couplings.T
        self._unknown_rows, self._unknown_cols = unknowns.T
        entries = self._rows * size + self._cols  # where each coupling writes, grouped by entry
        self._coupling_order = np.argsort(entries, kind="stable")
        sorted_entries = entries[self._coupling_order]
        self._coupling_start = np.flatnonzero(np.r_[True, np.diff(sorted_entries) != 0]) if entries.size else entries
        self._coupling_entry = sorted_entries[self._coupling_start]
        self._identity_entry = self._identity_rows * size + self._identity_cols
        self._jacobian_terms(identity, couplings, unknowns)
        self._expressions = [decode(tree) for tree in record["coefficients"]]
        self._split = np.cumsum([len(identity), len(couplings), len(record["ratios"])])
        self._numpy = _compile(self.parameters, self._expressions, "numpy")

    @cached_property
    def _mpmath(self):
        return _compile(self.parameters, self._expressions, "mpmath")

    @cached_property
    def _directional_expressions(self) -> tuple:
        r"""The derivatives of :math:`\Lambda`, the weights of :math:`\eta` and the scale of the target
        along a direction :math:`\delta` in the parameters: ``(direction symbols, expressions)``."""
        direction = sympy.symbols(f"delta0:{len(self.parameters)}", cls=sympy.Dummy)
        varying = self._expressions[: self._split[1]] + self._expressions[-1:]
        derivatives = [sum(e.diff(p) * v for p, v in zip(self.parameters, direction)) for e in varying]
        return self.parameters + tuple(direction), derivatives

    @cached_property
    def _directional(self):
        """:attr:`_directional_expressions` compiled for numpy, arguments ``(*parameters, *direction)``."""
        return _compile(*self._directional_expressions, "numpy")

    @cached_property
    def _directional_mpmath(self):
        return _compile(*self._directional_expressions, "mpmath")

    def _changes(self, columns: list, directions: list, count: int, multiprecision: bool) -> tuple:
        """The derivatives ``(d_lambdas, d_weights, d_scale)`` along ``directions`` at the points (see
        :attr:`_directional_expressions`), like :meth:`_coefficients`."""
        function = self._directional_mpmath if multiprecision else self._directional
        table = _tabulate(function, columns + directions, count, multiprecision)
        d_lambdas, d_weights, d_scale = np.split(table, self._split[:2])
        return d_lambdas, d_weights, d_scale[0]

    # ----------------------------------------------------------------- parameters

    def _points(self, subs: Mapping, multiprecision: bool) -> tuple[tuple, list, int]:
        """Broadcast the parameter values: ``(shape, flat columns, number of points)``."""
        subs = resolve_keys(subs, self.parameters, "subs")
        missing = [p for p in self.parameters if p not in subs]
        if missing:
            names = ", ".join(map(str, missing))
            raise ParameterError(
                f"no value given for {names}; pass subs={{{missing[0]}: ...}} "
                f"(every scalar of the expression and of the dims ratios needs a value)."
            )
        arrays = [np.asarray(subs[p], dtype=object if multiprecision else None) for p in self.parameters]
        if not multiprecision:
            for p, array in zip(self.parameters, arrays):
                if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
                    raise ParameterError(f"the value of {p} must be a number or a numeric array; got {subs[p]!r}.")
        arrays = np.broadcast_arrays(*arrays) if arrays else []
        shape = arrays[0].shape if arrays else ()
        count = int(np.prod(shape)) if shape else 1
        return shape, [a.reshape(-1) for a in arrays], count

    def _coefficients(self, columns: list, count: int, multiprecision: bool):
        """Every compiled coefficient at the points: arrays of shape (P,) (object if multiprecision)."""
        table = _tabulate(self._mpmath if multiprecision else self._numpy, columns, count, multiprecision)
        lambdas, weights, ratios, rest = np.split(table, self._split)
        return lambdas, weights, ratios, rest[0]

    def _validate(self, coefficients, columns: list) -> None:
        lambdas, weights, ratios, scale = coefficients
        for block, (row, ratio) in enumerate(zip(ratios, self.record["ratios"])):
            values = np.asarray(row, dtype=complex)
            bad = ~np.isfinite(values) | (values.imag != 0) | (values.real < 0)
            if block == self.record["out"]:
                bad |= values.real == 0
            if np.any(bad):
                index = int(np.flatnonzero(bad)[0])
                raise ParameterError(
                    f"the dimension ratio {ratio} is {values[index].real:g} at {self._describe(columns, index)}; "
                    f"ratios must be finite and > 0 (>= 0 for a block that may be empty)."
                )
        table = np.concatenate([lambdas, weights, scale[None]])
        finite = np.all(np.isfinite(np.asarray(table, dtype=complex)), axis=0)
        if not np.all(finite):
            index = int(np.flatnonzero(~finite)[0])
            raise ParameterError(
                f"a pencil coefficient is not finite at {self._describe(columns, index)} "
                f"(a division by a zero parameter?); change that value."
            )

    def _describe(self, columns: list, index: int) -> str:
        return ", ".join(f"{p}={columns[k][index]}" for k, p in enumerate(self.parameters)) or "the given values"

    # ----------------------------------------------------------------- the iteration

    def _matrix(self, lambdas, weights, g, step, algebra):
        r""":math:`\Lambda - s\,\eta_w(g)` at every point, shape (P, K, K)."""
        count = g.shape[0]
        matrix = _zeros((count, self.size * self.size), np.result_type(lambdas, weights, g))
        matrix[:, self._identity_entry] = lambdas.T
        if len(self._rows):
            values = np.reshape(step, (-1, 1)) * weights.T * g[:, self._sources]
            matrix[:, self._coupling_entry] -= np.add.reduceat(values[:, self._coupling_order], self._coupling_start, axis=1)
        return matrix.reshape(count, self.size, self.size)

    def _inverse(self, lambdas, weights, g, step, algebra):
        r""":math:`(\Lambda - s\,\eta(g))^{-1}` at every point.

        (Block forward substitution over the matrix's components, as for the
        Jacobian, was measured as slow as LAPACK's inverse here: 18 to 21
        right-hand sides make its off-block products as costly as the inverse.)
        """
        return algebra.inv(self._matrix(lambdas, weights, g, step, algebra))

    def _jacobian_terms(self, identity, couplings, unknowns) -> None:
        r"""The terms :math:`w_t\, G_{a_r i_t} G_{j_t b_r}` of the Jacobian that can be non-zero.

        :math:`G_{ab}` vanishes identically where the graph of :math:`\Lambda - \eta`
        has no path from ``a`` to ``b`` (:func:`pencils.dyson._structurally_nonzero`);
        only 4 to 10 % of the pairs (equation ``r``, coupling ``t``) survive in the
        DSM systems.  The terms are grouped by Jacobian entry ``(r, u_t)``.
        """
        size, count = self.size, len(unknowns)
        terms = {(i, j, *unknowns[u]) for i, j, u in couplings}
        reach = _structurally_nonzero(size, {tuple(pair) for pair in identity}, terms)
        rows_of, cols_of = unknowns.T
        equation, coupling = np.nonzero(reach[rows_of][:, self._rows] & reach[self._cols][:, cols_of].T)
        entry = equation * count + self._sources[coupling]
        order = np.argsort(entry, kind="stable")
        equation, coupling, entry = equation[order], coupling[order], entry[order]
        self._term_coupling = coupling
        self._term_left = rows_of[equation] * size + self._rows[coupling]  # G[a_r, i_t], flattened
        self._term_right = self._cols[coupling] * size + cols_of[equation]  # G[j_t, b_r]
        self._entry_start = np.flatnonzero(np.r_[True, np.diff(entry) != 0]) if entry.size else entry
        diagonal = np.arange(count) * (count + 1)
        self._reach = reach
        self._pattern = np.union1d(entry[self._entry_start], diagonal)  # flat positions of the entries
        self._pattern_of_terms = np.searchsorted(self._pattern, entry[self._entry_start])
        self._pattern_of_diagonal = np.searchsorted(self._pattern, diagonal)

    def _jacobian_entries(self, weights, inverse, step):
        r"""The structurally non-zero entries of the Jacobian of ``F`` in ``g``, shape (P, E).

        Entry ``e`` is at the flat position ``_pattern[e]`` of the ``U x U``
        Jacobian (every diagonal entry included: :math:`J = \partial [G]_S/\partial g - I`).
        """
        count = inverse.shape[0]
        flat = inverse.reshape(count, self.size * self.size)
        terms = weights.T[:, self._term_coupling] * flat[:, self._term_left] * flat[:, self._term_right]
        entries = _zeros((count, len(self._pattern)), terms.dtype)
        if terms.shape[1]:
            entries[:, self._pattern_of_terms] = np.reshape(step, (-1, 1)) * np.add.reduceat(terms, self._entry_start, axis=1)
        entries[:, self._pattern_of_diagonal] -= 1
        return entries

    def _jacobian(self, entries):
        """The dense Jacobian, shape (P, U, U), from its entries."""
        count, unknowns = entries.shape[0], len(self._unknown_rows)
        jacobian = _zeros((count, unknowns * unknowns), entries.dtype)
        jacobian[:, self._pattern] = entries
        return jacobian.reshape(count, unknowns, unknowns)

    def _solve_linearised(self, weights, inverse, step, right, algebra, transposed: bool = False):
        r"""Solve :math:`J x = \text{right}` (:math:`J^{\mathsf T} x` if ``transposed``) at every point,
        building :math:`J` for a chunk of points at a time.

        Chunks of at most :attr:`chunk_entries` intermediate values (terms or
        entries of the Jacobian) bound the memory of large systems and keep the
        work in cache.  Chunks of at least :attr:`block_solve_points` float
        points, and every multiprecision system (where each operation costs the
        same whatever the batch), are solved block by block (:class:`_BlockTriangular`).
        """
        count = inverse.shape[0]
        step = _per_point(step, count, inverse.dtype)
        chunk = max(1, self.chunk_entries // max(1, len(self._term_coupling), len(self._unknown_rows) ** 2))
        parts = []
        for k in range(0, count, chunk):
            part = slice(k, k + chunk)
            entries = self._jacobian_entries(weights[:, part], inverse[part], step[part])
            if inverse.dtype == object or entries.shape[0] >= self.block_solve_points:
                if transposed:
                    order, blocks = self._adjoint_blocks
                    parts.append(blocks.solve(entries[:, order], right[part], algebra))
                else:
                    parts.append(self._jacobian_blocks.solve(entries, right[part], algebra))
            else:
                jacobian = self._jacobian(entries)
                parts.append(algebra.solve(np.swapaxes(jacobian, 1, 2) if transposed else jacobian, right[part]))
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    @cached_property
    def _jacobian_blocks(self) -> "_BlockTriangular":
        return _BlockTriangular(self._pattern, len(self._unknown_rows))

    @cached_property
    def _adjoint_blocks(self) -> tuple[np.ndarray, "_BlockTriangular"]:
        r"""The pattern of :math:`J^{\mathsf T}`: the order that sorts :math:`J`'s entries into it, and its blocks."""
        unknowns = len(self._unknown_rows)
        rows, cols = np.divmod(self._pattern, unknowns)
        positions = cols * unknowns + rows
        order = np.argsort(positions)
        return order, _BlockTriangular(positions[order], unknowns)

    def _velocity(self, point: _PathPoint, g, inverse, algebra):
        r"""The tangent :math:`dg/d\text{position}` of the solution path at ``g``, where :math:`G` is ``inverse``.

        With :math:`dM = d\Lambda - \eta_{s\,dw + ds\,w}(g)`, the equations move by
        :math:`-[G\,dM\,G]_S` at fixed ``g``, and the tangent solves
        :math:`J\,v = [G\,dM\,G]_S`.
        """
        change = self._matrix(point.d_lambdas, self._moving(point), g, 1, algebra)
        shift = (inverse @ change @ inverse)[:, self._unknown_rows, self._unknown_cols]
        return self._solve_linearised(point.weights, inverse, point.step, shift, algebra)

    @staticmethod
    def _moving(point: _PathPoint):
        """The derivative :math:`s'w + s w'` of the weights times the variance along the path."""
        return np.reshape(point.step, (1, -1)) * point.d_weights + np.reshape(point.d_step, (1, -1)) * point.weights

    def _acceleration(self, point: _PathPoint, g, inverse, velocity, algebra):
        r"""The second derivative :math:`a = g''` of an affine path (``point.affine``) at ``g``, tangent ``velocity``.

        Differentiating :math:`G = M^{-1}` twice, :math:`G'' = 2GM'GM'G - GM''G`, with
        :math:`M' = \Lambda' - \eta_{m}(g) - s\,\eta_w(g')` (:math:`m = s'w + sw'`) and,
        the coefficients being affine, :math:`M'' = -\eta_{2s'w'}(g) - 2\eta_m(g') - s\,\eta_w(a)`;
        the last term moves to the left as for the tangent, so :math:`J a = [GM''_0G]_S - 2[GM'GM'G]_S`
        with :math:`M''_0` the other two terms.  One more solve with the tangent's Jacobian.
        """
        moving = self._moving(point)
        zero = 0 * point.lambdas
        first = self._matrix(point.d_lambdas, moving, g, 1, algebra) + self._matrix(zero, point.weights, velocity, point.step, algebra)
        cross = 2 * np.reshape(point.d_step, (1, -1)) * point.d_weights  # 2 s' w'
        second = self._matrix(zero, cross, g, 1, algebra) + 2 * self._matrix(zero, moving, velocity, 1, algebra)
        left = inverse @ first
        right = inverse @ second @ inverse - 2 * (left @ left @ inverse)
        return self._solve_linearised(point.weights, inverse, point.step, right[:, self._unknown_rows, self._unknown_cols], algebra)

    def _relative(self, vectors, g, algebra):
        """The largest entry of each vector relative to the largest entry of ``g`` (or absolute where g = 0)."""
        size, scale = algebra.norm(vectors), algebra.norm(g)
        if g.dtype != object:
            return size / np.where(scale != 0, scale, 1.0)
        return np.array([v / (s if s != 0 else 1) for v, s in zip(size, scale)], dtype=object)

    def _newton(self, lambdas, weights, g, step, algebra, tolerance, accept, iterations, settled=None, inverse=None):
        """Newton iterations at fixed ``s``, from ``g`` (where :math:`G` is ``inverse``, if given).

        A point stops when its relative Newton step is below ``tolerance``, or
        below ``accept`` and no longer halving (the rounding floor of an
        ill-conditioned point), or not finite; the others go on, up to
        ``iterations`` steps.  With ``settled``, a point whose relative residual
        is already below it takes no step (the solution of a converged
        continuation, whose last step was small enough for quadratic
        convergence to have reached rounding).  Returns ``(g, converged, relative residual,
        inverse)`` with ``converged`` where the relative residual
        :math:`\\|[G]_S - g\\|_\\infty / \\|g\\|_\\infty` is at most
        ``accept`` and ``inverse`` the matrix :math:`G` at ``g`` (computed again only
        where ``g`` moved).
        """
        count = g.shape[0]
        g = g.copy()
        step = _per_point(step, count, g.dtype)
        previous = np.full(count, np.inf, dtype=object if g.dtype == object else float)
        active = np.arange(count)
        if inverse is None:
            inverse = self._inverse(lambdas, weights, g, step, algebra)
        current = inverse  # G at g[active]
        moved = np.zeros(count, dtype=bool)
        for iteration in range(iterations):
            lam, weight, s = lambdas[:, active], weights[:, active], step[active]
            if iteration:
                current = self._inverse(lam, weight, g[active], s, algebra)
            residual = current[:, self._unknown_rows, self._unknown_cols] - g[active]
            if iteration == 0 and settled is not None:
                moving = ~(self._relative(residual, g[active], algebra) <= settled)
                active, lam, weight, s = active[moving], lam[:, moving], weight[:, moving], s[moving]
                current, residual = current[moving], residual[moving]
                if not active.size:
                    break
            delta = self._solve_linearised(weight, current, s, -residual, algebra)
            g[active] = g[active] + delta
            moved[active] = True
            relative = self._relative(delta, g[active], algebra)
            done = (relative <= tolerance) | ~algebra.finite(g[active])
            done |= (relative <= accept) & (relative >= previous[active] / 2)
            previous[active] = relative
            active = active[~done]
            if not active.size:
                break
        if np.all(moved):
            inverse = self._inverse(lambdas, weights, g, step, algebra)
        elif np.any(moved):
            inverse = inverse.copy()
            inverse[moved] = self._inverse(lambdas[:, moved], weights[:, moved], g[moved], step[moved], algebra)
        relative = self._relative(inverse[:, self._unknown_rows, self._unknown_cols] - g, g, algebra)
        finite = algebra.finite(g) & algebra.finite(inverse)
        if relative.dtype == object:
            converged = np.array([bool(ok and r <= accept) for ok, r in zip(finite, relative)], dtype=bool)
        else:
            converged = finite & (relative <= accept)
        return g, converged, relative, inverse

    def _continue(self, lambdas, weights, algebra):
        """Follow the physical branch from ``s = 0`` (``g = Lambda^{-1}``) to ``s = 1``.

        Returns ``(g, inverse, reached)``, see :meth:`_follow`.
        """
        count = lambdas.shape[1] if lambdas.size else weights.shape[1]
        zero = _zeros((count, len(self._unknown_rows)), np.result_type(lambdas, weights))
        deterministic = self._inverse(lambdas, weights, zero, np.zeros(count), algebra)
        if np.any(~algebra.finite(deterministic)):
            raise SingularStartError(
                "the deterministic part of the pencil is singular (the expression is undefined when "
                "every Gaussian is set to zero, e.g. an inverse with no ridge or shift), so the solution "
                "cannot start there. The limit may still exist (e.g. of S.I for S = X.T*X/n, n > d): add "
                "a ridge symbol to the inverse, (S + lam*Identity(d)).I, and solve at lam = 0 continued "
                "from lam = 1: trace_limit(expr, dims, {..., lam: 0.0}, path_from={lam: 1.0}) (it fails "
                "to converge where the limit does not exist)."
            )
        g = deterministic[:, self._unknown_rows, self._unknown_cols]

        def path(position, index):
            lam, weight = lambdas[:, index], weights[:, index]
            return _PathPoint(lam, weight, position, 0 * lam, 0 * weight, np.ones(len(index)), affine=True)

        return self._follow(g, deterministic, algebra, path, first_step=1e-2)

    def _follow(self, g, inverse, algebra, path, first_step: float):
        """Follow solutions ``g`` (with their matrices :math:`G`, ``inverse``) along
        ``path(position, index) -> _PathPoint`` from position 0 to 1.

        Every point has its own position and step.  A step is accepted when
        Newton converges and its correction is small next to the predictor's
        move (at most 1/4: a larger one means a jump to another branch or a
        sharp turn); the next step is scaled to aim at 1/10 (between 1/4 and 4
        times), and a rejected one is cut at least fourfold.  The predictor
        (:func:`_predict`) is second order: the exact tangent, and the exact
        curvature on an affine path (:meth:`_acceleration`) or else the change
        of the tangent since the last accepted point.  Returns ``(g, inverse,
        reached)`` at position 1 (the arrays given, updated in place),
        ``reached`` false where the step fell below ``1e-13`` before it.
        """
        count = g.shape[0]
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
            velocity = self._velocity(origin, start, inverse[index], algebra)
            if origin.affine:
                acceleration = self._acceleration(origin, start, inverse[index], velocity, algebra)
            else:  # the change of the tangent since the last accepted point
                acceleration = (velocity - last_velocity[index]) / span
            predicted = _predict(start, velocity, acceleration, (target - here)[:, None])
            point = path(target, index)
            candidate, converged, _, candidate_inverse = self._newton(
                point.lambdas, point.weights, predicted, point.step, algebra, algebra.continuation_tolerance,
                100 * algebra.continuation_tolerance, 4,
            )
            # Stay on the branch: the corrector must move much less than the predictor did.
            # The ratio is O(step) for a smooth path; the next step aims at a ratio of 1/10.
            correction = np.array(algebra.norm(candidate - predicted), dtype=float)
            move = np.array(algebra.norm(predicted - start), dtype=float) + 1e-6 * np.array(algebra.norm(start), dtype=float)
            ratio = correction / np.maximum(move, 1e-300)
            ratio[~np.isfinite(ratio)] = np.inf  # a failed Newton: reject and cut the step fourfold
            converged &= ratio <= 0.25
            accepted, rejected = index[converged], index[~converged]
            last_position[accepted] = position[accepted]
            last_velocity[accepted] = velocity[converged]
            g[accepted], position[accepted] = candidate[converged], target[converged]
            inverse[accepted] = candidate_inverse[converged]
            scale = np.clip(0.1 / np.maximum(ratio, 1e-3), 0.25, 4.0)
            step[accepted] = np.minimum(step[accepted] * scale[converged], 1.0)
            step[rejected] *= np.minimum(scale[~converged], 0.25)
            active = (position < 1.0) & (step >= 1e-13)
        return g, inverse, position == 1.0

    def _between(self, starts: list, ends: list, g, inverse, algebra):
        """Follow the solutions ``g`` (matrices :math:`G` ``inverse``) at the parameter columns ``starts`` to ``ends``.

        A parameter that is positive at both ends moves geometrically
        (:math:`\\theta_0 (\\theta_1/\\theta_0)^x`, a straight line in its logarithm,
        the scale on which ratios and ridges act); the others move on a straight line.
        Position 1 is exactly ``ends``.  Returns ``(g, inverse, reached)`` like :meth:`_follow`.
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
            lam, weight, _, _ = self._coefficients(columns, len(index), multiprecision=False)
            d_lam, d_weight, _ = self._changes(columns, directions, len(index), multiprecision=False)
            zeros = np.zeros(len(index))
            return _PathPoint(lam, weight, zeros + 1, d_lam, d_weight, zeros)

        return self._follow(g, inverse, algebra, path, first_step=1.0)

    def _continue_from_neighbours(self, columns: list, lambdas, weights):
        """Solve every point by continuation from a solved neighbour (coarse to fine); see the module notes.

        The anchors (at most :attr:`anchors`, one per cell of the coarsest
        grids) follow the variance path together; each finer level follows
        straight lines in the parameters from the level above.  Returns ``(g,
        inverse, reached)`` like :meth:`_continue`, which it falls back to for the
        points whose path from their neighbour fails.
        """
        count = lambdas.shape[1] if lambdas.size else weights.shape[1]
        algebra = _Float()
        features, groups = _features(columns)
        anchors, representative, level = _anchors(features, groups, self.anchors)
        start, start_inverse, anchor_reached = self._continue(lambdas[:, anchors], weights[:, anchors], algebra)
        g = np.zeros((count, start.shape[1]), dtype=start.dtype)
        inverse = np.zeros((count, *start_inverse.shape[1:]), dtype=start_inverse.dtype)
        reached, solved = np.ones(count, dtype=bool), np.zeros(count, dtype=bool)
        g[anchors], inverse[anchors], reached[anchors], solved[anchors] = start, start_inverse, anchor_reached, True
        for children, parents in _levels(features, groups, solved, representative, level + 1):
            g[children], inverse[children], reached[children] = self._between(
                [c[parents] for c in columns], [c[children] for c in columns], g[parents], inverse[parents], algebra
            )
            reached[children] &= reached[parents]
        lost = np.flatnonzero(~reached)
        if lost.size:
            g[lost], inverse[lost], reached[lost] = self._continue(lambdas[:, lost], weights[:, lost], algebra)
        return g, inverse, reached

    @cached_property
    def _rounding_steps(self) -> tuple[np.ndarray, np.ndarray, int, int]:
        """How many roundings each float quantity of :meth:`_float_error` goes through (at most).

        ``(coefficients, weights, scale, product)``: per coefficient of
        :math:`\\Lambda`, its operations (:func:`sympy.count_ops` of its
        expression) plus one; per coupling, those of its weight plus the product
        with :math:`g`, the product with the variance, and the sum of the
        couplings that meet in its entry of :math:`M`; for the scale of the
        target, its operations plus the product with :math:`G_{oi}`; and for an
        entry of :math:`MG - I`, the non-zero entries of the densest row of
        :math:`M` plus one.
        """
        operations = np.array([int(sympy.count_ops(e)) for e in self._expressions])
        coefficients, weights, _, scale = np.split(operations, self._split)
        entries = self._rows * self.size + self._cols
        meeting = np.bincount(entries, minlength=self.size**2)[entries]
        per_row = np.bincount(np.unique(np.r_[self._identity_entry, entries]) // self.size, minlength=self.size)
        return coefficients + 1, weights + 2 + meeting, int(scale[0]) + 1, int(per_row.max(initial=0)) + 1

    def _float_error(self, lambdas, weights, g, inverse, scale) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
        (:attr:`_rounding_steps`): :math:`|\Delta M| \le F = |\Lambda|\circ k_\Lambda u
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
        K` matrices per point.  Returns ``(bound, S, entries, y)``, with
        ``entries`` the largest relative bound
        :math:`(|\tilde G|(|\tilde R| + E_R) + |\tilde G| F |\tilde G|)_{kj} / |\tilde G_{kj}|`
        over the entries of :math:`G` that can be non-zero, which bounds the
        errors of the inputs of a derivative (see :meth:`_derivatives`).
        """
        algebra, unit = _Float(), _Float.epsilon / 2
        coefficient_steps, weight_steps, scale_steps, product_steps = self._rounding_steps
        count, size = inverse.shape[:2]
        unknowns = len(self._unknown_rows)
        out, into = self.record["out"], self.record["into"]
        matrix = self._matrix(lambdas, weights, g, 1.0, algebra)
        formation = self._matrix(unit * coefficient_steps[:, None] * np.abs(lambdas),
                                 -unit * weight_steps[:, None] * np.abs(weights), np.abs(g), 1.0, algebra).real
        extended = np.clongdouble if np.iscomplexobj(matrix) else np.longdouble
        identity = np.eye(size)
        product = (matrix.astype(extended) @ inverse.astype(extended) - identity).astype(matrix.dtype)
        product_error = unit * np.abs(product) + product_steps * float(np.finfo(extended).eps) / 2 * (
            np.abs(matrix) @ np.abs(inverse) + identity)
        size_of = np.abs(inverse)
        correction = inverse @ product  # G R: the first-order error of the inverse
        correction_error = size_of @ product_error + size * unit * (size_of @ np.abs(product))
        rho = (inverse - correction)[:, self._unknown_rows, self._unknown_cols] - g
        row, column = inverse[:, out, :], inverse[:, :, into]
        scales = np.reshape(scale, (-1, 1))
        gradient = _zeros((count, unknowns), inverse.dtype)
        np.add.at(gradient, (slice(None), self._sources), weights.T * row[:, self._rows] * column[:, self._cols] * scales)
        entries = self._jacobian_entries(weights, inverse, 1.0)
        jacobian = self._jacobian(entries)
        step = self._solve_linearised(weights, inverse, 1.0, rho, algebra)
        step_residual = (jacobian @ step[:, :, None])[:, :, 0] - rho
        adjoint = self._solve_linearised(weights, inverse, 1.0, gradient, algebra, transposed=True)
        first_order = np.reshape(scale, -1) * correction[:, out, into] + np.sum(gradient * step, axis=1)
        carried = (np.abs(step_residual) + unknowns * unit * ((np.abs(jacobian) @ np.abs(step)[:, :, None])[:, :, 0]
                   + np.abs(rho)) + correction_error[:, self._unknown_rows, self._unknown_cols])
        placed = _zeros((count, size, size), inverse.dtype)
        placed[:, self._unknown_rows, self._unknown_cols] = adjoint
        weight = -np.swapaxes(inverse, 1, 2) @ placed
        weight[:, :, into] += scales * row
        sensitivity = -weight @ np.swapaxes(inverse, 1, 2)
        bound = (
            np.abs(first_order)
            + np.sum(np.abs(adjoint) * carried, axis=1)
            + np.abs(np.reshape(scale, -1)) * correction_error[:, out, into]
            + unknowns * unit * np.sum(np.abs(gradient) * np.abs(step), axis=1)
            + np.sum(np.abs(sensitivity) * formation, axis=(1, 2))
            + scale_steps * unit * np.abs(np.reshape(scale, -1) * inverse[:, out, into])
        )
        entry_error = size_of @ (np.abs(product) + product_error) + size_of @ formation @ size_of
        with np.errstate(all="ignore"):
            relative = np.where(self._reach & (size_of > 0), entry_error / size_of, 0.0)
        return bound, sensitivity, np.max(relative.reshape(count, -1), axis=1, initial=0.0), adjoint

    def _fail(self, failed: np.ndarray, relative, columns: list, g=None, continuation: bool = True) -> None:
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
            if np.isfinite(residual) and residual > _Float.residual_tolerance:
                reason += f", where Newton's iteration leaves a relative residual {residual:.1e}"
        else:
            reason = f"Newton's iteration stalled at a relative residual {residual:.1e}"
        extreme = [(p, float(np.abs(columns[k][first]))) for k, p in enumerate(self.parameters)
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
            start = "{z: x + 1j}" if any(str(p) == "z" for p in self.parameters) else "{parameter: a regular value}"
        raise ConvergenceError(
            f"the Dyson equation could not be solved at {int(np.sum(failed))} of {len(failed)} point(s); first at "
            f"{self._describe(columns, first)}: {reason}.{spread} What helps: dps=30 (arbitrary precision, slow for "
            f"this {len(self._unknown_rows)}-unknown system) where rounding is the obstacle; path_from={start} "
            f"(a straight line from values where the solution is regular) where the default path meets a "
            f"singularity (a vanishing ridge at an interpolation threshold, a real spectral parameter inside the "
            f"spectrum); or moving the point.",
            parameters={str(p): columns[k][first] for k, p in enumerate(self.parameters)},
            residual=residual,
        )

    # ----------------------------------------------------------------- public

    def _start(self, columns: list, lambdas, weights, continuation: str):
        if continuation not in self.continuations:
            raise ParameterError(f"continuation must be one of {', '.join(self.continuations)}; got {continuation!r}.")
        count = lambdas.shape[1] if lambdas.size else weights.shape[1]
        if continuation == "variance" or count == 1:
            return self._continue(lambdas, weights, _Float())
        return self._continue_from_neighbours(columns, lambdas, weights)

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
        lambdas, weights, _, _ = self._coefficients(starts, count, multiprecision=False)
        g, inverse, reached = self._start(starts, lambdas, weights, continuation)
        self._fail(~reached, np.full(count, np.inf), starts, g)
        return self._between(starts, ends, g, inverse, _Float())

    def solve(
        self, subs: Mapping, dps: int | None = None, path_from: Mapping | None = None,
        continuation: str = "neighbours",
    ) -> tuple:
        r"""Solve at every point of ``subs`` (broadcast).

        ``continuation`` is ``"neighbours"`` (each point continued from a solved
        neighbour of the batch, see the module notes) or ``"variance"`` (each
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
        with np.errstate(all="ignore"), _single_threaded_blas(), precision.digits(15 if dps is None else dps + 15):
            inverse, scale, shape, _ = self._solve(subs, dps, path_from, continuation)
        return inverse, scale, shape

    def _solve(self, subs: Mapping, dps: int | None, path_from: Mapping | None, continuation: str) -> tuple:
        """:meth:`solve`, and the float solution ``g`` (``inverse`` and ``g`` are those of Newton's last
        iteration: :meth:`_float_error` measures the residual between them)."""
        shape, columns, count = self._points(subs, multiprecision=dps is not None)
        floats = _floats(columns)
        coefficients = self._coefficients(floats, count, multiprecision=False)
        self._validate(coefficients, floats)
        lambdas, weights, _, scale = coefficients
        if path_from:
            g, inverse, reached = self._continue_in_parameters(floats, count, path_from, continuation)
        else:
            g, inverse, reached = self._start(floats, lambdas, weights, continuation)
        g, converged, relative, inverse = self._newton(
            lambdas, weights, g, 1.0, _Float(), 4 * _Float.epsilon, _Float.residual_tolerance, self.max_newton,
            settled=16 * _Float.epsilon, inverse=inverse,
        )
        converged &= reached
        if dps is None:
            # Points that the continuation reached (on the physical branch, to its tolerance) but where
            # rounding stops Newton above the residual tolerance are finished in extended precision and
            # rounded back; failed points are not.
            narrow = ~converged & reached
            self._fail(~converged & ~narrow, relative, floats, g)
            finish = np.flatnonzero(narrow)
            if finish.size:
                polished, _ = self._polish(columns, floats, g, np.ones(count, dtype=bool), finish, self.finishing_dps)
                inverse[finish] = np.array(polished.tolist(), dtype=inverse.dtype)
                g[finish] = inverse[finish][:, self._unknown_rows, self._unknown_cols]
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
            algebra = _Multiprecision(dps)
            for index in indices:
                point = [c[index : index + 1] for c in columns]
                lambdas, weights, _, scale = self._coefficients(point, 1, multiprecision=True)
                if converged[index]:
                    start = np.array([[_to_mpmath(x) for x in g[index].tolist()]], dtype=object)
                else:
                    start, _, reached = self._continue(lambdas, weights, algebra)
                    self._fail(~reached, [np.inf], [f[index : index + 1] for f in floats], start)
                _, ok, residual, inverse = self._newton(
                    lambdas, weights, start, 1, algebra, context.mpf(10) ** -(dps + 8), algebra.residual_tolerance,
                    self.max_newton,
                )
                self._fail(~ok, residual, [f[index : index + 1] for f in floats], continuation=False)
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
        each value carries a bound on its rounding error (:meth:`_float_error`),
        and the points where the bound exceeds the promise are computed again at
        :attr:`finishing_dps` digits and rounded, or, for a system of more than
        :attr:`max_finished_unknowns` unknowns, reported by a
        :class:`pencils.errors.PrecisionWarning`.

        With ``derivatives`` (parameter symbols), returns the tuple ``(value,
        d value / d theta_1, ...)``.  They are exact: with
        :math:`M = \Lambda - \eta(g)` and :math:`G = M^{-1}`, the solution moves by
        :math:`\partial_\theta g = J^{-1} [G\, \partial_\theta M|_g\, G]_S` (the tangent of
        :meth:`_velocity`), and the target :math:`c\, G_{\mathrm{out},\mathrm{in}}` by
        :math:`\partial_\theta c\, G_{\mathrm{out},\mathrm{in}} - c\,(G\, \partial_\theta M\, G)_{\mathrm{out},\mathrm{in}}`,
        with :math:`\partial_\theta M = \partial_\theta \Lambda - \eta_{\partial_\theta w}(g) - \eta_w(\partial_\theta g)`:
        one linear solve per point and parameter.  A parameter the trace does not
        depend on has derivative 0.
        """
        if dps is None:
            values, errors, shape, columns = self._float_target(subs, path_from, continuation, derivatives)
            inaccurate = np.flatnonzero(_inaccurate(values, errors, self.float_accuracy))
            if inaccurate.size and self.finishes:
                point = {p: column[inaccurate] for p, column in zip(self.parameters, columns)}
                start = _points_of(path_from, (len(values[0]),), inaccurate)
                exact = self.target(point, self.finishing_dps, start, continuation, derivatives)
                for value, finished in zip(values, exact if derivatives else (exact,)):
                    value[inaccurate] = _rounded(finished, value.dtype)
            elif inaccurate.size:
                where = self._describe(_floats(columns), inaccurate[0])
                _warn_imprecise(inaccurate, values, errors, where, len(self._unknown_rows), stacklevel=4)
            results = [_shaped(value, shape, None) for value in values]
            return tuple(results) if derivatives else results[0]
        with np.errstate(all="ignore"), _single_threaded_blas(), precision.digits(dps + 15):
            inverse, scale, shape, _ = self._solve(subs, dps, path_from, continuation)
            values = [scale * inverse[:, self.record["out"], self.record["into"]]]
            if derivatives:
                _, columns, _ = self._points(subs, multiprecision=True)
                values += self._derivatives(columns, inverse, scale, derivatives, dps)[0]
            results = [_shaped(value, shape, dps) for value in values]
        return tuple(results) if derivatives else results[0]

    @property
    def finishes(self) -> bool:
        """Whether points that double precision cannot promise are finished in arbitrary precision automatically."""
        return len(self._unknown_rows) <= self.max_finished_unknowns

    def _float_target(self, subs: Mapping, path_from: Mapping | None, continuation: str, derivatives: Sequence):
        """The float target and its ``derivatives`` at every point, each with a bound on its rounding error.

        Returns ``(values, errors, shape, columns)``: flat arrays (one per output),
        the broadcast shape and the parameter columns.
        """
        with np.errstate(all="ignore"), _single_threaded_blas():
            inverse, scale, shape, g = self._solve(subs, None, path_from, continuation)
            _, columns, count = self._points(subs, multiprecision=False)
            floats = _floats(columns)
            lambdas, weights, _, _ = self._coefficients(floats, count, multiprecision=False)
            error, sensitivity, entries, adjoint = self._float_error(lambdas, weights, g, inverse, scale)
            values, errors = [scale * inverse[:, self.record["out"], self.record["into"]]], [error]
            if derivatives:
                slopes, parts = self._derivatives(floats, inverse, scale, derivatives, None, (sensitivity, adjoint))
                # first order: each input of a derivative (the entries of G, the target's sensitivity
                # to M and the coefficients) is off by at most `inputs` relative
                with np.errstate(divide="ignore", invalid="ignore"):
                    inputs = np.maximum(entries, np.nan_to_num(error / np.abs(values[0]), nan=np.inf))
                rounding = _Float.epsilon / 2 * (max(self._rounding_steps[1], default=0) + 2)
                values += slopes
                errors += [(2 * inputs + rounding) * magnitude + solve for magnitude, solve in parts]
        return values, errors, shape, columns

    def _derivatives(self, columns: list, inverse, scale, parameters: Sequence, dps: int | None, adjoints=None):
        r"""The derivatives of the target at solved points (see :meth:`target`), one array per parameter.

        Returns ``(derivatives, parts)``; ``parts`` (with ``adjoints``, the
        sensitivity :math:`S = \partial T/\partial M` and the adjoint :math:`y`
        of :meth:`_float_error`) holds for each derivative ``(magnitude, solve)``.
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
        algebra = _Multiprecision(dps) if multiprecision else _Float()
        lambdas, weights, _, _ = self._coefficients(columns, count, multiprecision)
        g = inverse[:, self._unknown_rows, self._unknown_cols]
        zeros = _zeros(count, object if multiprecision else float)
        ones = zeros + 1
        out, into = self.record["out"], self.record["into"]
        results, parts = [], []
        if adjoints is not None:
            sensitivity, adjoint = adjoints
            jacobian = self._jacobian(self._jacobian_entries(weights, inverse, 1.0))
            rounding = len(self._unknown_rows) * _Float.epsilon / 2
        for parameter in map(sympy.sympify, parameters):
            if parameter not in self.parameters:
                results.append(0 * scale)
                parts.append((np.zeros(count), np.zeros(count)))
                continue
            directions = [ones if p == parameter else zeros for p in self.parameters]
            d_lambdas, d_weights, d_scale = self._changes(columns, directions, count, multiprecision)
            point = _PathPoint(lambdas, weights, ones, d_lambdas, d_weights, zeros)
            moved = self._velocity(point, g, inverse, algebra)
            direct = self._matrix(d_lambdas, d_weights, g, 1, algebra)
            change = direct + self._matrix(0 * lambdas, weights, moved, 1, algebra)
            entry = (inverse[:, out, None, :] @ change @ inverse[:, :, into, None])[:, 0, 0]
            results.append(d_scale * inverse[:, out, into] - scale * entry)
            if adjoints is not None:
                magnitude = (np.abs(d_scale * inverse[:, out, into])
                             + np.sum(np.abs(sensitivity) * np.abs(direct), axis=(1, 2)))
                shift = (inverse @ direct @ inverse)[:, self._unknown_rows, self._unknown_cols]
                residual = np.abs((jacobian @ moved[:, :, None])[:, :, 0] - shift) + rounding * (
                    (np.abs(jacobian) @ np.abs(moved)[:, :, None])[:, :, 0] + np.abs(shift))
                parts.append((magnitude, np.sum(np.abs(adjoint) * residual, axis=1)))
        return results, parts


def _inaccurate(values: list, errors: list, accuracy: float) -> np.ndarray:
    """The points where some value's error bound exceeds ``accuracy`` times its size (or is not finite)."""
    return np.any([~(error <= accuracy * np.abs(value)) for value, error in zip(values, errors)], axis=0)


def _points_of(mapping: Mapping | None, shape: tuple, indices: np.ndarray) -> dict | None:
    """The values of ``mapping`` (numbers, or arrays that broadcast to ``shape``) at the flat ``indices``."""
    if not mapping:
        return mapping
    return {key: np.broadcast_to(np.asarray(value), shape).reshape(-1)[indices] for key, value in mapping.items()}


def _rounded(values, dtype) -> np.ndarray:
    """mpmath numbers (a scalar or an array) as an array of ``dtype`` (float or complex)."""
    values = np.asarray(values, dtype=object).reshape(-1)
    return np.array([complex(v) if dtype.kind == "c" else float(v) for v in values], dtype=dtype)


def _warn_imprecise(points: np.ndarray, values: list, errors: list, where: str, unknowns: int,
                    stacklevel: int) -> None:
    """Issue the :class:`pencils.errors.PrecisionWarning` for ``points`` whose float values cannot be promised
    (``stacklevel`` counts the calls up to the user's, this one included)."""
    first = int(points[0])
    relative = max(float(error[first] / abs(value[first])) if value[first] != 0 else np.inf
                   for value, error in zip(values, errors))
    warnings.warn(
        f"double precision cannot promise a relative accuracy of {Solver.float_accuracy:.0e} at {points.size} of "
        f"{len(values[0])} point(s): at {where} the rounding error may reach {relative:.1e} of the value (a tiny "
        f"ridge, or a cancellation between large terms), and the {unknowns}-unknown system is "
        f"too large to be finished in arbitrary precision automatically. Pass dps=30 for these points (slow), "
        f"or use a larger ridge.",
        PrecisionWarning,
        stacklevel=stacklevel,
    )


def _floats(columns: list) -> list:
    """Parameter columns as float (or complex, where a value is) arrays."""
    floats = [np.asarray(c, dtype=complex) if c.dtype == object else c for c in columns]
    return [f.real if np.iscomplexobj(f) and np.all(f.imag == 0) else f for f in floats]


def _shaped(values: np.ndarray, shape: tuple, dps: int | None):
    """Values at the points in the shape of the parameters: real where the imaginary parts vanish,
    a scalar for scalar parameters; in arbitrary precision rounded to ``dps`` digits (in this thread's
    context) and returned as numbers of ``mpmath.mp``'s types."""
    if dps is None:
        if np.iscomplexobj(values) and np.all(values.imag == 0):
            values = values.real
        values = values.reshape(shape)
        return values if shape else values.item()
    with precision.digits(dps):
        values = [precision.public(+(v.real if hasattr(v, "_mpc_") and v.imag == 0 else v)) for v in values]
    return np.array(values, dtype=object).reshape(shape) if shape else values[0]


class _BlockTriangular:
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
        x = _zeros(right.shape, np.result_type(entries, right))
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


# --------------------------------------------------------------------- the order of a batch

_DEPTH = 30  # the finest grid has 2**30 cells per coordinate


def _tabulate(function, columns: list, count: int, multiprecision: bool) -> np.ndarray:
    """A compiled function of the parameter columns at every point, as one array of shape (C, P).

    In arbitrary precision it is called point by point on mpmath numbers (an object array).
    """
    if not multiprecision:
        return _table(function(*columns), count)
    rows = [function(*(_to_mpmath(c[k]) for c in columns)) for k in range(count)]
    table = np.array([[precision.context().mpmathify(x) for x in row] for row in rows], dtype=object).T
    return table.reshape(len(table), count)


def _table(values: list, count: int) -> np.ndarray:
    """Compiled coefficients (numbers or arrays) as one array of shape (C, P).

    The values are Python or numpy numbers and arrays (``np.complex128`` is a
    ``complex``); checking their types is much quicker than ``np.iscomplexobj``.
    """
    dtype = complex if any(isinstance(value, complex) or _kind(value) == "c" for value in values) else float
    table = np.empty((len(values), count), dtype=dtype)
    for row, value in zip(table, values):
        row[...] = value
    return table


def _kind(value) -> str:
    """The numpy kind of an array or numpy scalar (``"c"`` complex, ``"f"`` float, ...); "" for other values."""
    dtype = getattr(value, "dtype", None)
    return dtype.kind if isinstance(dtype, np.dtype) else ""


def _features(columns: list) -> tuple[np.ndarray, np.ndarray]:
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


def _anchors(features: np.ndarray, groups: np.ndarray, budget: int) -> tuple[np.ndarray, np.ndarray, int]:
    """One point per cell of the finest grid with at most ``budget`` occupied cells (at least one per group).

    Returns ``(anchors, representative, level)``: the anchor of every point's cell, and the level.
    """
    level, cell = 0, _cells(features, groups, 0)
    while features.shape[1] and level < _DEPTH and cell.max() + 1 < len(cell):
        finer = _cells(features, groups, level + 1)
        if finer.max() + 1 > budget:
            break
        level, cell = level + 1, finer
    order = np.argsort(cell, kind="stable")
    anchors = order[np.searchsorted(cell[order], np.arange(cell.max() + 1))]
    return anchors, anchors[cell], level


def _levels(features: np.ndarray, groups: np.ndarray, solved: np.ndarray, representative: np.ndarray, first: int):
    """Yield ``(children, parents)`` level by level, coarse to fine, from level ``first``.

    At level ``l`` the points fall into the cells of a grid of ``2**l`` cells
    per coordinate (within their group).  A cell with no solved point gets one
    child, solved from the representative of its parent cell; after the last
    level the points left (duplicates) start from the representative of their
    cell.  ``representative`` holds, for every point, a solved point of its
    current cell.
    """
    solved = solved.copy()
    for level in range(first, _DEPTH + 1 if features.shape[1] else first):
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
