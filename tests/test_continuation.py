"""Solving a batch by continuation from neighbours: the same physical branch as each point alone.

``continuation="variance"`` solves every point on its own path from zero
variance, independently of the rest of the batch; ``"neighbours"`` (the
default) continues each point from a solved point nearby.  Both must give the
same answer, whatever the order of the batch, including across branch cuts.
"""

import numpy as np
import pytest
import sympy

from pencils import derive, trace_limit
from pencils.models import dsm, marchenko_pastur
from pencils.solve import SolverOptions
from pencils.solve.continuation import Continuation, anchor_points, levels, normalised_coordinates


def _order_of_solution(columns, budget):
    """Replay the coarse-to-fine schedule: each point's parent and the level it is solved at."""
    features, groups = normalised_coordinates(columns)
    depth = SolverOptions().max_grid_level
    anchors, representative, level = anchor_points(features, groups, budget, depth)
    solved = np.zeros(len(features), dtype=bool)
    solved[anchors] = True
    visits = [anchors]
    for children, parents in levels(features, groups, solved, representative, level + 1, depth):
        assert np.all(solved[parents]), "a parent must be solved before its children"
        assert not np.any(solved[children]), "a point is solved once"
        solved[children] = True
        visits.append(children)
    return solved, visits, groups


@pytest.mark.parametrize("shape", [(1,), (7,), (200,), (30, 40), (5, 6, 7)])
def test_every_point_is_solved_once_after_its_parent(shape):
    rng = np.random.default_rng(0)
    columns = [np.exp(rng.normal(size=shape)).ravel() for _ in shape] + [np.full(int(np.prod(shape)), 0.3)]
    solved, visits, _ = _order_of_solution(columns, budget=16)
    assert np.all(solved)
    assert len(visits[0]) <= 16
    assert sum(len(v) for v in visits) == int(np.prod(shape))


def test_duplicate_points_and_a_single_value():
    columns = [np.array([1.0, 2.0, 2.0, 2.0, 1.0])]
    solved, visits, _ = _order_of_solution(columns, budget=1)
    assert np.all(solved) and sum(len(v) for v in visits) == 5


def test_paths_never_cross_the_real_axis():
    """Points above and below the real axis are solved in separate groups, each with its own anchor."""
    z = np.array([1 + 0.1j, 1 - 0.1j, 2 + 0.5j, 2 - 0.5j, 3 + 0.0j])
    solved, visits, groups = _order_of_solution([z], budget=16)
    assert len(set(groups)) == 3
    features, groups = normalised_coordinates([z])
    anchors, representative, _ = anchor_points(features, groups, 1, SolverOptions().max_grid_level)
    assert len(anchors) == 3 and np.all(groups[representative] == groups)


def test_marchenko_pastur_on_both_sides_of_the_cut(matrices):
    """Mixed signs of Im z in one batch: each side gets its own branch, m(conj z) = conj m(z)."""
    X, n, d, z = matrices["X"], matrices["n"], matrices["d"], matrices["z"]
    resolvent = (X.T * X / n - z * matrices["I_d"]).I
    rng = np.random.default_rng(1)
    values = rng.uniform(-1, 4, 60) + 1j * rng.choice([-1, 1], 60) * rng.uniform(0.01, 1, 60)
    gamma = 0.5
    together = trace_limit(resolvent, {n: d / sympy.Rational(1, 2)}, {z: values})
    root = np.sqrt((values - 1 - gamma) ** 2 - 4 * gamma)
    candidates = np.stack([(1 - gamma - values + s * root) / (2 * gamma * values) for s in (1, -1)])
    # the Stieltjes transform maps the upper half plane to itself
    expected = np.where(np.sign(candidates[0].imag) == np.sign(values.imag), candidates[0], candidates[1])
    np.testing.assert_allclose(together, expected, rtol=1e-11)


