r"""Linear pencils: realising a rational matrix expression as a block of an inverse.

(Why one module of some 500 lines: the pencil, its recursive construction and its reduction
by Schur complements are one construction on one block structure; the reduction rewrites the
blocks the construction makes and is not used without it.)

Every rational expression :math:`r` in matrices has a *realization*

.. math::  r = e_{\mathrm{out}}^T\, L^{-1}\, e_{\mathrm{in}},

where :math:`L` is a block matrix whose blocks are affine in the matrices (a
scalar times an identity, or a scalar times one Gaussian or its transpose), and
:math:`e_{\mathrm{out}}, e_{\mathrm{in}}` select one block each.  It is built
recursively:

* atom :math:`x`: :math:`L = \begin{pmatrix} I & -x \\ 0 & I\end{pmatrix}`,
  out = 1, in = 2;
* product :math:`r_1 r_2`: :math:`L = \begin{pmatrix} L_1 & -e_{\mathrm{in}_1} e_{\mathrm{out}_2}^T \\ 0 & L_2\end{pmatrix}`;
* sum :math:`\sum_k c_k r_k`: two new identity blocks O and I, with
  :math:`L_{O,\mathrm{out}_k} = -c_k` and :math:`L_{\mathrm{in}_k, I} = -1`;
* inverse :math:`r^{-1}`: one new block a with :math:`L_{aa} = 0`,
  :math:`L_{a,\mathrm{out}} = -1`, :math:`L_{\mathrm{in},a} = 1`, since the Schur
  complement of :math:`L` in the enlarged matrix is :math:`-(-r) = r`;
* block matrix :math:`(c_{ij} r_{ij})`: new identity blocks :math:`O_i` and
  :math:`I_j` per block row and column, with :math:`L_{O_i,\mathrm{out}_{ij}} = -c_{ij}`
  and :math:`L_{\mathrm{in}_{ij}, I_j} = -1` (a sum whose terms land in different
  blocks).  A node that holds a block matrix has one ``out`` and one ``in``
  block per block row and column, and the rules above apply block by block
  (e.g. the inverse of a 2 x 2 block matrix gets two new blocks).

The naive pencil is then reduced: identity pivots are eliminated by Schur
complements wherever the fill-in stays affine, and blocks that lie on no path
from ``out`` to ``in`` are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import sympy

from .arguments import resolve_keys
from .diagonal import Diagonal
from .expression import (
    Block, DiagonalLeaf, Dimensions, Leaf, MatrixIdentity, MatrixInverse, MatrixProduct, MatrixSum, normalise, parts, shape_symbols,
)
from .errors import MisScaledError, ParameterError, UnsupportedOperationError
from .evaluation import draw, evaluate
from .sizes import draw_sizes, exact_size

__all__ = ["Pencil", "linearize"]

# An entry of the pencil is a dict {key: coefficient}; key None is the identity (its coefficient
# may hold the eigenvalue symbols of Diagonals: a deterministic diagonal block), key
# (gaussian, transposed) a normalised Gaussian or its transpose.
IDENTITY = None


def _add(entry: dict, key, coefficient) -> None:
    total = sympy.cancel(entry.get(key, 0) + coefficient)
    if total == 0:
        entry.pop(key, None)
    else:
        entry[key] = total


@dataclass
class Pencil:
    r"""A linear pencil :math:`L` with :math:`\hat r = e_{\mathrm{out}}^T L^{-1} e_{\mathrm{in}}`.

    Attributes
    ----------
    expression : sympy.MatrixExpr
        The expression as the user wrote it.
    dims : Dimensions
        The growth of the dimensions.
    sizes : list of sympy.Expr
        The dimension of each block (``N_i``).
    entries : dict
        ``{(i, j): {key: coefficient}}`` with ``key`` ``None`` for the identity
        and ``(gaussian, transposed)`` for a normalised Gaussian (entry variance
        ``1/N``) or its transpose.  Coefficients are free of ``N``; an identity
        coefficient may contain the eigenvalue symbols :attr:`pencils.Diagonal.symbol`
        (a diagonal block :math:`\operatorname{diag}(f(\sigma(u)))`), a Gaussian's may not.
    out, into : int
        The blocks selected by :math:`u = e_{\mathrm{out}}` and :math:`v = e_{\mathrm{in}}`.
    scale : sympy.Expr
        ``expression = scale * N**0 * (u^T L^{-1} v)``.
    diagonals : tuple of Diagonal
        The :class:`pencils.Diagonal` matrices of the expression, sorted by name.

    Examples
    --------
    >>> import sympy
    >>> from pencils import Gaussian, linearize
    >>> n, d, z = sympy.symbols("n d z")
    >>> X = Gaussian("X", n, d)
    >>> pencil = linearize((X.T * X / n - z * sympy.Identity(d)).I, {n: 2 * d})
    >>> pencil.sizes
    [n, d]
    >>> pencil.check({z: -1.0}) < 1e-10
    True
    """

    expression: sympy.MatrixExpr
    dims: Dimensions
    sizes: list
    entries: dict
    out: int
    into: int
    scale: sympy.Expr
    diagonals: tuple = ()

    @property
    def spectral(self) -> set:
        """The eigenvalue symbols of the pencil's Diagonals."""
        return {diagonal.symbol for diagonal in self.diagonals}

    # ----------------------------------------------------------------- display

    @property
    def ratios(self) -> list:
        """``N_i / N`` for every block."""
        return [self.dims.ratio(size) for size in self.sizes]

    def matrix(self) -> sympy.Matrix:
        r"""The pencil as a SymPy matrix of blocks (``X`` stands for :math:`\hat X`)."""
        result = sympy.zeros(len(self.sizes), len(self.sizes))
        for (i, j), entry in self.entries.items():
            for key, coefficient in entry.items():
                if key is IDENTITY:
                    block = sympy.Symbol("I")
                else:
                    gaussian, transposed = key
                    block = sympy.Symbol(gaussian.name + ("^T" if transposed else ""), commutative=False)
                result[i, j] += coefficient * block
        return result

    def latex(self) -> str:
        """LaTeX of :meth:`matrix`."""
        return sympy.latex(self.matrix())

    def _repr_latex_(self) -> str:
        """The pencil's matrix, for notebooks."""
        return f"$\\displaystyle {self.latex()}$"

    def __repr__(self) -> str:
        return (
            f"Pencil({len(self.sizes)} blocks of sizes {self.sizes}, out={self.out}, "
            f"in={self.into}, scale={self.scale})"
        )

    # ----------------------------------------------------------------- numeric self-check

    def numeric(self, matrices: Mapping, sizes: Mapping, values: Mapping | None = None) -> np.ndarray:
        """The dense pencil for given Gaussian draws (``N(0, 1)`` entries) and integer sizes.

        Parameters
        ----------
        matrices : dict
            ``{gaussian: array}`` with unit-variance entries.
        sizes : dict
            ``{dimension symbol: int}`` for every dimension, the base included.
        values : dict, optional
            Values of the other scalar symbols.
        """
        values = dict(values or {})
        base = sizes[self.dims.base]
        block_sizes = [int(sympy.sympify(size).subs(sizes)) for size in self.sizes]
        offsets = np.concatenate([[0], np.cumsum(block_sizes)])
        dense = np.zeros((offsets[-1], offsets[-1]), dtype=complex)
        scalars = {**sizes, **values}
        eigenvalues = {diagonal.symbol: diagonal.eigenvalues(int(sympy.sympify(diagonal.dim).subs(sizes)), values)
                       for diagonal in self.diagonals}
        for (i, j), entry in self.entries.items():
            rows, cols = slice(offsets[i], offsets[i + 1]), slice(offsets[j], offsets[j + 1])
            for key, coefficient in entry.items():
                coefficient = sympy.sympify(coefficient).subs(scalars)
                if key is IDENTITY:
                    spectral = sorted(coefficient.free_symbols & set(eigenvalues), key=str)
                    diagonal = sympy.lambdify(spectral, coefficient, "numpy")(*(eigenvalues[s] for s in spectral))
                    dense[rows, cols] += np.diag(np.broadcast_to(np.asarray(diagonal, dtype=complex), block_sizes[i]))
                    continue
                gaussian, transposed = key
                block = matrices[gaussian] / np.sqrt(base)
                dense[rows, cols] += complex(coefficient) * (block.T if transposed else block)
        return dense, offsets

    def check(self, values: Mapping | None = None, size: int = 7, seed: int = 0) -> float:
        r"""Relative error between :math:`u^T L^{-1} v` and the expression, on one random draw.

        The Gaussians are drawn at the smallest base dimension ``>= size`` at which
        every ratio gives an integer dimension, the pencil is inverted densely, and
        the selected block is compared with a direct evaluation of the expression.

        Parameters
        ----------
        values : dict, optional
            Values of the scalar symbols (ratio parameters included).
        size : int
            The smallest base dimension of the draw.
        seed : int
            Seed of the draw.

        Returns
        -------
        float
            The relative Frobenius-norm error (about ``1e-13`` for a correct pencil).
        """
        symbols = self.expression.free_symbols.union(*(ratio.free_symbols for _, ratio in self.dims.ratios))
        values = resolve_keys(values, symbols, "values")
        size = exact_size(self.dims, size, values)
        sizes = draw_sizes(self.dims, size, values)
        matrices = draw(self.expression, sizes, np.random.default_rng(seed))
        expected = evaluate(self.expression, matrices, sizes, values)
        dense, offsets = self.numeric(matrices, sizes, values)
        column = np.zeros((offsets[-1], offsets[self.into + 1] - offsets[self.into]), dtype=complex)
        column[offsets[self.into] : offsets[self.into + 1]] = np.eye(offsets[self.into + 1] - offsets[self.into])
        solved = np.linalg.solve(dense, column)[offsets[self.out] : offsets[self.out + 1]]
        scale = complex(sympy.sympify(self.scale).subs(values))
        actual = scale * solved
        return float(np.linalg.norm(actual - expected) / max(np.linalg.norm(expected), 1e-300))


