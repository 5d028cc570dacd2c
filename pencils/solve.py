r"""Numeric solution of the Dyson equation: vectorised numpy and arbitrary-precision mpmath.

The unknowns :math:`g_S` solve

.. math::  F(g; s) = \bigl[(\Lambda - s\,\eta(g))^{-1}\bigr]_S - g_S = 0

at :math:`s = 1`.  The *physical* solution is the one connected to
:math:`g = \Lambda^{-1}` at :math:`s = 0` (no randomness: :math:`s = \tau^2`
scales the variance of every Gaussian), so the solver follows it by
continuation in :math:`s` from 0 to 1, with a tangent predictor and Newton's
method with the exact Jacobian

.. math::  \frac{\partial G_{ab}}{\partial g_u} = s \sum_{t:\,u_t = u} w_t\, G_{a i_t}\, G_{j_t b},

which follows from :math:`dG = -G\,dM\,G` for :math:`M = \Lambda - s\,\eta(g)`.
All points of a parameter array are solved together with batched numpy linear
algebra.  Newton converges quadratically, so arbitrary precision costs a few
extra iterations: the mpmath path polishes the float solution.
"""

from __future__ import annotations

from typing import Mapping

import mpmath
import numpy as np
import sympy
from threadpoolctl import threadpool_limits

from .errors import ConvergenceError, ParameterError

__all__ = ["Solver"]


def _to_mpmath(value):
    """An mpmath number at the working precision (strings and SymPy numbers are exact)."""
    if isinstance(value, sympy.Basic):
        value = sympy.N(value, mpmath.mp.dps)
        real, imaginary = (mpmath.mpf(part) for part in value.as_real_imag())
        return real if imaginary == 0 else mpmath.mpc(real, imaginary)
    return mpmath.mpmathify(value)


class _Float:
    """Batched float64 / complex128 linear algebra over a leading axis of points."""

    epsilon = float(np.finfo(float).eps)
    continuation_tolerance = 1e-9
    residual_tolerance = 1e-12

    @staticmethod
    def zeros(shape, dtype):
        return np.zeros(shape, dtype=dtype)

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
        return np.max(np.abs(vectors), axis=-1)

    @staticmethod
    def finite(array) -> np.ndarray:
        return np.all(np.isfinite(array.reshape(array.shape[0], -1)), axis=1)


