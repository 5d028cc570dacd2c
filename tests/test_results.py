"""Full output: the value of a plain call with its diagnostics (residual, error estimate, finishing).

The values are checked against the Marchenko-Pastur closed form (the Stieltjes
transform of d/n = 1/2 at z = -1 is (sqrt(17) - 3)/2) and, at a ridge too small
for double precision, against the same limit at 30 digits.
"""

import math
import warnings

import mpmath
import numpy as np
import pytest
import sympy

from pencils import Gaussian, LimitResult, MatrixFunction, derive, limit, trace_limit
from pencils.activations import get
from pencils.errors import ParameterError
from pencils.models import random_features

n, d, z = sympy.symbols("n d z")
X = Gaussian("X", n, d)
RESOLVENT = (X.T * X / n - z * sympy.Identity(d)).I
CLOSED = (math.sqrt(17) - 3) / 2


def test_full_output_has_the_value_of_the_plain_call_and_its_diagnostics():
    values = np.array([-1.0, -2.0, -0.5])
    result = trace_limit(RESOLVENT, {n: 2 * d}, {z: values}, full_output=True)
    assert isinstance(result, LimitResult)
    np.testing.assert_array_equal(result.value, trace_limit(RESOLVENT, {n: 2 * d}, {z: values}))
    assert result.value[0] == pytest.approx(CLOSED, rel=1e-14)
    assert result.converged.shape == (3,) and result.converged.all()
    assert np.all(result.residual <= 1e-12) and not result.finished.any() and not result.warned.any()
    assert np.all(result.relative_error <= 1e-10)  # the promise of a float result
    actual = abs(result.value[0] - CLOSED) / CLOSED
    assert actual <= max(result.relative_error[0], 1e-16)  # the bound holds (up to the reference's rounding)
    assert np.all(result.digits >= 10)


def test_full_output_in_arbitrary_precision():
    result = trace_limit(RESOLVENT, {n: 2 * d}, {z: -1}, dps=30, full_output=True)
    with mpmath.workdps(40):
        assert abs(result.value - (mpmath.sqrt(17) - 3) / 2) < mpmath.mpf(10) ** -29
    assert result.converged is True and result.relative_error == 1e-30 and result.digits == pytest.approx(30)


def test_a_point_beyond_double_precision_is_finished_and_says_why():
    """Random features with p > n and a ridge of 1e-8 (see tests/test_precision.py): the float error bound
    exceeds the promise, the point is computed again at 30 digits and the result says so."""
    symbols, constants = random_features.symbols, get("relu")
    a2 = math.exp(-2e-3)
    subs = {symbols["psi_n"]: 0.1, symbols["psi_p"]: 0.72, symbols["lam"]: 1e-8 / 0.72,
            symbols["signal"]: 1 - a2, symbols["noise"]: a2, symbols["mu1"]: constants.mu1(),
            symbols["v2"]: constants.correlated_split(1).total}
    quantities = random_features.quantities()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = limit([quantities["test"], quantities["train"]], random_features.dims, subs, full_output=True)
    reference = random_features.errors(0.1, 0.72, 1e-8 / 0.72, signal=1 - a2, noise=a2, dps=30)
    assert abs(result.value[0] - reference.test) < 1e-12 * reference.test
    assert result.finished and "float_accuracy" in result.finish_reason
    assert result.converged and not result.warned
    assert len(result.relative_error) == 2 and max(result.relative_error) <= 1.2e-16  # the rounding to a float
    plain = limit([quantities["test"], quantities["train"]], random_features.dims, subs)
    assert plain == result.value


def test_solve_returns_named_fields():
    solver = derive(RESOLVENT, {n: 2 * d}).solver
    solution = solver.solve({z: [-1.0, -2.0]})
    assert solution.inverse.shape[0] == 2 and solution.shape == (2,)
    inverse, scale, shape = solution  # still unpacks as before
    assert scale[0] * inverse[0, solver.problem.out, solver.problem.into] == pytest.approx(CLOSED, rel=1e-13)


def test_notebooks_show_pencils_systems_and_results_as_latex():
    system = derive(RESOLVENT, {n: 2 * d})
    result = trace_limit(RESOLVENT, {n: 2 * d}, {z: -1.0}, full_output=True)
    for shown in (system.pencil._repr_latex_(), system._repr_latex_(), result._repr_latex_()):
        assert shown.startswith("$") and shown.endswith("$") and len(shown) > 10
    assert "0.5615528128" in result._repr_latex_()
    x = sympy.Symbol("x")
    with pytest.raises(ParameterError, match="full_output"):  # a MatrixFunction quantity has no full output
        limit(sympy.Trace(MatrixFunction(sympy.Lambda(x, sympy.exp(-x)), X.T * X / n)) / d, {n: 2 * d},
              full_output=True)


def test_one_route_to_a_solver():
    """derive(expr).solver is the solver trace_limit uses: the derivation store's, kept on disk."""
    from pencils.derivations import dims_key, store

    assert derive(RESOLVENT, {n: 2 * d}).solver is store.solver(RESOLVENT, dims_key({n: 2 * d}))