# --------------------------------------------------------------------------- construction


class _Builder:
    """Grows one pencil block by block.

    :meth:`build` returns the ``(out, in)`` *ports* of a node: one pencil block
    per block row and per block column of the node (a single one unless it
    holds a block matrix, see :func:`pencils.expression.parts`).
    """

    def __init__(self):
        self.sizes: list = []
        self.entries: dict = {}

    def block(self, size) -> int:
        self.sizes.append(size)
        self._add(len(self.sizes) - 1, len(self.sizes) - 1, IDENTITY, 1)
        return len(self.sizes) - 1

    def _add(self, i: int, j: int, key, coefficient) -> None:
        entry = self.entries.setdefault((i, j), {})
        _add(entry, key, coefficient)
        if not entry:
            del self.entries[(i, j)]

    def _join(self, into: tuple, out: tuple, coefficient, context) -> None:
        """Add ``coefficient`` times the identity from each block of port ``into`` to the matching block of ``out``."""
        into_sizes, out_sizes = [self.sizes[b] for b in into], [self.sizes[b] for b in out]
        if len(into) != len(out) or any(sympy.simplify(a - b) != 0 for a, b in zip(into_sizes, out_sizes)):
            raise UnsupportedOperationError(
                f"{context} joins a matrix split into blocks of sizes {tuple(into_sizes)} with one split as "
                f"{tuple(out_sizes)}; split both the same way (e.g. write the identity or the other "
                f"factor as a block matrix too)."
            )
        for i, j in zip(into, out):
            self._add(i, j, IDENTITY, coefficient)

    def _term(self, out: tuple, into: tuple, coefficient, term, split: tuple | None = None) -> None:
        """Wire ``coefficient * term`` between the ports ``out`` and ``into`` (one term of a sum)."""
        term_out, term_in = self.build(term, split)
        self._join(out, term_out, -coefficient, "a sum")
        self._join(term_in, into, -1, "a sum")

    def build(self, node, split: tuple | None = None) -> tuple[tuple, tuple]:
        """Add the pencil of ``node``; return its ``(out, in)`` ports.

        ``split`` asks an :class:`~pencils.expression.MatrixIdentity` to come as one
        identity block per given size (a ridge added to a block matrix).
        """
        if isinstance(node, Leaf):
            rows, cols = node.shape
            out, into = self.block(rows), self.block(cols)
            self._add(out, into, (node.gaussian, node.transposed), -1)
            return (out,), (into,)
        if isinstance(node, DiagonalLeaf):  # [[I, -D], [0, I]]: D a deterministic diagonal block
            out, into = self.block(node.diagonal.dim), self.block(node.diagonal.dim)
            self._add(out, into, IDENTITY, -node.diagonal.symbol)
            return (out,), (into,)
        if isinstance(node, MatrixIdentity):
            if split is not None and sympy.simplify(sympy.Add(*split) - node.size) == 0:
                port = tuple(self.block(size) for size in split)
                return port, port
            out = self.block(node.size)
            return (out,), (out,)
        if isinstance(node, MatrixProduct):
            out, into = self.build(node.factors[0])
            for factor in node.factors[1:]:
                factor_out, factor_in = self.build(factor)
                self._join(into, factor_out, -1, "a product")
                into = factor_in
            return out, into
        if isinstance(node, MatrixSum):
            rows, cols = parts(node)
            out, into = tuple(self.block(size) for size in rows), tuple(self.block(size) for size in cols)
            for coefficient, term in node.terms:
                self._term(out, into, coefficient, term, split=rows if rows == cols else None)
            return out, into
        if isinstance(node, MatrixInverse):
            argument_out, argument_in = self.build(node.argument)
            new = []
            for out, into in zip(argument_out, argument_in):
                self.sizes.append(self.sizes[out])
                new.append(len(self.sizes) - 1)
                self._add(new[-1], out, IDENTITY, -1)
                self._add(into, new[-1], IDENTITY, 1)
            return tuple(new), tuple(new)
        if isinstance(node, Block):
            out = tuple(self.block(size) for size in node.row_sizes)
            into = tuple(self.block(size) for size in node.col_sizes)
            for row, row_block in zip(node.rows, out):
                for entry, col_block in zip(row, into):
                    if entry is not None:
                        self._term((row_block,), (col_block,), *entry)
            return out, into
        raise TypeError(f"unknown node {node!r}")  # pragma: no cover - normalise() emits no other


