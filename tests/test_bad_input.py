"""Bad input raises an exception that names the problem and the fix."""

import numpy as np
import pytest
import sympy
from sympy.matrices.expressions import HadamardProduct

from pencils import Gaussian, derive, limit, linearize, sample_trace, trace_limit
from pencils.errors import (
    ConvergenceError,
    DimensionError,
    MisScaledError,
    ParameterError,
    PencilsError,
    UnsupportedOperationError,
)

n, d, p, z, lam, psi = sympy.symbols("n d p z lambda psi")
X = Gaussian("X", n, d)
S = X.T * X / n
R = (S - z * sympy.Identity(d)).I


def test_errors_are_value_errors():
    assert issubclass(PencilsError, ValueError)


def test_non_square_target():
    with pytest.raises(ParameterError, match="square"):
        trace_limit(X / sympy.sqrt(d), {n: 2 * d}, {})


def test_missing_dimension():
    with pytest.raises(DimensionError, match="missing from dims"):
        trace_limit(R, {}, {z: -1.0})


def test_dimension_not_proportional():
    with pytest.raises(DimensionError, match="multiple of the base"):
        trace_limit(R, {n: d**2}, {z: -1.0})


def test_grows_without_limit():
    with pytest.raises(MisScaledError, match="no finite non-zero limit"):
        trace_limit(X.T * X, {n: 2 * d}, {})


def test_terms_of_different_orders():
    Y = Gaussian("Y", d, d)
    with pytest.raises(MisScaledError, match="different rates"):
        trace_limit(S + Y * Y.T, {n: 2 * d}, {})


def test_scalar_with_lower_order_term():
    with pytest.raises(MisScaledError, match="single power"):
        trace_limit(X.T * X / (n + 1), {n: 2 * d}, {})


def test_quantity_with_unnormalised_trace():
    with pytest.raises(MisScaledError, match="still depends on"):
        limit(sympy.Trace(S), {n: 2 * d})


def test_unsupported_operation():
    with pytest.raises(UnsupportedOperationError, match="HadamardProduct"):
        trace_limit(HadamardProduct(S, S), {n: 2 * d}, {})


def test_plain_matrix_symbol():
    A = sympy.MatrixSymbol("A", d, d)
    with pytest.raises(UnsupportedOperationError, match="pencils.Gaussian"):
        trace_limit(S * A, {n: 2 * d}, {})


def test_negative_ratio():
    with pytest.raises(ParameterError, match="ratio"):
        trace_limit(R, {n: psi * d}, {z: -1.0, psi: -2.0})


def test_zero_ratio_of_the_target():
    Y = Gaussian("Y", d, n)
    with pytest.raises(ParameterError, match="ratio"):
        trace_limit((Y.T * Y / d + sympy.Identity(n)).I, {n: psi * d}, {psi: np.array([1.0, 0.0])})


def test_missing_parameter():
    with pytest.raises(ParameterError, match="no value given for z"):
        trace_limit(R, {n: 2 * d}, {})


def test_non_numeric_parameter():
    with pytest.raises(ParameterError, match="number"):
        trace_limit(R, {n: 2 * d}, {z: "minus one"})


def test_infinite_coefficient():
    with pytest.raises(ParameterError, match="not finite"):
        trace_limit((S + sympy.Identity(d) / lam).I, {n: 2 * d}, {lam: 0.0})


def test_singular_deterministic_part():
    with pytest.raises(ConvergenceError, match="ridge"):
        trace_limit(S.I, {n: 2 * d}, {})


def test_no_convergence_names_the_point():
    with pytest.raises(ConvergenceError, match="z=1.0") as info:
        trace_limit(R, {n: 2 * d}, {z: np.array([-1.0, 1.0])})
    assert info.value.parameters == {"z": 1.0}
    assert info.value.residual > 1e-3


def test_sample_trace_needs_seeds():
    with pytest.raises(ParameterError, match="seed"):
        sample_trace(R, {n: 2 * d}, {z: -1.0}, size=10, seeds=[])


def test_derive_rejects_scalars():
    with pytest.raises(ParameterError, match="square matrix"):
        derive(z, {n: 2 * d})


def test_linearize_rejects_non_matrices():
    with pytest.raises(UnsupportedOperationError):
        linearize(z + 1, {n: 2 * d})
