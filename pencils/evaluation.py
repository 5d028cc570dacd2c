r"""Draw the Gaussians of a matrix expression at finite size and evaluate it densely with numpy.

The expression is evaluated *as written* (no pencil, no normalisation): the
finite-size side of every check, used by :func:`pencils.sample_trace`,
:meth:`pencils.Pencil.check` and the spectra's symmetry check.

Examples
--------
>>> import numpy as np, sympy
>>> from pencils import Gaussian
>>> from pencils.evaluation import draw, evaluate
>>> n, d = sympy.symbols("n d")
>>> X = Gaussian("X", n, d)
>>> matrices = draw(X.T * X / n, {n: 8, d: 3}, np.random.default_rng(0))
>>> evaluate(X.T * X / n, matrices, {n: 8, d: 3}, {}).shape
(3, 3)
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import sympy
from sympy.matrices.expressions import BlockMatrix, Identity, Inverse, MatAdd, MatMul, MatPow, Transpose

from .diagonal import Diagonal
from .errors import ParameterError, UnsupportedOperationError
from .gaussian import Gaussian

__all__ = ["draw", "evaluate"]


def draw(expr: sympy.MatrixExpr, sizes: Mapping, rng: np.random.Generator) -> dict:
    """Draw every Gaussian of ``expr`` with ``N(0, 1)`` entries at the given integer sizes."""
    matrices = {}
    for gaussian in sorted(expr.atoms(Gaussian), key=lambda g: g.name):
        rows, cols = (int(sympy.sympify(size).subs(sizes)) for size in gaussian.shape)
        matrices[gaussian] = rng.standard_normal((rows, cols))
    return matrices


def evaluate(expr: sympy.MatrixExpr, matrices: Mapping, sizes: Mapping, values: Mapping) -> np.ndarray:
    """Evaluate a matrix expression with numpy for given draws, sizes and scalar values.

    A :class:`pencils.Diagonal` is the diagonal matrix of its finite-size
    eigenvalues (:meth:`pencils.Diagonal.eigenvalues`).
    """
    scalars = {**sizes, **values}

    def scalar(value) -> complex:
        number = complex(sympy.sympify(value).subs(scalars))
        return number

    def walk(node) -> np.ndarray:
        if isinstance(node, Gaussian):
            return matrices[node]
        if isinstance(node, Diagonal):
            return np.diag(node.eigenvalues(int(sympy.sympify(node.dim).subs(sizes)), values))
        if isinstance(node, Identity):
            return np.eye(int(sympy.sympify(node.rows).subs(sizes)))
        if node.is_ZeroMatrix:
            return np.zeros(tuple(int(sympy.sympify(size).subs(sizes)) for size in node.shape))
        if isinstance(node, BlockMatrix):
            return np.block([[walk(node.blocks[i, j]) for j in range(node.blocks.cols)] for i in range(node.blocks.rows)])
        if isinstance(node, Transpose):
            return walk(node.arg).T
        if isinstance(node, Inverse):
            matrix = walk(node.arg)
            # singular to working precision: the inverse would be rounding noise
            if np.linalg.cond(matrix) * np.finfo(float).eps * len(matrix) < 1:
                return np.linalg.inv(matrix)
            raise ParameterError(
                f"{node.arg} is singular in this draw (sizes {sizes}); its inverse is undefined: add a "
                f"ridge to it or change the dimension ratios."
            )
        if isinstance(node, MatPow):
            return np.linalg.matrix_power(walk(node.base), int(node.exp))
        if isinstance(node, MatAdd):
            return sum(walk(term) for term in node.args)
        if isinstance(node, MatMul):
            coefficient, factors = node.as_coeff_matrices()
            result = walk(factors[0])
            for factor in factors[1:]:
                result = result @ walk(factor)
            return scalar(coefficient) * result
        raise UnsupportedOperationError(f"cannot evaluate {type(node).__name__} in {expr}")

    return walk(expr)
