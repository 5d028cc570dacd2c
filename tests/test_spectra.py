"""Spectral densities and spectra on the real axis, against closed forms and independently solved equations."""

import math

import mpmath
import numpy as np
import pytest
import sympy

from pencils import Gaussian, spectral_density, spectrum
from pencils.errors import ConvergenceError, DimensionError, ParameterError
from pencils.models import dsm

n, d, n1, n2, gamma = sympy.symbols("n d n_1 n_2 gamma")
X = Gaussian("X", n, d)
WISHART = X.T * X / n  # d x d, ratio gamma = d / n
MP_DIMS = {d: d, n: d / gamma}


def marchenko_pastur_density(x, ratio):
    """The closed form sqrt((b - x)(x - a)) / (2 pi ratio x) of the continuous part."""
    lower, upper = (1 - np.sqrt(ratio)) ** 2, (1 + np.sqrt(ratio)) ** 2
    return np.sqrt(np.clip((upper - x) * (x - lower), 0, None)) / (2 * np.pi * ratio * x)


# --------------------------------------------------------------------------- densities


@pytest.mark.parametrize("ratio", [0.3, 1.0, 2.5])
def test_marchenko_pastur_density_in_floats(ratio):
    lower, upper = (1 - np.sqrt(ratio)) ** 2, (1 + np.sqrt(ratio)) ** 2
    x = np.linspace(-0.5, upper + 0.5, 301)
    x = x[np.abs(x) > 1e-3]  # 0 is the atom for ratio > 1 and the divergent edge for ratio = 1
    density = spectral_density(WISHART, MP_DIMS, x, {gamma: ratio})
    expected = marchenko_pastur_density(x, ratio)
    np.testing.assert_allclose(density, expected, rtol=1e-12, atol=1e-12)
    outside = (x < lower - 1e-9) | (x > upper + 1e-9)
    assert np.all(density[outside] == 0.0)  # exactly, not rounding noise
    inside = (x > lower + 1e-9) & (x < upper - 1e-9)
    assert np.all(density[inside] > 0)


def exact_marchenko_pastur_density(x, ratio):
    """The closed form at the float points ``x``, in 50-digit arithmetic (no rounding near the edges)."""
    with mpmath.workdps(50):
        ratio = mpmath.mpf(ratio)
        lower, upper = (1 - mpmath.sqrt(ratio)) ** 2, (1 + mpmath.sqrt(ratio)) ** 2
        return np.array([float(mpmath.sqrt(max((upper - mpmath.mpf(v)) * (mpmath.mpf(v) - lower), 0))
                               / (2 * mpmath.pi * ratio * mpmath.mpf(v))) for v in x])


def test_density_at_and_next_to_the_edges():
    """The floats nearest the edges (one of them is inside, by 1.3e-16, where the density is 2e-9),
    where the continuation meets the singular Jacobian, and points a few rounding units away: the
    closed form evaluated exactly at those floats, including its exact zeros."""
    ratio = 0.5
    lower, upper = (1 - np.sqrt(ratio)) ** 2, (1 + np.sqrt(ratio)) ** 2
    edges = np.array([lower, upper])
    points = np.concatenate([edges] + [edges * (1 + s * e) for e in (1e-15, 1e-12, 1e-10) for s in (-1, 1)])
    density = spectral_density(WISHART, MP_DIMS, points, {gamma: ratio})
    expected = exact_marchenko_pastur_density(points, ratio)
    np.testing.assert_allclose(density, expected, rtol=1e-12, atol=1e-20)
    assert np.all((density == 0) == (expected == 0))


def test_marchenko_pastur_density_to_40_digits():
    points = [mpmath.mpf(1) / 7, mpmath.mpf("0.5"), mpmath.mpf(2), mpmath.mpf(3)]
    density = spectral_density(WISHART, MP_DIMS, points, {gamma: sympy.Rational(1, 3)}, dps=50)
    with mpmath.workdps(60):
        ratio = mpmath.mpf(1) / 3
        lower, upper = (1 - mpmath.sqrt(ratio)) ** 2, (1 + mpmath.sqrt(ratio)) ** 2
        for x, value in zip(points, density):
            expected = mpmath.sqrt(max((upper - x) * (x - lower), 0)) / (2 * mpmath.pi * ratio * x)
            assert abs(value - expected) < mpmath.mpf(10) ** -40
    assert density[-1] == 0