class _Multiprecision:
    """The same operations on object arrays of mpmath numbers, point by point."""

    def __init__(self, dps: int):
        self.epsilon = mpmath.mpf(10) ** (-dps)
        self.continuation_tolerance = mpmath.mpf(10) ** -12
        self.residual_tolerance = self.epsilon

    @staticmethod
    def zeros(shape, dtype=None):
        array = np.empty(shape, dtype=object)
        array[...] = mpmath.mpf(0)
        return array

    @staticmethod
    def inv(matrices):
        identity = _Multiprecision.zeros(matrices.shape[-2:])
        np.fill_diagonal(identity, mpmath.mpf(1))
        return np.array([_gauss_solve(matrix, identity) for matrix in matrices], dtype=object).reshape(matrices.shape)

    @staticmethod
    def solve(matrices, vectors):
        solutions = [_gauss_solve(matrix, vector[:, None])[:, 0] for matrix, vector in zip(matrices, vectors)]
        return np.array(solutions, dtype=object).reshape(vectors.shape)

    @staticmethod
    def norm(vectors):
        return np.array([max((abs(x) for x in row), default=mpmath.mpf(0)) for row in vectors], dtype=object)

    @staticmethod
    def finite(array) -> np.ndarray:
        return np.array([all(mpmath.isfinite(x) for x in row.ravel()) for row in array])


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
            return np.full(right.shape, mpmath.nan, dtype=object)
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
    r"""Compiled solvers for a :class:`pencils.dyson.DysonSystem`.

    The coefficients (:math:`\Lambda`, the weights of :math:`\eta`, the block
    ratios and the scale of the target) are compiled once with
    :func:`sympy.lambdify`, for numpy and for mpmath.

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

    def __init__(self, system):
        self.system = system
        pencil = system.pencil
        self.size = size = len(pencil.sizes)
        self.parameters = system.parameters
        identity = list(system.deterministic_pattern())
        self._identity_rows = np.array([i for i, _ in identity], dtype=int)
        self._identity_cols = np.array([j for _, j in identity], dtype=int)
        couplings = sorted(system.couplings, key=lambda c: c.unknown)  # contiguous per unknown
        self._rows = np.array([c.row for c in couplings], dtype=int)
        self._cols = np.array([c.col for c in couplings], dtype=int)
        self._sources = np.array([c.unknown for c in couplings], dtype=int)
        self._unknown_rows = np.array([l for l, _ in system.unknowns], dtype=int)
        self._unknown_cols = np.array([m for _, m in system.unknowns], dtype=int)
        self._scatter = np.zeros((len(couplings), size * size))
        self._scatter[np.arange(len(couplings)), self._rows * size + self._cols] = 1.0
        self._first = np.searchsorted(self._sources, np.arange(len(system.unknowns)))
        expressions = (
            [system.deterministic[i, j] for i, j in identity]
            + [c.weight for c in couplings]
            + [sympy.sympify(r) for r in system.ratios]
            + [pencil.scale]
        )
        self._split = np.cumsum([len(identity), len(couplings), len(system.ratios)])
        self._numpy = sympy.lambdify(self.parameters, expressions, modules="numpy")
        self._mpmath = sympy.lambdify(self.parameters, expressions, modules="mpmath")

    # ----------------------------------------------------------------- parameters

    def _points(self, subs: Mapping, multiprecision: bool) -> tuple[tuple, list, int]:
        """Broadcast the parameter values: ``(shape, flat columns, number of points)``."""
        subs = {sympy.sympify(key): value for key, value in subs.items()}
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
        if multiprecision:
            rows = [self._mpmath(*(_to_mpmath(c[k]) for c in columns)) for k in range(count)]
            table = np.array([[mpmath.mpmathify(x) for x in row] for row in rows], dtype=object).T
            table = table.reshape(len(table), count)
        else:
            raw = self._numpy(*columns)
            table = np.array([np.broadcast_to(np.asarray(x), (count,)) for x in raw])
        lambdas, weights, ratios, rest = np.split(table, self._split)
        return lambdas, weights, ratios, rest[0]

    def _validate(self, coefficients, columns: list) -> None:
        lambdas, weights, ratios, scale = coefficients
        for block, (row, ratio) in enumerate(zip(ratios, self.system.ratios)):
            values = np.array([complex(x) for x in row])
            bad = ~np.isfinite(values) | (values.imag != 0) | (values.real < 0)
            if block == self.system.pencil.out:
                bad |= values.real == 0
            if np.any(bad):
                index = int(np.flatnonzero(bad)[0])
                raise ParameterError(
                    f"the dimension ratio {ratio} is {values[index].real:g} at {self._describe(columns, index)}; "
                    f"ratios must be finite and > 0 (>= 0 for a block that may be empty)."
                )
        table = np.concatenate([lambdas, weights, scale[None]])
        values = np.array([[complex(x) for x in row] for row in table])
        finite = np.all(np.isfinite(values), axis=0)
        if not np.all(finite):
            index = int(np.flatnonzero(~finite)[0])
            raise ParameterError(
                f"a pencil coefficient is not finite at {self._describe(columns, index)} "
                f"(a division by a zero parameter?); change that value."
            )

    def _describe(self, columns: list, index: int) -> str:
        return ", ".join(f"{p}={columns[k][index]}" for k, p in enumerate(self.parameters)) or "the given values"

    # ----------------------------------------------------------------- the iteration

    def _inverse(self, lambdas, weights, g, step, algebra):
        """:math:`(\\Lambda - s\\,\\eta(g))^{-1}` at every point."""
        count = lambdas.shape[1] if lambdas.size else g.shape[0]
        matrix = algebra.zeros((count, self.size, self.size), np.result_type(lambdas, weights, g))
        matrix[:, self._identity_rows, self._identity_cols] = lambdas.T
        if len(self._rows):
            values = np.reshape(step, (-1, 1)) * weights.T * g[:, self._sources]
            if matrix.dtype == object:  # a dense product would multiply every mpf by 0.0
                for t, (i, j) in enumerate(zip(self._rows, self._cols)):
                    matrix[:, i, j] -= values[:, t]
            else:
                matrix = matrix - (values @ self._scatter).reshape(count, self.size, self.size)
        return algebra.inv(matrix)

    def _linearise(self, weights, inverse, g, step):
        """The Jacobian of ``F`` in ``g`` and the derivative of ``F`` in ``s``."""
        left = inverse[:, self._unknown_rows][:, :, self._rows]  # G[a_r, i_t]
        right = np.swapaxes(inverse[:, self._cols][:, :, self._unknown_cols], 1, 2)  # G[j_t, b_r]
        base = weights.T[:, None, :] * left * right  # (P, U, T)
        summed = np.add.reduceat(base, self._first, axis=2) if base.shape[2] else base[:, :, :0]
        jacobian = np.reshape(step, (-1, 1, 1)) * summed - np.eye(len(self._unknown_rows))
        derivative = (base @ g[:, self._sources, None])[..., 0]
        return jacobian, derivative

    def _relative(self, vectors, g, algebra):
        scale = algebra.norm(g)
        return np.array([v / (s if s != 0 else 1) for v, s in zip(algebra.norm(vectors), scale)], dtype=object if g.dtype == object else float)

    def _newton(self, lambdas, weights, g, step, algebra, tolerance, accept, iterations):
        """Newton iterations at fixed ``s``.

        Iterates until every point's relative step is below ``tolerance``, or
        below ``accept`` and no longer halving (the rounding floor of an
        ill-conditioned point), or not finite.  Returns ``(g, converged,
        relative residual)`` with ``converged`` where the relative residual of
        the equations is at most ``accept``.
        """
        previous = None
        for _ in range(iterations):
            inverse = self._inverse(lambdas, weights, g, step, algebra)
            residual = inverse[:, self._unknown_rows, self._unknown_cols] - g
            jacobian, _ = self._linearise(weights, inverse, g, step)
            delta = algebra.solve(jacobian, -residual)
            g = g + delta
            relative = self._relative(delta, g, algebra)
            done = (relative <= tolerance) | ~algebra.finite(g)
            if previous is not None:
                done |= (relative <= accept) & (relative >= previous / 2)
            if np.all(done):
                break
            previous = relative
        inverse = self._inverse(lambdas, weights, g, step, algebra)
        relative = self._relative(inverse[:, self._unknown_rows, self._unknown_cols] - g, g, algebra)
        finite = algebra.finite(g) & algebra.finite(inverse)
        converged = np.array([bool(ok and r <= accept) for ok, r in zip(finite, relative)], dtype=bool)
        return g, converged, relative

    def _continue(self, lambdas, weights, algebra):
        """Follow the physical branch from ``s = 0`` (``g = Lambda^{-1}``) to ``s = 1``.

        Returns ``(g, reached)``, see :meth:`_follow`.
        """
        count = lambdas.shape[1] if lambdas.size else weights.shape[1]
        zero = algebra.zeros((count, len(self._unknown_rows)), np.result_type(lambdas, weights))
        deterministic = self._inverse(lambdas, weights, zero, np.zeros(count), algebra)
        if np.any(~algebra.finite(deterministic)):
            raise ConvergenceError(
                "the deterministic part of the pencil is singular (the expression is undefined when "
                "every Gaussian is set to zero, e.g. an inverse with no ridge or shift); add a ridge "
                "such as + lam*Identity and take lam small."
            )
        g = deterministic[:, self._unknown_rows, self._unknown_cols]
        return self._follow(g, algebra, lambda position, index: (lambdas[:, index], weights[:, index], position))

    def _follow(self, g, algebra, path, tangent: bool = True):
        """Follow solutions along ``path(position, index) -> (lambdas, weights, s)`` from 0 to 1.

        Every point has its own position and step.  A step is accepted when
        Newton converges and its correction is small next to the predictor's
        move (at most 1/4: a larger one means a jump to another branch or a
        sharp turn); the next step is scaled to aim at 1/10 (between 1/4 and 4
        times), and a rejected one is cut at least fourfold.  The predictor is
        second order in ``s`` (the exact tangent, and its change since the last
        accepted point) when ``tangent``, else the secant through the last two
        accepted solutions.  Returns
        ``(g, reached)``, ``reached`` false where the step fell below ``1e-13``
        before position 1.
        """
        count = g.shape[0]
        position, step = np.zeros(count), np.full(count, 1e-4)
        last_g, last_position = g.copy(), np.full(count, np.nan)
        last_velocity = np.zeros_like(g)
        active = np.ones(count, dtype=bool)
        while np.any(active):
            index = np.flatnonzero(active)
            here, start = position[index], g[index]
            target = np.minimum(1.0, here + step[index])
            span = here - last_position[index]
            span = np.where(np.isfinite(span) & (span > 0), span, np.inf)[:, None]
            lam, weight, s_here = path(here, index)
            if tangent:
                jacobian, derivative = self._linearise(weight, self._inverse(lam, weight, start, s_here, algebra), start, s_here)
                velocity = algebra.solve(jacobian, -derivative)
                # second order: the change of the tangent since the last accepted point
                acceleration = (velocity - last_velocity[index]) / span
            else:
                velocity = (start - last_g[index]) / span
                acceleration = 0 * velocity
            delta = (target - here)[:, None]
            predicted = start + delta * velocity + delta**2 / 2 * acceleration
            lam, weight, s_target = path(target, index)
            candidate, converged, _ = self._newton(
                lam, weight, predicted, s_target, algebra, algebra.continuation_tolerance,
                100 * algebra.continuation_tolerance, 6,
            )
            # Stay on the branch: the corrector must move much less than the predictor did.
            # The ratio is O(step) for a smooth path; the next step aims at a ratio of 1/10.
            correction = np.array(algebra.norm(candidate - predicted), dtype=float)
            move = np.array(algebra.norm(predicted - start), dtype=float) + 1e-6 * np.array(algebra.norm(start), dtype=float)
            ratio = correction / np.maximum(move, 1e-300)
            converged &= ratio <= 0.25
            accepted, rejected = index[converged], index[~converged]
            last_g[accepted], last_position[accepted] = g[accepted], position[accepted]
            last_velocity[accepted] = velocity[converged]
            g[accepted], position[accepted] = candidate[converged], target[converged]
            scale = np.clip(0.1 / np.maximum(ratio, 1e-3), 0.25, 4.0)
            step[accepted] = np.minimum(step[accepted] * scale[converged], 1.0)
            step[rejected] *= np.minimum(scale[~converged], 0.25)
            active = (position < 1.0) & (step >= 1e-13)
        return g, position == 1.0

    def _fail(self, failed: np.ndarray, relative, columns: list) -> None:
        if not np.any(failed):
            return
        first = int(np.flatnonzero(failed)[0])
        residual = float(np.nan_to_num(np.asarray(relative[first], dtype=float), nan=np.inf))
        raise ConvergenceError(
            f"the Dyson equation did not converge at {int(np.sum(failed))} of {len(failed)} point(s); first at "
            f"{self._describe(columns, first)} (relative residual {residual:.2e}). The point may sit on a "
            f"singularity (a vanishing ridge at an interpolation threshold, or a real spectral parameter "
            f"inside the spectrum): move it, increase the ridge, or give z a small positive imaginary part.",
            parameters={str(p): columns[k][first] for k, p in enumerate(self.parameters)},
            residual=residual,
        )

    # ----------------------------------------------------------------- public

    def _continue_in_parameters(self, floats: list, count: int, path_from: Mapping):
        """Solve at the ``path_from`` values, then follow the straight line to the requested ones."""
        path_from = {sympy.sympify(key): value for key, value in path_from.items()}
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
        g, reached = self._continue(lambdas, weights, _Float())
        self._fail(~reached, np.full(count, np.inf), starts)

        def path(position, index):
            columns = [s[index] + position * (e[index] - s[index]) for s, e in zip(starts, ends)]
            lam, weight, _, _ = self._coefficients(columns, len(index), multiprecision=False)
            return lam, weight, np.ones(len(index))

        return self._follow(g, _Float(), path, tangent=False)

    def solve(self, subs: Mapping, dps: int | None = None, path_from: Mapping | None = None) -> tuple:
        r"""Solve at every point of ``subs`` (broadcast).

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
        # Non-finite values are detected and reported below.  The matrices are small and
        # batched: multi-threaded BLAS only adds contention (measured 100x slower on a loaded 2-core machine).
        with np.errstate(all="ignore"), threadpool_limits(limits=1, user_api="blas"):
            return self._solve(subs, dps, path_from)

    def _solve(self, subs: Mapping, dps: int | None, path_from: Mapping | None) -> tuple:
        shape, columns, count = self._points(subs, multiprecision=dps is not None)
        floats = [np.asarray(c, dtype=complex) if c.dtype == object else c for c in columns]
        floats = [f.real if np.iscomplexobj(f) and np.all(f.imag == 0) else f for f in floats]
        coefficients = self._coefficients(floats, count, multiprecision=False)
        self._validate(coefficients, floats)
        lambdas, weights, _, scale = coefficients
        if path_from:
            g, reached = self._continue_in_parameters(floats, count, path_from)
        else:
            g, reached = self._continue(lambdas, weights, _Float())
        g, converged, relative = self._newton(
            lambdas, weights, g, 1.0, _Float(), 4 * _Float.epsilon, _Float.residual_tolerance, self.max_newton
        )
        converged &= reached
        if dps is None:
            inverse = self._inverse(lambdas, weights, g, 1.0, _Float())
            # Points stuck just above the tolerance by rounding (an ill-conditioned system) are
            # finished in extended precision and rounded back; genuinely failed points are not.
            narrow = np.flatnonzero(~converged & reached & (relative < 1e-8))
            if narrow.size:
                polished, _ = self._polish(columns, floats, g, np.ones(count, dtype=bool), narrow, 30)
                inverse[narrow] = np.array(polished.tolist(), dtype=inverse.dtype)
                converged[narrow] = True
            self._fail(~converged, relative, floats)
            return inverse, scale, shape
        inverses, scales = self._polish(columns, floats, g, converged, np.arange(count), dps)
        return inverses, scales, shape

    def _polish(self, columns: list, floats: list, g, converged, indices, dps: int) -> tuple:
        """Newton in mpmath at ``dps + 15`` digits for the points ``indices``.

        Starts from the float solution where it converged, else runs the
        continuation in mpmath.  Returns the inverses and scales (object arrays).
        """
        inverses, scales = [], []
        algebra = _Multiprecision(dps)
        with mpmath.workdps(dps + 15):
            for index in indices:
                point = [c[index : index + 1] for c in columns]
                lambdas, weights, _, scale = self._coefficients(point, 1, multiprecision=True)
                if converged[index]:
                    start = np.array([[_to_mpmath(x) for x in g[index].tolist()]], dtype=object)
                else:
                    start, reached = self._continue(lambdas, weights, algebra)
                    self._fail(~reached, [np.inf], [f[index : index + 1] for f in floats])
                solution, ok, residual = self._newton(
                    lambdas, weights, start, 1, algebra, mpmath.mpf(10) ** -(dps + 8), algebra.residual_tolerance,
                    self.max_newton,
                )
                self._fail(~ok, residual, [f[index : index + 1] for f in floats])
                inverses.append(self._inverse(lambdas, weights, solution, 1, algebra)[0])
                scales.append(scale[0])
        return np.array(inverses, dtype=object), np.array(scales, dtype=object)

    def target(self, subs: Mapping, dps: int | None = None, path_from: Mapping | None = None):
        """The limit of the normalised trace at the parameter values ``subs``.

        Returns a float (complex if the values are complex), a numpy array if any
        value is an array, or mpmath numbers (an object array for arrays) if ``dps``.
        ``path_from`` (see :func:`pencils.trace_limit`) gives start values for a
        continuation in the parameters.
        """
        inverse, scale, shape = self.solve(subs, dps=dps, path_from=path_from)
        out, into = self.system.pencil.out, self.system.pencil.into
        if dps is None:
            values = scale * inverse[:, out, into]
            if np.iscomplexobj(values) and np.all(values.imag == 0):
                values = values.real
            values = values.reshape(shape)
            return values if shape else values.item()
        with mpmath.workdps(dps + 15):
            values = [s * v for s, v in zip(scale, inverse[:, out, into])]
        with mpmath.workdps(dps):
            values = [+(v.real if isinstance(v, mpmath.mpc) and v.imag == 0 else v) for v in values]
        return np.array(values, dtype=object).reshape(shape) if shape else values[0]
