"""Diagonal matrices with a limiting spectrum, each result against something independent.

- Generalised Marchenko-Pastur: the resolvent trace of ``R X^T X R / n`` (population covariance
  ``Sigma = R^2``) against Silverstein's equation ``m = E_tau[1 / (tau (1 - c - c z m) - z)]``, ``c = d/n``,
  solved here by ``mpmath.findroot`` at 50 digits (the law's average by an exact sum over atoms, or by
  ``mpmath.quad``), for atoms and for quantile functions, real and complex ``z``, floats and 40 digits.
- A one-atom Diagonal against the isotropic problem with the atom as a scalar.
- Deterministic traces (``(Sigma + lam)^{-1}``, a block matrix of Diagonals) against exact sums.
- Finite-size draws (:func:`pencils.sample_trace`) against the limits, within Monte Carlo error.
- The float error bounds, first order and checked in extended precision, against the limits at 40 digits.
"""

from __future__ import annotations

import dataclasses

import mpmath
import numpy as np
import pytest
import sympy

from pencils import Diagonal, Gaussian, derive, limit, sample_trace, trace_limit
from pencils.errors import DimensionError, ParameterError, PencilsError

n, d, z, lam = sympy.symbols("n d z lambda")
u = sympy.Symbol("u")
X = Gaussian("X", n, d)
I = sympy.Identity(d)
DIMS = {n: 2 * d}  # c = d / n = 1/2
C = mpmath.mpf(1) / 2


def covariance_resolvent(root: Diagonal):
    return (root * X.T * X * root / n - z * I).I


def silverstein(z_value, average, dps: int = 50):
    """The Stieltjes transform m(z) of the sample covariance with population law H, from Silverstein's equation,
    ``average(f)`` the average of ``f(tau)`` over H.  Off the real axis, the root is followed from
    ``z + 8i`` (where -1/z is close to it) down to ``z``, so that it is the one with Im m > 0."""
    with mpmath.workdps(dps):
        z_value = mpmath.mpmathify(z_value)

        def root(at, start):
            equation = lambda m: m - average(lambda tau: 1 / (tau * (1 - C - C * at * m) - at))  # noqa: E731
            return mpmath.findroot(equation, start)

        if mpmath.im(z_value) == 0:
            return root(z_value, -1 / z_value)
        m = -1 / (z_value + 8j)
        for height in np.linspace(8, 0, 9):
            m = root(z_value + 1j * mpmath.mpf(height), m)
        return m


ATOMS, MASSES = [1, 4, 9], [sympy.Rational(1, 2), sympy.Rational(1, 4), sympy.Rational(1, 4)]


def atom_average(function):
    return sum(mpmath.mpf(int(w.p)) / int(w.q) * function(mpmath.mpf(tau)) for tau, w in zip(ATOMS, MASSES))


def uniform_average(function):  # tau = 1 + 3u, u uniform on (0, 1): the quantile sqrt(1 + 3u) of R
    return mpmath.quad(lambda v: function(1 + 3 * v), [0, 1])


def heavy_average(function):  # tau = u^(-1/2): the quantile u^(-1/4) of R, singular at u = 0
    return mpmath.quad(lambda v: function(v ** mpmath.mpf(-0.5)), [0, 1])


LAWS = {
    "atoms": (lambda: Diagonal("R", d, [sympy.sqrt(t) for t in ATOMS], MASSES), atom_average),
    "quantile": (lambda: Diagonal("R", d, sympy.Lambda(u, sympy.sqrt(1 + 3 * u))), uniform_average),
}


@pytest.mark.parametrize("law", sorted(LAWS))
@pytest.mark.parametrize("z_value", [-1.0, 0.5 + 0.3j, 2.0 + 0.05j])
def test_generalised_marchenko_pastur_floats_against_silverstein(law, z_value):
    make, average = LAWS[law]
    value = trace_limit(covariance_resolvent(make()), DIMS, {z: z_value})
    expected = complex(silverstein(z_value, average, dps=25))
    assert abs(value - expected) <= 1e-12 * abs(expected)


@pytest.mark.parametrize("law", sorted(LAWS))
@pytest.mark.parametrize("z_value", [sympy.Integer(-1), sympy.Rational(1, 2) + sympy.I * sympy.Rational(3, 10)])
def test_generalised_marchenko_pastur_40_digits_against_silverstein(law, z_value):
    make, average = LAWS[law]
    value = trace_limit(covariance_resolvent(make()), DIMS, {z: z_value}, dps=40)
    with mpmath.workdps(60):
        exact_z = mpmath.mpc(*(mpmath.mpf(sympy.Rational(part).p) / sympy.Rational(part).q for part in z_value.as_real_imag()))
        expected = silverstein(exact_z, average, dps=60)
        assert abs(value - expected) <= mpmath.mpf(10) ** -39 * abs(expected)