def test_density_is_vectorised_over_any_shape():
    x = np.linspace(0.2, 2.0, 12).reshape(3, 4)
    density = spectral_density(WISHART, MP_DIMS, x, {gamma: 0.5})
    assert density.shape == (3, 4)
    np.testing.assert_allclose(density, marchenko_pastur_density(x, 0.5), rtol=1e-12)
    assert isinstance(spectral_density(WISHART, MP_DIMS, 1.0, {gamma: 0.5}), float)


# --------------------------------------------------------------------------- spectra


@pytest.mark.parametrize("ratio", [0.3, 2.5])
def test_marchenko_pastur_spectrum(ratio):
    found = spectrum(WISHART, MP_DIMS, {gamma: ratio})
    ((lower, upper),) = found.intervals
    assert abs(lower - (1 - math.sqrt(ratio)) ** 2) < 1e-12
    assert abs(upper - (1 + math.sqrt(ratio)) ** 2) < 1e-12
    if ratio < 1:
        assert found.atoms == ()
        assert abs(found.bulk_masses[0] - 1) < 1e-10
    else:  # X^T X / n has rank n = d / ratio: an atom at 0 of mass 1 - 1/ratio
        ((location, mass),) = found.atoms
        assert abs(location) < 1e-12 and abs(mass - (1 - 1 / ratio)) < 1e-12
        assert abs(found.bulk_masses[0] - 1 / ratio) < 1e-10
    assert abs(found.total_mass - 1) < 1e-10


def test_marchenko_pastur_atom_of_the_larger_gram_matrix():
    """X X^T / n (n x n) with d = ratio n, ratio < 1: an atom at 0 of mass 1 - ratio."""
    found = spectrum(X * X.T / n, {n: n, d: gamma * n}, {gamma: 0.4})
    ((location, mass),) = found.atoms
    assert abs(location) < 1e-12 and abs(mass - 0.6) < 1e-12
    assert abs(found.bulk_masses[0] - 0.4) < 1e-10


def test_marchenko_pastur_spectrum_to_40_digits():
    found = spectrum(X * X.T / n, {n: n, d: gamma * n}, {gamma: sympy.Rational(2, 5)}, dps=50)
    ((lower, upper),) = found.intervals
    ((location, mass),) = found.atoms
    with mpmath.workdps(60):
        root = mpmath.sqrt(mpmath.mpf(2) / 5)
        assert abs(lower - (1 - root) ** 2) < mpmath.mpf(10) ** -40
        assert abs(upper - (1 + root) ** 2) < mpmath.mpf(10) ** -40
        assert abs(location) < mpmath.mpf(10) ** -40
        assert abs(mass - mpmath.mpf(3) / 5) < mpmath.mpf(10) ** -40


def test_wigner_semicircle():
    """(Y + Y^T)/sqrt(2d): the semicircle sqrt(4 - x^2)/(2 pi) on [-2, 2], a support on both sides of 0."""
    Y = Gaussian("Y", d, d)
    H = (Y + Y.T) / sympy.sqrt(2 * d)
    x = np.linspace(-2.5, 2.5, 101)
    density = spectral_density(H, {d: d}, x)
    np.testing.assert_allclose(density, np.sqrt(np.clip(4 - x**2, 0, None)) / (2 * np.pi), rtol=1e-12, atol=1e-14)
    found = spectrum(H, {d: d})
    ((lower, upper),) = found.intervals
    assert abs(lower + 2) < 1e-13 and abs(upper - 2) < 1e-13 and found.atoms == ()
    assert abs(found.bulk_masses[0] - 1) < 1e-10


# --------------------------------------------------------------------------- the free sum of two Wisharts

