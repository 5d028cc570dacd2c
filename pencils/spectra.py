r"""Eigenvalue densities and spectra of self-adjoint matrix expressions, on the real axis itself.

(Why one module of some 830 lines: the density, the support with its edges and the atoms with
their masses are one algorithm, a scan of the real axis by the continuation of :class:`_Line`
and its fold Newton, and share its state.)

For a self-adjoint expression :math:`H` of size :math:`N_H` the limiting
eigenvalue distribution :math:`\mu` is read from the Stieltjes transform

.. math::  m(z) = \lim \tfrac{1}{N_H} \operatorname{tr}\,(H - zI)^{-1} = \int \frac{d\mu(\lambda)}{\lambda - z},

the trace limit of a resolvent (:func:`pencils.trace_limit`).  Its Dyson
equation :math:`F(g, x) = 0` is solved at real :math:`z = x` directly: the
physical solution, the boundary value :math:`m(x + i0)`, is reached by
continuation along :math:`z = x + iy`, :math:`y` from :math:`1 + |x|` down to 0
(``path_from``; the start is the physical branch of :math:`z \to x + i\infty`,
connected to it through the upper half plane, where :math:`m` is analytic), so
that the density is

.. math::  \rho(x) = \tfrac{1}{\pi} \operatorname{Im} m(x + i0),

with no small :math:`\eta` to extrapolate.  Outside the support the solution is
real; a point is reported as outside (density exactly 0) when
:math:`|\operatorname{Im} m| \le \tau |m|`, :math:`\tau` = :data:`OUTSIDE_TOLERANCE`
in floats and :math:`10^{-\mathrm{dps}}` in arbitrary precision.  Inside the
support at a distance :math:`\delta` from a square-root edge
:math:`\operatorname{Im} m / |m| \sim \sqrt\delta`, so only points within
:math:`\tau^2` (relatively) of an edge can be misclassified, where the density is
below :math:`\tau` anyway.  The equation is ill-conditioned at an edge (its
Jacobian is singular there): at a relative distance :math:`\delta` a solution
with rounding :math:`u` gives the density to a relative :math:`u/\delta`, so
the points next to an edge (:data:`NEAR_EDGE`) are solved again at twice the
digits.  A point where the solve meets the singularity itself must be an edge (the
density is 0 there: the two complex solutions meet on the real axis); any other
singular point is an error.

*Edges* are the points where the real solution ceases to exist: folds of the
real curve :math:`F(g, x) = 0`, where the Jacobian :math:`J = \partial_g F` is
singular.  They are found as regular solutions of the augmented (Moore-Spence)
system

.. math::  F(g, x) = 0, \qquad J(g, x)\, v = 0, \qquad \ell^T v = 1,

by Newton's method, which converges quadratically at any precision.  With
:math:`M = \Lambda - \eta(g)` (affine in :math:`g`), :math:`G = M^{-1}` and
:math:`S` the unknown blocks, :math:`F = [G]_S - g`, :math:`Jv = [G\eta(v)G]_S - v`,
and the derivatives of :math:`Jv` in :math:`g_w` and :math:`x` follow from
:math:`dG = -G\,dM\,G`.

*Atoms* sit in gaps, where :math:`m` has a pole: :math:`m` increases strictly on
each gap (:math:`m' = \int d\mu/(\lambda - x)^2 > 0`), so a decrease between two
points of a gap reveals a pole.  Its mass and location are Cauchy integrals on a
circle :math:`C` around it that encloses no other part of the spectrum,

.. math::  w = -\frac{1}{2\pi i}\oint_C m(z)\,dz, \qquad
           x_0 = -\frac{1}{2\pi i\, w}\oint_C z\, m(z)\,dz,

computed by the trapezoid rule (geometric convergence; the nodes below the real
axis are conjugates of those above), with the variance of the enclosed mass, which
vanishes for a single pole.  The mass of each bulk is the integral of
the density between its edges (Gauss-Legendre quadrature in
:math:`x = a + (b - a)(1 - \cos\theta)/2`, which smooths square-root and
inverse-square-root edges), and so is its first moment.  A gap narrower than the scan's spacing
makes the density non-smooth inside a "bulk", where the quadrature then does not converge: the gap
is looked for around the local minima of the density (it vanishes at both edges of a gap) on finer
and finer samples, and the bulk split at its edges.

A decrease needs scan points on both sides of the pole.  An atom between the
last scan point of a gap and a bulk edge (or beyond the scan) shows no decrease:
:math:`m` rises to :math:`+\infty` before it and comes back from :math:`-\infty`
after it.  It shows in the accounts instead: the total mass is 1 and the first
moment :math:`\mu_1` is known (from :math:`-iYm(iY) = 1 - i\mu_1/Y + O(Y^{-2})`),
so the mass :math:`w` and the first moment :math:`\mu` that the parts found leave
over put a single missing atom at :math:`\mu/w`, where the Cauchy integral locates
and weighs it to full precision; it must carry the mass :math:`w` and be a single
pole, and the masses then add up to 1 (else :func:`spectrum` raises).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Mapping

import mpmath
import numpy as np
import scipy.integrate
import sympy

from . import precision
from .errors import ConvergenceError, ParameterError
from .arguments import resolve_keys
from .derivations import dims_key, subs_key
from .evaluation import draw, evaluate
from .expression import Dimensions, shape_symbols
from .trace_limits import derive, trace_limit
from .sizes import draw_sizes
from .solve.compiled import compile_expressions, to_mpmath

__all__ = ["spectral_density", "spectrum", "Spectrum", "OUTSIDE_TOLERANCE", "NEAR_EDGE"]

#: In floats, a point with :math:`|\operatorname{Im} m| \le` this times :math:`|m|` is outside the support.
OUTSIDE_TOLERANCE = 1e-10
#: Points with :math:`|\operatorname{Im} m| \le` this times :math:`|m|` (floats, then ``dps``) are next to an
#: edge and solved again at higher precision (see :func:`_stieltjes`).
NEAR_EDGE = (1e-3, 1e-7)
#: The masses of a spectrum add up to 1 within this, else the missing part is looked for
#: (:meth:`_Scan.missing_atom`) or :func:`spectrum` raises.
MASS_TOLERANCE = 1e-8
#: :func:`spectrum` reads the mean and the spread of a spectrum from :math:`m(iY)` at :math:`Y` this many times
#: their scale (a relative error :math:`Y^{-2}`).
MOMENT_HEIGHT = 1e6
#: The mass of a bulk by Gauss-Legendre quadrature has converged when two successive orders agree to this.
QUADRATURE_TOLERANCE = 1e-10
#: The orders of that quadrature: the first ones, then the higher ones once no hidden gap was found.
QUADRATURE_ORDERS = ((64, 128, 256, 512), (1024, 2048, 4096))
#: Points per refinement of the search for a gap narrower than the scan's spacing (:meth:`_Scan.hidden_gap`).
GAP_SAMPLES = 33
#: A circle holds one atom when the variance of its mass about its mean is below this times its radius squared.
SINGLE_POLE = 1e-8


# --------------------------------------------------------------------------- the resolvent


def _spectral_symbol(H) -> sympy.Symbol:
    """A symbol for the spectral parameter that ``H`` does not use."""
    used = {str(s) for s in H.free_symbols}
    name = "z"
    while name in used:
        name += "_"
    return sympy.Symbol(name)


def _resolvent(H) -> tuple:
    """``(H - z I)^{-1}`` and ``z``, after checking that ``H`` is a square matrix expression."""
    if not getattr(H, "is_Matrix", False) or H.shape[0] != H.shape[1]:
        raise ParameterError(
            f"H must be a square (self-adjoint) matrix expression; got {H} of shape {getattr(H, 'shape', None)}."
        )
    z = _spectral_symbol(H)
    return (H - z * sympy.Identity(H.shape[0])).I, z


def _check_self_adjoint(H, dims_key: tuple, subs: dict) -> None:
    """``H`` must be symmetric: checked on one small random draw (the expression as written), once per
    expression, dimensions (:func:`pencils.derivations.dims_key`) and values."""
    _check_draw(H, dims_key, subs_key(subs))


@lru_cache(maxsize=64)
def _check_draw(H, dims_key: tuple, subs_key: tuple) -> None:
    dims, subs = dict(dims_key), dict(subs_key)
    dimensions = Dimensions.from_mapping(dims, shape_symbols(H))
    sizes = draw_sizes(dimensions, 12, subs)
    matrix = evaluate(H, draw(H, sizes, np.random.default_rng(0)), sizes, subs)
    if np.linalg.norm(matrix - matrix.T) > 1e-10 * max(np.linalg.norm(matrix), 1e-300):
        raise ParameterError(
            f"H = {H} is not symmetric (on a random draw at base size 12 it differs from its transpose); "
            f"its eigenvalues need not be real. Symmetrise it, e.g. (A + A.T)/2 or X.T*X/n."
        )


def _scalar_subs(subs: Mapping | None, H, dims_key: tuple) -> dict:
    """``subs`` with symbol keys (names looked up among the symbols of ``H`` and of the dimension ratios,
    never parsed), restricted to those symbols (values of others do not change the spectrum, nor the key of
    its cache); every value must be a scalar (the spectrum depends on them)."""
    symbols = H.free_symbols | set().union(*(v.free_symbols for _, v in dims_key))
    result = {}
    for key, value in resolve_keys(subs, symbols, "subs").items():
        if key not in symbols:
            continue
        if np.ndim(value) != 0:
            raise ParameterError(
                f"the value of {key} must be a scalar (one spectrum at a time); got an array of shape "
                f"{np.shape(value)}. Loop over its values."
            )
        result[key] = value.item() if isinstance(value, np.ndarray) else value
    return result


def _heights(x) -> np.ndarray:
    """The start of each path, ``x + i * height``: above the spectrum, on its scale."""
    return 1 + np.abs(np.asarray(x, dtype=float))


def _boundary_values(resolvent, dims, z, subs: dict, x: np.ndarray, dps: int | None) -> tuple[np.ndarray, np.ndarray]:
    """:math:`m(x + i0)` from the engine at real points ``x`` (flat), and where its solve meets a singular point.

    The continuation from ``x + i * height`` stops short of a point where the
    Dyson equation itself is singular (an edge within rounding, an atom): such
    points are taken out of the batch one by one (the error names the first) and
    flagged; their values are left as 0.
    """
    values = np.zeros(x.shape, dtype=object if dps is not None else complex)
    singular = np.zeros(x.shape, dtype=bool)
    remaining = np.arange(x.size)
    if dps is None:
        subs = _float_subs(subs)
    while remaining.size:
        points = x[remaining]
        start = points.astype(float) + 1j * _heights(points.astype(float))
        try:
            solved = trace_limit(resolvent, dims, {**subs, z: points}, dps=dps, path_from={z: start})
        except ConvergenceError as error:
            failed = complex(error.parameters.get(str(z), np.nan)).real
            match = np.flatnonzero(points.astype(float) == failed)
            if not match.size:
                raise
            singular[remaining[match]] = True
            remaining = np.delete(remaining, match)
            continue
        values[remaining] = np.reshape(solved, -1)
        break
    return values, singular


def _float_subs(subs: dict) -> dict:
    """Exact values (SymPy numbers, mpmath numbers) as floats, for the engine's float solves."""
    return {key: complex(value) if complex(value).imag else float(value) for key, value in subs.items()}


