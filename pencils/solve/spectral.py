r"""Averages over the spectral variables of Diagonals, for the numeric solver.

With :class:`pencils.Diagonal` matrices the matrix of the Dyson equation
depends on one spectral variable per dimension that carries them,
:math:`M(u) = \Lambda(u) - \eta(g)`, and a normalised trace is an average
(see :mod:`pencils.dyson`):

.. math::  g_S = \mathbb E_u\bigl[M(u)^{-1}\bigr]_S = \sum_q w_q\, M(u_q)^{-1}_S,

over the atoms (weights their masses, exact) or over the nodes of a
quadrature rule on :math:`(0, 1)` (above :math:`u = 1/2`, a quantile function
:math:`\sigma` is evaluated as :math:`\sigma(1 - v)` at the node's exact
complement :math:`v = 1 - u`, see :func:`pencils.diagonal.quadrature`, so that
a function singular at 1 keeps its digits where :math:`u` rounds to 1).  The solver evaluates :math:`M` at
``Q`` nodes per point: node ``q`` of every dimension at once, since
:math:`M` only couples blocks of one size (a dimension with fewer nodes is
padded with copies of its first node of weight 0; blocks of a dimension
without Diagonals have weight 1 on the first node).  The cost is linear in the
number of nodes, and every product that enters the Jacobian, the tangents and
the error bounds is averaged as a product, :math:`\mathbb E_u[G(u)\,A\,G(u)]`,
so that they stay exact.
"""

from __future__ import annotations

import copy
from functools import cached_property

import numpy as np
import sympy

from .. import precision
from ..diagonal import SPECTRAL_VARIABLE, extended_rule, quadrature
from ..serialization import decode
from .compiled import EXTENDED_DIGITS, EXTENDED_TYPES, compile_expressions, in_extended_precision, to_mpmath

__all__ = ["EXTENDED", "FLOAT", "MULTIPRECISION", "SpectralNodes", "precision_kind"]

#: The precisions of the tables of nodes, weights and eigenvalues: floats, numpy's extended precision
#: (``longdouble``) and mpmath numbers at the thread's precision.
FLOAT, EXTENDED, MULTIPRECISION = "float", "extended", "mpmath"


def precision_kind(dtype) -> str:
    """The precision of arrays of ``dtype``: :data:`MULTIPRECISION` (object), :data:`EXTENDED` (``longdouble``
    and ``clongdouble`` where they are wider than double) or :data:`FLOAT`.

    Examples
    --------
    >>> precision_kind(object), precision_kind(complex)
    ('mpmath', 'float')
    """
    dtype = np.dtype(dtype)
    if dtype == object:
        return MULTIPRECISION
    return EXTENDED if dtype in EXTENDED_TYPES else FLOAT


