"""The reduced Dyson system (pencils.reduction) against the full one, closed forms and simulation.

Every check compares with something the reduction does not compute: the full
system's solution (solved by pencils.solve from the matrix form), textbook
closed forms written here, or a finite-size simulation.
"""


import mpmath
import numpy as np
import pytest
import sympy

from closed_forms import marchenko_pastur_stieltjes
from pencils import Gaussian, derive, sample_trace
from pencils.errors import EliminationTooLargeError
from pencils.models import dsm, marchenko_pastur, random_features
from pencils.reduction import ReducedSystem

from test_pencil import NAMES, expressions

DIGITS = 40


def relative(value, reference):
    return abs(mpmath.mpmathify(value) - reference) / max(abs(reference), mpmath.mpf(1))


def check_against_full(system, subs, max_unknowns=None):
    """The full solution solves the reduced equations, Newton on them returns to it, and the targets agree."""
    reduced = system.reduce()
    if max_unknowns is not None:
        assert len(reduced.unknowns) <= max_unknowns
    assert len(reduced.unknowns) == len(reduced.equations) <= len(system.unknowns)
    values = reduced.values(subs, dps=50)
    with mpmath.workdps(60):
        for residual, symbol in zip(reduced.residuals(values, subs, dps=50), reduced.unknowns):
            assert relative(residual[0], 0) / max(1, abs(values[symbol])) < mpmath.mpf(10) ** -DIGITS
        perturbed = {s: complex(v) * (1 + 1e-3 * (-1) ** k) + 1e-4 for k, (s, v) in enumerate(values.items())}
        again, target = reduced.solve(subs, dps=50, start=perturbed)
        for symbol in reduced.unknowns:
            assert relative(again[symbol], values[symbol]) < mpmath.mpf(10) ** -DIGITS
        expected = system.solve(subs, dps=DIGITS)
        assert relative(target, expected) < mpmath.mpf(10) ** -(DIGITS - 1)
    check_equal_combinations(system, reduced, values, subs)
    return reduced


def check_equal_combinations(system, reduced, values, subs):
    """Each combination of blocks that the reduction records as equal to an unknown (by symmetry, or scaled
    for proportional equations) has the unknown's value at the full system's solution (to 1e-9: the full
    solution in 50 digits, the coefficients evaluated by SymPy in 30)."""
    inverse = system.solver.solve(subs, dps=50).inverse[0]
    point = {sympy.sympify(k): sympy.sympify(v) if not isinstance(v, mpmath.mpf) else sympy.Float(str(v), 50)
             for k, v in subs.items()}
    for symbol, others in zip(reduced.unknowns, reduced._equal_to):
        for blocks in others:
            combination = sum(complex(sympy.N(c.subs(point), 30)) * complex(inverse[l, m]) for (l, m), c in blocks.items())
            assert abs(combination - complex(values[symbol])) <= 1e-9 * max(1, abs(complex(values[symbol])))


# ----------------------------------------------------------------------- Marchenko-Pastur


def test_marchenko_pastur_is_one_equation():
    system = marchenko_pastur.system()
    z, gamma = sympy.symbols("z gamma")
    reduced = check_against_full(system, {z: sympy.Rational(-3, 4), gamma: sympy.Rational(1, 2)}, max_unknowns=1)
    assert len(reduced.equations) == 1 and reduced.target == reduced.unknowns[0]
    assert str(reduced.unknowns[0]) == "g_d" and r"\text{column space of } X" in reduced.latex()
    assert reduced._repr_latex_().startswith("$")


def test_marchenko_pastur_polynomial_is_the_textbook_quadratic():
    z, gamma, tau = sympy.symbols("z gamma tau")
    polynomial = marchenko_pastur.system().reduce().polynomial(tau)
    textbook = sympy.Poly(gamma * z * tau**2 + (z + gamma - 1) * tau + 1, tau)
    assert polynomial.degree() == 2
    ratio = sympy.cancel(polynomial.as_expr() / textbook.as_expr())
    assert ratio.free_symbols.isdisjoint({tau, z}) and ratio != 0
    with mpmath.workdps(60):
        values = {z: sympy.Rational(-7, 5), gamma: sympy.Rational(3, 10)}
        roots = sympy.Poly(polynomial.as_expr().subs(values), tau).nroots(n=60)
        expected = marchenko_pastur_stieltjes(mpmath.mpf("-1.4"), mpmath.mpf("0.3"))
        assert min(relative(complex(r), expected) for r in roots) < 1e-14
        assert min(abs(mpmath.mpmathify(sympy.N(r, 60)) - expected) for r in roots) < mpmath.mpf(10) ** -DIGITS