RATIO_1, RATIO_2 = 0.5, 0.2
X1, X2 = Gaussian("X_1", n1, d), Gaussian("X_2", n2, d)
FREE_SUM = X1.T * X1 / n1 + X2.T * X2 / n2
FREE_SUM_DIMS = {d: d, n1: d / RATIO_1, n2: d / RATIO_2}


def free_sum_polynomials():
    r"""The cubic for the Cauchy transform :math:`G = -m` and the quartic of its critical points.

    A Wishart :math:`X^TX/n` with ratio :math:`\gamma = d/n` has R-transform
    :math:`R(w) = 1/(1 - \gamma w)`; R-transforms add under free convolution, and
    :math:`z = R(G) + 1/G`.  Multiplying
    :math:`z = 1/G + 1/(1 - \gamma_1 G) + 1/(1 - \gamma_2 G)` by
    :math:`G A(G)`, :math:`A = (1 - \gamma_1 G)(1 - \gamma_2 G)`, gives the cubic
    :math:`zGA - A - G(1 - \gamma_2 G) - G(1 - \gamma_1 G) = 0`.  Edges are
    critical values of :math:`z(G)`: :math:`z'(G) = 0`, i.e.
    :math:`G^2[\gamma_1(1 - \gamma_2 G)^2 + \gamma_2(1 - \gamma_1 G)^2] - A^2 = 0`.
    """
    P = np.polynomial.Polynomial
    G = P([0, 1])
    first, second = 1 - RATIO_1 * G, 1 - RATIO_2 * G
    A = first * second
    constant = -A - G * second - G * first  # the part of the cubic free of z
    slope = G * A  # the coefficient of z
    quartic = G**2 * (RATIO_1 * second**2 + RATIO_2 * first**2) - A**2
    return constant, slope, quartic


def free_sum_density(x):
    constant, slope, _ = free_sum_polynomials()
    density = []
    for point in np.ravel(x):
        roots = (constant + point * slope).roots()
        density.append(max(0.0, np.max(-roots.imag)) / np.pi)
    return np.array(density)


def free_sum_critical_values():
    constant, slope, quartic = free_sum_polynomials()
    roots = quartic.roots()
    roots = roots[np.abs(roots.imag) < 1e-12].real
    return np.array([-constant(G) / slope(G) for G in roots])


def test_free_sum_of_two_wisharts_density():
    x = np.linspace(-0.5, 5.0, 241)
    np.testing.assert_allclose(spectral_density(FREE_SUM, FREE_SUM_DIMS, x), free_sum_density(x), rtol=1e-10, atol=1e-10)


def test_free_sum_of_two_wisharts_spectrum():
    found = spectrum(FREE_SUM, FREE_SUM_DIMS)
    critical = free_sum_critical_values()
    edges = [edge for interval in found.intervals for edge in interval]
    assert len(edges) == 2 and found.atoms == ()
    for edge in edges:
        assert np.min(np.abs(critical - edge)) < 1e-12
    lower, upper = edges
    assert free_sum_density([lower - 1e-6])[0] == 0 and free_sum_density([lower + 1e-6])[0] > 0
    assert free_sum_density([upper + 1e-6])[0] == 0 and free_sum_density([upper - 1e-6])[0] > 0
    assert abs(found.bulk_masses[0] - 1) < 1e-10


# --------------------------------------------------------------------------- a density with an atom: DSM's U


def dsm_feature_matrix(psi_n, psi_p, time):
    """The DSM matrix U, its dims and values, and s^2."""
    values = dsm.substitutions(psi_n, psi_p, time, 0.0)
    symbols = dsm.symbols
    U = dsm.feature_matrix()
    p = sympy.Symbol("p")
    dims = {d: d, n: symbols["psi_n"] * d, p: symbols["psi_p"] * d}
    subs = {key: value for key, value in values.items() if key in U.free_symbols | {symbols["psi_n"], symbols["psi_p"]}}
    return U, dims, subs, values[symbols["s_squared"]]


