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
import numpy as np
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
    with pytest.raises(ConvergenceError, match=r"lambda=1e-09\) spread the unknowns.*dps=30") as caught:
        limit(dsm.quantities(finite_m=True, direct=True)["test"], dsm.dims, subs)
    assert caught.value.parameters["lambda"] == 1e-9
    result = dsm.errors(0.1, 0.72, 1e-3, 1e-9, m=1.0)
    assert 0 < result.train < 1e-15 and math.isfinite(result.test)


# ---------------------------------------------------------------- the float promise, against closed forms

def _marchenko_pastur(ratio, lam, dps=40):
    r"""``(m, m')``: the Stieltjes transform of :math:`X^T X/n` at :math:`z = -\lambda` and its derivative in z,
    for :math:`d/n = ` ``ratio`` (closed form; the derivative by mpmath's numerical differentiation)."""
    with mpmath.workdps(dps):
        def stieltjes(z):
            linear = 1 - ratio - z
            return (linear - mpmath.sqrt(linear**2 - 4 * ratio * z)) / (2 * ratio * z)

        z = -mpmath.mpf(lam)
        return stieltjes(z), mpmath.diff(stieltjes, z)


def _ridge():
    import sympy

    from pencils import Gaussian

    n, d, lam, sigma = sympy.symbols("n d lambda sigma", positive=True)
    X = Gaussian("X", n, d)
    S = X.T * X / n
    R = (S + lam * sympy.Identity(d)).I
    return n, d, lam, sigma, S, R


@pytest.mark.parametrize("lam", [1e-2, 1e-6, 1e-8, 3.2e-9])
def test_merged_bias_and_variance_of_ridgeless_regression_are_right(lam):
    """d = 2n and a tiny ridge: bias lam^2 tr(R R)/d and variance sigma^2 tr(R S R)/n, merged by limit into
    one trace whose unknowns grow like 1/lam^2 and cancel.  Closed form (Marchenko-Pastur, d/n = 2):
    tr(R R)/d = m', tr(R S R)/d = m - lam m'.  Before the error bound the float result was 0.2224 at
    lam = 1e-8 and 6.05 at 3.2e-9 against 0.75, with no warning."""
    import sympy

    from pencils import limit

    n, d, lam_symbol, sigma, S, R = _ridge()
    quantity = lam_symbol**2 * sympy.Trace(R * R) / d + sigma**2 * sympy.Trace(R * S * R) / n
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value = limit(quantity, {n: d / 2}, {lam_symbol: lam, sigma: 0.5})
    m, slope = _marchenko_pastur(2, lam)
    with mpmath.workdps(40):
        exact = lam**2 * slope + mpmath.mpf(0.5) ** 2 * 2 * (m - lam * slope)
        assert abs(value - exact) <= 1e-10 * abs(exact)


@pytest.mark.parametrize("lam", [1e-4, 1e-6, 1e-9])
def test_product_of_resolvents_and_derivative_are_right(lam):
    """tr(R R S)/d = m - lam m' (was off by 4.9e-5 at lam = 1e-6) and d/dlam tr(R)/d = -m'."""
    import sympy

    from pencils import limit

    n, d, lam_symbol, _, S, R = _ridge()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        product, derivative = limit([sympy.Trace(R * R * S) / d, sympy.Derivative(sympy.Trace(R), lam_symbol) / d],
                                    {n: d / 2}, {lam_symbol: lam})
    m, slope = _marchenko_pastur(2, lam)
    with mpmath.workdps(40):
        assert abs(product - (m - lam * slope)) <= 1e-10 * abs(m - lam * slope)
        assert abs(derivative + slope) <= 1e-10 * abs(slope)


