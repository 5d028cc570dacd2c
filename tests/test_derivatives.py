"""Derivatives of trace limits in a parameter, from the tangent of the Dyson solution.

``limit`` accepts ``sympy.Derivative(Trace(A), theta)``; the solver computes
:math:`\\partial_\\theta` of the limit exactly from the solution it already has.
Checked against closed forms (Marchenko-Pastur), against a different pencil
(a product of two resolvents written out), at 30 and 40 digits, and against
finite differences where the parameter is a dimension ratio.
"""

import mpmath
import numpy as np
import pytest
import sympy

from pencils import Gaussian, limit, trace_limit
from pencils.errors import UnsupportedOperationError

n, d, z, lam, c = sympy.symbols("n d z lambda c")
X = Gaussian("X", n, d)
S = X.T * X / n
I_d = sympy.Identity(d)


def stieltjes(z_value, ratio):
    """Marchenko-Pastur: tr (X^T X/n - z)^{-1}/d for d/n = ratio, the root with Im m Im z >= 0 (m > 0 for z < 0)."""
    b = 1 - ratio - z_value
    root = mpmath.sqrt(b * b - 4 * ratio * z_value)
    candidates = [(b + sign * root) / (2 * ratio * z_value) for sign in (1, -1)]
    if mpmath.im(z_value) != 0:
        return max(candidates, key=lambda m: mpmath.im(m) * mpmath.sign(mpmath.im(z_value)))
    return min((m for m in candidates if m > 0), key=lambda m: abs(m))


@pytest.mark.parametrize("z_value", [-1.0, -0.05, 0.5 + 0.3j, 3.0 - 1.0j])
def test_derivative_of_the_stieltjes_transform(z_value):
    quantity = sympy.Derivative(sympy.Trace((S - z * I_d).I), z) / d
    value = limit(quantity, {n: 2 * d}, {z: z_value})
    with mpmath.workdps(30):
        expected = complex(mpmath.diff(lambda x: stieltjes(x, mpmath.mpf(1) / 2), mpmath.mpmathify(z_value)))
    assert abs(value - expected) <= 1e-12 * abs(expected)


def test_derivative_at_40_digits():
    quantity = sympy.Derivative(sympy.Trace((S - z * I_d).I), z) / d
    value = limit(quantity, {n: 2 * d}, {z: -1}, dps=40)
    with mpmath.workdps(60):
        expected = mpmath.diff(lambda x: stieltjes(x, mpmath.mpf(1) / 2), -1)
        assert abs(value - expected) < mpmath.mpf(10) ** -38 * abs(expected)


@pytest.mark.parametrize("dims", [{n: 2 * d}, {n: d / 2}])
def test_one_resolvent_and_its_derivative_equal_a_product_of_two(dims):
    """tr X(S + lam)^{-2}X^T/n = -d/dlam tr X(S + lam)^{-1}X^T/n: two different pencils.

    The product of two resolvents at 30 digits is the reference.  (For d = 2n at
    lam = 1e-3, S is singular and the direct form loses digits in floats, 5e-11;
    the derivative form keeps them, 2e-13.)
    """
    resolvent = (S + lam * I_d).I
    direct = sympy.Trace(X * resolvent * resolvent * X.T / n) / d
    via_derivative = -sympy.Derivative(sympy.Trace(X * resolvent * X.T / n), lam) / d
    ridges = ["0.001", "0.1", "2"]
    reference = np.array([float(limit(direct, dims, {lam: r}, dps=30)) for r in ridges])
    floats = limit(via_derivative, dims, {lam: np.array([float(r) for r in ridges])})
    assert np.allclose(floats, reference, rtol=1e-12, atol=0)
    precise = limit(via_derivative, dims, {lam: ridges[1]}, dps=30)
    assert abs(precise - limit(direct, dims, {lam: ridges[1]}, dps=30)) < 1e-27 * abs(precise)


def test_derivative_in_a_dimension_ratio_against_finite_differences():
    """d/dc of tr(S + 1)^{-1} with n = c d: the ratio enters the Dyson coefficients and the trace's size."""
    quantity = sympy.Trace(X * (S + I_d).I * X.T / n)  # n x n: its size n = c d depends on c
    dims = {n: c * d}
    slope = limit(sympy.Derivative(quantity, c) / d, dims, {c: 1.5})
    step = 1e-5
    difference = (limit(quantity / d, dims, {c: 1.5 + step}) - limit(quantity / d, dims, {c: 1.5 - step})) / (2 * step)
    assert abs(slope - difference) < 1e-8 * abs(slope)


def test_a_parameter_the_trace_does_not_use_has_derivative_zero():
    assert limit(sympy.Derivative(sympy.Trace((S + lam * I_d).I), z) / d, {n: 2 * d}, {lam: 0.5, z: 1.0}) == 0


def test_several_quantities_share_each_solve(monkeypatch):
    from pencils.solve import Solver

    calls = []
    original = Solver.float_target
    monkeypatch.setattr(Solver, "float_target", lambda self, *a: calls.append(a[3]) or original(self, *a))
    resolvent = sympy.Trace((S + lam * I_d).I)
    values = limit([resolvent / d, sympy.Derivative(resolvent, lam) / d, 1 + resolvent / d], {n: 2 * d}, {lam: 0.5})
    assert calls == [[lam]]  # one solve of the one distinct trace, with its derivative
    assert values[2] == pytest.approx(1 + values[0], rel=1e-15)
    assert values[0] == pytest.approx(trace_limit((S + lam * I_d).I, {n: 2 * d}, {lam: 0.5}), rel=1e-13)
    matrix, scalar = limit([(S + lam * I_d).I, resolvent / d], {n: 2 * d}, {lam: 0.5})
    assert matrix == pytest.approx(scalar, rel=1e-15)


@pytest.mark.parametrize("bad", [
    sympy.Derivative(sympy.Trace((S + lam * I_d).I), (lam, 2)),
    sympy.Derivative(sympy.Trace((S + lam * I_d).I), lam, z),
    sympy.Derivative(lam * sympy.Trace((S + lam * I_d).I), lam),
])
def test_unsupported_derivatives_say_what_to_write(bad):
    with pytest.raises(UnsupportedOperationError, match="first derivative of one trace"):
        limit(bad / d, {n: 2 * d}, {lam: 0.5, z: 0.0})


def test_several_quantities_in_arbitrary_precision_over_an_array():
    resolvent = sympy.Trace((S + lam * I_d).I)
    quantities = [resolvent / d, sympy.Derivative(resolvent, lam) / d]
    ridges = np.array(["0.5", "2"], dtype=object)
    together = limit(quantities, {n: 2 * d}, {lam: ridges}, dps=25)
    for quantity, values in zip(quantities, together):
        alone = limit(quantity, {n: 2 * d}, {lam: ridges}, dps=25)
        assert values.shape == (2,) and all(a == b for a, b in zip(values, alone))
    with mpmath.workdps(40):  # Marchenko-Pastur: d/dlam of m(-lam) is -m'(-lam)
        expected = -mpmath.diff(lambda x: stieltjes(x, mpmath.mpf(1) / 2), -2)
        assert abs(together[1][1] - expected) < mpmath.mpf(10) ** -23 * abs(expected)


def test_a_mis_scaled_derivative_names_the_quantity():
    from pencils.errors import MisScaledError

    with pytest.raises(MisScaledError, match="Derivative"):
        limit(sympy.Derivative(sympy.Trace((S + lam * I_d).I), lam), {n: 2 * d}, {lam: 0.5})  # not divided by d