# ----------------------------------------------------------------------- sums and products of free variables


def semicircular(name, d):
    Y = Gaussian(name, d, d)
    return (Y + Y.T) / sympy.sqrt(2 * d)


def test_wishart_plus_semicircle_polynomial_is_the_free_convolution():
    r"""R-transforms add for free variables: R_MP(w) = 1/(1 - gamma w), R_SC(w) = w, so G = tr(z - A)^{-1}
    solves z = 1/(1 - gamma G) + G + 1/G, a cubic; the library's limit is tau = -G."""
    n, d, z, gamma, tau, G = sympy.symbols("n d z gamma tau G")
    X = Gaussian("X", n, d)
    A = X.T * X / n + semicircular("Y", d)
    system = derive((A - z * sympy.Identity(d)).I, {d: d, n: d / gamma})
    check_against_full(system, {z: sympy.Rational(1, 2) + sympy.I, gamma: sympy.Rational(1, 2)})
    polynomial = system.reduce().polynomial(tau)
    assert polynomial.degree() == 3
    free = sympy.numer(sympy.together(z - 1 / (1 - gamma * G) - G - 1 / G)).subs(G, -tau)
    assert sympy.cancel(polynomial.as_expr() / free).free_symbols.isdisjoint({tau, z})


@pytest.fixture(scope="module")
def anticommutator():
    d, z = sympy.symbols("d z")
    A, B = semicircular("Y_1", d), semicircular("Y_2", d)
    return (A * B + B * A - z * sympy.Identity(d)).I, {d: d}, z


def test_anticommutator_merges_eight_equal_unknowns(anticommutator):
    expr, dims, z = anticommutator
    system = derive(expr, dims)
    assert len(system.unknowns) == 9
    check_against_full(system, {z: sympy.Rational(1, 4) + sympy.I}, max_unknowns=1)


def test_anticommutator_polynomial_against_monte_carlo(anticommutator):
    expr, dims, z = anticommutator
    tau = sympy.Symbol("tau")
    polynomial = derive(expr, dims).reduce().polynomial(tau)
    point = 0.5 + 0.75j
    roots = np.array([complex(r) for r in sympy.Poly(polynomial.as_expr().subs(z, point), tau).nroots()])
    sampled = sample_trace(expr, dims, {z: point}, size=400, seeds=4)
    closest = roots[np.argmin(np.abs(roots - sampled.mean))]
    # finite-size bias O(1/d) = 2.5e-3 plus four standard errors
    assert abs(closest - sampled.mean) < 2.5e-3 + 4 * abs(sampled.stderr)
    others = np.delete(roots, np.argmin(np.abs(roots - sampled.mean)))
    assert np.all(np.abs(others - sampled.mean) > 0.05)  # the Monte Carlo value picks one root
    engine = derive(expr, dims).solve({z: point})
    assert abs(engine - closest) < 1e-12


def test_polynomial_refuses_large_systems():
    q = dsm.quantities(False)
    (T,) = {derivative.expr for derivative in q["test"].atoms(sympy.Derivative)}
    reduced = derive(T.arg, dsm.dims).reduce()
    reduced.max_bezout = 2
    with pytest.raises(EliminationTooLargeError, match="max_bezout"):
        reduced.polynomial()


# ----------------------------------------------------------------------- models


def dsm_resolvent_trace():
    """The one trace behind both m = inf DSM errors (pencils.models.dsm.quantities(False))."""
    (T,) = {derivative.expr for derivative in dsm.quantities(False)["test"].atoms(sympy.Derivative)}
    return T.arg


def test_dsm_infinite_m_at_most_six_unknowns():
    system = derive(dsm_resolvent_trace(), dsm.dims)
    subs = dsm.substitutions(2.0, 1.5, 0.5, 1e-2, dps=50)
    reduced = check_against_full(system, subs, max_unknowns=6)
    assert {str(s) for s in reduced.unknowns} <= {"g_n", "g_p", "g_d"} | {f"g_{{{x},{k}}}" for x in "dnp" for k in range(1, 7)}