def _stieltjes(resolvent, dims, z, subs: dict, x: np.ndarray, dps: int | None) -> tuple[np.ndarray, np.ndarray]:
    r""":math:`m(x + i0)` at real points ``x`` (flat), and the singular points (see :func:`_boundary_values`).

    Next to a square-root edge the equation is ill-conditioned: with
    :math:`r = |\operatorname{Im} m|/|m| \sim \sqrt\delta` at a relative distance
    :math:`\delta`, a solution with rounding :math:`u` gives the density to a
    relative :math:`u/r^2`.  Points with :math:`r \le` :data:`NEAR_EDGE` (floats:
    :math:`u = 10^{-16}`; ``dps``: :math:`10^{-\mathrm{dps} - 15}`, the engine's
    guard digits) and above the outside tolerance (:func:`_outside_tolerance`: rounding
    noise at an outside point) are solved again at :math:`2k + 10` digits (:math:`k` = 16 or
    ``dps``), enough for the nearest representable points, and rounded back.
    """
    values, singular = _boundary_values(resolvent, dims, z, subs, x, dps)
    digits = 16 if dps is None else dps
    threshold, outside = NEAR_EDGE[dps is not None], _outside_tolerance(dps)
    with precision.digits(digits + 5) as context:
        near = np.array([outside * abs(v) < abs(context.im(v)) <= threshold * abs(v) for v in map(context.convert, values)],
                        dtype=bool)
    near &= ~singular
    if np.any(near):
        precise, precise_singular = _boundary_values(resolvent, dims, z, subs, x[near], 2 * digits + 10)
        if dps is None:
            precise = np.array([complex(v) for v in precise])
        else:
            with precision.working(dps) as context:
                precise = np.array([precision.public(+context.convert(v)) for v in precise], dtype=object)
        values[near], singular[near] = precise, precise_singular
    return values, singular