def linearize(expr: sympy.MatrixExpr, dims: Mapping, reduce: bool = True) -> Pencil:
    r"""Build the (reduced) linear pencil of a matrix expression.

    Parameters
    ----------
    expr : sympy.MatrixExpr
        A rational expression in :class:`pencils.Gaussian` matrices and identities.
    dims : dict
        Each dimension symbol as a multiple of one base symbol, e.g. ``{n: 2*d}``.
    reduce : bool
        Eliminate identity pivots and unreachable blocks (default).  The
        unreduced pencil is the textbook construction, useful for teaching.

    Returns
    -------
    Pencil

    Raises
    ------
    MisScaledError
        If the normalised expression does not have order one (``N**0``).

    Examples
    --------
    >>> import sympy
    >>> from pencils import Gaussian, linearize
    >>> n, d, lam = sympy.symbols("n d lambda", positive=True)
    >>> X = Gaussian("X", d, n)
    >>> pencil = linearize((X * X.T / n + lam * sympy.Identity(d)).I, {n: 3 * d})
    >>> pencil.check({lam: 0.5}) < 1e-10
    True
    """
    if not getattr(expr, "is_Matrix", False):
        raise UnsupportedOperationError(
            f"{expr!r} is not a matrix expression; build it from pencils.Gaussian and sympy.Identity."
        )
    dimensions = Dimensions.from_mapping(dims, shape_symbols(expr))
    coefficient, power, node = normalise(expr, dimensions)
    if power != 0:
        growth = "grows" if power > 0 else "vanishes"
        raise MisScaledError(
            f"the expression {expr} {growth} like {dimensions.base}^({power}) (with dims {dict(dims)}); "
            f"it has no finite non-zero limit. Multiply it by {dimensions.base}^({-power}) or "
            f"normalise each Wishart-like product by its dimension (X.T*X/n, W*X/sqrt(d))."
        )
    rows, cols = parts(node)
    if len(rows) > 1 or len(cols) > 1:
        raise UnsupportedOperationError(
            f"the expression {expr} is a block matrix (blocks of sizes {rows} x {cols}); take the "
            f"trace of each diagonal block instead (e.g. Trace(A) + Trace(D) for [[A, B], [C, D]])."
        )
    builder = _Builder()
    (out,), (into,) = builder.build(node)
    diagonals = tuple(sorted(expr.atoms(Diagonal), key=lambda diagonal: diagonal.name))
    pencil = Pencil(expr, dimensions, builder.sizes, builder.entries, out, into, coefficient, diagonals)
    return reduce_pencil(pencil) if reduce else pencil


