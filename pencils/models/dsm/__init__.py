r"""Denoising score matching with a random-features score, from the engine.

The model and its conventions are in :mod:`pencils.models.dsm.ridge` (the ridge estimator:
expressions, constants, errors, learning curves, crossover and phase boundary); the same score
trained by gradient flow from :math:`B = 0` is in :mod:`pencils.models.dsm.dynamics` (errors along
training time, memorisation and early stopping), and the phase diagram is drawn by
:mod:`pencils.models.dsm.figures`.  All their public names are available here.

Examples
--------
>>> from pencils.models import dsm
>>> result = dsm.errors(psi_n=4.0, psi_p=2.0, t=0.1, lam=1e-3)
>>> bool(result.test > result.optimum)
True
"""

from .dynamics import GradientFlow, early_stopping_time, gradient_flow, gradient_flow_quantities, memorization_time
from .figures import draw_phase_diagram
from .ridge import (
    RIDGE_START, Errors, SimulationResult, check_parameters, constants, crossover, dims, errors, feature_matrix,
    learning_curve, optimum, phase_boundary, phase_diagram, quantities, simulate, substitutions, symbols,
)

__all__ = [
    "Errors", "errors", "feature_matrix", "learning_curve", "phase_diagram", "crossover", "phase_boundary",
    "quantities", "substitutions", "constants", "optimum", "RIDGE_START",
    "simulate", "SimulationResult", "symbols", "dims", "check_parameters",
    "GradientFlow", "gradient_flow", "gradient_flow_quantities", "memorization_time", "early_stopping_time",
    "draw_phase_diagram",
]
