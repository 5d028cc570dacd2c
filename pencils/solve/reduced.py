r"""The reduced Dyson equations as numbers: Newton's method in the few unknowns of :mod:`pencils.reduction`.

A reduced system states :math:`y = R(y)` in unknowns :math:`y_k = \sum c\, g_{lm}`
(combinations of the full system's block traces, see
:class:`pencils.reduction.ReducedSystem`), and the limit as :math:`T(y)`.
:class:`ReducedEquations` compiles the residuals :math:`F(y) = y - R(y)`, their
exact Jacobian and :math:`T` for numpy and mpmath, takes its start from the
full system's float solution (:meth:`ReducedEquations.start`: on the physical
branch, which the continuation of the full system finds) and polishes it by
Newton's method (:meth:`ReducedEquations.newton`); the derivatives of the limit
in the parameters follow from the implicit function theorem on the reduced
equations (:meth:`ReducedEquations.derivatives`).  It is built from plain
data (:meth:`ReducedEquations.record`, expressions as the trees of
:mod:`pencils.serialization`), so that the derivation store keeps it on disk
and the solver uses it without reducing again.
"""

from __future__ import annotations

import contextlib
from functools import cached_property
from typing import Mapping

import numpy as np
import sympy

from .. import precision
from ..errors import ConvergenceError
from ..serialization import decode, encode
from .compiled import tabulate, to_mpmath

__all__ = ["ReducedEquations"]