class SpectralNodes:
    """The nodes and weights of the spectral averages of one Dyson system, at one quadrature level.

    Parameters
    ----------
    laws : list of dict
        The ``spectral`` field of a record (:meth:`pencils.dyson.DysonSystem.record`).
    parameters : tuple of sympy.Symbol
        The parameters of the system.
    size : int
        The number of blocks of the pencil.
    level : int
        The quadrature level of quantile functions (nodes double from one level to the next).

    Examples
    --------
    >>> import numpy as np, sympy
    >>> laws = [{"blocks": [0], "symbols": [["Symbol", "S(u)", {}]], "atoms": [[1, 4]],
    ...          "weights": [["Rational", 1, 4], ["Rational", 3, 4]]}]
    >>> nodes = SpectralNodes(laws, (), size=2, level=0)
    >>> nodes.count, nodes.weights(float).tolist()
    (2, [[0.25, 0.75], [1.0, 0.0]])
    >>> [v.tolist() for v in nodes.values([], 1, False)]
    [[[1.0, 4.0]]]
    """

    #: The first and the last quadrature levels of quantile functions.
    first_level, last_level = 2, 8

    def __init__(self, laws: list, parameters: tuple, size: int, level: int = first_level):
        self.laws = laws
        self.parameters = tuple(parameters)
        self.size = size
        self.level = level
        self.symbols = [decode(tree) for law in laws for tree in law["symbols"]]
        self.quantile = any("quantiles" in law for law in laws)
        self._weights: dict = {}
        self._compiled: dict = {}  # per law and module: the eigenvalues and their derivatives, compiled

    def at_level(self, level: int) -> "SpectralNodes":
        """The same averages with the quadrature rules of another level (sharing the compiled functions)."""
        other = copy.copy(self)
        other.level = level
        other.__dict__.pop("count", None)
        other._weights = {}
        return other

    # ----------------------------------------------------------------- nodes

    def _rule(self, law: dict, kind: str) -> tuple:
        """``(nodes, weights, complements)`` of one law: the atom indices and masses (complements ``None``), or
        a quadrature rule's nodes, weights and :math:`1 - u`, as floats (:data:`FLOAT`), mpmath numbers at this
        thread's precision (:data:`MULTIPRECISION`) or, for :data:`EXTENDED`, mpmath numbers of
        :func:`pencils.diagonal.extended_rule` (the float rule's nodes, exact masses)."""
        if "atoms" in law:
            masses = [decode(tree) for tree in law["weights"]]
            if kind == FLOAT:
                return list(range(len(masses))), [float(m) for m in masses], None
            context = precision.context()
            return list(range(len(masses))), [context.mpf(sympy.N(m, context.dps)) for m in masses], None
        if kind == FLOAT:
            return quadrature(law["rule"], self.level, None)
        if kind == EXTENDED:
            return extended_rule(law["rule"], self.level, EXTENDED_DIGITS)
        return quadrature(law["rule"], self.level, precision.context().dps)

    @cached_property
    def count(self) -> int:
        """The number of nodes ``Q`` of the float tables (1 without Diagonals)."""
        return self.count_of(FLOAT)

    def count_of(self, kind: str) -> int:
        """The number of nodes of the tables of ``kind``: more in extended and arbitrary precision, where
        tanh-sinh rules are truncated at smaller weights or closer to the end points."""
        return max((len(self._rule(law, kind)[1]) for law in self.laws), default=1)

    def weights(self, dtype) -> np.ndarray:
        """The weight of each node in the average of each block's entries, shape (K, Q), for arrays of ``dtype``:
        floats, extended precision (``longdouble``, the float rules' weights rounded from
        :data:`pencils.solve.compiled.EXTENDED_DIGITS` digits) or mpmath numbers at this thread's precision
        (object)."""
        kind = precision_kind(dtype)
        key = precision.context().prec if kind == MULTIPRECISION else kind
        if key not in self._weights:
            if kind == EXTENDED:
                with precision.digits(EXTENDED_DIGITS):
                    self._weights[key] = in_extended_precision(self._weight_table(kind))
            else:
                self._weights[key] = self._weight_table(kind)
        return self._weights[key]

    def _weight_table(self, kind: str) -> np.ndarray:
        """:meth:`weights` as floats, or mpmath numbers for the other kinds."""
        zero, one = (0.0, 1.0) if kind == FLOAT else (precision.context().zero, precision.context().one)
        table = np.full((self.size, self.count_of(kind)), zero, dtype=float if kind == FLOAT else object)
        table[:, 0] = one
        for law in self.laws:
            weights = self._rule(law, kind)[1]
            for block in law["blocks"]:
                table[block, :] = zero
                table[block, : len(weights)] = weights
        return table

    # ----------------------------------------------------------------- values

    def _expressions(self, law: dict) -> list:
        """The eigenvalue of each symbol of ``law`` at each node, as expressions in the parameters (and ``u``)."""
        if "atoms" in law:
            return [[decode(tree) for tree in row] for row in law["atoms"]]
        return [[decode(tree)] for tree in law["quantiles"]]

    def _functions(self, law_index: int, module: str) -> tuple:
        r"""The eigenvalues of a law and their derivatives along directions in the parameters, compiled:
        ``(values, derivatives)`` in the parameters (and ``u``); for a quantile function, followed by the same
        two written in the complement :math:`v = 1 - u`, i.e. :math:`\sigma(1 - v)` as a function of
        :math:`v` (symbolically, so that :math:`1 - u` is never formed in floats)."""
        key = (law_index, module)
        if key not in self._compiled:
            law = self.laws[law_index]
            expressions = [e for row in self._expressions(law) for e in row]
            variants = [expressions]
            if "quantiles" in law:
                variants.append([e.subs(SPECTRAL_VARIABLE, 1 - SPECTRAL_VARIABLE) for e in expressions])
            direction = sympy.symbols(f"delta0:{len(self.parameters)}", cls=sympy.Dummy)
            arguments = self.parameters + ((SPECTRAL_VARIABLE,) if "quantiles" in law else ())
            compiled = []
            for variant in variants:
                derivatives = [sum((e.diff(p) * v for p, v in zip(self.parameters, direction)), sympy.Integer(0))
                               for e in variant]
                compiled += [compile_expressions(arguments, variant, module),
                             compile_expressions(arguments + tuple(direction), derivatives, module)]
            self._compiled[key] = tuple(compiled)
        return self._compiled[key]

    def values(self, columns: list, count: int, multiprecision: bool, directions: list | None = None) -> list:
        """The eigenvalue of every symbol at every point and node, arrays of shape (P, Q) in the order of
        :attr:`symbols`; with ``directions`` (one column per parameter), their derivatives along them instead.

        Extended-precision columns (``longdouble``, from doubles) give extended-precision values: computed
        in mpmath at :data:`pencils.solve.compiled.EXTENDED_DIGITS` digits, at the float rules' nodes, and rounded.
        """
        if multiprecision:
            return self._values(columns, count, MULTIPRECISION, directions)
        if not (columns and columns[0].dtype in EXTENDED_TYPES):
            return self._values(columns, count, FLOAT, directions)
        doubles = [column.astype(complex if np.iscomplexobj(column) else float) for column in columns]
        with precision.digits(EXTENDED_DIGITS):
            return [in_extended_precision(table) for table in self._values(doubles, count, EXTENDED, directions)]

    def _values(self, columns: list, count: int, kind: str, directions: list | None) -> list:
        """:meth:`values` as floats, or mpmath numbers (object arrays) for the other kinds."""
        module = "numpy" if kind == FLOAT else "mpmath"
        extra = list(directions or [])
        results, nodes_in_table = [], self.count_of(kind)
        for index, law in enumerate(self.laws):
            functions = self._functions(index, module)
            function = functions[0 if directions is None else 1]
            atoms = "atoms" in law
            if not atoms:  # sigma(u) below 1/2, sigma(1 - v) at the complement v = 1 - u above
                reflected = functions[2 if directions is None else 3]
                nodes, _, complements = self._rule(law, kind)
                parts = (([j for j, u in enumerate(nodes) if not u > 0.5], function, nodes),
                         ([j for j, u in enumerate(nodes) if u > 0.5], reflected, complements))
            symbols, used = len(law["symbols"]), len(law["weights"]) if atoms else len(nodes)
            if kind != FLOAT:
                table = np.empty((symbols, count, nodes_in_table), dtype=object)
                for point in range(count):
                    arguments = [to_mpmath(c[point]) for c in columns]
                    moves = [to_mpmath(v[point]) for v in extra]
                    if atoms:
                        flat = list(function(*arguments, *moves))
                        table[:, point, :used] = np.array(flat, dtype=object).reshape(symbols, used)
                    else:
                        for part, evaluate, at in parts:
                            for j in part:
                                table[:, point, j] = list(evaluate(*arguments, at[j], *moves))
            else:
                table = np.empty((symbols, count, nodes_in_table), dtype=complex)
                if atoms:
                    flat = function(*columns, *extra)
                    for k in range(symbols):
                        for j in range(used):
                            table[k, :, j] = flat[k * used + j]
                else:
                    for part, evaluate, at in parts:
                        if part:
                            flat = evaluate(*(c[:, None] for c in columns), at[None, part], *(v[:, None] for v in extra))
                            for k in range(symbols):
                                table[k, :, part] = np.broadcast_to(flat[k], (count, len(part))).T
            table[:, :, used:] = table[:, :, :1]
            if kind == FLOAT and np.all(table.imag == 0):
                table = table.real.copy()
            results.extend(table)
        return results

    # ----------------------------------------------------------------- averages

    def average(self, matrices: np.ndarray) -> np.ndarray:
        r"""Matrices (P, Q, K, K) averaged over the nodes, row ``a`` with the weights of block ``a``: shape (P, K, K)."""
        if matrices.shape[1] == 1:
            return matrices[:, 0]
        return np.sum(matrices * self.weights(matrices.dtype).T[None, :, :, None], axis=1)

    def mean(self, matrices: np.ndarray, rows, cols) -> np.ndarray:
        """The average of the entries ``(rows, cols)`` of matrices of shape (P, Q, K, K): shape (P, len(rows))."""
        entries = matrices[:, :, rows, cols]
        if entries.shape[1] == 1:
            return entries[:, 0]
        return np.sum(entries * self.weights(matrices.dtype)[rows].T, axis=1)

    def weigh(self, terms: np.ndarray, blocks) -> np.ndarray:
        """The average over nodes of ``terms`` (P, Q, T), term ``t`` weighted as the entries of block ``blocks[t]``."""
        if terms.shape[1] == 1:
            return terms[:, 0]
        return np.sum(terms * self.weights(terms.dtype)[blocks].T, axis=1)