# --------------------------------------------------------------------------- reduction


def _has_gaussian(entry: dict) -> bool:
    return any(key is not IDENTITY for key in entry)


def _has_spectrum(entry: dict, spectral: set) -> bool:
    """Whether the identity coefficient of ``entry`` holds the eigenvalue of a Diagonal."""
    return IDENTITY in entry and bool(sympy.sympify(entry[IDENTITY]).free_symbols & spectral)


class _Elimination:
    """The entries of a pencil with row and column indices, for cheap Schur complements."""

    def __init__(self, pencil: Pencil):
        self.pencil = pencil
        self.spectral = pencil.spectral
        self.entries = {key: dict(entry) for key, entry in pencil.entries.items()}
        self.row: dict = {}
        self.column: dict = {}
        for i, j in self.entries:
            self.row.setdefault(i, set()).add(j)
            self.column.setdefault(j, set()).add(i)

    def _pop(self, i: int, j: int) -> dict:
        self.row[i].discard(j)
        self.column[j].discard(i)
        return self.entries.pop((i, j))

    def eliminable(self, k: int) -> bool:
        if k in (self.pencil.out, self.pencil.into):
            return False
        pivot = self.entries.get((k, k), {})
        if set(pivot) != {IDENTITY} or not pivot[IDENTITY].is_number:
            return False
        column = [self.entries[(i, k)] for i in self.column.get(k, ()) if i != k]
        row = [self.entries[(k, j)] for j in self.row.get(k, ()) if j != k]
        random_column, random_row = any(map(_has_gaussian, column)), any(map(_has_gaussian, row))
        if random_column and random_row:
            return False
        # a Gaussian times a diagonal block is not affine either: keep the Diagonal's block
        if random_column and any(_has_spectrum(entry, self.spectral) for entry in row):
            return False
        return not (random_row and any(_has_spectrum(entry, self.spectral) for entry in column))

    def fill_in(self, k: int) -> int:
        column, row = len(self.column.get(k, ())) - 1, len(self.row.get(k, ())) - 1
        return column * row - column - row

    def eliminate(self, k: int) -> None:
        """Schur complement on block ``k``: ``L <- L - L[:, k] L[k, k]^{-1} L[k, :]``."""
        pivot = self._pop(k, k)[IDENTITY]
        column = {i: self._pop(i, k) for i in sorted(self.column.get(k, ()))}
        row = {j: self._pop(k, j) for j in sorted(self.row.get(k, ()))}
        for i, left in column.items():
            for j, right in row.items():
                entry = self.entries.setdefault((i, j), {})
                for left_key, left_coefficient in left.items():
                    for right_key, right_coefficient in right.items():
                        key = left_key if right_key is IDENTITY else right_key
                        _add(entry, key, -left_coefficient * right_coefficient / pivot)
                if entry:
                    self.row.setdefault(i, set()).add(j)
                    self.column.setdefault(j, set()).add(i)
                else:
                    del self.entries[(i, j)]
                    self.row[i].discard(j)
                    self.column[j].discard(i)