@pytest.mark.parametrize("law", sorted(LAWS))
def test_float_error_bound_holds_and_is_tight(law):
    """The rounding-error bound of the float path (averaged over the atoms or nodes, plus the quadrature
    change) bounds the actual error against Silverstein's equation and stays below the 1e-10 promise."""
    make, average = LAWS[law]
    z_values = np.array([-1.0, 0.5 + 0.3j, 2.0 + 0.05j, 6.0 + 0.01j])
    solver = derive(covariance_resolvent(make()), DIMS).solver
    evaluation = solver.float_target({z: z_values}, None, "neighbours", ())
    (values,), (errors,) = evaluation.values, evaluation.errors
    for value, error, z_value in zip(values, errors, z_values):
        actual = abs(value - complex(silverstein(complex(z_value), average, dps=25)))
        assert actual <= error <= 1e-11 * abs(value)


POWER_LAW = Diagonal("R", d, [sympy.Integer(k) ** sympy.Rational(-3, 4) for k in range(1, 17)])
#: Spectral systems and points for the check in extended precision: atoms and quantile functions (smooth, and
#: singular at u = 0 or at u = 1), at ridges down to 1e-6 at and near the interpolation threshold n = d.
TIGHTENED = {
    "atoms, spectral parameter": (LAWS["atoms"][0](), DIMS, z, [0.5 + 0.3j, 6.0 + 0.01j, 2.0 + 1e-3j, -1e-3]),
    "16-atom power law, ridge at n = d": (POWER_LAW, {n: d}, lam, [1e-2, 1e-4, 1e-6]),
    "16-atom power law, ridge at n = 1.05 d": (POWER_LAW, {n: sympy.Rational(21, 20) * d}, lam, [1e-3, 1e-6]),
    "smooth quantile, spectral parameter": (LAWS["quantile"][0](), DIMS, z, [0.5 + 0.3j, 6.0 + 0.01j, -1e-3]),
    "quantile singular at 0, ridge": (Diagonal("R", d, sympy.Lambda(u, u ** sympy.Rational(-1, 4))), DIMS, lam,
                                      [1e-1, 1e-2, 1e-4]),
    "quantile singular at 1, ridge at n = d": (Diagonal("R", d, sympy.Lambda(u, (1 - u) ** sympy.Rational(1, 3))),
                                               {n: d}, lam, [1e-1, 1e-2, 1e-4]),
}


@pytest.mark.parametrize("case", sorted(TIGHTENED))
def test_tightened_bounds_of_diagonal_systems_hold_against_40_digits(case):
    """The check in extended precision (``Solver.tighten``: eigenvalues, masses and quadrature rules tabulated in
    extended precision, the quadrature's change kept whole) gives bounds on the value and its derivative that
    hold against the same limits at 40 digits, at ill-conditioned points too, and that are at most the
    first-order bounds (up to the part m u_e/u = 1/128 of them kept for the extended value's own error)."""
    root, dims, parameter, points = TIGHTENED[case]
    shift = -z if parameter == z else lam
    solver = derive((root * X.T * X * root / n + shift * I).I, dims).solver
    values = np.array(points)
    evaluation = solver.float_target({parameter: values}, None, "neighbours", [parameter])
    first_order = [error.copy() for error in evaluation.errors]
    solver.tighten(evaluation, [parameter], np.arange(len(values)))
    exact = [sympy.nsimplify(v) if isinstance(v, complex) else sympy.Float(v, 60) for v in points]
    reference = solver.evaluate({parameter: np.array(exact, dtype=object)}, dps=40, derivatives=[parameter])
    with mpmath.workdps(40):
        for value, bound, loose, expected in zip(evaluation.values, evaluation.errors, first_order,
                                                 (reference.value, reference.derivatives[0])):
            actual = np.array([float(abs(mpmath.mpmathify(complex(v)) - e)) for v, e in zip(value, expected)])
            assert np.all(actual <= bound), (actual, bound)
            assert np.all(bound <= (1 + 1 / 64) * loose), (bound, loose)