def _outside_tolerance(dps: int | None):
    r""":math:`\tau`: where :math:`|\operatorname{Im} m| \le \tau |m|` the point is outside the support."""
    return OUTSIDE_TOLERANCE if dps is None else precision.context().mpf(10) ** (-dps)


def _densities(values: np.ndarray, dps: int | None) -> np.ndarray:
    """:math:`\\operatorname{Im} m/\\pi`, exactly 0 where the solution is real to the working accuracy."""
    if dps is None:
        tolerance = _outside_tolerance(dps)
        imaginary = np.imag(values.astype(complex))
        return np.where(np.abs(imaginary) <= tolerance * np.abs(values), 0.0, imaginary / np.pi)
    with precision.digits(dps) as context:
        tolerance = _outside_tolerance(dps)
        return np.array(
            [precision.public(context.zero if abs(context.im(v)) <= tolerance * abs(v) else +(context.im(v) / context.pi))
             for v in map(context.convert, values)],
            dtype=object,
        )


def spectral_density(H: sympy.MatrixExpr, dims: Mapping, x, subs: Mapping | None = None, dps: int | None = None):
    r"""The limiting eigenvalue density of the self-adjoint expression ``H`` at real points ``x``.

    :math:`\rho(x) = \operatorname{Im} m(x + i0)/\pi` with :math:`m` the limit of
    :math:`\operatorname{tr}(H - xI)^{-1}/N_H`, solved on the real axis itself
    (see the module notes): exact to the working precision in the bulk, exactly
    0 outside the support.  This is the density of the continuous part; atoms are
    reported by :func:`spectrum`.

    Parameters
    ----------
    H : sympy.MatrixExpr
        A square, self-adjoint expression in :class:`pencils.Gaussian` matrices, of order one
        (e.g. ``X.T * X / n``).
    dims : dict
        Each dimension symbol as a multiple of one base symbol.
    x : float or array_like
        Real points (any shape).
    subs : dict, optional
        Values of the other scalar symbols (numbers, not arrays).
    dps : int, optional
        ``None`` for floats; ``k`` for mpmath numbers correct to about ``k`` digits
        (points next to an edge are solved at ``2k + 10`` digits for that).

    Returns
    -------
    float, numpy.ndarray, or mpmath number (object array for arrays)

    Raises
    ------
    ConvergenceError
        At a point where the Dyson equation is singular other than an edge of
        the support (where the density is 0), e.g. an atom inside a bulk or an edge
        where the density diverges.

    Examples
    --------
    The Marchenko-Pastur law of ``X.T X / n`` with ``d = n/2``, whose density is
    :math:`\sqrt{(b - x)(x - a)}/(2\pi\gamma x)`, :math:`a, b = (1 \mp \sqrt\gamma)^2`:

    >>> import numpy as np, sympy
    >>> from pencils import Gaussian, spectral_density
    >>> n, d = sympy.symbols("n d")
    >>> X = Gaussian("X", n, d)
    >>> x = np.array([0.05, 1.0, 3.0])
    >>> density = spectral_density(X.T * X / n, {n: 2 * d}, x)
    >>> a, b = (1 - np.sqrt(0.5)) ** 2, (1 + np.sqrt(0.5)) ** 2
    >>> closed_form = np.sqrt(np.clip((b - x) * (x - a), 0, None)) / (np.pi * x)
    >>> bool(np.abs(density - closed_form).max() < 1e-14), density[[0, 2]]
    (True, array([0., 0.]))
    """
    resolvent, z = _resolvent(H)
    key = dims_key(dims)
    subs = _scalar_subs(subs, H, key)
    _check_self_adjoint(H, key, subs)
    shape = np.shape(x)
    points = _points(x, dps)
    values, singular = _stieltjes(resolvent, dims, z, subs, points, dps)
    density = _densities(values, dps)
    if np.any(singular):
        _check_edges(H, dims, subs, points[singular], dps)
    if dps is None:
        density = density.reshape(shape)
        return density if shape else float(density)
    density = density.reshape(shape)
    return density if shape else density.item()


