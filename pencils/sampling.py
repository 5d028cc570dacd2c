r"""Finite-size estimates: draw the Gaussians and evaluate the expression directly.

The expression is evaluated *as written* (no pencil, no normalisation,
:mod:`pencils.evaluation`), so it is an independent check of everything the
engine derives.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np
import sympy

from .arguments import resolve_keys
from .errors import ParameterError
from .expression import Dimensions, shape_symbols
from .evaluation import draw, evaluate
from .trace_limits import check_trace_arguments
from .sizes import draw_sizes
from .validation import check_positive_int, check_values

__all__ = ["SampleEstimate", "sample_trace"]


@dataclass(frozen=True)
class SampleEstimate:
    """A Monte Carlo estimate: the mean over seeds and its standard error.

    ``mean`` and ``stderr`` have the broadcast shape of the parameter values.
    """

    mean: np.ndarray | float
    stderr: np.ndarray | float
    seeds: int


def sample_trace(
    expr: sympy.MatrixExpr,
    dims: Mapping,
    subs: Mapping | None,
    size: int,
    seeds: Iterable[int] | int = 10,
) -> SampleEstimate:
    r"""Estimate :math:`\mathbb E[\operatorname{tr}(r)/N_r]` by drawing the matrices at finite size.

    Every dimension is set to ``round(ratio * size)``; for each seed the Gaussians
    are drawn, the expression is evaluated densely with numpy, and its normalised
    trace is recorded.  The mean and the standard error over seeds are returned,
    so that an asymptotic answer is checked by one call.

    Parameters
    ----------
    expr : sympy.MatrixExpr
        A square expression in :class:`pencils.Gaussian` matrices.
    dims : dict
        Each dimension as a multiple of one base symbol.
    subs : dict
        Values of the remaining scalar symbols (numbers or arrays that broadcast).
    size : int
        The base dimension of the draw.
    seeds : int or iterable of int
        The seeds (an int ``k`` means ``range(k)``).

    Returns
    -------
    SampleEstimate
        ``mean`` and ``stderr`` (standard deviation over seeds / sqrt(#seeds)).

    Examples
    --------
    >>> import sympy
    >>> from pencils import Gaussian, sample_trace
    >>> n, d = sympy.symbols("n d", positive=True)
    >>> X = Gaussian("X", n, d)
    >>> estimate = sample_trace(X.T * X / n, {n: 2 * d}, {}, size=100, seeds=4)
    >>> abs(estimate.mean - 1.0) < 5 * estimate.stderr + 1e-2
    True
    """
    size = check_positive_int(size, "size")
    if isinstance(seeds, numbers.Integral) and not isinstance(seeds, bool):
        seeds = list(range(check_positive_int(seeds, "seeds")))
    else:
        seeds = [_seed(seed) for seed in seeds]
    if not seeds:
        raise ParameterError("seeds is empty; give at least one seed (two for a standard error).")
    subs = check_values(subs)
    check_trace_arguments(expr, dims, subs)
    dimensions = Dimensions.from_mapping(dims, shape_symbols(expr))
    symbols = expr.free_symbols.union(*(ratio.free_symbols for _, ratio in dimensions.ratios))
    subs = resolve_keys(subs, symbols, "subs")
    keys = list(subs)
    arrays = np.broadcast_arrays(*(np.asarray(subs[key]) for key in keys)) if keys else []
    shape = arrays[0].shape if arrays else ()
    means, errors = np.empty(shape, dtype=complex), np.empty(shape)
    for index in np.ndindex(shape):
        values = {key: array[index].item() for key, array in zip(keys, arrays)}
        sizes = draw_sizes(dimensions, int(size), values)
        rows = int(sympy.sympify(expr.shape[0]).subs(sizes))
        traces = []
        for seed in seeds:
            matrices = draw(expr, sizes, np.random.default_rng(seed))
            traces.append(np.trace(evaluate(expr, matrices, sizes, values)) / rows)
        traces = np.asarray(traces)
        means[index] = traces.mean()
        errors[index] = traces.std(ddof=1) / np.sqrt(len(traces)) if len(traces) > 1 else np.inf
    if np.all(means.imag == 0):
        means = means.real
    if shape == ():
        return SampleEstimate(means.item(), errors.item(), len(seeds))
    return SampleEstimate(means, errors, len(seeds))


def _seed(seed) -> int:
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ParameterError(f"each seed must be a non-negative integer; got {seed!r}.")
    return int(seed)