def test_singular_quantile_uses_tanh_sinh_and_agrees_with_silverstein():
    root = Diagonal("R", d, sympy.Lambda(u, u ** sympy.Rational(-1, 4)))
    system = derive(covariance_resolvent(root), DIMS)
    assert system.record()["spectral"][0]["rule"] == "tanh-sinh"
    value = trace_limit(covariance_resolvent(root), DIMS, {z: -0.5})
    expected = float(silverstein(-0.5, heavy_average, dps=30))
    assert abs(value - expected) <= 1e-11 * abs(expected)


def test_quantile_singular_at_one_keeps_its_digits_next_to_one():
    """Quantile functions singular at u = 1, where tanh-sinh nodes crowd within 1e-20 of 1 (their float u is 1 or
    has lost the digits of 1 - u): the float values against independent references, within their reported
    bounds and within 1e-12 relative.  A float rule that drops or rounds these nodes is off by a constant
    (here 1e-10 relative for the mean of (1 - u)^-0.3952, 7e-12 for the resolvent) that the change from one
    quadrature level to the next never shows."""
    power = sympy.Rational(-247, 625)  # E (1 - u)^power = 1 / (1 + power), integrable but nearly 1/sqrt
    root = Diagonal("R", d, sympy.Lambda(u, (1 - u) ** (power / 2)))
    result = derive(root * X.T * X * root / n + lam * I, DIMS).solver.evaluate({lam: 1.0})
    expected = 1 / (1 + power) + 1  # E[X^T X / n] = I: the mean of R^2 plus the ridge
    actual = abs(result.value / float(expected) - 1)
    assert actual <= result.relative_error <= 1e-12, (actual, result.relative_error)

    # the resolvent of a covariance with quantile (1 - u)^(2/3) at a small ridge, near n = d, against 30 digits
    root = Diagonal("R", d, sympy.Lambda(u, (1 - u) ** sympy.Rational(1, 3)))
    solver = derive((root * X.T * X * root / n + lam * I).I, {n: sympy.Rational(5, 4) * d}).solver
    ridge = 6.588740422895396e-06
    reference = solver.evaluate({lam: ridge}, dps=30).value
    evaluation = solver.float_target({lam: np.array([ridge])}, None, "neighbours", ())
    (value,), (bound,) = evaluation.values[0], evaluation.errors[0]
    actual = float(abs(mpmath.mpf(float(np.real(value))) - reference))
    assert actual <= bound <= 1e-12 * abs(value), (actual, bound)


def test_one_atom_equals_the_isotropic_problem():
    a = sympy.Rational(3, 2)
    root = Diagonal("R", d, [a])
    isotropic = (a**2 * X.T * X / n - z * I).I
    for z_value in (-1.0, 0.3 + 0.2j):
        value, expected = (trace_limit(e, DIMS, {z: z_value}) for e in (covariance_resolvent(root), isotropic))
        assert abs(value - expected) <= 1e-13 * abs(expected)
    value, expected = (trace_limit(e, DIMS, {z: -1}, dps=40) for e in (covariance_resolvent(root), isotropic))
    with mpmath.workdps(50):
        assert abs(value - expected) <= mpmath.mpf(10) ** -40 * abs(expected)


def test_ridge_trace_of_a_covariance_is_the_exact_sum():
    a = sympy.Symbol("a", positive=True)
    sigma = Diagonal("S", d, [a, 2, 5], MASSES)
    resolvent = (sigma + lam * I).I
    exact = sum(w / (tau + lam) for tau, w in zip([a, 2, 5], MASSES))
    point = {a: sympy.Rational(1, 3), lam: sympy.Rational(1, 2)}
    assert abs(trace_limit(resolvent, DIMS, {a: 1 / 3, lam: 0.5}) - float(exact.subs(point))) <= 1e-15
    with mpmath.workdps(40):
        value = trace_limit(resolvent, DIMS, point, dps=35)
        assert abs(value - mpmath.mpf(sympy.N(exact.subs(point), 45))) <= mpmath.mpf(10) ** -35
    # its derivative in a parameter of an atom and in the ridge, exact
    slopes = limit([sympy.Derivative(sympy.Trace(resolvent), a) / d, sympy.Derivative(sympy.Trace(resolvent), lam) / d],
                   DIMS, {a: 1 / 3, lam: 0.5})
    assert np.allclose(slopes, [float(exact.diff(a).subs(point)), float(exact.diff(lam).subs(point))], rtol=1e-13)
    quantile = Diagonal("Q", d, sympy.Lambda(u, 1 + 3 * u))
    value = trace_limit((quantile + lam * I).I, DIMS, {lam: 0.5})
    assert abs(value - np.log(4.5 / 1.5) / 3) <= 1e-14


