"""pencils: exact large-dimension limits of rational expressions in Gaussian matrices.

An expression becomes a linear pencil (:func:`linearize`), the pencil a Dyson
system (:class:`DysonSystem`), the system a solver (:mod:`pencils.solve`), and
the solver a limit (:func:`trace_limit`, :func:`limit`).
"""
from .errors import (
    CacheWarning, ConvergenceError, DimensionError, EliminationTooLargeError, MisScaledError, ParameterError,
    ParameterTypeError, PencilsError, PrecisionWarning, SingularStartError, UnsupportedOperationError,
)
from .gaussian import Gaussian
from .pencil import Pencil, linearize
from .sampling import SampleEstimate, sample_trace
from .dyson import DysonSystem
from .limits import derive, limit, trace_limit
from .solve import LimitResult, SolverOptions
from .spectra import Spectrum, spectral_density, spectrum
from .functions import MatrixFunction
from .diagonal import Diagonal
from .version import package_version

__version__ = package_version()

__all__ = [
    "CacheWarning", "ConvergenceError", "Diagonal", "DimensionError", "DysonSystem", "EliminationTooLargeError", "Gaussian",
    "LimitResult", "MatrixFunction", "MisScaledError", "ParameterError", "ParameterTypeError", "Pencil",
    "PencilsError", "PrecisionWarning", "SampleEstimate", "SingularStartError", "SolverOptions", "Spectrum",
    "UnsupportedOperationError", "__version__", "derive", "limit", "linearize", "sample_trace",
    "spectral_density", "spectrum", "trace_limit",
]