def assert_edges_bound_the_density(H, dims, subs, found):
    """Each edge separates density 0 (outside) from a positive density (inside), 1e-9 away on either side:
    spectral_density solves at those points directly, not through the fold of the edge search."""
    for lower, upper in found.intervals:
        for edge, sign in ((lower, 1), (upper, -1)):
            step = 1e-9 * (1 + abs(edge))
            outside, inside = spectral_density(H, dims, [edge - sign * step, edge + sign * step], subs)
            assert outside == 0 and inside > 0


@pytest.mark.parametrize("psi_n, psi_p, time", [
    (0.5, 3.0, 0.5), (0.5, 3.0, 0.05), (0.5, 2.0, 0.05), (2.0, 4.0, 0.1), (2.0, 4.0, 0.05), (2.0, 8.0, 0.05),
    (1.0, 2.5, 1.0),
])
def test_dsm_feature_matrix_atom(psi_n, psi_p, time):
    r"""The DSM matrix :math:`U = F_tF_t^T/n + h\mu_1^2WW^T/d + s^2 I_p` is :math:`s^2` plus a positive
    semi-definite matrix of rank :math:`n + d`: an atom at :math:`s^2` of mass
    :math:`1 - (\psi_n + 1)/\psi_p` for :math:`\psi_p > \psi_n + 1` (the rank count, independent of the
    Dyson equation), the rest in bulks above it.  At :math:`t = 0.05` the atom sits closer than the scan's
    spacing below the lowest bulk (0.0021 at :math:`\psi_n = 0.5, \psi_p = 3`; it was missed there); at
    :math:`(2, 4, 0.1)` a gap of width 0.0036 lies between two scan points (the bulk around it was integrated
    across it); at :math:`(2, 4, 0.05)` the density peaks within 3e-4 of its lower edge (512 quadrature nodes
    leave 4e-8 of the mass out).  Tolerances: the atom's Cauchy integral converges to rounding (1e-12 on
    quantities of order 0.01-1); the bulk quadrature to :data:`pencils.spectra.QUADRATURE_TOLERANCE` per
    bulk (1e-10)."""
    U, dims, subs, s_squared = dsm_feature_matrix(psi_n, psi_p, time)
    found = spectrum(U, dims, subs)
    ((location, mass),) = found.atoms
    assert abs(location - s_squared) < 1e-12
    assert abs(mass - (1 - (psi_n + 1) / psi_p)) < 1e-12
    assert all(lower > location for lower, _ in found.intervals)
    assert abs(sum(found.bulk_masses) - (psi_n + 1) / psi_p) < 1e-10
    assert abs(found.total_mass - 1) < 1e-10
    assert_edges_bound_the_density(U, dims, subs, found)


def test_a_gap_narrower_than_the_scan_is_found():
    """DSM U at (psi_n, psi_p, t) = (2, 4, 0.1): the density vanishes on a gap of width 0.0036 near 0.24,
    between two points of the default scan (spacing ~0.01); spectrum splits the bulk there.  Checked by
    spectral_density (a direct solve at each point) on a fine grid: 0 exactly on the gap, positive on
    either side of it."""
    U, dims, subs, _ = dsm_feature_matrix(2.0, 4.0, 0.1)
    found = spectrum(U, dims, subs)
    (_, upper), (lower, _) = found.intervals
    assert 0.0030 < lower - upper < 0.0040
    grid = np.linspace(upper - 0.01, lower + 0.01, 201)
    density = spectral_density(U, dims, grid, subs)
    gap = (grid > upper + 1e-9) & (grid < lower - 1e-9)
    assert gap.sum() > 25 and np.all(density[gap] == 0)  # 0.0036 on a spacing of 1.2e-4
    assert np.all(density[(grid < upper - 1e-9) | (grid > lower + 1e-9)] > 0)