def library_matrices(quantities, dims):
    """The order-one matrices whose traces pencils.limit derives for ``quantities`` (recorded, not rebuilt)."""
    from pencils.derivations import dims_key, store
    from pencils.quantities import limit_payload

    recorded = []

    def record(matrix, key):
        recorded.append(matrix)
        return store.system(matrix, key)

    limit_payload(sympy.Tuple(*quantities), dims_key(dims), record)
    return recorded


def test_random_features_cross_term():
    psi_n, psi_p, lam, mu1, v2 = (random_features.symbols[k] for k in ("psi_n", "psi_p", "lam", "mu1", "v2"))
    d, n, p = sympy.symbols("d n p")
    W, X, Xi = Gaussian("W", p, d), Gaussian("X", d, n), Gaussian("Xi", p, n)
    F = mu1 * W * X / sympy.sqrt(d) + sympy.sqrt(v2) * Xi
    K_inv = (F * F.T / n + p * lam / d * sympy.Identity(p)).I
    system = derive(W.T * K_inv * F * X.T / (n * sympy.sqrt(d)), random_features.dims)
    subs = {psi_n: 2, psi_p: sympy.Rational(3, 2), lam: sympy.Rational(1, 10), mu1: sympy.Rational(1, 2),
            v2: sympy.Rational(1, 5)}
    check_against_full(system, subs, max_unknowns=2)


@pytest.mark.parametrize("dual", [False, True])
def test_dsm_finite_m(dual):
    """Every finite-m system, the dual train trace (12 unknowns) and the test traces (45 and 50 unknowns,
    12 parameters: 7 and 6 once proportional unknowns are merged), reduced and checked against the full
    solver at p > nm."""
    subs = dsm.substitutions(0.5, 3.0, 0.5, 1e-2, m=2, dps=50)
    for matrix in library_matrices(list(dsm.quantities(True, dual).values()), dsm.dims):
        system = derive(matrix, dsm.dims)
        check_against_full(system, subs, max_unknowns=6 if len(system.unknowns) <= 12 else 7)


def test_larger_systems_are_refused_with_a_clear_error():
    d, n, z = sympy.symbols("d n z")
    X = Gaussian("X", n, d)
    system = derive((X.T * X / n) ** 12, {n: 2 * d})
    assert len(system.unknowns) > ReducedSystem.max_unknowns
    with pytest.raises(EliminationTooLargeError, match="max_unknowns"):
        system.reduce()


@pytest.mark.slow
def test_random_features_errors():
    """The two merged traces of the errors (58 and 66 unknowns, to 10 and 9): about 30 s."""
    subs = {random_features.symbols[k]: v for k, v in
            {"psi_n": 2, "psi_p": sympy.Rational(3, 2), "lam": sympy.Rational(1, 10), "mu1": sympy.Rational(1, 2),
             "v2": sympy.Rational(1, 5), "signal": 1, "noise": sympy.Rational(1, 4)}.items()}
    for matrix in library_matrices(list(random_features.quantities().values()), random_features.dims):
        check_against_full(derive(matrix, random_features.dims), subs, max_unknowns=10)


@pytest.mark.parametrize("name", NAMES)
def test_engine_expressions(matrices, name):
    m = matrices
    dims = {m["n"]: 2 * m["d"], m["p"]: sympy.Rational(3, 2) * m["d"]}
    expr = expressions(m)[name]
    system = derive(expr, dims)
    if len(system.unknowns) > ReducedSystem.max_unknowns:
        with pytest.raises(EliminationTooLargeError, match="max_unknowns"):
            system.reduce()
        return
    subs = {symbol: value for symbol, value in ((m["z"], sympy.Rational(-7, 10)), (m["lam"], sympy.Rational(2, 5)))
            if symbol in system.parameters}
    check_against_full(system, subs)


