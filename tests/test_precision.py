"""Double precision at a tiny ridge: finished in arbitrary precision, or a warning, never silently wrong.

With p > n and a ridge of 1e-8, the unknowns of the random-features test error
grow like 1/ridge^2 and cancel in the target; a float solution that satisfies
the equations to 1e-16 of its largest unknown got every digit of the test error
wrong (1.004 instead of 1.2154) before the solver measured the residual of each
unknown.  The references are the same limits at dps = 30.
"""

import math
import warnings

import mpmath
import pytest

from pencils.errors import PrecisionWarning
from pencils.models import dsm, random_features

A2 = math.exp(-2e-3)


@pytest.mark.parametrize("lam", [1e-6, 1e-8])
def test_small_system_is_finished_in_arbitrary_precision(lam):
    arguments = dict(psi_n=0.1, psi_p=0.72, lam=lam / 0.72, signal=1 - A2, noise=A2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = random_features.errors(**arguments)
    reference = random_features.errors(**arguments, dps=30)
    assert abs(result.test - reference.test) < 1e-12 * reference.test
    assert abs(result.train - reference.train) < 1e-12 * reference.train


@pytest.mark.slow
def test_large_system_warns_where_double_precision_is_not_enough():
    """At the interpolation threshold p = n m with a ridge of 1e-9 the errors are large
    (the test error ~ 1e4) and the finite-m systems written with two resolvents (106 and 195
    unknowns) too large to finish automatically: a warning (its points just above the residual
    tolerance are still finished, in arbitrary precision, which takes tens of seconds).
    ``dsm.errors`` uses smaller systems there (``tests/test_dsm.py``)."""
    from pencils import limit

    direct = dsm.quantities(finite_m=True, direct=True)
    subs = dsm.substitutions(1.0, 1.0, 0.1, 1e-9, m=1.0)
    with pytest.warns(PrecisionWarning, match="dps=30"):
        limit([direct["test"], direct["train"]], dsm.dims, subs, path_from={dsm.symbols["lam"]: 1e-2})


def test_well_conditioned_points_are_left_alone():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = dsm.errors(2.0, 1.0, 0.5, 1e-2, m=1.0)
    reference = random_features.errors(2.0, 1.0, 1e-2, signal=1 - math.exp(-1.0), noise=math.exp(-1.0), dps=20)
    with mpmath.workdps(20):
        assert abs(result.test - reference.test) < 1e-10


def test_a_ridge_too_small_for_double_precision_says_so():
    """Finite m, p > n m and a ridge of 1e-9 in the primal (p x p) form written with two resolvents: the unknowns pass 1e20
    and the continuation cannot follow them in floats; the error names the point and the reason.
    ``dsm.errors`` uses the dual form there (see ``tests/test_dsm.py``)."""
    from pencils import limit
    from pencils.errors import ConvergenceError

    subs = dsm.substitutions(0.1, 0.72, 1e-3, 1e-9, m=1.0)
    with pytest.raises(ConvergenceError, match="power of 1/ridge") as caught:
        limit(dsm.quantities(finite_m=True, direct=True)["test"], dsm.dims, subs)
    assert caught.value.parameters["lambda"] == 1e-9
    result = dsm.errors(0.1, 0.72, 1e-3, 1e-9, m=1.0)
    assert 0 < result.train < 1e-15 and math.isfinite(result.test)