def test_a_vanishing_train_error_far_beyond_the_threshold_is_right():
    """m = inf, psi_p = 5e9 psi_n: the train error ~6e-10 is a difference of order-one terms
    (it was -3.3e-7 in floats); the reference is the same limit at 30 digits."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = dsm.errors(2.0, 1e10, 0.1, 1e-2)
    reference = dsm.errors(2.0, 1e10, 0.1, 1e-2, dps=30)
    with mpmath.workdps(30):
        assert abs(result.train - reference.train) <= 1e-10 * abs(reference.train)
        assert abs(result.test - reference.test) <= 1e-10 * abs(reference.test)


def test_convergence_errors_say_what_helps():
    from pencils.errors import ConvergenceError

    with pytest.raises(ConvergenceError) as caught:
        dsm.errors(1e-300, 1.0, 0.1, 1e-2)
    message = str(caught.value)
    assert "psi_n=1e-300" in message and "underflow" in message and "residual 0" not in message


def test_a_huge_number_of_noise_draws_gives_the_infinite_limit():
    """m = 1e15 (inside the documented range): the one-resolvent finite-m forms are solved there, and the
    errors are those of m = inf to rounding (the 1/m correction, about 1e-15, is below it)."""
    infinite, huge = dsm.errors(2.0, 3.0, 0.1, 1e-2), dsm.errors(2.0, 3.0, 0.1, 1e-2, m=1e15)
    for field in ("test", "train"):
        assert abs(getattr(huge, field) - getattr(infinite, field)) < 1e-12 * getattr(infinite, field)


@pytest.mark.slow
def test_many_noise_draws_are_solved_and_tend_to_the_infinite_limit():
    """m = 1e8 (float Newton stalls at 1e-8 there, and the point is finished in arbitrary precision):
    the errors are those of m = inf plus c/m, with c measured at m = 1e4 (the c2/m^2 term is below 1e-12)."""
    limit_m, moderate, large = (dsm.errors(2.0, 3.0, 0.1, 1e-2, m=m) for m in (math.inf, 1e4, 1e8))
    for field in ("test", "train"):
        infinite, slope = getattr(limit_m, field), (getattr(moderate, field) - getattr(limit_m, field)) * 1e4
        assert abs(getattr(large, field) - (infinite + slope / 1e8)) < 1e-11


# ---------------------------------------------------------------- the check in extended precision

needs_extended = pytest.mark.skipif(np.finfo(np.longdouble).eps >= np.finfo(float).eps,
                                    reason="numpy's longdouble is double precision here")


def _exactly(number: np.longdouble) -> mpmath.mpf:
    """An extended-precision number as an mpmath number, exactly (the sum of two doubles)."""
    high = float(number)
    return mpmath.mpf(high) + mpmath.mpf(float(number - np.longdouble(high)))


@needs_extended
@pytest.mark.parametrize("ratio", [2, 3])
@pytest.mark.parametrize("lam", [0.5, 1e-3, 1e-6])
def test_the_extended_check_is_within_its_bound_of_the_closed_form(lam, ratio):
    """tr(R)/d and its derivative in lam (d = ratio n) from the float solution refined in extended precision:
    within the bound it claims of the Marchenko-Pastur closed form, and well below double's rounding where
    the problem is well conditioned.  At d = 3n the coefficients hold 1/3, which compiled numpy code rounds
    to double: they are computed in mpmath instead."""
    import sympy

    from pencils.derivations import dims_key, store
    from pencils.solve.accuracy import EXTENDED_MARGIN
    from pencils.solve.linear_algebra import ExtendedAlgebra, FloatAlgebra

    n, d, lam_symbol, _, _, R = _ridge()
    compiled = store.compiled_limit(sympy.Tuple(sympy.Trace(R) / d), dims_key({n: d / ratio}))
    solver = compiled.solvers[0]
    assert solver.compiled.binary_constants(solver.compiled.numpy) == (ratio == 2)
    result = solver.float_target({lam_symbol: lam}, None, "neighbours", [lam_symbol])
    (value, slope), converged = solver.extended_target(result, [lam_symbol], np.arange(1))
    # the bound AccuracyAudit.tighten assumes for the extended values: the first-order bound, scaled
    bounds = [EXTENDED_MARGIN * ExtendedAlgebra.epsilon / FloatAlgebra.epsilon * error for error in result.errors]
    m, m_prime = _marchenko_pastur(ratio, lam)
    with mpmath.workdps(40):  # the solver's target is tr(R)/d
        value_error = abs(_exactly(value[0]) - m)
        slope_error = abs(_exactly(slope[0]) + m_prime)
        assert converged[0] and value_error <= bounds[0][0] and slope_error <= bounds[1][0]
        if lam == 0.5:
            assert value_error < 1e-18 * m and slope_error < 1e-18 * m_prime


@needs_extended
def test_a_learning_curve_certified_in_extended_precision_is_not_finished(monkeypatch):
    """DSM at m = inf and t = 1: the first-order bound of the derivative in the tilt exceeds the promise at
    about a quarter of the points of a learning curve, where its error is below 1e-11.  The check in
    extended precision certifies them: nothing is solved again in arbitrary precision, and the values
    agree with the 30-digit limit."""
    from pencils.solve import Solver

    tightened, polished = [], []
    original_tighten, original_polish = Solver.tighten, Solver._polish
    monkeypatch.setattr(Solver, "tighten", lambda self, r, d, points, *rest: tightened.append(points.size)
                        or original_tighten(self, r, d, points, *rest))
    monkeypatch.setattr(Solver, "_polish", lambda self, *a: polished.append(a) or original_polish(self, *a))
    psi_p = np.geomspace(1.0, 100.0, 40)
    result = dsm.errors(20.0, psi_p, 1.0, 1e-3)
    assert sum(tightened) >= 5 and not polished
    for k in (0, 20, 39):
        reference = dsm.errors(20.0, psi_p[k], 1.0, 1e-3, dps=30)
        assert abs(result.test[k] - reference.test) <= 1e-10 * abs(reference.test)
        assert abs(result.train[k] - reference.train) <= 1e-10 * abs(reference.train)