def test_random_features_gram_against_mei_montanari():
    r"""Mei and Montanari (2019) state the limit with two unknowns nu_1, nu_2 of the block resolvent of
    [[0, Z^T], [Z, 0]], Z = F^T/sqrt(d) (mu_* = 1, zeta = mu_1):
    nu_1 = psi_p / (-xi - nu_2 - zeta^2 nu_2 / (1 - zeta^2 nu_1 nu_2)) and the same with 1 <-> 2, psi_p -> psi_n.
    At xi = i y and lambda = y^2 / (psi_n psi_p) the two reduced unknowns of the ridge resolvent give them as
    nu_1 = psi_p xi g_p / psi_n (the Schur complement of the block resolvent) and nu_2 = -psi_n g_n / xi."""
    S = random_features.symbols
    d, n, p = sympy.symbols("d n p")
    W, X, Xi = Gaussian("W", p, d), Gaussian("X", d, n), Gaussian("Xi", p, n)
    F = S["mu1"] * W * X / sympy.sqrt(d) + sympy.sqrt(S["v2"]) * Xi
    reduced = derive((F * F.T / n + p * S["lam"] / d * sympy.Identity(p)).I, random_features.dims).reduce()
    assert len(reduced.unknowns) == 2
    psi_n, psi_p, zeta, y = 2, sympy.Rational(3, 2), sympy.Rational(1, 2), sympy.Rational(7, 10)
    values = reduced.values({S["psi_n"]: psi_n, S["psi_p"]: psi_p, S["mu1"]: zeta, S["v2"]: 1,
                             S["lam"]: y**2 / (psi_n * psi_p)}, dps=50)
    g_n, g_p = (values[sympy.Symbol(name)] for name in ("g_n", "g_p"))
    with mpmath.workdps(60):
        xi, psi_n, psi_p, zeta = mpmath.mpc(0, mpmath.mpf(7) / 10), mpmath.mpf(2), mpmath.mpf(3) / 2, mpmath.mpf(1) / 2
        nu_1, nu_2 = psi_p * xi * g_p / psi_n, -psi_n * g_n / xi
        coupling = zeta**2 / (1 - zeta**2 * nu_1 * nu_2)
        assert relative(nu_1, psi_p / (-xi - nu_2 - coupling * nu_2)) < mpmath.mpf(10) ** -DIGITS
        assert relative(nu_2, psi_n / (-xi - nu_1 - coupling * nu_1)) < mpmath.mpf(10) ** -DIGITS


# ----------------------------------------------------------------------- the store and the default path


def test_reduced_system_is_kept_on_disk():
    """A fresh store (memory emptied) reads the reduced system back from disk: the same equations."""
    from pencils.derivations import store

    n, d, z, gamma = sympy.symbols("n d z gamma")
    X = Gaussian("X", n, d)
    expr = (X.T * X / n + semicircular("Y", d) - z * sympy.Identity(d)).I
    reduced = derive(expr, {d: d, n: d / gamma}).reduce()
    store.clear()
    again = derive(expr, {d: d, n: d / gamma}).reduce()
    assert again is not reduced and store.reduced.cache_info().misses == 1
    assert again.unknowns == reduced.unknowns and again.combinations == reduced.combinations
    for new, old in zip(again.equations, reduced.equations):
        assert new.lhs == old.lhs and sympy.cancel(new.rhs - old.rhs) == 0
    assert sympy.cancel(again.target - reduced.target) == 0
    assert again.latex() == reduced.latex()


def test_traces_of_one_tuple_find_their_matrices_once(monkeypatch):
    """The reduced sources of the two traces of a tuple of two quantities find the tuple's matrices once per
    process, each gets its own trace's reduced equations, and a pickled source (as sent to a worker) gives
    the same equations."""
    import pickle

    from pencils import quantities
    from pencils.derivations import dims_key, store

    n, d, z, gamma = sympy.symbols("n d z gamma")
    X = Gaussian("X", n, d)
    R = (X.T * X / n - z * sympy.Identity(d)).I
    key = dims_key({d: d, n: d / gamma})
    quantity_tuple = sympy.Tuple(sympy.Trace(R) / d, sympy.Trace(R * R) / d)
    store.clear()
    solvers = store.compiled_limit(quantity_tuple, key).solvers
    searches = []
    find = quantities._traces
    monkeypatch.setattr(quantities, "_traces", lambda *arguments: searches.append(1) or find(*arguments))
    first, second = (solver.reduced_source() for solver in solvers)
    assert len(solvers) == 2 and len(searches) == 1
    matrices = quantities.trace_matrices(quantity_tuple, key)
    assert first is store.reduced(matrices[0], key).numbers and second is store.reduced(matrices[1], key).numbers
    assert first is not second
    assert pickle.loads(pickle.dumps(solvers[1].reduced_source))() is second


