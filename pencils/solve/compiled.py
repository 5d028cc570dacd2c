r"""The compiled coefficients of a Dyson system, and the parameter values they are evaluated at.

The numeric problem (:meth:`pencils.dyson.DysonSystem.record`) holds the
coefficients as SymPy expressions in the parameters: the entries of
:math:`\Lambda`, the weights of :math:`\eta`, the block ratios and the scale of
the target.  :class:`CompiledProblem` compiles them with :func:`sympy.lambdify`
(for numpy at once, for mpmath and their derivatives along a direction in the
parameters when first needed), broadcasts the parameter values to flat columns
(:meth:`CompiledProblem.points`) and tabulates the coefficients at every point
(:func:`tabulate`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import cached_property
from typing import Mapping

import numpy as np
import sympy

from .. import precision
from ..arguments import resolve_keys
from ..errors import ParameterError
from ..serialization import decode

__all__ = [
    "EXTENDED_DIGITS", "EXTENDED_TYPES", "CompiledProblem", "NumericProblem", "compile_expressions", "float_columns",
    "in_extended_precision", "shaped", "tabulate", "to_mpmath",
]


def compile_expressions(arguments, expressions, module: str):
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


def to_mpmath(value):
    """An mpmath number of this thread's context (:func:`pencils.precision.context`) at its precision
    (strings and SymPy numbers are exact)."""
    context = precision.context()
    if isinstance(value, sympy.Basic):
        value = sympy.N(value, context.dps)
        real, imaginary = (context.mpf(part) for part in value.as_real_imag())
        return real if imaginary == 0 else context.mpc(real, imaginary)
    return context.mpmathify(value)


def tabulate(function, columns: list, count: int, multiprecision: bool) -> np.ndarray:
    """A compiled function of the parameter columns at every point, as one array of shape (C, P).

    In arbitrary precision it is called point by point on mpmath numbers (an object array).
    """
    if not multiprecision:
        return _table(function(*columns), count)
    rows = [function(*(to_mpmath(c[k]) for c in columns)) for k in range(count)]
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


#: The digits at which coefficients whose constants extended precision cannot represent exactly are computed
#: (in mpmath) before they are rounded to extended precision (:func:`in_extended_precision`).
EXTENDED_DIGITS = 30
#: numpy's extended-precision types, where they are wider than double.
EXTENDED_TYPES = ((np.dtype(np.longdouble), np.dtype(np.clongdouble))
                  if np.finfo(np.longdouble).eps < np.finfo(float).eps else ())


def _kind(value) -> str:
    """The numpy kind of an array or numpy scalar (``"c"`` complex, ``"f"`` float, ...); "" for other values."""
    dtype = getattr(value, "dtype", None)
    return dtype.kind if isinstance(dtype, np.dtype) else ""


def in_extended_precision(table: np.ndarray) -> np.ndarray:
    """mpmath numbers (an object array) in extended precision, each the sum of its two nearest doubles."""
    def split(x) -> tuple:
        high = float(x)
        return high, float(x - high)

    values = table.reshape(-1)
    if any(hasattr(x, "_mpc_") for x in values):
        real, imaginary = (in_extended_precision(np.array([part(x) for x in values], dtype=object))
                           for part in (lambda x: x.real, lambda x: x.imag))
        return (real + 1j * imaginary.astype(np.clongdouble)).reshape(table.shape)
    pairs = np.array([split(x) for x in values]).reshape(-1, 2).astype(np.longdouble)
    return (pairs[:, 0] + pairs[:, 1]).reshape(table.shape)


def binary_number(number: sympy.Expr) -> bool:
    """Whether a constant is printed as a binary number, exact in every floating-point format: an integer or a
    fraction with a power-of-two denominator (within 53 bits), a float, or sums and products of these and ``I``
    (not 1/3, sqrt(2) or pi, which compiled numpy code rounds to double precision)."""
    if number.is_Rational:
        return abs(number.p) < 2**53 and number.q & (number.q - 1) == 0
    if number.is_Float or number is sympy.I:
        return True
    return bool(number.is_Add or number.is_Mul) and all(binary_number(a) for a in number.args)


def float_columns(columns: list) -> list:
    """Parameter columns as float (or complex, where a value is) arrays."""
    floats = [np.asarray(c, dtype=complex) if c.dtype == object else c for c in columns]
    return [f.real if np.iscomplexobj(f) and np.all(f.imag == 0) else f for f in floats]


def shaped(values: np.ndarray, shape: tuple, dps: int | None):
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


@dataclass(frozen=True)
class NumericProblem:
    r"""The numeric problem of a Dyson system: the pencil :math:`M = \Lambda - s\,\eta_w(g)` and its unknowns.

    Read from the plain data of :meth:`pencils.dyson.DysonSystem.record` (or the
    on-disk cache) by :meth:`from_record`.

    Attributes
    ----------
    parameters : tuple of sympy.Symbol
        The scalar parameters the coefficients depend on.
    size : int
        The number :math:`K` of blocks of the pencil.
    identity : numpy.ndarray
        Shape (I, 2): the entries of :math:`\Lambda` that may be non-zero.
    couplings : numpy.ndarray
        Shape (T, 3), sorted by unknown: entry :math:`(i_t, j_t)` of :math:`M`
        gets :math:`-s\,w_t\,g_{u_t}` from coupling ``(i_t, j_t, u_t)``.
    unknowns : numpy.ndarray
        Shape (U, 2): the entries :math:`(l, m)` of :math:`G = M^{-1}` that are the unknowns.
    ratios : tuple of str
        The dimension of each block relative to the base dimension.
    coefficients : list of sympy.Expr
        The entries of :math:`\Lambda` (one per ``identity`` entry), the
        weights :math:`w_t`, the block ratios and the scale of the target.
    out, into : int
        The target is the scale times :math:`G_{\mathrm{out},\mathrm{into}}`.
    spectral : tuple of dict
        The laws of the Diagonals, one per dimension that carries them (the
        ``spectral`` field of the record; see :class:`pencils.solve.spectral.SpectralNodes`).
    """

    parameters: tuple
    size: int
    identity: np.ndarray
    couplings: np.ndarray
    unknowns: np.ndarray
    ratios: tuple
    coefficients: list
    out: int
    into: int
    spectral: tuple = ()

    @classmethod
    def from_record(cls, record: Mapping) -> "NumericProblem":
        """The problem of a record (:meth:`pencils.dyson.DysonSystem.record`), its expressions decoded."""
        return cls(
            parameters=tuple(decode(tree) for tree in record["parameters"]),
            size=int(record["size"]),
            identity=np.array(record["identity"], dtype=int).reshape(-1, 2),
            couplings=np.array(record["couplings"], dtype=int).reshape(-1, 3),
            unknowns=np.array(record["unknowns"], dtype=int).reshape(-1, 2),
            ratios=tuple(record["ratios"]),
            coefficients=[decode(tree) for tree in record["coefficients"]],
            out=int(record["out"]),
            into=int(record["into"]),
            spectral=tuple(record["spectral"]),
        )


class CompiledProblem:
    r"""The coefficients of a numeric problem compiled as functions of its parameters.

    Parameters
    ----------
    problem : NumericProblem
        Its coefficients are, in order, the entries of :math:`\Lambda`, the
        weights of :math:`\eta`, the block ratios and the scale of the target
        (split at :attr:`split`).
    nodes : pencils.solve.spectral.SpectralNodes
        The spectral nodes: the entries of :math:`\Lambda` are functions of the
        parameters and of the eigenvalues of the Diagonals, tabulated at every
        point and node (shape (C, P, Q)); the other coefficients do not depend on them.
    """

    def __init__(self, problem: NumericProblem, nodes):
        self.problem = problem
        self.nodes = nodes
        self.parameters = problem.parameters
        self.arguments = self.parameters + tuple(nodes.symbols)
        self.expressions = problem.coefficients
        self.split = np.cumsum([len(problem.identity), len(problem.couplings), len(problem.ratios)])
        self.numpy = compile_expressions(self.arguments, self.expressions, "numpy")
        self._binary_constants: dict = {}

    def at_level(self, nodes) -> "CompiledProblem":
        """The same problem with other spectral ``nodes`` (sharing the compiled functions)."""
        other = copy.copy(self)
        other.nodes = nodes
        return other

    @cached_property
    def mpmath(self):
        """The coefficients compiled for mpmath (this thread's context), arguments the parameters and eigenvalues."""
        return compile_expressions(self.arguments, self.expressions, "mpmath")

    @cached_property
    def directional_expressions(self) -> tuple:
        r"""The derivatives of :math:`\Lambda`, the weights of :math:`\eta` and the scale of the target
        along a direction :math:`\delta` in the parameters: ``(direction symbols, expressions)``."""
        direction = sympy.symbols(f"delta0:{len(self.arguments)}", cls=sympy.Dummy)
        varying = self.expressions[: self.split[1]] + self.expressions[-1:]
        derivatives = [sum(e.diff(p) * v for p, v in zip(self.arguments, direction)) for e in varying]
        return self.arguments + tuple(direction), derivatives

    @cached_property
    def directional(self):
        """:attr:`directional_expressions` compiled for numpy, arguments ``(*parameters, *direction)``."""
        return compile_expressions(*self.directional_expressions, "numpy")

    @cached_property
    def directional_mpmath(self):
        """:attr:`directional_expressions` compiled for mpmath."""
        return compile_expressions(*self.directional_expressions, "mpmath")

    def changes(self, columns: list, directions: list, count: int, multiprecision: bool) -> tuple:
        """The derivatives ``(d_deterministic, d_weights, d_scale)`` along ``directions`` at the points (see
        :attr:`directional_expressions`), like :meth:`coefficients`."""
        function = self.directional_mpmath if multiprecision else self.directional
        spectral = self.nodes.values(columns, count, multiprecision)
        moves = self.nodes.values(columns, count, multiprecision, directions)
        table = self._nodal_table(function, columns, spectral, directions, moves, count, multiprecision)
        d_deterministic, d_weights, d_scale = np.split(table, self.split[:2])
        return d_deterministic, d_weights[:, :, 0], d_scale[0, :, 0]

    def _nodal_table(self, function, columns, spectral, directions, moves, count, multiprecision) -> np.ndarray:
        """``function(*parameters, *eigenvalues, *directions, *moves of the eigenvalues)`` at every point and
        spectral node, shape (C, P, Q); ``spectral`` and ``moves`` have shape (P, Q) each.

        Extended-precision (``longdouble``) columns give an extended-precision
        table: from the numpy function where every constant is a binary number,
        else (a constant such as 1/3 that it would round to double) from its
        mpmath twin at :data:`EXTENDED_DIGITS` digits, each value rounded to the sum of two doubles.
        """
        nodes = spectral[0].shape[1] if spectral else 1  # the spectral tables' nodes
        if not multiprecision:
            if columns and columns[0].dtype in EXTENDED_TYPES and not self.binary_constants(function):
                doubles = [column.astype(complex if np.iscomplexobj(column) else float) for column in columns]
                with precision.digits(EXTENDED_DIGITS):
                    table = self._nodal_table(self._mpmath_twin(function), doubles, spectral, directions, moves,
                                              count, True)
                return in_extended_precision(table)
            values = function(*(c[:, None] for c in columns), *spectral, *(d[:, None] for d in directions), *moves)
            complex_valued = any(map(np.iscomplexobj, values))
            dtype = complex if complex_valued else float
            if any(getattr(value, "dtype", None) in EXTENDED_TYPES for value in values):
                dtype = np.clongdouble if complex_valued else np.longdouble
            table = np.empty((len(values), count, nodes), dtype=dtype)
            for row, value in zip(table, values):
                row[...] = value
            return table
        context, rows = precision.context(), []
        for point in range(count):
            arguments = [to_mpmath(c[point]) for c in columns]
            steps = [to_mpmath(d[point]) for d in directions]
            rows.append([[context.mpmathify(x) for x in function(*arguments, *(s[point, node] for s in spectral),
                                                                   *steps, *(m[point, node] for m in moves))]
                         for node in range(nodes)])
        table = np.empty((count, nodes, len(rows[0][0])), dtype=object)
        table[...] = rows
        return table.transpose(2, 0, 1)

    def _mpmath_twin(self, function):
        """The mpmath compilation of the same expressions as the numpy ``function``."""
        return self.mpmath if function is self.numpy else self.directional_mpmath

    def binary_constants(self, function) -> bool:
        """Whether the constants of the expressions that the numpy ``function`` computes (:attr:`numpy`, the
        coefficients, or :attr:`directional`, their derivatives) are all binary numbers
        (:func:`binary_number`), exact in extended precision."""
        kind = "coefficients" if function is self.numpy else "directional"
        if kind not in self._binary_constants:
            expressions = self.expressions if kind == "coefficients" else self.directional_expressions[1]
            self._binary_constants[kind] = all(binary_number(node) for expression in expressions
                                               for node in sympy.preorder_traversal(expression) if node.is_number)
        return self._binary_constants[kind]

    # ----------------------------------------------------------------- parameters

    def points(self, subs: Mapping, multiprecision: bool) -> tuple[tuple, list, int]:
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

    def coefficients(self, columns: list, count: int, multiprecision: bool):
        """Every compiled coefficient at the points (object arrays if multiprecision): ``(deterministic, weights,
        ratios, scale)`` of shapes (C, P, Q), (C, P), (C, P) and (P,), Q the number of spectral nodes."""
        function = self.mpmath if multiprecision else self.numpy
        spectral = self.nodes.values(columns, count, multiprecision)
        table = self._nodal_table(function, columns, spectral, [], [], count, multiprecision)
        deterministic, weights, ratios, rest = np.split(table, self.split)
        return deterministic, weights[:, :, 0], ratios[:, :, 0], rest[0, :, 0]

    def validate(self, coefficients, columns: list) -> None:
        """Refuse (:class:`pencils.errors.ParameterError`) a dimension ratio that is negative, complex or not
        finite (or zero for the target's block), and a coefficient that is not finite, naming the point."""
        deterministic, weights, ratios, scale = coefficients
        for block, (row, ratio) in enumerate(zip(ratios, self.problem.ratios)):
            values = np.asarray(row, dtype=complex)
            bad = ~np.isfinite(values) | (values.imag != 0) | (values.real < 0)
            if block == self.problem.out:
                bad |= values.real == 0
            if np.any(bad):
                index = int(np.flatnonzero(bad)[0])
                raise ParameterError(
                    f"the dimension ratio {ratio} is {values[index].real:g} at {self.describe(columns, index)}; "
                    f"ratios must be finite and > 0 (>= 0 for a block that may be empty)."
                )
        table = np.concatenate([np.concatenate(np.moveaxis(deterministic, 2, 0)), weights, scale[None]])
        finite = np.all(np.isfinite(np.asarray(table, dtype=complex)), axis=0)
        if not np.all(finite):
            index = int(np.flatnonzero(~finite)[0])
            raise ParameterError(
                f"a pencil coefficient is not finite at {self.describe(columns, index)} "
                f"(a division by a zero parameter?); change that value."
            )

    def describe(self, columns: list, index: int) -> str:
        """The parameter values of point ``index``, as ``"p=value, ..."`` for messages."""
        return ", ".join(f"{p}={columns[k][index]}" for k, p in enumerate(self.parameters)) or "the given values"
