r"""Numeric solution of the Dyson equation: vectorised numpy and arbitrary-precision mpmath.

The way from an expression to a number is ``expression -> pencil -> Dyson
system -> solver -> limit``: :func:`pencils.linearize` writes a rational
expression in Gaussian matrices as a block of a linear pencil
(:mod:`pencils.pencil`), :class:`pencils.DysonSystem` derives the
self-consistent equations of its blocks (:mod:`pencils.dyson`), the
:class:`Solver` of this package solves them at batches of parameter values, and
:func:`pencils.trace_limit` / :func:`pencils.limit` (:mod:`pencils.limits`)
are the entry points, which keep what they derive in memory and on disk
(:mod:`pencils.cache`).  The modules of the solver:

- :mod:`~pencils.solve.compiled`: the coefficients compiled as functions of the
  parameters, and the broadcasting of parameter values;
- :mod:`~pencils.solve.linear_algebra`: batched float and multiprecision linear
  algebra, mixed-precision refinement, block-triangular solves;
- :mod:`~pencils.solve.dyson_map`: the Dyson map, its inverse, Jacobian, tangent
  and curvature, and Newton's method;
- :mod:`~pencils.solve.continuation`: predictors, paths from zero variance and
  between parameter values, anchors and continuation from neighbours;
- :mod:`~pencils.solve.accuracy`: the bound on the rounding error of float
  results, finishing in arbitrary precision, warnings and failure reports;
- :mod:`~pencils.solve.solver`: :class:`Solver`, which composes them.
"""

from .options import SolverOptions
from .result import LimitResult, Solution
from .solver import Solver

__all__ = ["LimitResult", "Solution", "Solver", "SolverOptions"]