def test_parameter_of_a_quantile_function_and_its_derivative():
    a = sympy.Symbol("a", positive=True)
    sigma = Diagonal("S", d, sympy.Lambda(u, 1 + a * u))
    resolvent = (sigma + lam * I).I
    exact = sympy.log((1 + a + lam) / (1 + lam)) / a  # the integral of 1 / (1 + a u + lam) over (0, 1)
    point = {a: 2.0, lam: 0.5}
    value, slope = limit([sympy.Trace(resolvent) / d, sympy.Derivative(sympy.Trace(resolvent), a) / d], DIMS, point)
    assert abs(value - float(exact.subs(point))) <= 1e-13 * value
    assert abs(slope - float(exact.diff(a).subs(point))) <= 1e-12 * abs(slope)


def test_diagonals_in_a_block_matrix():
    sigma = Diagonal("S", d, [1, 2, 5], MASSES)
    teacher = Diagonal("C", d, [1, 0, 3], MASSES)
    zero = sympy.ZeroMatrix(d, d)
    block = sympy.BlockMatrix([[sigma + lam * I, teacher], [teacher, 2 * I]]).I
    top_left = sympy.BlockMatrix([[I, zero]]) * block * sympy.BlockMatrix([[I], [zero]])
    value = trace_limit(top_left, DIMS, {lam: 0.5})
    exact = sum(float(w) / (s + 0.5 - c**2 / 2) for s, c, w in zip([1, 2, 5], [1, 0, 3], MASSES))
    assert abs(value - exact) <= 1e-14 * abs(exact)


def test_ridge_derivative_against_silverstein():
    root = LAWS["atoms"][0]()
    resolvent = (root * X.T * X * root / n + lam * I).I
    value, slope = limit([sympy.Trace(resolvent) / d, sympy.Derivative(sympy.Trace(resolvent), lam) / d],
                         DIMS, {lam: 0.25})
    with mpmath.workdps(40):
        z_value = -mpmath.mpf(1) / 4
        m = silverstein(z_value, atom_average, dps=40)
        # implicit differentiation of m = A(m, z) = E[1 / D], D = tau (1 - c - c z m) - z; d/dlam = -d/dz
        d_m = atom_average(lambda tau: tau * C * z_value / (tau * (1 - C - C * z_value * m) - z_value) ** 2)
        d_z = atom_average(lambda tau: (tau * C * m + 1) / (tau * (1 - C - C * z_value * m) - z_value) ** 2)
        assert abs(value - float(m)) <= 1e-12 * value
        assert abs(slope + float(d_z / (1 - d_m))) <= 1e-11 * abs(slope)


@pytest.mark.parametrize("law", sorted(LAWS))
def test_sample_trace_agrees_with_the_limit(law):
    """Monte Carlo at d = 300 (n = 600), 8 seeds: within 5 standard errors plus 1/d for the finite-size bias."""
    root = LAWS[law][0]()
    teacher = Diagonal("T", d, sympy.Lambda(u, u)) if law == "quantile" else Diagonal("T", d, [2, 0, 1], MASSES)
    weights = Diagonal("D", n, [1, 3])  # a second spectral variable, on the other dimension
    expr = teacher * (root * X.T * weights * X * root / n + lam * I).I * teacher
    value = trace_limit(expr, DIMS, {lam: 0.3})
    estimate = sample_trace(expr, DIMS, {lam: 0.3}, size=300, seeds=8)
    assert abs(estimate.mean - value) <= 5 * estimate.stderr + 1 / 300


def test_equations_show_sums_over_atoms_and_integrals_over_u():
    atoms = derive(covariance_resolvent(LAWS["atoms"][0]()), DIMS)
    integral = derive(covariance_resolvent(LAWS["quantile"][0]()), DIMS)
    many = derive(covariance_resolvent(Diagonal("R", d, list(range(1, 9)))), DIMS)
    assert not any(eq.rhs.has(sympy.Integral, sympy.Sum) for eq in atoms.equations())
    assert any(eq.rhs.has(sympy.Integral) for eq in integral.equations()) and integral.target().has(sympy.Integral)
    assert any(eq.rhs.has(sympy.Sum) for eq in many.equations())
    # the displayed equations hold at the solver's solution
    for system in (atoms, integral):
        inverse, _, _ = system.solver.solve({z: -1.0})
        values = {symbol: inverse[0][pair] for symbol, pair in zip(system.symbols, system.unknowns)}
        for equation in system.equations():
            assert abs(complex(equation.rhs.subs(values).subs(z, -1.0).evalf(20)) - values[equation.lhs]) <= 1e-12
    with pytest.raises(PencilsError, match="Diagonal"):
        atoms.reduce()