@pytest.mark.parametrize("subs", [{"z": sympy.Rational(-3, 4), "gamma": sympy.Rational(1, 2)},
                                  {"z": sympy.Rational(1, 2) + sympy.I, "gamma": sympy.Rational(3, 2)}])
def test_default_path_in_arbitrary_precision_is_the_reduced_one(subs):
    """trace_limit at dps = 50 goes through the reduced equations by default and agrees with the full
    system's Newton in mpmath (max_reduced_unknowns = 0) and with the Marchenko-Pastur closed form."""
    import dataclasses

    from pencils import trace_limit
    from pencils.derivations import store
    from pencils.solve.compiled import to_mpmath
    from pencils.solve.options import DEFAULT_OPTIONS

    n, d, z, gamma = sympy.symbols("n d z gamma")
    X = Gaussian("X", n, d)
    expr = (X.T * X / n - z * sympy.Identity(d)).I
    subs = {sympy.Symbol(k): v for k, v in subs.items()}
    store.clear()
    reduced_path = trace_limit(expr, {d: d, n: d / gamma}, subs, dps=50)
    assert store.reduced.cache_info().currsize == 1
    store.clear()
    full_path = trace_limit(expr, {d: d, n: d / gamma}, subs, dps=50,
                            options=dataclasses.replace(DEFAULT_OPTIONS, max_reduced_unknowns=0))
    assert store.reduced.cache_info().currsize == 0
    with mpmath.workdps(60):
        assert relative(reduced_path, full_path) < mpmath.mpf(10) ** -49
        expected = marchenko_pastur_stieltjes(to_mpmath(subs[z]), to_mpmath(subs[gamma]))
        assert relative(reduced_path, expected) < mpmath.mpf(10) ** -49


# ----------------------------------------------------------------------- derivatives on the reduced path

DERIVATIVE_DIGITS = 38  # at dps = 40: two digits for the rounding of each value and of the reference


def on_full_path(quantities, dims, subs, dps=40):
    """``limit`` of ``quantities`` at ``dps`` on the full system's path (max_reduced_unknowns = 0)."""
    import dataclasses

    from pencils import limit
    from pencils.solve.options import DEFAULT_OPTIONS

    return limit(quantities, dims, subs, dps=dps, options=dataclasses.replace(DEFAULT_OPTIONS, max_reduced_unknowns=0))


def on_both_paths(quantities, dims, subs, dps=40, options=None):
    """``limit`` of ``quantities`` at ``dps`` on the default path (or with ``options``) and on the full system's
    path, and the number of derivatives of each trace evaluation that took the reduced path."""
    from pencils import limit
    from pencils.solve import solver

    reduced_calls = []
    evaluate_reduced = solver.Solver._evaluate_reduced

    def spy(self, *arguments):
        result = evaluate_reduced(self, *arguments)
        reduced_calls.append(len(result.derivatives))
        return result

    solver.Solver._evaluate_reduced = spy
    try:
        default = limit(quantities, dims, subs, dps=dps, options=options)
        full = on_full_path(quantities, dims, subs, dps)
    finally:
        solver.Solver._evaluate_reduced = evaluate_reduced
    return default, full, reduced_calls


@pytest.mark.parametrize("z_value", [sympy.Rational(-3, 4), sympy.Rational(1, 2) + sympy.I])
def test_derivative_on_the_reduced_path_marchenko_pastur(z_value):
    """d/dz of the Marchenko-Pastur resolvent trace: reduced path, full path and the derivative of the
    quadratic gamma z m^2 + (gamma + z - 1) m + 1 = 0, m' = -(gamma m^2 + m) / (2 gamma z m + gamma + z - 1)."""
    n, d, z, gamma = sympy.symbols("n d z gamma")
    X = Gaussian("X", n, d)
    quantity = sympy.Derivative(sympy.Trace((X.T * X / n - z * sympy.Identity(d)).I), z) / d
    from pencils.solve.compiled import to_mpmath

    default, full, reduced_calls = on_both_paths(quantity, {d: d, n: d / gamma}, {z: z_value, gamma: sympy.Rational(3, 2)})
    assert reduced_calls == [1]
    with mpmath.workdps(60):
        z_number, g = to_mpmath(z_value), mpmath.mpf(3) / 2
        m = marchenko_pastur_stieltjes(z_number, g)
        expected = -(g * m**2 + m) / (2 * g * z_number * m + g + z_number - 1)
        assert relative(default, full) < mpmath.mpf(10) ** -DERIVATIVE_DIGITS
        assert relative(default, expected) < mpmath.mpf(10) ** -DERIVATIVE_DIGITS


