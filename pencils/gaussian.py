"""Gaussian random matrices as SymPy matrix symbols."""

from __future__ import annotations

import sympy
from sympy import MatrixSymbol

from .arguments import as_sympy
from .errors import DimensionError

__all__ = ["Gaussian"]


class Gaussian(MatrixSymbol):
    r"""A ``rows x cols`` random matrix with i.i.d. :math:`\mathcal N(0, 1)` entries.

    A :class:`Gaussian` is a :class:`sympy.MatrixSymbol`, so it combines with the
    usual SymPy matrix operations (``+``, ``*``, ``.T``, ``.I``, scalars,
    :class:`sympy.Identity`).  Matrices with different names are independent; the
    same matrix used twice in an expression is the same random draw.

    Parameters
    ----------
    name : str
        The name of the matrix; it identifies the random draw.
    rows, cols : sympy.Expr or str
        Dimension symbols (or expressions of them), or the name of a symbol
        (``"n"`` is ``sympy.Symbol("n")``; text is never parsed, so write
        ``2*n`` as a SymPy expression).  Their ratios are fixed later, by the
        ``dims`` argument of :func:`pencils.trace_limit`.

    Examples
    --------
    >>> import sympy
    >>> from pencils import Gaussian
    >>> n, d = sympy.symbols("n d", positive=True)
    >>> X = Gaussian("X", n, d)
    >>> X.shape
    (n, d)
    >>> (X.T * X / n).shape
    (d, d)
    """

    def __new__(cls, name: str, rows, cols):
        rows, cols = (
            sympy.Symbol(size) if isinstance(size, str) and size.isidentifier()
            else as_sympy(size, "the shape of a Gaussian", DimensionError)
            for size in (rows, cols)
        )
        return super().__new__(cls, name, rows, cols)