def _points(x, dps: int | None) -> np.ndarray:
    """Real points as a flat float array (object array of mpmath numbers if ``dps``)."""
    if dps is None:
        array = np.asarray(x)
        if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
            raise ParameterError(f"x must be real numbers; got {x!r}.")
        array = array.astype(float).reshape(-1)
    else:
        with precision.working(dps):
            array = np.array([precision.public(to_mpmath(v)) for v in np.ravel(np.asarray(x, dtype=object))], dtype=object)
        if any(isinstance(v, mpmath.mpc) for v in array):
            raise ParameterError(f"x must be real numbers; got {x!r}.")
    if not all(np.isfinite(float(v)) for v in array):
        raise ParameterError(f"x must be finite real numbers; got {x!r}.")
    return array


def _check_edges(H, dims, subs, points: np.ndarray, dps) -> None:
    """Points where the solve met a singularity must be edges of the support (density 0 there)."""
    found = spectrum(H, dims, subs)
    edges = np.array([edge for interval in found.intervals for edge in interval], dtype=float)
    scale = 1 + max((abs(e) for e in edges), default=0.0)
    for point in points:
        point = float(point)
        if not edges.size or np.min(np.abs(edges - point)) > 1e-12 * scale:
            atoms = [location for location, _ in found.atoms]
            where = "an atom of the spectrum" if any(abs(a - point) <= 1e-12 * scale for a in atoms) else "a singular point"
            raise ConvergenceError(
                f"x = {point!r} is {where}, where the Stieltjes transform has no finite boundary value; "
                f"the continuous density is not defined by the Dyson equation there. Move the point "
                f"(spectrum() lists the support and the atoms).",
                parameters={"x": point},
            )


# --------------------------------------------------------------------------- the real line


class _Line:
    r"""The Dyson equation of the resolvent at real :math:`z = x` and its derivatives, for the fold (edge) search.

    Built from the symbolic matrix :math:`M(g, x) = \Lambda(x) - \eta_x(g)` of a
    :class:`pencils.dyson.DysonSystem` (affine in the unknowns :math:`g`), the
    other parameters fixed by ``subs``.  Floats use numpy arrays; arbitrary
    precision, object arrays of mpmath numbers at the working precision.
    """

    def __init__(self, system, z: sympy.Symbol, subs: dict):
        self.size = system.deterministic.rows
        others = [p for p in system.parameters if p != z]
        missing = [p for p in others if p not in subs]
        if missing:
            raise ParameterError(f"no value given for {', '.join(map(str, missing))}; pass subs={{{missing[0]}: ...}}.")
        matrix = system.matrix()
        entries = list(matrix) + list(matrix.diff(z))
        arguments = list(system.symbols) + [z] + others
        self._values = [subs[p] for p in others]
        self._numpy = compile_expressions(arguments, entries, "numpy")
        self._mpmath = compile_expressions(arguments, entries, "mpmath")
        self.count = len(system.unknowns)
        self.rows = np.array([l for l, _ in system.unknowns])
        self.cols = np.array([m for _, m in system.unknowns])

    def _matrices(self, g, x, multiprecision: bool) -> tuple:
        r""":math:`M` and :math:`\partial_x M` at ``(g, x)``, each K x K."""
        if multiprecision:
            values = self._mpmath(*g, x, *(to_mpmath(v) for v in self._values))
            array = np.array([precision.context().convert(v) for v in values], dtype=object)
        else:
            values = self._numpy(*g, x, *(float(v) for v in self._values))
            array = np.array(values, dtype=float)
        return array[: self.size**2].reshape(self.size, self.size), array[self.size**2 :].reshape(self.size, self.size)

    def parts(self, x, multiprecision: bool) -> tuple:
        r""":math:`\Lambda, \partial_x\Lambda` and the maps :math:`\eta(e_w), \partial_x\eta(e_w)` (shape (U, K, K)) at ``x``."""
        zero = [0] * self.count
        deterministic, deterministic_slope = self._matrices(zero, x, multiprecision)
        etas, eta_slopes = [], []
        for w in range(self.count):
            unit = list(zero)
            unit[w] = 1
            matrix, slope = self._matrices(unit, x, multiprecision)
            etas.append(deterministic - matrix)
            eta_slopes.append(deterministic_slope - slope)
        return deterministic, deterministic_slope, np.array(etas), np.array(eta_slopes)

    def select(self, matrices):
        """The unknown blocks ``[A]_S`` of K x K matrices (the last two axes)."""
        return matrices[..., self.rows, self.cols]

    def fold(self, g, x, multiprecision: bool, tolerance):
        r"""Newton's method on the Moore-Spence system from ``(g, x)``: the fold ``(x, g)`` nearby.

        Unknowns :math:`(g, v, x)`; equations :math:`F = [G]_S - g`,
        :math:`Jv = [G\eta(v)G]_S - v` and :math:`\ell^T v - 1` with :math:`\ell`
        the start's null vector.  With :math:`E_w = \eta(e_w)`, :math:`E_v = \eta(v)`
        and :math:`M_x = \partial_x M`: :math:`\partial_{g_w}(Jv) = [GE_wGE_vG + GE_vGE_wG]_S`,
        :math:`\partial_x F = -[GM_xG]_S`,
        :math:`\partial_x(Jv) = [-GM_xGE_vG - GE_vGM_xG + G\,\partial_x\eta(v)\,G]_S`.
        """
        count, identity = self.count, np.eye(self.count)
        g = np.array(g, dtype=object if multiprecision else float)
        vector = normal = None
        for _ in range(60):
            deterministic, deterministic_slope, etas, eta_slopes = self.parts(x, multiprecision)
            G = _inverse(deterministic - np.tensordot(g, etas, 1), multiprecision)
            GEG = G @ etas @ G
            J = self.select(GEG).T - identity
            if vector is None:
                vector = normal = _null_vector(J).astype(g.dtype)
            E_v = np.tensordot(vector, etas, 1)
            GvG = G @ E_v @ G
            slope = deterministic_slope - np.tensordot(g, eta_slopes, 1)
            GMG = G @ slope @ G
            system = np.zeros((2 * count + 1, 2 * count + 1), dtype=g.dtype)
            system[:count, :count] = J
            system[count : 2 * count, :count] = self.select(GEG @ E_v @ G + GvG @ etas @ G).T
            system[count : 2 * count, count : 2 * count] = J
            system[2 * count, count : 2 * count] = normal
            system[:count, 2 * count] = -self.select(GMG)
            system[count : 2 * count, 2 * count] = self.select(
                G @ np.tensordot(vector, eta_slopes, 1) @ G - GMG @ E_v @ G - GvG @ slope @ G
            )
            equations = np.concatenate([self.select(G) - g, self.select(GvG) - vector, [normal @ vector - 1]])
            step = _solve(system, -equations, multiprecision)
            g, vector, x = g + step[:count], vector + step[count : 2 * count], x + step[2 * count]
            if abs(step[2 * count]) <= tolerance * (1 + abs(x)) and max(abs(step[:count])) <= tolerance * (
                1 + max(abs(g))
            ):
                return x, g
        raise ConvergenceError(
            f"the edge of the spectrum near x = {float(x)!r} was not located (the augmented system did not converge).",
            parameters={"x": x},
        )