def test_random_features_gram_atom_next_to_its_bulk():
    r"""The random-features Gram matrix :math:`G = FF^T/n` (:math:`p \times p`, rank :math:`n`) at
    :math:`\psi_n = 1.5, \psi_p = 2`: an atom at 0 of mass :math:`1 - \psi_n/\psi_p` 0.0038 below its bulk
    (it was missed), whose edges are those of :math:`H = F^TF/n` (:math:`n \times n`, the same non-zero
    eigenvalues, a different Dyson system), with no atom."""
    from pencils import activations
    from pencils.models.random_features import dims, symbols

    relu = activations.get("relu")
    mu1, v2, p = symbols["mu1"], symbols["v2"], sympy.Symbol("p")
    F = mu1 * Gaussian("W", p, d) * Gaussian("X", d, n) / sympy.sqrt(d) + sympy.sqrt(v2) * Gaussian("Xi", p, n)
    subs = {symbols["psi_n"]: 1.5, symbols["psi_p"]: 2.0, mu1: relu.mu1(), v2: relu.correlated_split(1).total}
    features, samples = spectrum(F * F.T / n, dims, subs), spectrum(F.T * F / n, dims, subs)
    ((location, mass),) = features.atoms
    assert abs(location) < 1e-12 and abs(mass - 0.25) < 1e-12
    assert samples.atoms == () and len(features.intervals) == len(samples.intervals) == 1
    np.testing.assert_allclose(features.intervals[0], samples.intervals[0], rtol=1e-12)
    assert abs(features.bulk_masses[0] - 0.75) < 1e-10 and abs(samples.bulk_masses[0] - 1) < 1e-10
    assert abs(features.total_mass - 1) < 1e-10


def test_a_part_narrower_than_the_scan_raises():
    """At 16 scan points the lower bulk of U at t = 0.05 (width 0.13) is missed with the atom below it: the mass
    left over (5/6) is not one atom, and spectrum says so instead of returning masses that do not add up to 1."""
    U, dims, subs, _ = dsm_feature_matrix(0.5, 3.0, 0.05)
    with pytest.raises(ConvergenceError, match="not one atom.*increase resolution"):
        spectrum(U, dims, subs, resolution=16)


SHIFTED = X.T * X / n + sympy.Symbol("c") * sympy.Identity(d)


def shifted_marchenko_pastur(distance):
    r""":math:`X^TX/n + cI` with :math:`\gamma = d/n = (1 + \sqrt\delta)^2 > 1`: an atom at :math:`c` of mass
    :math:`1 - 1/\gamma` and a bulk :math:`c + [(1 - \sqrt\gamma)^2, (1 + \sqrt\gamma)^2]` of mass
    :math:`1/\gamma`, whose lower edge is :math:`c + \delta`: the atom sits :math:`\delta` below it."""
    root = 1 + mpmath.sqrt(distance)
    ratio = root**2
    shift = mpmath.mpf(3) / 10
    return ratio, shift, (shift, 1 - 1 / ratio), (shift + (1 - root) ** 2, shift + (1 + root) ** 2), 1 / ratio


@pytest.mark.parametrize("distance", [1e-3, 1e-6])
def test_atom_just_below_a_bulk_edge(distance):
    with mpmath.workdps(30):
        ratio, shift, atom, edges, bulk = shifted_marchenko_pastur(mpmath.mpf(distance))
    found = spectrum(SHIFTED, MP_DIMS, {gamma: float(ratio), "c": float(shift)})
    ((location, mass),) = found.atoms
    ((lower, upper),) = found.intervals
    assert abs(location - float(atom[0])) < 1e-14 and abs(mass - float(atom[1])) < 1e-14
    assert abs(lower - float(edges[0])) < 1e-14 and abs(upper - float(edges[1])) < 1e-13
    assert abs(found.bulk_masses[0] - float(bulk)) < 1e-10
    assert abs(found.total_mass - 1) < 1e-10


def test_atom_just_below_a_bulk_edge_to_30_digits():
    """The same, 1e-6 below the edge, with exact parameters at dps=30: location, mass and edges to 28 digits."""
    with mpmath.workdps(50):
        ratio, shift, atom, edges, bulk = shifted_marchenko_pastur(mpmath.mpf(10) ** -6)
    values = {gamma: (1 + sympy.Rational(1, 1000)) ** 2, "c": sympy.Rational(3, 10)}
    found = spectrum(SHIFTED, MP_DIMS, values, dps=30)
    ((location, mass),) = found.atoms
    ((lower, upper),) = found.intervals
    tolerance = mpmath.mpf(10) ** -28
    assert abs(location - atom[0]) < tolerance and abs(mass - atom[1]) < tolerance
    assert abs(lower - edges[0]) < tolerance and abs(upper - edges[1]) < tolerance
    assert abs(found.bulk_masses[0] - float(bulk)) < 1e-10
    assert abs(found.total_mass - 1) < 1e-10


