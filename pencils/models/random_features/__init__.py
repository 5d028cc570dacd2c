r"""Random-features ridge regression, from the engine.

The model and its conventions are in :mod:`pencils.models.random_features.ridge` (the ridge
estimator: expressions and errors); the second layer trained by gradient flow from :math:`a = 0`
is in :mod:`pencils.models.random_features.dynamics` (errors along training time).  All their
public names are available here.

Examples
--------
>>> from pencils.models import random_features
>>> result = random_features.errors(psi_n=2.0, psi_p=1.0, lam=1e-2)
>>> bool(result.test > result.train)
True
"""

from .dynamics import GradientFlow, gradient_flow, gradient_flow_quantities
from .ridge import Errors, RandomFeaturesSample, dims, errors, quantities, simulate, symbols

__all__ = [
    "Errors", "errors", "quantities", "simulate", "RandomFeaturesSample", "symbols", "dims",
    "GradientFlow", "gradient_flow", "gradient_flow_quantities",
]