@pytest.mark.parametrize("lam", [1e-9, 1e-3, 1.0])
def test_dsm_grid_neighbours_equal_variance_and_any_order(lam):
    """A (psi_n, psi_p) grid through psi_p = psi_n at small ridge, in two orders, against point by point."""
    psi = np.geomspace(0.1, 100, 9)
    psi_n, psi_p = (a.ravel() for a in np.meshgrid(psi, psi, indexing="ij"))
    permutation = np.random.default_rng(2).permutation(len(psi_n))
    alone = dsm.errors(psi_n, psi_p, 0.01, lam, continuation="variance")
    together = dsm.errors(psi_n, psi_p, 0.01, lam)
    shuffled = dsm.errors(psi_n[permutation], psi_p[permutation], 0.01, lam)
    for name in ("test", "train"):
        reference = getattr(alone, name)
        scale = np.max(np.abs(reference))
        np.testing.assert_allclose(getattr(together, name), reference, rtol=1e-9, atol=1e-12 * scale)
        np.testing.assert_allclose(getattr(shuffled, name), reference[permutation], rtol=1e-9, atol=1e-12 * scale)


def test_unknown_continuation_is_refused(matrices):
    X, n, d, z = matrices["X"], matrices["n"], matrices["d"], matrices["z"]
    with pytest.raises(ValueError, match="continuation"):
        derive((X.T * X / n - z * matrices["I_d"]).I, {n: 2 * d}).solve({z: [-1.0, -2.0]}, continuation="random")


def test_a_path_through_the_spectrum_falls_back_to_variance(matrices, monkeypatch):
    """Real z on both sides of the Marchenko-Pastur support: the straight path between them
    crosses the spectrum, so the points past it are solved from zero variance instead."""
    followed = []
    original = Continuation.from_zero_variance
    monkeypatch.setattr(Continuation, "from_zero_variance",
                        lambda self, *a: followed.append(a[0].shape[1]) or original(self, *a))
    X, n, d, z = matrices["X"], matrices["n"], matrices["d"], matrices["z"]
    gamma, values = 0.5, np.array([-2.0, -1.0, -0.5, 3.5, 4.0, 6.0])
    resolvent = (X.T * X / n - z * matrices["I_d"]).I
    result = trace_limit(resolvent, {n: 2 * d}, {z: values}, options=SolverOptions(anchors=1))
    expected = (1 - gamma - values + np.sign(values) * np.sqrt((values - 1 - gamma) ** 2 - 4 * gamma)) / (2 * gamma * values)
    np.testing.assert_allclose(result, expected, rtol=1e-12)
    assert len(followed) == 2 and followed[1] >= 1  # the anchor, then the fallback


def test_batch_equals_point_by_point_for_marchenko_pastur():
    z = -np.logspace(-2, 1, 30)
    np.testing.assert_allclose(
        marchenko_pastur.stieltjes(z, 2.0),
        np.array([marchenko_pastur.stieltjes(value, 2.0) for value in z]),
        rtol=1e-12,
    )


def test_limit_follows_path_from_for_the_traces_that_use_it(matrices):
    """``limit(path_from=...)``: a quantity with two traces, only one of which depends on ``lam``.

    The start ``lam = 10`` is followed down to the requested ridges and gives the same
    values as the default path; the Marchenko-Pastur closed form (companion: the Stieltjes
    transform at ``-lam`` with ``gamma = d/n = 1/2``) checks both; a start for a symbol
    no trace uses is refused.
    """
    from pencils import limit
    from pencils.errors import ParameterError
    from test_closed_forms import marchenko_pastur

    n, d, lam, X = matrices["n"], matrices["d"], matrices["lam"], matrices["X"]
    S = X.T * X / n
    quantity = sympy.Trace((S + lam * matrices["I_d"]).I) / d + sympy.Trace(S) / d
    ridges = np.array([1e-3, 0.1, 2.0])
    direct = limit(quantity, {n: 2 * d}, {lam: ridges})
    followed = limit(quantity, {n: 2 * d}, {lam: ridges}, path_from={lam: 10.0})
    np.testing.assert_allclose(followed, direct, rtol=1e-12)
    expected = [float(marchenko_pastur(-r, 0.5)) + 1 for r in ridges]
    np.testing.assert_allclose(followed, expected, rtol=1e-12)
    with pytest.raises(ParameterError, match="does not use"):
        limit(quantity, {n: 2 * d}, {lam: ridges}, path_from={sympy.Symbol("z"): 1.0})