def _inverse(matrix: np.ndarray, multiprecision: bool) -> np.ndarray:
    if not multiprecision:
        return np.linalg.inv(matrix)
    context = precision.context()
    return np.array(context.inverse(context.matrix(matrix.tolist())).tolist(), dtype=object)


def _solve(matrix: np.ndarray, right: np.ndarray, multiprecision: bool) -> np.ndarray:
    if not multiprecision:
        return np.linalg.solve(matrix, right)
    context = precision.context()
    solution = context.lu_solve(context.matrix(matrix.tolist()), context.matrix(list(right)))
    return np.array([solution[k] for k in range(len(right))], dtype=object)


def _null_vector(J: np.ndarray) -> np.ndarray:
    """The right singular vector of the smallest singular value (in floats: a start for Newton)."""
    _, _, vh = np.linalg.svd(np.asarray(J, dtype=float))
    return vh[-1]


# --------------------------------------------------------------------------- the spectrum


@dataclass(frozen=True)
class Spectrum:
    r"""The limiting spectrum of a self-adjoint expression: its support, atoms and masses.

    Attributes
    ----------
    intervals : tuple of (lower, upper)
        The bulks, in increasing order, with edges to the working precision.
    bulk_masses : tuple of float
        The mass of each bulk: the integral of :func:`spectral_density` between its edges.
    atoms : tuple of (location, mass)
        The point masses in the gaps, in increasing order.
    """

    intervals: tuple
    bulk_masses: tuple
    atoms: tuple

    @property
    def total_mass(self) -> float:
        """The bulk and atom masses added: 1 up to the quadrature error when nothing was missed."""
        return float(sum(self.bulk_masses) + sum(float(mass) for _, mass in self.atoms))


def spectrum(
    H: sympy.MatrixExpr, dims: Mapping, subs: Mapping | None = None, dps: int | None = None, resolution: int = 1000
) -> Spectrum:
    r"""The support, the atoms and the masses of the limiting eigenvalue distribution of ``H``.

    The real axis is scanned on ``resolution`` points around the spectrum (its
    mean plus or minus a multiple of its standard deviation, both read from
    :math:`m(iY)` at a large :math:`Y`; the window grows until both its ends are
    outside the support); each change between a point inside the support and one
    outside brackets an edge, located to full precision as a fold of the Dyson
    equation (see the module notes); each decrease of :math:`m` along a gap
    brackets an atom, whose location and mass are Cauchy integrals.  The scan
    cannot see an atom between its last point in a gap and a bulk edge (there
    :math:`m` rises to :math:`+\infty` and comes back from :math:`-\infty` with no
    decrease between scan points), nor one beyond its window: the mass and the
    first moment that the parts found leave over (the first moment of the whole
    spectrum is read from :math:`m(iY)` too) locate such an atom at their ratio,
    where it is weighed by a Cauchy integral that must hold exactly that mass and a
    single pole.

    Parameters
    ----------
    H, dims, subs
        As in :func:`spectral_density`.
    dps : int, optional
        Edges, atom locations and atom masses as mpmath numbers correct to about
        ``dps`` digits; the bulk masses are always floats (quadrature of the density).
    resolution : int
        Points of the scan; bulks narrower than its spacing can be missed (then
        :func:`spectrum` raises), as can two atoms in one cell of the scan next to an edge.

    Returns
    -------
    Spectrum
        Its masses add up to 1 within :data:`MASS_TOLERANCE`.

    Raises
    ------
    ConvergenceError
        If the masses found do not add up to 1 and what is missing is not one atom in a gap.

    Examples
    --------
    The Marchenko-Pastur law of the ``n x n`` matrix ``X X^T / n`` with ``d = n/2``:
    a bulk :math:`[(1 - \sqrt{1/2})^2, (1 + \sqrt{1/2})^2]` of mass 1/2 and an atom of mass
    1/2 at 0.

    >>> import sympy
    >>> from pencils import Gaussian, spectrum
    >>> n, d = sympy.symbols("n d")
    >>> X = Gaussian("X", n, d)
    >>> found = spectrum(X * X.T / n, {d: n / 2})
    >>> [(round(a, 12), round(b, 12)) for a, b in found.intervals]
    [(0.085786437627, 2.914213562373)]
    >>> [round(mass, 12) for mass in found.bulk_masses], [(round(x, 12), round(w, 12)) for x, w in found.atoms]
    ([0.5], [(0.0, 0.5)])
    """
    _resolvent(H)
    key = dims_key(dims)
    subs = _scalar_subs(subs, H, key)
    _check_self_adjoint(H, key, subs)
    if int(resolution) < 16:
        raise ParameterError(f"resolution must be at least 16 points; got {resolution}.")
    return _spectrum(H, key, subs_key(subs), dps, int(resolution))