# --------------------------------------------------------------------------- against sampled eigenvalues


def limiting_cdf(H, dims, points):
    """The distribution function of the bulk at ``points``, by quadrature of the density in theta."""
    ((lower, upper),) = spectrum(H, dims).intervals
    theta = np.linspace(0, np.pi, 4001)
    x = lower + (upper - lower) * (1 - np.cos(theta)) / 2
    integrand = spectral_density(H, dims, x) * (upper - lower) * np.sin(theta) / 2
    cumulative = np.concatenate([[0], np.cumsum((integrand[1:] + integrand[:-1]) / 2 * np.diff(theta))])
    return np.interp(points, x, cumulative, left=0.0, right=1.0)


@pytest.mark.slow
def test_free_sum_against_eigenvalues_at_d_2000():
    r"""Kolmogorov distance between the limit and the eigenvalues of one draw at d = 2000.

    The empirical distribution function of a Wishart-type matrix deviates from
    its limit by O(log d / d) in the bulk (eigenvalue rigidity: log(2000)/2000 =
    0.0038) plus the O(1/d) bias of its mean; at the edges the eigenvalues
    fluctuate by O(d^{-2/3}) where the distribution function is flat (a change of
    order 1/d).  Hence the tolerance 0.004 (measured: 0.0015 and 0.0017 for
    seeds 7 and 8).  The law with the first ratio changed by 5 % is 0.0069 away
    from the same eigenvalues, so the test tells the two apart.
    """
    size = 2000
    rng = np.random.default_rng(7)
    first = rng.standard_normal((int(size / RATIO_1), size))
    second = rng.standard_normal((int(size / RATIO_2), size))
    matrix = first.T @ first * (RATIO_1 / size) + second.T @ second * (RATIO_2 / size)
    eigenvalues = np.sort(np.linalg.eigvalsh(matrix))
    empirical = np.arange(1, size + 1) / size
    distance = np.max(np.abs(limiting_cdf(FREE_SUM, FREE_SUM_DIMS, eigenvalues) - empirical))
    assert distance < 0.004
    wrong = {d: d, n1: d / (1.05 * RATIO_1), n2: d / RATIO_2}
    assert np.max(np.abs(limiting_cdf(FREE_SUM, wrong, eigenvalues) - empirical)) > 0.004


# --------------------------------------------------------------------------- bad input


def test_names_are_looked_up_and_text_is_never_parsed():
    assert spectral_density(WISHART, MP_DIMS, 1.0, {"gamma": 0.5}) == spectral_density(WISHART, MP_DIMS, 1.0, {gamma: 0.5})
    with pytest.raises(ParameterError, match="names no symbol"):
        spectral_density(WISHART, MP_DIMS, 1.0, {"__import__('os')": 0.5, gamma: 0.5})
    with pytest.raises(DimensionError, match="never parsed"):
        spectrum(WISHART, {d: d, n: "d/gamma"}, {gamma: 0.5})


def test_bad_input():
    with pytest.raises(ParameterError, match="symmetric"):
        spectral_density(WISHART + Gaussian("Y", d, d) / sympy.sqrt(d), MP_DIMS, [1.0], {gamma: 0.5})
    with pytest.raises(ParameterError, match="scalar"):
        spectral_density(WISHART, MP_DIMS, [1.0], {gamma: np.array([0.5, 0.6])})
    with pytest.raises(ParameterError, match="square"):
        spectrum(X / sympy.sqrt(n), MP_DIMS, {gamma: 0.5})
    with pytest.raises(ParameterError, match="real"):
        spectral_density(WISHART, MP_DIMS, [1.0 + 1j], {gamma: 0.5})