def test_derivative_on_the_reduced_path_random_features():
    """d/dlambda of the random-features ridge resolvent trace (4 unknowns -> 2) on both paths, and the identity
    d/dlambda tr (A + psi_p lambda)^{-1} = -psi_p tr (A + psi_p lambda)^{-2} (another system, without derivatives)."""
    S = random_features.symbols
    d, n, p = sympy.symbols("d n p")
    W, X, Xi = Gaussian("W", p, d), Gaussian("X", d, n), Gaussian("Xi", p, n)
    F = S["mu1"] * W * X / sympy.sqrt(d) + sympy.sqrt(S["v2"]) * Xi
    K_inv = (F * F.T / n + p * S["lam"] / d * sympy.Identity(p)).I
    subs = {S["psi_n"]: 2, S["psi_p"]: sympy.Rational(3, 2), S["lam"]: sympy.Rational(1, 10),
            S["mu1"]: sympy.Rational(1, 2), S["v2"]: sympy.Rational(1, 5)}
    quantity = sympy.Derivative(sympy.Trace(K_inv), S["lam"]) / p
    default, full, reduced_calls = on_both_paths(quantity, random_features.dims, subs)
    squared = on_full_path(sympy.Trace(K_inv * K_inv) / p, random_features.dims, subs)
    assert reduced_calls == [1]
    with mpmath.workdps(60):
        assert relative(default, full) < mpmath.mpf(10) ** -DERIVATIVE_DIGITS
        assert relative(default, -mpmath.mpf(3) / 2 * squared) < mpmath.mpf(10) ** -DERIVATIVE_DIGITS


@pytest.mark.parametrize("point", [(2.0, 1.5, 0.5, "0.01"), (0.5, 3.0, 1.0, "0.1")])
def test_dsm_errors_on_the_reduced_path(point):
    """The m = inf DSM errors (one 12-unknown trace and its derivatives in the tilt and the ridge) at dps = 40:
    reduced path against the full one, and against the direct form of the errors (traces of products, other
    systems without derivatives, on the full path)."""
    subs = dsm.substitutions(*point, dps=40)
    forms, direct = dsm.quantities(False), dsm.quantities(False, direct=True)
    default, full, reduced_calls = on_both_paths([forms["test"], forms["train"]], dsm.dims, subs)
    reference = on_full_path([direct["test"], direct["train"]], dsm.dims, subs)
    assert reduced_calls == [2]
    with mpmath.workdps(60):
        for value, from_full_path, from_direct_form in zip(default, full, reference):
            assert relative(value, from_full_path) < mpmath.mpf(10) ** -DERIVATIVE_DIGITS
            assert relative(value, from_direct_form) < mpmath.mpf(10) ** -DERIVATIVE_DIGITS


def test_dsm_finite_m_derivatives_on_the_reduced_path():
    """The finite-m DSM errors (primal form: test trace 45 -> 10 unknowns, 12 parameters, derivatives in the tilt,
    the scale and the ridge) with the reduced path forced (max_reduced_unknowns = 66; by default these systems take
    the full path) against the full path at dps = 40."""
    import dataclasses

    from pencils.solve.options import DEFAULT_OPTIONS

    subs = dsm.substitutions(2.0, 1.5, 0.5, "0.01", m=2, dps=40)
    forms = dsm.quantities(True)
    default, full, reduced_calls = on_both_paths([forms["test"], forms["train"]], dsm.dims, subs, options=dataclasses.replace(
        DEFAULT_OPTIONS, max_reduced_unknowns=66))
    assert reduced_calls == [3]  # one trace, differentiated in the tilt, the scale and the ridge
    with mpmath.workdps(60):
        for value, from_full_path in zip(default, full):
            assert relative(value, from_full_path) < mpmath.mpf(10) ** -DERIVATIVE_DIGITS
