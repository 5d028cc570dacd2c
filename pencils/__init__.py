"""pencils: exact large-dimension limits of rational expressions in Gaussian matrices."""
from .gaussian import Gaussian
from .pencil import Pencil, linearize
from .sampling import SampleEstimate, sample_trace
from .dyson import DysonSystem
from .limits import derive, limit, trace_limit
from .solve import LimitResult, SolverOptions
from .spectra import Spectrum, spectral_density, spectrum
from .functions import MatrixFunction
from .diagonal import Diagonal