def _reachable(edges: dict, start: int) -> set:
    seen, stack = {start}, [start]
    while stack:
        for neighbour in edges.get(stack.pop(), ()):
            if neighbour not in seen:
                seen.add(neighbour)
                stack.append(neighbour)
    return seen


def _renumber(pencil: Pencil, keep: list) -> Pencil:
    index = {old: new for new, old in enumerate(keep)}
    entries = {
        (index[i], index[j]): entry for (i, j), entry in pencil.entries.items() if i in index and j in index
    }
    return Pencil(
        pencil.expression,
        pencil.dims,
        [pencil.sizes[old] for old in keep],
        entries,
        index[pencil.out],
        index[pencil.into],
        pencil.scale,
        pencil.diagonals,
    )


def reduce_pencil(pencil: Pencil) -> Pencil:
    r"""Eliminate identity pivots and drop blocks on no path from ``out`` to ``in``.

    A block :math:`k` with :math:`L_{kk} = c I` (``c`` a non-zero number) is
    eliminated by a Schur complement when either its column or its row holds no
    Gaussian, and the other one no Diagonal, so that every fill-in
    :math:`L_{ik} L_{kk}^{-1} L_{kj}` stays affine (a product of diagonal blocks
    is a diagonal block).
    :math:`(L^{-1})_{\mathrm{out},\mathrm{in}}` only depends on blocks lying on a
    path from ``out`` to ``in`` in the graph of non-zero blocks.
    """
    elimination = _Elimination(pencil)
    alive = set(range(len(pencil.sizes)))
    candidates = {k for k in alive if elimination.eliminable(k)}
    while candidates:
        k = min(sorted(candidates), key=elimination.fill_in)
        neighbours = elimination.row.get(k, set()) | elimination.column.get(k, set())
        elimination.eliminate(k)
        alive.discard(k)
        candidates.discard(k)
        for neighbour in neighbours - {k}:  # only the neighbours' rows and columns changed
            if elimination.eliminable(neighbour):
                candidates.add(neighbour)
            else:
                candidates.discard(neighbour)
    reduced = Pencil(pencil.expression, pencil.dims, list(pencil.sizes), elimination.entries,
                     pencil.out, pencil.into, pencil.scale, pencil.diagonals)
    keep = sorted(_reachable(elimination.row, pencil.out) & _reachable(elimination.column, pencil.into) & alive)
    return _renumber(reduced, keep)