def test_eigenvalues_at_finite_size():
    sigma = Diagonal("S", d, [1, 4, 9], MASSES)
    assert list(sigma.eigenvalues(8, {})) == [1, 1, 1, 1, 4, 4, 9, 9]
    assert list(sigma.eigenvalues(5, {})) == [1, 1, 1, 4, 9]
    ramp = Diagonal("Q", d, sympy.Lambda(u, 2 * u))
    assert np.allclose(ramp.eigenvalues(4, {}), [0.25, 0.75, 1.25, 1.75])


@pytest.mark.parametrize("make, error, message", [
    (lambda: Diagonal("S", d, [1, 2], [sympy.Rational(1, 2), sympy.Rational(1, 3)]), ParameterError, "sum to 5/6"),
    (lambda: Diagonal("S", d, [1, 2], [0.5, 0.6]), ParameterError, "not 1"),
    (lambda: Diagonal("S", d, [1, 2], [1]), ParameterError, "2 atoms and 1 weights"),
    (lambda: Diagonal("S", d, [1, 2], [-0.5, 1.5]), ParameterError, "non-negative"),
    (lambda: Diagonal("S", d, []), ParameterError, "no atoms"),
    (lambda: Diagonal("S", d, sympy.Lambda((u, z), u + z)), ParameterError, "2 variables"),
    (lambda: Diagonal("S", d, sympy.Lambda(u, u), [1]), ParameterError, "drop weights"),
    (lambda: Diagonal("S", -3, [1]), DimensionError, "dimension symbol"),
    (lambda: Diagonal("S", sympy.Symbol("m", negative=True), [1]), DimensionError, "non-positive"),
    (lambda: Diagonal("S", d, "1, 2"), ParameterError, "list of atoms"),
])
def test_bad_input_is_refused_clearly(make, error, message):
    with pytest.raises(error, match=message):
        make()


@pytest.mark.parametrize("other, message", [
    (Diagonal("B", d, [1, 2, 3]), "2 and 3 atoms"),
    (Diagonal("B", d, [1, 2], [sympy.Rational(1, 4), sympy.Rational(3, 4)]), "different masses"),
    (Diagonal("B", d, sympy.Lambda(u, u)), "mix atoms and a quantile"),
    (Diagonal("A", d, [1, 3]), "two different Diagonals are named A"),
])
def test_diagonals_of_one_dimension_must_pair(other, message):
    first = Diagonal("A", d, [1, 2])
    with pytest.raises(ParameterError, match=message):
        trace_limit((first * other + I).I, DIMS, {})


def test_first_order_bounds_of_a_structured_ridge_curve_hold_and_keep_the_promise():
    """Ridge errors with 16 power-law atoms at lam = 1e-3, psi_n = 0.1 (dual form, zero tilt): many entries of
    G vanish or nearly, which a bound through the largest relative error of an entry of G turned into 1e-2 of
    the value.  The first-order bounds alone (no check in extended precision, no finishing: a promise of 1)
    hold against 30 digits and stay below the 1e-10 promise."""
    from pencils.models import linear_regression
    from pencils.models.covariance import profile_key
    from pencils.solve.options import DEFAULT_OPTIONS

    profile = linear_regression.power_law(1.5, 2.0, 16)
    covariance = profile_key(profile["covariance"], "covariance")
    teacher = profile_key(profile["teacher"], "teacher", like=profile["covariance"])
    names = ("test", "train", "bias", "variance")
    found = linear_regression.ridge_quantities(covariance, teacher, True)
    symbols = linear_regression.symbols
    subs = {symbols["psi_n"]: 0.1, symbols["lam"]: 1e-3, symbols["signal"]: 1.0, symbols["noise"]: 0.1,
            symbols["tilt"]: 0}
    quantities = [found[name] for name in names]
    raw = limit(quantities, linear_regression.dims, subs, full_output=True,
                options=dataclasses.replace(DEFAULT_OPTIONS, float_accuracy=1.0))
    exact = limit(quantities, linear_regression.dims, subs, dps=30)
    with mpmath.workdps(30):
        for value, relative, expected in zip(raw.value, raw.relative_error, exact):
            assert not raw.finished and abs(value - expected) <= relative * abs(value) <= 1e-10 * abs(value)
