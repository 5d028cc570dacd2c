r"""Numeric solution of the Dyson equation: vectorised numpy and arbitrary-precision mpmath.

The way from an expression to a number is ``expression -> pencil -> Dyson
system -> solver -> limit``: :func:`pencils.linearize` writes a rational
expression in Gaussian matrices as a block of a linear pencil
(:mod:`pencils.pencil`), :class:`pencils.DysonSystem` derives the
self-consistent equations of its blocks (:mod:`pencils.dyson`), the
:class:`Solver` of this package solves them at batches of parameter values, and
:func:`pencils.trace_limit` / :func:`pencils.limit` (:mod:`pencils.limits`)
are the entry points (rational expressions in :mod:`pencils.trace_limits`,
functions of matrices in :mod:`pencils.functions`).  What they derive is kept by the derivation store
(:mod:`pencils.derivations`) in memory and in the on-disk cache
(:mod:`pencils.cache`); scalar quantities of several traces are compiled and
evaluated in :mod:`pencils.quantities`.  The modules of the solver:

- :mod:`~pencils.solve.compiled`: the numeric problem, its coefficients compiled
  as functions of the parameters, and the broadcasting of parameter values;
- :mod:`~pencils.solve.linear_algebra`: batched float and multiprecision linear
  algebra, mixed-precision refinement, block-triangular solves;
- :mod:`~pencils.solve.dyson_map`: the Dyson map, its inverse, Jacobian, tangent
  and curvature, and Newton's method;
- :mod:`~pencils.solve.continuation`: predictors, paths from zero variance and
  between parameter values, anchors and continuation from neighbours;
- :mod:`~pencils.solve.accuracy`: the accuracy audit, a bound on the rounding
  error of float results, and the reports (warnings, convergence failures);
- :mod:`~pencils.solve.options`: :class:`SolverOptions`, the tolerances and work sizes of a call;
- :mod:`~pencils.solve.result`: :class:`LimitResult` and :class:`Solution`, what a solve returns;
- :mod:`~pencils.solve.solver`: :class:`Solver`, which composes them and finishes
  in arbitrary precision the float points it cannot promise.
"""

from .options import SolverOptions
from .result import LimitResult, Solution
from .solver import Solver

__all__ = ["LimitResult", "Solution", "Solver", "SolverOptions"]
