r"""Reading SymPy matrix expressions: dimensions, scaling, and the normalised tree.

A user writes Gaussians with :math:`\mathcal N(0, 1)` entries and explicit
scalings, e.g. ``W * X / sqrt(d)``.  Before linearising, every dimension is
written as a multiple of one base dimension :math:`N` and every Gaussian as
:math:`X = \sqrt N\,\hat X`, with :math:`\hat X` of entry variance :math:`1/N`.
Counting powers of :math:`N` recursively (a product adds the powers of its
factors, an inverse negates, a transpose keeps, and the terms of a sum must all
carry the same power) splits the expression into

.. math::  r = N^{p}\,\hat r,

where :math:`\hat r` has coefficients free of :math:`N` and operator norm of
order one.  A trace limit :math:`\lim \operatorname{tr}(r)/N_r` is finite and
non-trivial only when :math:`p = 0`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Mapping

import sympy
from sympy.matrices.expressions import (
    BlockMatrix,
    Identity as SympyIdentity,
    Inverse as SympyInverse,
    MatAdd,
    MatMul,
    MatPow,
    MatrixExpr,
    MatrixSymbol,
    Transpose,
)

from .arguments import as_sympy
from .errors import DimensionError, MisScaledError, UnsupportedOperationError
from .diagonal import Diagonal
from .gaussian import Gaussian

__all__ = [
    "Dimensions", "Leaf", "DiagonalLeaf", "MatrixIdentity", "MatrixSum", "MatrixProduct", "MatrixInverse", "Block",
    "normalise", "parts", "check_rational",
]


# --------------------------------------------------------------------------- dimensions


@dataclass(frozen=True)
class Dimensions:
    r"""The proportional growth of all dimensions: :math:`N_k = \alpha_k N`.

    Parameters
    ----------
    base : sympy.Symbol
        The base dimension :math:`N`.
    ratios : tuple of (sympy.Expr, sympy.Expr)
        Pairs ``(dimension, alpha)`` with ``alpha`` free of ``base``; ``alpha`` may
        contain parameter symbols (e.g. ``psi_n``) whose values are given later.

    Examples
    --------
    >>> import sympy
    >>> n, d, psi = sympy.symbols("n d psi", positive=True)
    >>> dims = Dimensions.from_mapping({n: psi * d}, shape_symbols={n, d})
    >>> dims.base
    d
    >>> dims.ratio(2 * n)
    2*psi
    """

    base: sympy.Symbol
    ratios: tuple

    @classmethod
    def from_mapping(cls, dims: Mapping, shape_symbols: set) -> "Dimensions":
        """Check ``dims`` against the dimensions an expression uses, and find the base."""
        if not isinstance(dims, Mapping):
            raise DimensionError(
                f"dims must be a dict mapping each dimension symbol to a multiple of one base "
                f"symbol, e.g. {{n: 2*d, p: 3*d}}; got {type(dims).__name__}."
            )
        dims = {as_sympy(key, "dims", DimensionError): as_sympy(value, "dims", DimensionError)
                for key, value in dims.items()}
        base = cls._find_base(dims, shape_symbols)
        ratios = {base: sympy.Integer(1)}
        for dimension, value in dims.items():
            if dimension == base:
                if sympy.simplify(value - base) != 0:
                    raise DimensionError(f"the base dimension {base} must map to itself, not to {value}.")
                continue
            ratio = sympy.simplify(value / base)
            if base in ratio.free_symbols or (ratio.is_number and not ratio.is_positive):
                raise DimensionError(
                    f"dimension {dimension} = {value} is not a positive multiple of the base "
                    f"dimension {base}; write it as ratio*{base} with a ratio free of {base}."
                )
            if ratio.free_symbols & set(dims):
                raise DimensionError(
                    f"the ratio of {dimension} ({ratio}) uses another dimension; every ratio must "
                    f"be a number or a parameter symbol."
                )
            ratios[dimension] = ratio
        missing = {symbol for symbol in shape_symbols if symbol not in ratios}
        if missing:
            names = ", ".join(sorted(map(str, missing)))
            raise DimensionError(
                f"dimension(s) {names} missing from dims; add each as a multiple of the base "
                f"{base}, e.g. {{{sorted(missing, key=str)[0]}: 2*{base}}}."
            )
        return cls(base, tuple(sorted(ratios.items(), key=lambda item: str(item[0]))))

    @staticmethod
    def _find_base(dims: dict, shape_symbols: set) -> sympy.Symbol:
        if not dims and len(shape_symbols) > 1:
            names = ", ".join(sorted(map(str, shape_symbols)))
            raise DimensionError(
                f"dimensions {names} missing from dims; give each as a multiple of one base "
                f"symbol, e.g. {{n: 2*d}}."
            )
        identity_keys = [key for key, value in dims.items() if key == value]
        if identity_keys:
            return identity_keys[0]
        values = list(dims.values())
        candidates = set().union(*(value.free_symbols for value in values)) if values else set(shape_symbols)
        candidates = {
            symbol
            for symbol in candidates
            if symbol not in dims and all(symbol in value.free_symbols for value in values)
        }
        in_shapes = candidates & shape_symbols
        if len(in_shapes) == 1:
            return in_shapes.pop()
        if len(candidates) == 1:
            return candidates.pop()
        raise DimensionError(
            "cannot tell the base dimension from dims="
            f"{dims}; make every dimension a multiple of one base symbol and include the base "
            "mapped to itself, e.g. {d: d, n: 2*d}."
        )

    @property
    def mapping(self) -> dict:
        """``{dimension: ratio * base}`` for every dimension."""
        return {dimension: ratio * self.base for dimension, ratio in self.ratios}

    @lru_cache(maxsize=4096)
    def ratio(self, size: sympy.Expr) -> sympy.Expr:
        """The limit of ``size / N`` (free of the base), for a dimension expression."""
        ratio = sympy.simplify(sympy.sympify(size).subs(self.mapping) / self.base)
        if self.base in ratio.free_symbols:
            raise DimensionError(
                f"the size {size} does not grow proportionally to {self.base}; "
                f"every matrix dimension must be a multiple of the base."
            )
        return ratio

    @lru_cache(maxsize=4096)
    def split_power(self, scalar: sympy.Expr) -> tuple[sympy.Expr, sympy.Expr]:
        r"""Write a scalar as ``coefficient * N**power`` with ``coefficient`` free of ``N``.

        Raises
        ------
        MisScaledError
            If the scalar is not a single power of ``N`` (e.g. ``d + 1``).
        """
        N = sympy.Dummy("N", positive=True)
        value = sympy.sympify(scalar).subs(self.mapping).subs(self.base, N)
        value = sympy.expand(sympy.expand_power_base(sympy.powsimp(value, force=True), force=True))
        coefficient, power = value.as_coeff_exponent(N)
        coefficient = sympy.expand_power_base(sympy.powsimp(coefficient, force=True), force=True)
        if N in coefficient.free_symbols or N in power.free_symbols:
            raise MisScaledError(
                f"the scalar {scalar} is not a single power of the dimension {self.base} "
                f"(with dims substituted it is {value.subs(N, self.base)}); its terms have "
                f"different orders, so the lower ones vanish in the limit. Write scalings as "
                f"products of powers of the dimensions, e.g. 1/sqrt({self.base})."
            )
        return sympy.simplify(coefficient), power


# --------------------------------------------------------------------------- the tree


@dataclass(frozen=True)
class Leaf:
    r"""A normalised Gaussian :math:`\hat X` (entry variance :math:`1/N`), or its transpose."""

    gaussian: Gaussian
    transposed: bool

    @property
    def shape(self) -> tuple:
        rows, cols = self.gaussian.shape
        return (cols, rows) if self.transposed else (rows, cols)


@dataclass(frozen=True)
class DiagonalLeaf:
    r"""A deterministic :class:`pencils.Diagonal` (order one: no power of :math:`N`)."""

    diagonal: Diagonal

    @property
    def shape(self) -> tuple:
        return self.diagonal.shape


@dataclass(frozen=True)
class MatrixIdentity:
    """The identity of a given dimension."""

    size: sympy.Expr

    @property
    def shape(self) -> tuple:
        return (self.size, self.size)


@dataclass(frozen=True)
class MatrixSum:
    """``sum(coefficient * term)``: pairs ``(coefficient, node)``, all of one shape."""

    terms: tuple

    @property
    def shape(self) -> tuple:
        return self.terms[0][1].shape


@dataclass(frozen=True)
class MatrixProduct:
    """The product of its factors, left to right."""

    factors: tuple

    @property
    def shape(self) -> tuple:
        return (self.factors[0].shape[0], self.factors[-1].shape[1])


@dataclass(frozen=True)
class MatrixInverse:
    """The inverse of a square node."""

    argument: object

    @property
    def shape(self) -> tuple:
        return self.argument.shape


@dataclass(frozen=True)
class Block:
    r"""A block matrix :math:`(c_{ij} r_{ij})`: rows of pairs ``(coefficient, node)``, ``None`` for a zero block.

    ``row_sizes`` and ``col_sizes`` are the sizes of the block rows and columns
    (its :func:`parts`); every non-zero block is an unsplit node.
    """

    rows: tuple
    row_sizes: tuple
    col_sizes: tuple

    @property
    def shape(self) -> tuple:
        return (sympy.Add(*self.row_sizes), sympy.Add(*self.col_sizes))


def parts(node) -> tuple[tuple, tuple]:
    """The sizes of the row blocks and column blocks of a node (one each unless it holds a :class:`Block`).

    A product takes the row blocks of its first factor and the column blocks of
    its last; a sum, those of its terms (an identity term is split like them);
    an inverse, those of its argument.

    Examples
    --------
    >>> import sympy
    >>> from pencils import Gaussian
    >>> n, k, d = sympy.symbols("n k d", positive=True)
    >>> A, B = Gaussian("A", d, n), Gaussian("B", d, k)
    >>> dims = Dimensions.from_mapping({n: 2 * d, k: d}, shape_symbols={n, k, d})
    >>> _, _, node = normalise(sympy.BlockMatrix([[A, B]]).T * A, dims)
    >>> parts(node)
    ((n, k), (n,))
    """
    if isinstance(node, Block):
        return node.row_sizes, node.col_sizes
    if isinstance(node, MatrixProduct):
        return parts(node.factors[0])[0], parts(node.factors[-1])[1]
    if isinstance(node, MatrixSum):  # an identity term may be split like the others
        return max((parts(term) for _, term in node.terms), key=lambda both: len(both[0]) + len(both[1]))
    if isinstance(node, MatrixInverse):
        return parts(node.argument)
    rows, cols = node.shape
    return (rows,), (cols,)


def normalise(expr: MatrixExpr, dims: Dimensions) -> tuple[sympy.Expr, sympy.Expr, object]:
    r"""Split ``expr`` into ``coefficient * N**power * node``.

    ``node`` is a tree of :class:`Leaf`, :class:`DiagonalLeaf`, :class:`MatrixIdentity`, :class:`MatrixSum`,
    :class:`MatrixProduct`, :class:`MatrixInverse` and :class:`Block` whose coefficients are
    free of ``N`` and whose Gaussians are normalised; transposes are pushed down
    to the leaves.

    Examples
    --------
    >>> import sympy
    >>> from pencils import Gaussian
    >>> n, d = sympy.symbols("n d", positive=True)
    >>> X = Gaussian("X", n, d)
    >>> dims = Dimensions.from_mapping({n: 2 * d}, shape_symbols={n, d})
    >>> coefficient, power, node = normalise(X.T * X / n, dims)
    >>> coefficient, power
    (1/2, 0)
    """
    return _Normaliser(dims).convert(expr, transposed=False)


class _Normaliser:
    def __init__(self, dims: Dimensions):
        self.dims = dims

    def convert(self, expr, transposed: bool):
        if isinstance(expr, Gaussian):
            return sympy.Integer(1), sympy.Rational(1, 2), Leaf(expr, transposed)
        if isinstance(expr, Diagonal):  # its own transpose
            return sympy.Integer(1), sympy.Integer(0), DiagonalLeaf(expr)
        if isinstance(expr, Transpose):
            return self.convert(expr.arg, not transposed)
        if isinstance(expr, SympyIdentity):
            return sympy.Integer(1), sympy.Integer(0), MatrixIdentity(expr.rows)
        if isinstance(expr, MatMul):
            return self._product(expr, transposed)
        if isinstance(expr, MatAdd):
            return self._sum(expr, transposed)
        if isinstance(expr, SympyInverse):
            coefficient, power, node = self.convert(expr.arg, transposed)
            return 1 / coefficient, -power, MatrixInverse(node)
        if isinstance(expr, MatPow):
            return self._power(expr, transposed)
        if isinstance(expr, BlockMatrix):
            return self._block(expr, transposed)
        if isinstance(expr, MatrixSymbol):
            raise UnsupportedOperationError(
                f"{expr} is a plain MatrixSymbol; only pencils.Gaussian and pencils.Diagonal matrices and "
                f"identities can appear. Declare random matrices with pencils.Gaussian(name, rows, cols) and "
                f"deterministic diagonal ones with pencils.Diagonal(name, dim, values)."
            )
        if not getattr(expr, "is_Matrix", False):
            raise UnsupportedOperationError(
                f"{expr} is not a matrix expression; build the target from pencils.Gaussian "
                f"matrices and sympy.Identity."
            )
        raise UnsupportedOperationError(
            f"the operation {type(expr).__name__} in {expr} has no linear pencil here; "
            f"supported: +, scalar *, matrix *, .T, inverse, integer powers, block matrices."
        )

    def _product(self, expr: MatMul, transposed: bool):
        scalar, matrices = expr.as_coeff_matrices()
        coefficient, power = self.dims.split_power(scalar)
        factors = []
        for matrix in matrices:
            factor_coefficient, factor_power, node = self.convert(matrix, transposed)
            coefficient, power = coefficient * factor_coefficient, power + factor_power
            factors.append(node)
        if transposed:
            factors.reverse()
        if len(factors) == 1:
            return coefficient, power, factors[0]
        return coefficient, power, MatrixProduct(tuple(factors))

    def _sum(self, expr: MatAdd, transposed: bool):
        shapes = [tuple(self.dims.ratio(size) for size in term.shape) for term in expr.args]
        if any(sympy.simplify(a - b) != 0 for shape in shapes[1:] for a, b in zip(shape, shapes[0])):
            described = "; ".join(f"{term} is {term.shape[0]} x {term.shape[1]}" for term in expr.args)
            mapping = ", ".join(f"{key} = {value}" for key, value in self.dims.mapping.items() if key != self.dims.base)
            raise DimensionError(
                f"the terms of the sum {expr} have different shapes ({described}; with {mapping}); "
                f"only matrices of one shape can be added: check the dimensions of each term."
            )
        converted = [self.convert(term, transposed) for term in expr.args if not term.is_ZeroMatrix]
        powers = {sympy.nsimplify(power) for _, power, _ in converted}
        if len(powers) > 1:
            orders = "; ".join(f"{term}: N^{power}" for term, (_, power, _) in zip(expr.args, converted))
            raise MisScaledError(
                f"the terms of the sum {expr} grow at different rates ({orders}); the smaller ones "
                f"vanish in the limit. Rescale them (e.g. divide a Wishart X.T*X by its dimension) "
                f"so that every term has the same order."
            )
        terms = tuple((coefficient, node) for coefficient, _, node in converted)
        return sympy.Integer(1), powers.pop(), MatrixSum(terms)

    def _block(self, expr: BlockMatrix, transposed: bool):
        """A block matrix: every non-zero block carries the same power of ``N`` (like the terms of a sum)."""
        grid = expr.blocks.T if transposed else expr.blocks
        rows, powers = [], {}
        for i in range(grid.rows):
            row = []
            for j in range(grid.cols):
                block = grid[i, j]
                if block.is_ZeroMatrix:
                    row.append(None)
                    continue
                coefficient, power, node = self.convert(block, transposed)
                if len(parts(node)[0]) > 1 or len(parts(node)[1]) > 1:
                    raise UnsupportedOperationError(
                        f"the block {block} of {expr} is itself split into blocks; write the whole "
                        f"matrix as one block matrix with unsplit blocks."
                    )
                powers[block] = sympy.nsimplify(power)
                row.append((coefficient, node))
            rows.append(tuple(row))
        if len(set(powers.values())) > 1:
            orders = "; ".join(f"{block}: N^{power}" for block, power in powers.items())
            raise MisScaledError(
                f"the blocks of {expr} grow at different rates ({orders}); rescale them so that every "
                f"block has the same order."
            )
        row_sizes = tuple(grid[i, 0].shape[int(transposed)] for i in range(grid.rows))
        col_sizes = tuple(grid[0, j].shape[1 - int(transposed)] for j in range(grid.cols))
        power = powers.popitem()[1] if powers else sympy.Integer(0)
        return sympy.Integer(1), power, Block(tuple(rows), row_sizes, col_sizes)

    def _power(self, expr: MatPow, transposed: bool):
        exponent = expr.exp
        if not (exponent.is_Integer and exponent != 0):
            raise UnsupportedOperationError(
                f"the power {expr} has a non-integer exponent; only integer powers of square "
                f"matrices have linear pencils."
            )
        coefficient, power, node = self.convert(expr.base, transposed)
        count = abs(int(exponent))
        product = node if count == 1 else MatrixProduct((node,) * count)
        coefficient, power = coefficient**count, power * count
        if exponent < 0:
            return 1 / coefficient, -power, MatrixInverse(product)
        return coefficient, power, product


def check_rational(expr) -> None:
    r"""Refuse functions of matrices (``exp``, ``log``, determinants), which have no linear pencil.

    Only rational expressions (sums, products, inverses, integer powers, block
    matrices) are realised; a scalar function of a trace (e.g. ``log(Trace(S)/d)``)
    is fine.

    Examples
    --------
    >>> import sympy
    >>> from pencils import Gaussian
    >>> n, d = sympy.symbols("n d")
    >>> S = Gaussian("X", n, d).T * Gaussian("X", n, d) / n
    >>> check_rational(sympy.exp(S))
    Traceback (most recent call last):
    ...
    pencils.errors.UnsupportedOperationError: exp(1/n*X.T*X) applies exp to a matrix; functions of matrices are not rational and have no linear pencil. Write a rational expression instead: a resolvent (S - z*Identity)**-1, whose trace gives the spectral density by Stieltjes inversion (pencils.models.marchenko_pastur.density), or a polynomial such as S + S**2/2; for a function f analytic around the spectrum of a symmetric S, give pencils.limit the trace Trace(MatrixFunction(Lambda(x, f(x)), S))/N (contour integrals of the resolvent).
    """
    for node in sympy.preorder_traversal(expr):
        if isinstance(node, sympy.Determinant):
            raise UnsupportedOperationError(
                f"{node} is a determinant, which is not a trace of a rational expression. For "
                f"log det(S + lam*I)/N use its derivative d/dlam = Trace((S + lam*I)**-1)/N "
                f"(trace_limit or limit compute it) and integrate in lam (e.g. with mpmath.quad) from a "
                f"large lam, where log det(S + lam*I)/N = log(lam) + Trace(S)/(N*lam) + O(1/lam**2)."
            )
        if isinstance(node, sympy.Function) and any(getattr(arg, "is_Matrix", False) for arg in node.args):
            raise UnsupportedOperationError(
                f"{node} applies {node.func} to a matrix; functions of matrices are not rational and have "
                f"no linear pencil. Write a rational expression instead: a resolvent (S - z*Identity)**-1, "
                f"whose trace gives the spectral density by Stieltjes inversion "
                f"(pencils.models.marchenko_pastur.density), or a polynomial such as S + S**2/2; for a function "
                f"f analytic around the spectrum of a symmetric S, give pencils.limit the trace "
                f"Trace(MatrixFunction(Lambda(x, f(x)), S))/N (contour integrals of the resolvent)."
            )


def shape_symbols(expr: MatrixExpr) -> set:
    """The symbols used in the shapes of every matrix inside ``expr``."""
    symbols = set()
    for matrix in expr.atoms(MatrixSymbol) | expr.atoms(SympyIdentity):
        for size in matrix.shape:
            symbols |= sympy.sympify(size).free_symbols
    return symbols