class ReducedEquations:
    r"""Residuals, Jacobian and target of reduced equations, compiled, and Newton's method on them.

    Parameters
    ----------
    parameters : sequence of sympy.Symbol
        As in the full system, in its order.
    unknowns : sequence of sympy.Symbol
    right_hand_sides : sequence of sympy.Expr
        :math:`R_k(y, \text{parameters})`, one per unknown.
    target : sympy.Expr
        :math:`T(y, \text{parameters})`.
    combinations : sequence of dict
        For each unknown, ``{(l, m): c}``: the unknown is :math:`\sum c\, g_{lm}`
        with :math:`c` an expression in the parameters.

    Examples
    --------
    >>> import sympy
    >>> g, z = sympy.symbols("g z")
    >>> equations = ReducedEquations([z], [g], [1 / (-z - g)], g, [{(0, 0): 1}])
    >>> ReducedEquations.from_record(equations.record()).right_hand_sides
    [1/(-g - z)]
    """

    def __init__(self, parameters, unknowns, right_hand_sides, target, combinations):
        self.parameters = tuple(parameters)
        self.unknowns = list(unknowns)
        self.right_hand_sides = [sympy.sympify(r) for r in right_hand_sides]
        self.target = sympy.sympify(target)
        self.combinations = [{(int(l), int(m)): sympy.sympify(c) for (l, m), c in blocks.items()}
                             for blocks in combinations]
        self._derivative_functions: dict = {}

    def record(self) -> dict:
        """The equations as plain data (integers, lists and expression trees), for the on-disk cache."""
        return {
            "parameters": [encode(p) for p in self.parameters],
            "unknowns": [encode(u) for u in self.unknowns],
            "right_hand_sides": [encode(r) for r in self.right_hand_sides],
            "target": encode(self.target),
            "combinations": [[[l, m, encode(c)] for (l, m), c in blocks.items()] for blocks in self.combinations],
        }

    @classmethod
    def from_record(cls, record: Mapping) -> "ReducedEquations":
        """The equations of a :meth:`record` (``ValueError``, ``TypeError`` or ``LookupError`` if malformed)."""
        unknowns = [decode(tree) for tree in record["unknowns"]]
        right_hand_sides = [decode(tree) for tree in record["right_hand_sides"]]
        combinations = [{(int(l), int(m)): decode(c) for l, m, c in blocks} for blocks in record["combinations"]]
        if not (len(unknowns) == len(right_hand_sides) == len(combinations)) or not all(
                isinstance(u, sympy.Symbol) for u in unknowns):
            raise ValueError("a reduced record needs one symbol, right-hand side and combination per unknown")
        return cls([decode(tree) for tree in record["parameters"]], unknowns, right_hand_sides,
                   decode(record["target"]), combinations)

    @cached_property
    def _compiled(self) -> dict:
        """Residuals :math:`F(y) = y - R(y)`, Jacobian and target, for numpy and mpmath, of (unknowns, parameters)."""
        from .compiled import compile_expressions

        arguments = tuple(self.unknowns) + tuple(self.parameters)
        residuals = [y - r for y, r in zip(self.unknowns, self.right_hand_sides)]
        jacobian = [r.diff(y) for r in residuals for y in self.unknowns]
        expressions = residuals + jacobian + [self.target]
        return {module: compile_expressions(arguments, expressions, module) for module in ("numpy", "mpmath")}

    def _compiled_derivatives(self, parameters: tuple, module: str):
        r"""For each parameter :math:`\theta` (one of :attr:`parameters`), :math:`\partial_\theta F` (one per
        unknown), then :math:`\partial_y T` (one per unknown), then :math:`\partial_\theta T` for each
        :math:`\theta`: exact SymPy derivatives, compiled for ``module``, of (unknowns, parameters)."""
        key = (parameters, module)
        if key not in self._derivative_functions:
            from .compiled import compile_expressions

            residuals = [y - r for y, r in zip(self.unknowns, self.right_hand_sides)]
            expressions = [f.diff(theta) for theta in parameters for f in residuals]
            expressions += [self.target.diff(y) for y in self.unknowns]
            expressions += [self.target.diff(theta) for theta in parameters]
            self._derivative_functions[key] = compile_expressions(
                tuple(self.unknowns) + tuple(self.parameters), expressions, module)
        return self._derivative_functions[key]

    def derivatives(self, unknowns: list, columns: list, count: int, dps: int | None, parameters) -> list:
        r"""The derivatives of the target in ``parameters`` at the solution ``unknowns`` (from :meth:`newton`).

        By the implicit function theorem on :math:`F(y, \theta) = y - R(y, \theta) = 0`,

        .. math::  \frac{dT}{d\theta} = \partial_\theta T - \partial_y T \, F_y^{-1} \partial_\theta F,

        with the exact derivatives of the reduced equations (one small linear solve per point and
        parameter).  A parameter that the equations do not contain has derivative 0.

        Returns
        -------
        list of numpy.ndarray
            One flat column per parameter (object arrays of mpmath numbers if ``dps``).

        Examples
        --------
        >>> import sympy
        >>> g, z = sympy.symbols("g z")
        >>> equations = ReducedEquations([z], [g], [1 / (-z - g)], g, [{(0, 0): 1}])
        >>> y, _, _ = equations.newton([-1j], [np.array([0.5j])], 1, None)
        >>> slope, = equations.derivatives(y, [np.array([0.5j])], 1, None, [z])
        >>> g0 = y[0][0]  # g^2 + zg + 1 = 0, so g' = -g / (2g + z)
        >>> bool(abs(slope[0] + g0 / (2 * g0 + 0.5j)) < 1e-12)
        True
        """
        size = len(self.unknowns)
        parameters = [sympy.sympify(p) for p in parameters]
        known = tuple(dict.fromkeys(p for p in parameters if p in self.parameters))
        with _precision(dps):
            zero = np.zeros(count, dtype=object if dps else complex)
            if dps is not None:
                zero[:] = precision.context().zero
            if not known:
                return [zero.copy() for _ in parameters]
            multiprecision = dps is not None
            table = tabulate(self._compiled["mpmath" if multiprecision else "numpy"], list(unknowns) + list(columns),
                             count, multiprecision)
            jacobian = table[size : size + size * size].reshape(size, size, count)
            table = tabulate(self._compiled_derivatives(known, "mpmath" if multiprecision else "numpy"),
                             list(unknowns) + list(columns), count, multiprecision)
            moves = table[: size * len(known)].reshape(len(known), size, count)  # d_theta F
            slopes = table[size * len(known) : size * (len(known) + 1)]  # d_y T
            direct = table[size * (len(known) + 1) :]  # d_theta T
            results = {}
            for k, theta in enumerate(known):
                if multiprecision:
                    context = precision.context()
                    column = np.empty(count, dtype=object)
                    for p in range(count):
                        velocity = context.lu_solve(context.matrix(jacobian[:, :, p].tolist()),
                                                    context.matrix(moves[k, :, p].tolist()))
                        column[p] = direct[k, p] - context.fsum(slopes[i, p] * velocity[i] for i in range(size))
                else:
                    velocity = np.linalg.solve(np.moveaxis(jacobian, -1, 0), moves[k].T[..., None])[..., 0].T
                    column = direct[k] - np.sum(slopes * velocity, axis=0)
                results[theta] = column
            return [results[p] if p in results else zero.copy() for p in parameters]

    @cached_property
    def _coefficients(self) -> dict:
        from .compiled import compile_expressions

        coefficients = [c for blocks in self.combinations for c in blocks.values()]
        return {module: compile_expressions(self.parameters, coefficients, module) for module in ("numpy", "mpmath")}

    def start(self, inverse: np.ndarray, columns: list, dps: int | None) -> list:
        r"""The unknowns :math:`\sum c\, G_{lm}` at the full solution ``inverse`` (shape (P, K, K)), one column each.

        ``columns`` are the parameter values (flat, P points; mpmath numbers if ``dps``).
        """
        count = inverse.shape[0]
        with _precision(dps):
            function = self._coefficients["numpy" if dps is None else "mpmath"]
            coefficients = iter(tabulate(function, columns, count, dps is not None))
            result = []
            for blocks in self.combinations:
                total = 0
                for l, m in blocks:
                    total = total + next(coefficients) * inverse[:, l, m]
                result.append(np.broadcast_to(np.asarray(total), (count,)))
            return result

    def residuals(self, unknowns: list, columns: list, count: int, dps: int | None) -> np.ndarray:
        r"""The residuals :math:`y - R(y)` at ``unknowns`` and the parameter ``columns`` (``count`` values each),
        shape (U, P)."""
        with _precision(dps):
            function = self._compiled["numpy" if dps is None else "mpmath"]
            return tabulate(function, list(unknowns) + list(columns), count, dps is not None)[: len(self.unknowns)]

    def newton(self, start: list, columns: list, count: int, dps: int | None, max_iterations: int = 60) -> tuple:
        r"""Newton's method :math:`y \leftarrow y - J(y)^{-1} (y - R(y))` from ``start`` (one column per unknown).

        In float (batched) or in mpmath at ``dps +`` :data:`pencils.precision.GUARD_DIGITS` digits, until
        the step is below :math:`10^{-(\mathrm{dps} + 8)}` relative (:math:`10^{-14}` in float).

        Returns
        -------
        unknowns : list of numpy.ndarray
            One flat column per unknown (object arrays of mpmath numbers if ``dps``).
        target : numpy.ndarray
        step : numpy.ndarray
            The last relative step at each point.

        Raises
        ------
        ConvergenceError
            If Newton's method does not converge (the start is too far, or the
            reduced Jacobian is singular there).
        """
        size = len(self.unknowns)
        function = self._compiled["numpy" if dps is None else "mpmath"]
        with _precision(dps):
            y = [np.broadcast_to(np.asarray(column, dtype=object if dps else complex).reshape(-1), (count,))
                 for column in start]
            if dps is not None:
                y = [np.array([to_mpmath(x) for x in column], dtype=object) for column in y]
            tolerance = 1e-14 if dps is None else precision.context().mpf(10) ** -(dps + 8)
            converged, change = not size, np.zeros(count)
            for _ in range(max_iterations if size else 0):
                table = tabulate(function, y + columns, count, dps is not None)
                residual = table[:size]
                jacobian = table[size : size + size * size].reshape(size, size, count)
                if dps is None:
                    step = np.linalg.solve(np.moveaxis(jacobian, -1, 0), residual.T[..., None])[..., 0].T
                    change = np.max(np.abs(step) / np.maximum(1, np.abs(np.array(y))), axis=0)
                else:
                    step = np.empty((size, count), dtype=object)
                    change = np.empty(count, dtype=object)
                    context = precision.context()
                    for p in range(count):
                        matrix = context.matrix(jacobian[:, :, p].tolist())
                        delta = context.lu_solve(matrix, context.matrix(residual[:, p].tolist()))
                        step[:, p] = [delta[i] for i in range(size)]
                        change[p] = max([abs(delta[i]) / max(1, abs(y[i][p])) for i in range(size)] + [context.zero])
                y = [column - step[i] for i, column in enumerate(y)]
                if all(c <= tolerance for c in change):
                    converged = True
                    break
            if not converged:
                raise ConvergenceError(
                    f"Newton's method on the reduced equations did not converge in {max_iterations} iterations "
                    f"(last relative step {max(change)}); start closer (e.g. from the full system's solution).",
                    residual=float(max(change)),
                )
            target = tabulate(function, y + columns, count, dps is not None)[-1]
            return y, target, change


def _precision(dps: int | None):
    """The working precision of a multiprecision call: ``dps +`` :data:`pencils.precision.GUARD_DIGITS` digits of
    this thread's private context (nothing for floats)."""
    return precision.working(dps) if dps is not None else contextlib.nullcontext()