@lru_cache(maxsize=32)
def _spectrum(H, dims_key: tuple, subs_key: tuple, dps: int | None, resolution: int) -> Spectrum:
    dims, subs = dict(dims_key), dict(subs_key)
    resolvent, z = _resolvent(H)
    scan = _Scan(resolvent, dims, z, subs)
    mean, spread = scan.moments()
    if spread == 0:
        return Spectrum((), (), ((_precise(mean, dps), _precise(1.0, dps)),))
    width = 8.0
    for _ in range(4):
        found = scan.run(mean - width * spread, mean + width * spread, resolution, mean, dps)
        if found is not None:
            return found
        width *= 2
    raise ConvergenceError(f"the support of {H} extends beyond {width / 2:g} standard deviations of its mean.")


def _precise(value, dps: int | None):
    if dps is None:
        return float(value)
    with precision.digits(dps) as context:
        return precision.public(context.mpf(value))


class _Scan:
    """The real-axis scan of one resolvent at fixed parameters (see :func:`spectrum`)."""

    def __init__(self, resolvent, dims: dict, z: sympy.Symbol, subs: dict):
        self.resolvent, self.dims, self.z, self.subs = resolvent, dims, z, subs
        self.system = derive(resolvent, dims)
        self.line = _Line(self.system, z, subs)

    def stieltjes(self, x, dps=None):
        values, singular = _stieltjes(self.resolvent, self.dims, self.z, self.subs, np.atleast_1d(np.asarray(x)), dps)
        return values, singular

    def moments(self) -> tuple[float, float]:
        r"""Mean and standard deviation of the spectrum, from
        :math:`-iYm(iY) = 1 - i\mu_1/Y - \mu_2/Y^2 + i\mu_3/Y^3 + O(Y^{-4})` at :math:`Y` at least
        :data:`MOMENT_HEIGHT` times the spectrum's scale: the mean to a relative :math:`Y^{-2}` (it locates
        a missing atom, :meth:`missing_atom`), solved at 40 digits for the :math:`Y^{-2}` term."""
        height = MOMENT_HEIGHT
        for _ in range(4):
            with precision.digits(50) as context:
                value = trace_limit(self.resolvent, self.dims, {**self.subs, self.z: context.mpc(0, height)}, dps=40)
                scaled = -1j * height * context.convert(value)
                mean = -height * context.im(scaled)
                second = height**2 * (1 - context.re(scaled))
                variance = max(second - mean**2, 0)
                spread = float(context.sqrt(variance))
            scale = max(abs(float(mean)), spread)
            if scale <= height / MOMENT_HEIGHT:
                return float(mean), spread
            height = 10 * MOMENT_HEIGHT * scale
        raise ConvergenceError("the spectrum's scale could not be found from its Stieltjes transform.")

    def run(self, lower: float, upper: float, resolution: int, mean: float, dps: int | None) -> Spectrum | None:
        """Scan ``[lower, upper]``; ``None`` if an end of the window is inside the support.  Edges bracketed
        by the scan, atoms by a decrease of :math:`m` in a gap, then the one atom the scan may not see
        (:meth:`missing_atom`)."""
        x = np.linspace(lower, upper, resolution)
        values, singular = self.stieltjes(x)
        inside = (_densities(values, None) > 0) & ~singular
        if inside[0] or inside[-1]:
            return None
        states = np.where(singular, 2, inside.astype(int))  # 0 outside, 1 inside, 2 singular
        edges = []
        known = np.flatnonzero(states != 2)
        for left, right in zip(known[:-1], known[1:]):
            if states[left] != states[right]:
                outside, inside_point = (left, right) if states[left] == 0 else (right, left)
                edges.append(self.edge(x[outside], x[inside_point], dps))
        densities = np.where(states == 1, _densities(values, None), 0.0)
        intervals, moments = self.bulks(list(zip(edges[0::2], edges[1::2])), x, densities, dps)
        atoms = self.atoms(x, values, states, intervals, dps)
        masses = tuple(mass for mass, _ in moments)
        missing = 1 - sum(masses) - sum(float(w) for _, w in atoms)
        if abs(missing) > MASS_TOLERANCE:
            first = mean - sum(moment for _, moment in moments) - sum(float(a) * float(w) for a, w in atoms)
            atoms = tuple(sorted(atoms + (self.missing_atom(missing, first, intervals, atoms, dps),),
                                 key=lambda atom: float(atom[0])))
        return Spectrum(intervals, masses, atoms)

    # ---------------------------------------------------------------- edges

    def real_solution(self, x: float) -> np.ndarray:
        """The unknowns at a real point outside the support (from the engine's solver)."""
        inverse, _, _ = self.system.solver.solve(
            {**_float_subs(self.subs), self.z: np.array([x])}, path_from={self.z: np.array([x + 1j * _heights(x)])}
        )
        return np.real(inverse[0, self.line.rows, self.line.cols])

    def edge(self, outside: float, inside: float, dps: int | None):
        """The fold between a point outside the support and one inside: bisection until Newton's
        method on the Moore-Spence system converges into the bracket, then polished to ``dps``."""
        for _ in range(60):
            try:
                with np.errstate(all="ignore"):
                    x, g = self.line.fold(self.real_solution(outside), outside, False, 1e-14)
                if min(outside, inside) <= x <= max(outside, inside):
                    break
            except (ConvergenceError, np.linalg.LinAlgError):
                pass
            middle = (outside + inside) / 2
            values, singular = self.stieltjes([middle])
            if singular[0] or _densities(values, None)[0] > 0:
                inside = middle
            else:
                outside = middle
        else:
            raise ConvergenceError(
                f"the edge of the spectrum between {outside!r} and {inside!r} was not located: no square-root edge "
                f"(fold of the Dyson equation) there, which is a hard edge where the density diverges (as where an "
                f"atom's mass vanishes into a bulk); move a parameter slightly off this point."
            )
        if dps is None:
            return float(x)
        with precision.working(dps) as context:
            start = np.array([context.mpf(v) for v in g], dtype=object)
            x, _ = self.line.fold(start, context.mpf(x), True, context.mpf(10) ** -(dps + 5))
        return _precise(x, dps)

    # ---------------------------------------------------------------- atoms

    def atoms(self, x, values, states, intervals, dps) -> tuple:
        """Atoms in the gaps: a decrease of the real :math:`m` between two outside points of one gap."""
        outside = np.flatnonzero(states == 0)
        found = []
        for left, right in zip(outside[:-1], outside[1:]):
            if np.any(states[left:right] == 1) or values[right].real >= values[left].real:
                continue
            found.append(self.atom(x[left], x[right], values[left].real, values[right].real, intervals, dps))
        return tuple(found)

    def atom(self, left: float, right: float, m_left: float, m_right: float, intervals, dps):
        """The pole between ``left`` and ``right`` (``m(left) > m(right)``): bisected until its bracket is
        small next to its distance to the bulks, then located and weighed by Cauchy integrals on a circle
        of half that distance."""
        edges = np.array([float(e) for interval in intervals for e in interval])

        def room(point: float) -> float:
            return float(np.min(np.abs(edges - point))) if edges.size else 1 + abs(point)

        for _ in range(60):
            if right - left <= room((left + right) / 2) / 8:
                break
            middle = (left + right) / 2
            values, singular = self.stieltjes([middle])
            if singular[0]:  # the pole itself, within rounding
                left = right = middle
                break
            value = values[0].real
            if _densities(values, None)[0] > 0:
                raise ConvergenceError(
                    f"m decreases between {float(left)!r} and {float(right)!r}, and the support reaches "
                    f"{float(middle)!r} in between (a "
                    f"bulk narrower than the scan's spacing); increase resolution."
                )
            if value > m_left:
                left, m_left = middle, value
            elif value < m_right:
                right, m_right = middle, value
            else:
                raise ConvergenceError(
                    f"m does not behave as one pole between {left!r} and {right!r} (two atoms, or a bulk "
                    f"narrower than the scan's spacing); increase resolution."
                )
        center = (left + right) / 2
        return self.residue(center, room(center) / 2, dps)

    def missing_atom(self, missing: float, first: float, intervals, atoms, dps):
        r"""The atom that carries the mass ``missing`` and the first moment ``first`` that the bulks and
        the atoms found leave over: at :math:`x_0 = ` ``first/missing``, located and weighed by
        :meth:`residue` on a circle of half its distance to the other parts.  The scan cannot see an atom
        between its last point in a gap and a bulk edge (:math:`m` need not decrease there), nor beyond
        its window.  Anything else raises: a location inside a bulk, a mass that is not ``missing`` or not
        one pole (more than one part missed, :meth:`residue`), more mass than 1."""
        location = first / missing
        landmarks = np.array([float(e) for interval in intervals for e in interval] + [float(a) for a, _ in atoms])
        inside = [interval for interval in intervals if float(interval[0]) <= location <= float(interval[1])]
        if missing < 0 or inside:
            where = f"inside the bulk {tuple(map(float, inside[0]))}" if inside else "negative"
            raise ConvergenceError(
                f"the masses of the spectrum add up to {1 - missing!r}, not 1, and the mass left over is {where} "
                f"(mean {location:.6g}): a bulk narrower than the scan's spacing, an atom inside a bulk, or "
                f"several parts missed; increase resolution."
            )
        room = float(np.min(np.abs(landmarks - location))) if landmarks.size else 1 + abs(location)
        found = self.residue(location, room / 2, dps)
        if abs(float(found[1]) - missing) > MASS_TOLERANCE:
            raise ConvergenceError(
                f"the masses of the spectrum add up to {1 - missing!r}, not 1, and the atom at the mean "
                f"{location:.6g} of what is missing has mass {float(found[1])!r}: more than one part of the "
                f"spectrum was missed; increase resolution."
            )
        return found

    def residue(self, center: float, radius: float, dps: int | None):
        r"""Location and mass of the single pole inside the circle ``|z - center| = radius``.

        With :math:`M_k = \frac{1}{2\pi i}\oint (z - c)^k m(z)\,dz = -\sum w_j(a_j - c)^k` over the poles
        :math:`a_j` inside: the mass :math:`-M_0`, the location :math:`c + M_1/M_0`, and the variance
        :math:`M_2/M_0 - (M_1/M_0)^2`, which vanishes for one pole (checked: two poles, or a bulk, inside the
        circle raise, and so does a support that reaches the circle).  The trapezoid rule on :math:`N`
        nodes, :math:`N` doubled (the old nodes kept) until two estimates agree to the working precision.
        """
        values, singular = self.stieltjes(np.array([center - radius, center + radius]))
        if np.any((_densities(values, None) > 0) | singular):
            raise ConvergenceError(
                f"the support reaches the circle of radius {float(radius):.3g} around {float(center)!r} that should "
                f"enclose one atom: a bulk narrower than the scan's spacing; increase resolution."
            )
        digits = 15 if dps is None else dps + 2
        previous, values, count = None, [], 16
        while count <= 4096:
            count *= 2
            with precision.digits(digits + 15) as context:
                half = count // 2
                nodes = [context.convert(center) + context.convert(radius) * context.expjpi(2 * context.mpf(k) / count)
                         for k in range(half + 1)]
                nodes[0], nodes[half] = context.re(nodes[0]), context.re(nodes[half])  # in the gaps
                fresh = map(context.convert, self._on_circle(nodes[1::2] if values else nodes, dps))
                values = [values[k // 2] if values and k % 2 == 0 else next(fresh) for k in range(half + 1)]
                # the nodes below the axis are the conjugates of those above: (1/N) sum over the circle of
                # m(z) (z - c)^(k+1) is the real part of the sum over the top, the inner nodes counted twice
                weights = [1] + [2] * (half - 1) + [1]
                zeroth, first, second = (
                    sum(w * context.re(v * (z - center) ** (k + 1)) for w, v, z in zip(weights, values, nodes)) / count
                    for k in range(3)
                )
                mass, offset = -zeroth, first / zeroth
                location, variance = center + offset, second / zeroth - offset**2
                if previous is not None and abs(mass - previous[1]) <= 10**-digits and abs(
                    location - previous[0]
                ) <= 10**-digits * (1 + abs(location)):
                    if abs(variance) > SINGLE_POLE * radius**2:
                        raise ConvergenceError(
                            f"the circle of radius {float(radius):.3g} around {float(center)!r} holds mass "
                            f"{float(mass)!r} spread over a width {float(context.sqrt(abs(variance))):.3g}, not one "
                            f"atom: several atoms or a bulk narrower than the scan's spacing; increase resolution."
                        )
                    return _precise(location, dps), _precise(mass, dps)
            previous = (location, mass)
        raise ConvergenceError(
            f"the mass of the atom near {float(center)!r} did not converge with {count} nodes: part of the support "
            f"lies next to the circle of radius {float(radius):.3g} around it (a bulk narrower than the scan's "
            f"spacing); increase resolution."
        )

    def _on_circle(self, nodes: list, dps: int | None) -> list:
        """:math:`m` at nodes in the closed upper half plane (the real ones lie in gaps)."""
        floats = np.array([complex(v) for v in nodes])
        start = {self.z: floats.real + 1j * (floats.imag + _heights(floats.real))}
        if dps is None:
            subs, points, digits = _float_subs(self.subs), floats, None
        else:
            subs, points, digits = self.subs, np.array(nodes, dtype=object), dps + 5
        return list(trace_limit(self.resolvent, self.dims, {**subs, self.z: points}, dps=digits, path_from=start))

    # ---------------------------------------------------------------- bulks

    def bulks(self, intervals: list, x: np.ndarray, densities: np.ndarray, dps: int | None) -> tuple[tuple, list]:
        """The bulks between the scan's edges with their masses and first moments (:meth:`bulk_moments`).  A
        bulk whose quadrature has not converged at 512 nodes may hold a gap narrower than the scan's spacing
        (the density is not smooth there): :meth:`hidden_gap` looks for it, and the two bulks on either side
        are integrated instead; else the density is smooth but sharply peaked (a pole of its continuation
        close to the bulk, e.g. an atom next to an edge), and the quadrature goes on to 4096 nodes."""
        found, moments = [], []
        while intervals:
            lower, upper = intervals.pop(0)
            estimate, converged = self.bulk_moments(float(lower), float(upper), QUADRATURE_ORDERS[0])
            if not converged:
                gap = self.hidden_gap(float(lower), float(upper), x, densities, dps)
                if gap is not None:
                    intervals[:0] = [(lower, gap[0]), (gap[1], upper)]
                    continue
                estimate, _ = self.bulk_moments(float(lower), float(upper), QUADRATURE_ORDERS[1], estimate)
            found.append((lower, upper))
            moments.append((float(estimate[0]), float(estimate[1])))
        return tuple(found), moments

    def hidden_gap(self, lower: float, upper: float, x: np.ndarray, densities: np.ndarray, dps: int | None):
        r"""The edges ``(left, right)`` of a gap inside ``(lower, upper)`` narrower than the scan's spacing, or
        ``None``.  The density vanishes like a square root at both its edges, so the scan point next to it is a
        local minimum of the density: around each such minimum (lowest first) the density is sampled on
        :data:`GAP_SAMPLES` points between its neighbours, then again around the lowest sample, until a sample is
        outside the support (a gap, its edges then located by :meth:`edge`) or the minimum stops falling (a
        smooth minimum of the density: no gap)."""
        inner = np.flatnonzero((x > lower) & (x < upper))
        candidates = [k for k in inner[1:-1] if densities[k] <= min(densities[k - 1], densities[k + 1])]
        for k in sorted(candidates, key=lambda k: densities[k]):
            left, right, lowest = x[k - 1], x[k + 1], densities[k]
            for _ in range(12):
                points = np.linspace(left, right, GAP_SAMPLES)
                values, singular = self.stieltjes(points)
                density = np.where(singular, 0.0, _densities(values, None))
                outside = np.flatnonzero(density == 0)
                if outside.size:  # never at an end: those are inside points
                    first, last = outside[0], outside[-1]
                    return self.edge(points[first], points[first - 1], dps), self.edge(points[last], points[last + 1], dps)
                best = int(np.argmin(density))
                if density[best] > 0.9 * lowest:
                    break
                lowest = density[best]
                left, right = points[max(best - 1, 0)], points[min(best + 1, GAP_SAMPLES - 1)]
        return None

    def bulk_moments(self, lower: float, upper: float, orders: tuple, previous=None) -> tuple:
        r"""The mass and the first moment of the density over ``[lower, upper]`` (an array), and whether the
        quadrature converged: Gauss-Legendre in :math:`\theta` at each of ``orders`` in turn, until two
        successive estimates of the mass (the first against ``previous``, if given) agree to
        :data:`QUADRATURE_TOLERANCE`.  The nodes are inside the bulk, at a relative distance of at least
        ~1e-7 (4096 nodes) from an edge, where the float density is still correct to ~1e-9 relatively and
        the weights are below 1e-6: the engine's float solution suffices (no solve at higher precision next
        to the edges)."""

        def integrand(theta):
            x = lower + (upper - lower) * (1 - np.cos(theta)) / 2
            values, _ = _boundary_values(self.resolvent, self.dims, self.z, self.subs, x, None)
            density = _densities(values, None) * (upper - lower) * np.sin(theta) / 2
            return np.array([density, x * density])

        for order in orders:
            estimate, _ = scipy.integrate.fixed_quad(integrand, 0, np.pi, n=order)
            if previous is not None and abs(estimate[0] - previous[0]) <= QUADRATURE_TOLERANCE:
                return estimate, True
            previous = estimate
        return previous, False
