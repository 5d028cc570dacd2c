"""Integer dimensions for a draw of the matrices: the base size times each exact ratio, rounded."""

from __future__ import annotations

from typing import Mapping

import numpy as np
import sympy

from .errors import ParameterError
from .expression import Dimensions

__all__ = ["draw_sizes", "exact_size"]


def exact_size(dims: Dimensions, size: int, values: Mapping, search: int = 1000) -> int:
    """The smallest base size ``>= size`` at which every dimension ``ratio * size`` is an integer.

    The pencil's coefficients hold the exact ratios, so a self-check must draw at
    sizes that realise them exactly.
    """
    for candidate in range(int(size), int(size) + search):
        drawn = draw_sizes(dims, candidate, values)
        if all(abs(complex(sympy.sympify(ratio).subs(values)).real * candidate - drawn[dimension]) < 1e-9
               for dimension, ratio in dims.ratios):
            return candidate
    raise ParameterError(
        f"no base size between {size} and {size + search} makes every dimension an integer for the ratios "
        f"{dict(dims.ratios)}; use rational ratio values for the self-check."
    )


def draw_sizes(dims: Dimensions, size: int, values: Mapping) -> dict:
    """Integer dimensions at base ``size``: ``round(ratio * size)`` for each dimension."""
    sizes = {}
    for dimension, ratio in dims.ratios:
        substituted = sympy.sympify(ratio).subs(values)
        if substituted.free_symbols:
            names = ", ".join(sorted(map(str, substituted.free_symbols)))
            raise ParameterError(f"the ratio {ratio} of {dimension} needs a value for {names}; add it to the values.")
        value = complex(substituted)
        if value.imag != 0 or not np.isfinite(value.real):
            raise ParameterError(f"the ratio {ratio} of {dimension} must be a finite real number; got {value}.")
        if value.real < 0:
            raise ParameterError(f"the ratio {ratio} of {dimension} is negative ({value.real}); ratios must be >= 0.")
        sizes[dimension] = int(round(value.real * size))
    return sizes