def test_the_second_derivative_of_the_variance_path_is_exact():
    """DysonMap.velocity and DysonMap.acceleration against central differences in the variance s.

    The solution at variance s is the one at s = 1 with every weight of eta scaled
    by s.  Central differences converge to the exact derivatives like step**2:
    halving the step divides their distance by 4 (measured 3.99 to 4.00), which a
    wrong derivative would not do.
    """
    from pencils import Gaussian
    from pencils.solve.dyson_map import PathPoint
    from pencils.solve.linear_algebra import FloatAlgebra

    n, d, p, lam = sympy.symbols("n d p lambda")
    W, X, Xi = Gaussian("W", p, d), Gaussian("X", d, n), Gaussian("Xi", p, n)
    features = W * X / sympy.sqrt(d) + Xi / 2
    solver = derive((features * features.T / n + lam * sympy.Identity(p)).I, {n: 2 * d, p: 3 * d}).solver
    options = SolverOptions()
    _, columns, _ = solver.compiled.points({lam: 0.05}, multiprecision=False)
    deterministic, weights, _, _ = solver.compiled.coefficients(columns, 1, multiprecision=False)

    def solution(s):
        g, inverse, reached = solver.continuation.from_zero_variance(
            deterministic, weights * s, FloatAlgebra(), options)
        assert reached.all()
        return g, inverse

    s = 0.4
    g, inverse = solution(s)
    point = PathPoint(deterministic, weights, np.array([s]), 0 * deterministic, 0 * weights, np.ones(1), affine=True)
    velocity = solver.dyson_map.velocity(point, g, inverse, FloatAlgebra(), options)
    acceleration = solver.dyson_map.acceleration(point, g, inverse, velocity, FloatAlgebra(), options)
    distances = []
    for step in (2e-3, 1e-3):
        (up, _), (down, _) = solution(s + step), solution(s - step)
        distances.append([
            np.max(np.abs(velocity - (up - down) / (2 * step))) / np.max(np.abs(velocity)),
            np.max(np.abs(acceleration - (up - 2 * g + down) / step**2)) / np.max(np.abs(acceleration)),
        ])
    distances = np.array(distances)
    assert np.all(distances[1] < 1e-5)
    assert np.allclose(distances[0] / distances[1], 4, rtol=0.05)


def test_the_rational_predictor():
    """Exact for c0 + c1/(c2 + s) (a resolvent entry along the variance path) ten times its scale
    away; the Taylor polynomial where the pole falls inside the step."""
    from pencils.solve.continuation import predict

    entry = lambda s: 2 + 3 / (0.01 + s)  # noqa: E731
    s, delta = 0.05, 0.5
    value, slope, curvature = entry(s), -3 / (0.01 + s) ** 2, 6 / (0.01 + s) ** 3
    predicted = predict(np.array([[value]]), np.array([[slope]]), np.array([[curvature]]), np.array([[delta]]))
    assert predicted[0, 0] == pytest.approx(entry(s + delta), rel=1e-13)
    # 1/(1 - s) from s = 0 over a step of 2 crosses its pole: 1 + 2 + 2**2 instead
    taylor = predict(np.array([[1.0]]), np.array([[1.0]]), np.array([[2.0]]), np.array([[2.0]]))
    assert taylor[0, 0] == 7.0
