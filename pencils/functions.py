r"""Functions of self-adjoint random matrices in traces, as Cauchy integrals of resolvents.

(Why one module of some 700 lines: the contours, their node counts and the grid of resolvent
traces they need are one computation, refined together until the two estimates agree, and are
not used apart.)

For :math:`f` analytic on a neighbourhood of the spectrum of a self-adjoint
:math:`H`,

.. math::  f(H) = \frac{1}{2\pi i}\oint_\Gamma f(z)\,(z - H)^{-1}\,dz
                = -\frac{1}{2\pi i}\oint_\Gamma f(z)\,(H - zI)^{-1}\,dz,

with :math:`\Gamma` around the spectrum (:func:`pencils.spectrum`): one contour
per part of it, an ellipse with foci at the edges of each bulk
(:math:`z = c + h\cosh(\rho + i\theta)`, :math:`\rho \le` :data:`WIDEST`, at most
half the :math:`\rho` of the nearest other part) and a circle around each atom
of 1/32 of its distance to the other parts (an atom within the reach of a bulk's
widest contour is enclosed with the bulk, :func:`_parts`).  A function without poles (an exponential
filter whose poles cancel, :func:`_plans`) has nothing to keep out between the parts: one ellipse with
foci at the lowest and the highest point of the spectrum, atoms included, replaces them: in floats as wide
as its growth off the real axis allows, in arbitrary precision of the width and first node count with which
a model of the trapezoid error reaches the tolerance at the fewest nodes (:func:`_entire_contour`).  A trace
with :math:`k` occurrences
:math:`f_1(H_1), \dots, f_k(H_k)` becomes the :math:`k`-fold integral of a trace
of :math:`k` resolvents :math:`(H_j - z_jI)^{-1}`; the trapezoid rule in
:math:`\theta` (geometric convergence for a periodic analytic integrand) puts
the :math:`z_j` on a tensor grid of nodes, all solved in one batch by
:func:`pencils.limit`, and the values are contracted with the weights
:math:`-f_j(z_j)\,z_j'(\theta)/(iN)`.  The resolvent traces do not depend on the
parameters of the :math:`f_j`, so every value of those (all the times of a
curve) reuses the same solves, kept in memory and in the disk cache
(:mod:`pencils.cache`) for later processes.  The integrand is conjugate-symmetric
(:math:`f_j` real on the real axis, :math:`\overline{\tau(z)} = \tau(\bar z)`),
so the first occurrence only needs the nodes in the closed upper half plane; when
two occurrences share a spectrum and the trace is unchanged by exchanging them
(:math:`\operatorname{tr} A R(z_1) B R(z_2)` with symmetric :math:`A, B`), one point
per orbit under exchange and conjugation is solved (:func:`_orbits`).
The quadrature error is estimated from the changes between :math:`N/4`, :math:`N/2` and
:math:`N` nodes per contour (:func:`_converge`); :math:`N` doubles (from 16, or the first count
of the ellipse of a function without poles) until it is below the working accuracy, and the traces
at the nodes shared with :math:`N/2` are not solved again.

Long times.  On an ellipse, :math:`e^{-sz}` oscillates about :math:`s\,w` times
(:math:`w` the width of the spectrum), so the nodes needed grow like :math:`s`.
A function that splits as :math:`f(z) = r(z) + \sum_l q_l(z)e^{-s_lz}` with
:math:`r, q_l` rational (:func:`_split`, e.g. the gradient-flow filter
:math:`(1 - e^{-\tau(z + \lambda)})/(z + \lambda)`), whose poles are real and left of
the spectrum, is integrated in two parts once :math:`s_l w \ge` :data:`LONG_TIME`:
the exponential part on a hyperbola that wraps the spectrum from the left and
opens to the right, where :math:`e^{-sz}` decays (:func:`_hyperbola`, one for each
decade of :math:`s`, so that all the times of a decade share its solves), and
the rational part, for which the integral around the spectrum equals minus the
integrals around the poles of :math:`r` (plus one around everything when
:math:`r \ne O(1/z)`), on small circles.  Atoms left of the hyperbola get
circles of their own (with any pole closer than :math:`1/s`, so that the two
parts do not cancel there).  The poles of the two parts cancel in :math:`f`, so
their integrals add up to that of :math:`f`.  The same :math:`N` against
:math:`N/2` estimate applies (:math:`N` nodes per circle, :math:`2N + 1` on the
hyperbola).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Mapping

import mpmath
import numpy as np
import sympy

from .arguments import as_sympy, resolve_keys
from . import derivations, precision
from .derivations import dims_key, subs_key
from .errors import ConvergenceError, ParameterError, UnsupportedOperationError
from .spectra import spectrum
from .trace_limits import rational_limit

__all__ = ["MatrixFunction", "function_limit"]

#: Debug records: each grid of resolvent solves (:func:`_solve_grid`) and the node count at which each integral stops
#: (:func:`_converge`).
_logger = logging.getLogger(__name__)

#: The widest contour around a bulk, as its Bernstein parameter :math:`\rho` (:math:`\cosh\rho = 1.03`): close to the
#: bulk, so that a function growing off the real axis (:math:`e^{-tz}` at large :math:`t`) stays small on it.
WIDEST = 0.25
#: The widest ellipse around the spectrum for a function without poles (:func:`_entire_contour`), as its :math:`\rho`.
WIDEST_ENTIRE = 2.0
#: An exponential factor :math:`e^{-sz}` of a function is integrated on a hyperbola (:func:`_hyperbola`) when
#: :math:`s` times the width :math:`w` of the spectrum reaches this: an ellipse needs of order :math:`sw/2` nodes,
#: and the estimate from N/2 of them twice that.  Measured on a two-occurrence DSM trace: from :math:`sw \approx 64`
#: on, the ellipses converge at N = 256 (a grid of 33,000 points, 11 s), the hyperbola of a whole decade of rates at
#: N = 48 (97 nodes: a grid of 4850 points, 3 s); at 1000 the ellipses needed more than 1024 nodes.
LONG_TIME = 200.0
#: The largest factor :math:`e^{s\mu(1 - \sin\alpha_-)}` by which :func:`_hyperbola` lets the integrand grow
#: left of the spectrum in floating point (rounding errors of the resolvents are amplified by it).
GROWTH = 5.0


class MatrixFunction(sympy.MatrixExpr):
    r"""The matrix :math:`f(H)` for a :class:`sympy.Lambda` ``f`` of one variable and a self-adjoint ``H``.

    ``f`` must be analytic on a neighbourhood of the spectrum of ``H`` and real
    on the real axis; its other symbols are parameters (``t`` in
    :math:`x \mapsto e^{-tx}`), which may take arrays of values in
    :func:`pencils.limit`.

    Examples
    --------
    :math:`\operatorname{tr} e^{-S}/d` for a Marchenko-Pastur matrix (:math:`d = n/2`),
    against the quadrature of :math:`e^{-x}` with its closed-form density
    :math:`\sqrt{(b - x)(x - a)}/(\pi x)`:

    >>> import mpmath, sympy
    >>> from pencils import Gaussian, MatrixFunction, limit
    >>> n, d, x = sympy.symbols("n d x")
    >>> X = Gaussian("X", n, d)
    >>> S = X.T * X / n
    >>> value = limit(sympy.Trace(MatrixFunction(sympy.Lambda(x, sympy.exp(-x)), S)) / d, {n: 2 * d})
    >>> round(value, 12)
    0.452510166119
    >>> a, b = (1 - mpmath.sqrt(0.5)) ** 2, (1 + mpmath.sqrt(0.5)) ** 2
    >>> closed = mpmath.quad(lambda y: mpmath.exp(-y) * mpmath.sqrt((b - y) * (y - a)) / (mpmath.pi * y), [a, b])
    >>> abs(value - closed) < 1e-13
    True
    """

    def __new__(cls, function, argument):
        if not isinstance(function, sympy.Lambda) or len(function.variables) != 1:
            raise ParameterError(f"MatrixFunction needs a sympy.Lambda of one variable, e.g. Lambda(x, exp(-t*x)); got {function}.")
        if not getattr(argument, "is_Matrix", False) or argument.shape[0] != argument.shape[1]:
            raise ParameterError(f"MatrixFunction needs a square (self-adjoint) matrix expression; got {argument}.")
        return super().__new__(cls, function, argument)

    @property
    def function(self) -> sympy.Lambda:
        return self.args[0]

    @property
    def argument(self) -> sympy.MatrixExpr:
        return self.args[1]

    @property
    def shape(self) -> tuple:
        return self.argument.shape

    def _eval_transpose(self):
        return self  # f real and H self-adjoint


@dataclass(frozen=True)
class _Contour:
    r"""Nodes ``z`` and ``dz``, the derivative of ``z`` in the parameter times the step over :math:`2\pi` (signed by
    the orientation), so that the weight of a node is :math:`-f(z)\,dz/i`; ``upper`` marks the nodes in the closed
    upper half plane, ``doubled`` those of them whose conjugate is another node, ``conjugate`` the index of the
    node at the conjugate point and ``piece`` which part of the function the node integrates (:data:`WHOLE`, or
    :data:`RATIONAL` and :data:`EXPONENTIAL` of a :class:`_Split`)."""

    z: np.ndarray
    dz: np.ndarray
    upper: np.ndarray
    doubled: np.ndarray
    conjugate: np.ndarray
    piece: np.ndarray


#: The parts of a function integrated by a node (:attr:`_Contour.piece`).
WHOLE, RATIONAL, EXPONENTIAL = 0, 1, 2


def _contour(found, plan: tuple, count: int, multiprecision: bool) -> _Contour:
    """The nodes for one occurrence: ellipses and circles around the parts of ``found`` (a Spectrum) for the
    plan ``("whole",)``, one ellipse of parameter ``rho`` around the whole spectrum (:func:`_span`) for
    ``("whole", rho, first)`` (a function without poles, :func:`_plans`; ``first`` is its first node count), or
    for ``("split", poles, atoms, lowest, rates)`` circles around the poles of the rational part, and for the
    exponential part circles around the ``atoms`` and a hyperbola from ``lowest`` (:func:`_hyperbola`);
    ``count`` nodes per closed part, ``2 count + 1`` on the hyperbola."""
    pieces = []
    if plan[0] == "whole" and len(plan) > 1:
        # nothing to keep out between the parts: one ellipse with foci at the ends of the spectrum, of parameter
        # plan[1], instead of per-part contours squeezed by their neighbours (an atom next to a bulk)
        lowest, highest = _span(found)
        pieces.append(_ellipse((lowest + highest) / 2, (highest - lowest) / 2, plan[1], count, multiprecision)
                      + (WHOLE,))
    elif plan[0] == "whole":
        parts = _parts(found)
        landmarks = np.array([e for _, a, b in parts for e in (a, b)])
        for kind, a, b in parts:
            others = np.array([q for q in landmarks if q < a or q > b])
            if kind == "bulk":
                half, center = (b - a) / 2, (a + b) / 2
                nearest = np.min(np.abs(others - center)) / half if others.size else np.inf
                rho = min(WIDEST, np.arccosh(nearest) / 2) if np.isfinite(nearest) else WIDEST
                pieces.append(_ellipse(center, half, rho, count, multiprecision) + (WHOLE,))
            else:
                # a pole plus a part analytic up to the nearest other landmark: a small circle converges as
                # 32^-N and keeps a function that grows off the real axis small on it
                radius = np.min(np.abs(others - a)) / 32 if others.size else (1 + abs(a)) / 32
                pieces.append(_circle(a, radius, count, multiprecision, 1) + (WHOLE,))
    else:
        _, poles, atoms, lowest, rates, outer = plan
        if outer:  # r(z) R(z) is not O(1/z^2): its integral around everything, minus those around the poles
            pieces.append(_circle(*outer, count, multiprecision, 1) + (RATIONAL,))
        for centre, radius, has_atom in _clusters(poles, atoms, lowest, rates[1]):
            # around the atoms, the exponential part; around poles alone, minus the rational part (module notes)
            pieces.append(_circle(centre, radius, count, multiprecision, 1 if has_atom else -1)
                          + (EXPONENTIAL if has_atom else RATIONAL,))
        pieces.append(_hyperbola(lowest, lowest - max(poles + atoms, default=-np.inf), rates, count, multiprecision)
                      + (EXPONENTIAL,))
    z, dz, conjugate, piece = [], [], [], []
    for nodes, derivatives, pairs, kind in pieces:
        conjugate.extend(len(z) + pairs)
        z.extend(nodes)
        dz.extend(derivatives)
        piece.extend([kind] * len(nodes))
    conjugate = np.array(conjugate)
    z = np.array(z, dtype=object if multiprecision else complex)
    dz = np.array(dz, dtype=object if multiprecision else complex)
    real = conjugate == np.arange(len(z))
    for index in np.flatnonzero(real):  # nodes on the real axis (in gaps) are exactly real
        z[index] = z[index].real
    upper = real | (np.array([float(value.imag) for value in z]) > 0)
    if multiprecision:  # cached (_grid) and shared between threads
        z, dz = (np.frompyfunc(precision.public, 1, 1)(nodes) for nodes in (z, dz))
    return _Contour(z, dz, upper, upper & ~real, conjugate, np.array(piece))


def _ellipse(center, half, rho, count, multiprecision):
    r"""``count`` trapezoid nodes of :math:`c + h\cosh(\rho + i\theta)` (counter-clockwise), their ``dz`` and the
    index of each node's conjugate."""
    context = precision.context()
    number, exp = (context.mpf, context.exp) if multiprecision else (float, np.exp)
    z, dz = [], []
    for k in range(count):
        angle = 2 * context.pi * k / count if multiprecision else 2 * np.pi * k / count
        w = context.mpc(rho, angle) if multiprecision else complex(rho, angle)
        z.append(number(center) + number(half) * (exp(w) + exp(-w)) / 2)
        dz.append(1j * number(half) * (exp(w) - exp(-w)) / (2 * count))
    return z, dz, (-np.arange(count)) % count


def _circle(center, radius, count, multiprecision, orientation):
    """``count`` trapezoid nodes of a circle (``orientation`` 1: counter-clockwise, -1: clockwise), their ``dz``
    and the index of each node's conjugate."""
    context = precision.context()
    number, exp = (context.mpf, context.exp) if multiprecision else (float, np.exp)
    z, dz = [], []
    for k in range(count):
        angle = 2 * context.pi * k / count if multiprecision else 2 * np.pi * k / count
        point = number(radius) * exp(context.mpc(0, angle) if multiprecision else 1j * angle)
        z.append(number(center) + point)
        dz.append(orientation * 1j * point / count)
    return z, dz, (-np.arange(count)) % count


def _parts(found) -> list:
    """The contour parts ``(kind, lower, upper)`` of a Spectrum: one per bulk and per atom, except that an
    atom closer to a bulk than the bulk's widest contour reaches (``half (cosh WIDEST - 1)`` beyond an
    edge) is enclosed with it, by a bulk contour whose foci are the atom and the far edge: a separate
    small circle would squeeze the bulk's contour onto its edge (very slow convergence), while the merged
    contour stays inside the neighbourhood of the spectrum that the bulk's contour would cover anyway."""
    bulks = [[float(a), float(b)] for a, b in found.intervals]
    atoms = []
    for location, _ in found.atoms:
        x = float(location)
        reach = [(b - a) / 2 * (np.cosh(WIDEST) - 1) for a, b in bulks]
        near = [i for i, (a, b) in enumerate(bulks) if a - reach[i] <= x <= b + reach[i]]
        if near:
            bulk = bulks[near[0]]
            bulk[0], bulk[1] = min(bulk[0], x), max(bulk[1], x)
        else:
            atoms.append(x)
    return [("bulk", a, b) for a, b in bulks] + [("atom", x, x) for x in atoms]


def _span(found) -> tuple:
    """The lowest and the highest point of a Spectrum with at least one bulk (bulk edges and atoms)."""
    points = [float(e) for interval in found.intervals for e in interval] + [float(x) for x, _ in found.atoms]
    return min(points), max(points)


def _occurrences(expr, counter: list):
    """``expr`` with every occurrence of a MatrixFunction replaced by ``(H - z_j I)^{-1}``, a fresh ``z_j`` each."""
    if isinstance(expr, MatrixFunction):
        z = sympy.Symbol(f"zeta_{len(counter)}")
        counter.append((expr, z))
        return (expr.argument - z * sympy.Identity(expr.shape[0])).I
    if isinstance(expr, (sympy.Lambda,)) or not expr.args:
        return expr
    if isinstance(expr, sympy.MatPow) and expr.base.has(MatrixFunction):  # f(H)^k (f(H) f(H) in SymPy): k occurrences
        if not (expr.exp.is_Integer and expr.exp > 0):
            raise UnsupportedOperationError(f"{expr}: only positive integer powers of a MatrixFunction are supported.")
        return sympy.MatMul(*[_occurrences(expr.base, counter) for _ in range(int(expr.exp))])
    return expr.func(*[_occurrences(arg, counter) for arg in expr.args])


def function_limit(quantity, dims: Mapping, subs: Mapping | None = None, dps: int | None = None):
    r"""The limit of a scalar quantity whose traces contain :class:`MatrixFunction` occurrences.

    Each trace with occurrences is the Cauchy integral described in the module
    notes; its value replaces it and the rest of the quantity goes to
    :func:`pencils.limit`.  :func:`pencils.limit` calls this for such quantities.

    Parameters
    ----------
    quantity : sympy.Expr
        A scalar expression of traces (and the other forms :func:`pencils.limit` takes).
    dims, subs, dps
        As in :func:`pencils.limit`.  Arrays are allowed only for parameters of the
        functions (they broadcast together); every other value is a scalar.

    Raises
    ------
    ConvergenceError
        If doubling the nodes up to 1024 per contour (512 in arbitrary precision) does not
        reach the working accuracy: the function grows too fast off the real axis for the
        contour, or is not analytic next to the spectrum.
    """
    quantity = as_sympy(quantity, "quantity")
    symbols = quantity.free_symbols | set().union(*(as_sympy(v, "dims").free_symbols for v in dims.values()))
    subs = resolve_keys(subs, symbols | set().union(*(f.free_symbols for f in quantity.atoms(MatrixFunction))), "subs")
    traces = sorted((t for t in quantity.atoms(sympy.Trace) if t.has(MatrixFunction)), key=sympy.default_sort_key)
    if quantity.xreplace({t: sympy.Dummy() for t in traces}).has(MatrixFunction):
        raise UnsupportedOperationError(f"a MatrixFunction in {quantity} is outside a trace; put it inside sympy.Trace.")
    replacements, values = {}, {}
    for index, trace in enumerate(traces):
        counter: list = []
        resolvents = _occurrences(trace.arg, counter)
        rows = trace.arg.shape[0]
        placeholder = sympy.Symbol(f"function_trace_{index}")
        values[placeholder] = _integral(sympy.Trace(resolvents) / rows, counter, dims, subs, dps, spectrum)
        replacements[trace] = rows * placeholder
    return rational_limit(quantity.xreplace(replacements), dims, {**subs, **values}, dps)


def _integral(normalised_trace, occurrences: list, dims, subs: dict, dps, spectrum):
    """The k-fold contour integral of one normalised trace of resolvents (see the module notes), an array over
    the broadcast values of the functions' parameters; each value uses the plan of :func:`_plans`."""
    function_symbols = set().union(*(f.function.free_symbols for f, _ in occurrences))
    scalar_subs = {key: value for key, value in subs.items() if key not in function_symbols}
    for key, value in scalar_subs.items():
        if np.ndim(value):
            raise ParameterError(
                f"{key} has an array of values; only the parameters of the functions in a MatrixFunction "
                f"({', '.join(sorted(map(str, function_symbols))) or 'none here'}) may be arrays."
            )
    spectra = tuple(spectrum(f.argument, dims, scalar_subs) for f, _ in occurrences)
    missing = sorted(str(symbol) for symbol in function_symbols if symbol not in subs)
    if missing:
        raise ParameterError(f"no value given for {', '.join(missing)}, a parameter of a MatrixFunction.")
    shape = np.broadcast_shapes(*(np.shape(subs[symbol]) for symbol in function_symbols))
    flat_subs = {**subs, **{symbol: np.broadcast_to(np.asarray(subs[symbol], dtype=object if dps else None),
                                                    shape).reshape(-1) for symbol in function_symbols}}
    values = np.empty(int(np.prod(shape)), dtype=object if dps is not None else float)
    for plans, points in _plans(occurrences, spectra, flat_subs, values.size, dps).items():
        group_subs = {**flat_subs, **{symbol: flat_subs[symbol][points] for symbol in function_symbols}}
        values[points] = _converge(normalised_trace, occurrences, spectra, plans, dims, scalar_subs, group_subs, dps)
    return values.reshape(shape) if shape else values[0]


#: The fewest nodes per contour part: :func:`_converge` starts there and doubles (except on the ellipse of a function
#: without poles, whose first count :func:`_entire_contour` chooses with its width).
FEWEST = 16


def _limits(dps) -> tuple:
    """The digits of the tolerance of :func:`_converge` (``dps``, or 12 in floats) and the most nodes per contour
    part it tries (512 in arbitrary precision, 1024 in floats)."""
    return (12, 1024) if dps is None else (dps, 512)


def _fewest(plans: tuple) -> int:
    """The first node count of :func:`_converge` for ``plans``: the largest first count of their ellipses for functions
    without poles (:func:`_entire_contour`), else :data:`FEWEST`."""
    return max((plan[2] for plan in plans if plan[0] == "whole" and len(plan) > 1), default=FEWEST)


def _converge(normalised_trace, occurrences, spectra, plans, dims, scalar_subs, subs, dps):
    r"""The trapezoid rule with :math:`N` nodes per contour part, :math:`N` doubling from :data:`FEWEST` (or the
    first count of an ellipse for a function without poles, :func:`_fewest`) until the estimated error of the
    last value is below the tolerance (:math:`10^{-12}`, or :math:`10^{-\rm dps}`), relative to :math:`1 +` its
    size.

    The error estimate.  For an integrand analytic in a strip :math:`|\operatorname{Im}\theta| < a` of the
    contour's parameter, the trapezoid error decays geometrically, :math:`e(N) \approx C r^N` with
    :math:`r = e^{-a}`; the difference :math:`d_N = |T_N - T_{N/2}|` is then :math:`e(N/2)(1 + O(r^{N/2}))`,
    and successive differences shrink like squares, :math:`d_N \approx d_{N/2}^2/C`.  The estimate used is
    weaker than that: with :math:`q = d_N/d_{N/2} < 1/2`, the differences are assumed to go on shrinking at
    least by the factor :math:`q` at each doubling, so that
    :math:`e(N) \le \sum_{j \ge 1} d_{2^jN} \le d_N\,q/(1 - q)`; in the geometric regime the true error,
    :math:`d_N q^2`, is smaller by a further factor :math:`q`.  This stops as soon as
    :math:`d_N \lesssim \sqrt{\epsilon\,d_{N/2}}` (:math:`\epsilon` the tolerance) instead of
    :math:`d_N \le \epsilon`, one doubling (the costliest) earlier; without two shrinking differences the
    estimate is :math:`d_N` itself.  The nodes for :math:`N/2` are among those for :math:`N` on ellipses and
    circles (every other one), whose resolvent traces :func:`_grid` therefore solves only once; the rounding
    errors of the traces are kept below the tolerance by the guard digits of :func:`_solve_grid`.
    """
    multiprecision = dps is not None
    digits, largest = _limits(dps)
    tolerance = precision.context().mpf(10) ** -digits if multiprecision else 10.0**-digits
    previous, difference, count = None, None, _fewest(plans)
    while count <= largest:
        with precision.working(dps) if multiprecision else contextlib.nullcontext():
            value = _trapezoid(normalised_trace, occurrences, spectra, plans, count, dims, scalar_subs, subs, dps)
            if previous is not None:
                change = np.max(np.abs(np.asarray(value - previous, dtype=complex if not multiprecision else object)))
                scale = 1 + np.max(np.abs(np.asarray(value, dtype=object if multiprecision else float)))
                shrink = change / difference if difference else 1
                error = change * shrink / (1 - shrink) if shrink < 0.5 else change
                if error <= tolerance * scale:
                    _logger.debug("contour integral with %d occurrence(s) on %s: stopped at N = %d (estimated "
                                  "error %s)", len(occurrences), plans, count, mpmath.nstr(error, 3))
                    return np.frompyfunc(precision.public, 1, 1)(value) if multiprecision else value
                difference = change
        previous, count = value, 2 * count
    raise ConvergenceError(
        f"the contour integral of {normalised_trace} did not converge with {largest} nodes per contour "
        f"(the change from {largest // 2} was {float(change):.1e}); the function grows too fast off the real axis "
        f"or is not analytic next to the spectrum."
    )


@dataclass(frozen=True)
class _Split:
    r"""A function written :math:`f(z) = r(z) + \sum_l q_l(z)\,e^{-s_lz}` with :math:`r, q_l` rational in
    :math:`z` and the rates :math:`s_l` free of it: ``rational`` is :math:`r`, ``exponential`` the sum,
    ``rates`` the :math:`s_l`, ``denominators`` the polynomials in :math:`z` whose roots are the poles of
    :math:`r` and the :math:`q_l`, and ``polynomial`` whether :math:`r` is not :math:`O(1/z)` at infinity."""

    rational: sympy.Expr
    exponential: sympy.Expr
    rates: tuple
    denominators: tuple
    polynomial: bool


@lru_cache(maxsize=64)
def _split(function: sympy.Lambda) -> _Split | None:
    """:class:`_Split` of ``function``, or None if it has no such form with :math:`r = O(1/z)` at infinity."""
    variable = function.variables[0]
    rational, exponential, rates, denominators = [], [], [], []
    try:
        for term in sympy.Add.make_args(sympy.expand(function.expr.rewrite(sympy.exp), power_exp=False)):
            term = sympy.powsimp(term, combine="exp")
            factors = [f for f in sympy.Mul.make_args(term) if isinstance(f, sympy.exp) and f.has(variable)]
            exponent = sympy.Add(*(factor.exp for factor in factors))
            numerator, denominator = sympy.fraction(sympy.together(term.xreplace({f: 1 for f in factors})))
            numerator, denominator = sympy.Poly(numerator, variable), sympy.Poly(denominator, variable)
            if sympy.Poly(exponent, variable).degree() > 1:
                return None
            rate = -sympy.diff(exponent, variable)
            if rate.has(sympy.I):
                return None  # an oscillating factor (cos z): no decay to the right
            if rate == 0:
                rational.append(term)
            else:
                exponential.append(term)
                rates.append(rate)
            if denominator.degree() > 0:
                denominators.append(denominator.as_expr())
    except sympy.PolynomialError:
        return None
    if not exponential:
        return None
    numerator, denominator = sympy.fraction(sympy.together(sympy.Add(*rational)))
    return _Split(sympy.Add(*rational), sympy.Add(*exponential), tuple(dict.fromkeys(rates)),
                  tuple(dict.fromkeys(denominators)),
                  bool(rational) and sympy.degree(numerator, variable) >= sympy.degree(denominator, variable))


def _plans(occurrences, spectra, subs: dict, size: int, dps: int | None = None) -> dict:
    r"""The contour plan of each occurrence at each of ``size`` parameter points, as ``{plans: points}``.

    The plan ``("whole",)`` integrates the whole function on ellipses and circles around the spectrum.  An
    :math:`f = r + \sum_l q_le^{-s_lz}` (:func:`_split`) with all its poles real and left of the spectrum and
    :math:`s_l\,w \ge` :data:`LONG_TIME` for the smallest rate (:math:`w` the width of the spectrum) has
    the plan ``("split", poles, rates)``: the exponential part on a hyperbola designed for the rates of a
    decade of the largest rate (the same nodes for every time of that decade, in any call), the rational part
    around its poles.  A shorter time of such an :math:`f` whose poles all cancel (as that of the
    gradient-flow filter at :math:`-\lambda`, :func:`_removable`), or that has no poles at all, has the plan
    ``("whole", rho, first)``: one ellipse around the whole spectrum, atoms included, of the width and first node
    count chosen by :func:`_entire_contour` (per-part contours would have to pass between an atom and a nearby
    bulk, squeezed onto both).
    """
    plans = [[("whole",)] * len(occurrences) for _ in range(size)]
    for index, ((matrix_function, _), found) in enumerate(zip(occurrences, spectra)):
        split = _split(matrix_function.function)
        if split is None or not found.intervals:
            continue
        parameters = sorted(matrix_function.function.free_symbols, key=str)
        variable = matrix_function.function.variables[0]

        def evaluate(expression):
            compiled = sympy.lambdify(parameters, expression, modules="numpy")
            values = [np.asarray(np.broadcast_to(subs[p], (size,)) if np.ndim(subs[p]) else subs[p], dtype=float)
                      for p in parameters]
            return np.broadcast_to(np.asarray(compiled(*values), dtype=complex), (size,))

        symbols = set().union(*(d.free_symbols for d in split.denominators)) - {variable}
        fixed = {symbol: np.ravel(subs[symbol]) for symbol in symbols}
        if any(any(value != values[0] for value in values) for values in fixed.values()):
            continue  # poles that move from point to point
        poles = _poles(split, variable, {symbol: values[0] for symbol, values in fixed.items()})
        anchor = None if poles is None else _anchor(found, poles)
        if anchor is None:
            continue
        atoms, lowest = anchor
        highest = max(float(b) for _, b in found.intervals)
        leftmost = min([lowest] + list(poles) + list(atoms))
        outer = ((leftmost + highest) / 2, highest - leftmost + 1) if split.polynomial else None
        rates = np.array([evaluate(rate) for rate in split.rates])  # (rates, points)
        long = np.all(rates.imag == 0, axis=0) & np.all(rates.real * (highest - lowest) >= LONG_TIME, axis=0)
        rates = rates.real
        short = np.flatnonzero(~long & np.all(rates >= 0, axis=0))
        if short.size and _removable(matrix_function.function, poles, subs, short):
            left, right = _span(found)
            for point in short:
                plans[point][index] = ("whole", *_entire_contour(rates[:, point].max(), right - left, dps))
        for point in np.flatnonzero(long):
            decade = math.floor(math.log10(rates[:, point].max()))
            low = 10.0**decade * 2.0 ** -math.ceil(math.log2(rates[:, point].max() / rates[:, point].min()))
            plans[point][index] = ("split", tuple(poles), atoms, lowest, (low, 10.0 ** (decade + 1)), outer)
    groups: dict = {}
    for point in range(size):
        groups.setdefault(tuple(plans[point]), []).append(point)
    return {key: np.array(points) for key, points in groups.items()}


def _entire_contour(rate: float, width: float, dps: int | None) -> tuple:
    r"""The :math:`\rho` and the first node count :math:`N_0` of the ellipse around a spectrum of width ``width`` for a
    function without poles whose exponential factors decay at most like :math:`e^{-sz}`, ``rate`` :math:`\ge s`,
    at the working precision ``dps`` (None: floats).

    :math:`e^{-sz}` may grow by at most :math:`e^{G}` on the ellipse itself, :math:`sh(\cosh\rho - 1) \le G`
    (:math:`h` = ``width``/2; :math:`G` = :data:`GROWTH` in floats, 30 with the guard digits of arbitrary
    precision: rounding errors of the traces are amplified by it).  The rate is rounded up to a power of 2, so
    that nearby times share their contours (and their solves).

    In floats the ellipse is the widest so allowed, up to :data:`WIDEST_ENTIRE`, from :data:`FEWEST` nodes: the
    tolerance is reached at 64 to 256 nodes (the curves of ``benchmarks/spectra.py``), and all the times of a curve whose rates are below
    :math:`G/(h(\cosh 2 - 1))` share one ellipse.  In arbitrary precision, where a two-occurrence grid of
    :math:`N^2/4` solves at :math:`N = 128` takes minutes, :math:`\rho` and :math:`N_0` are those with which
    the model of :func:`_entire_choice` stops at the fewest nodes, and the choice for the largest rate
    :math:`2^js` that stops at as few serves :math:`s` too (its contour fits the slower growth of
    :math:`e^{-sz}` as well), so that the times of a curve share the contours of a few rates.  Measured on the
    two-occurrence DSM gradient-flow trace at dps=30 (:math:`sh = 3.4`): :math:`\rho = 2` (the widest, the
    former rule) stops at :math:`N = 128` (about 4100 solves), and so do 1 and 1.5 from :math:`N_0 = 16`
    (the estimates at 64 are :math:`2\cdot10^{-25}` and :math:`3\cdot10^{-18}`); 1.15 (the choice) and 1.25 from
    20 stop at 80 (1640 solves), as the model says, with the same value to 35 digits.  The time of a solve
    does not depend on :math:`\rho` (0.06 to 0.08 s there at every :math:`\rho` from 0.25 to 2).  On
    :math:`\operatorname{tr} e^{-4S}e^{-4S}` of a Marchenko-Pastur :math:`S` (:math:`sh = 5.7`) the widest
    ellipse stops at 256, the choice (1.0 from 24) at 96."""
    rate = 2.0 ** math.ceil(math.log2(rate)) if rate > 0 else 0.0
    scale = rate * width / 2
    widest = _widest_entire(scale, 30.0 if dps is not None else GROWTH)
    if dps is None:
        return widest, FEWEST
    stop, rho, first = _entire_choice(scale, dps)
    if stop == math.inf:  # no contour reaches the tolerance in the model: the widest allowed
        return widest, FEWEST
    while scale > 0 and _entire_choice(2 * scale, dps)[0] == stop:
        scale = 2 * scale
        stop, rho, first = _entire_choice(scale, dps)
    return rho, first


def _widest_entire(scale: float, budget: float) -> float:
    r"""The widest :math:`\rho \le` :data:`WIDEST_ENTIRE` (and :math:`\ge` :data:`WIDEST`) with
    :math:`sh(\cosh\rho - 1) \le` ``budget`` for :math:`sh` = ``scale``."""
    rho = math.acosh(1 + budget / scale) if scale > 0 else WIDEST_ENTIRE
    return max(WIDEST, min(WIDEST_ENTIRE, rho))


@lru_cache(maxsize=256)
def _entire_choice(scale: float, dps: int) -> tuple:
    r"""``(N, rho, first)``: the ellipse (:math:`\rho` from :data:`WIDEST` to :func:`_widest_entire` in steps of
    0.05) and the first node count (from :data:`FIRST_COUNTS`) with which :func:`_converge` is modelled to stop
    at the fewest nodes :math:`N` for :math:`e^{-sz}`, :math:`sh` = ``scale``, at ``dps`` digits.

    The error model.  On the ellipse :math:`z = c + h\cosh(\rho + i\theta)` the integrand is analytic in
    :math:`\theta` up to the spectrum (:math:`\rho \to 0`) and grows like :math:`e^{sh(\cosh\rho' - 1)}` on the
    ellipse :math:`\rho' > \rho` (:math:`e^{-sz}` left of the spectrum, relative to its value at the lowest
    point).  The trapezoid error with :math:`N` nodes is therefore about :math:`e^{E(N)}`,

    .. math::  E(N) = \max\Bigl(-N\rho,\ \min_{\rho' \ge \rho}\bigl[sh(\cosh\rho' - 1) - N(\rho' - \rho)\bigr]\Bigr)

    (the minimum at :math:`\sinh\rho' = N/(sh)`): a wider ellipse shrinks the first term and enlarges the
    second.  :func:`_converge` stops at the first :math:`N = 2^jN_0` whose estimate :math:`d_Nq`
    (:math:`d_N \approx e^{E(N/2)}`, :math:`q = d_N/d_{N/2}`) is below the tolerance, and a grid of a trace with
    :math:`k` occurrences costs about :math:`N^k/4` solves.  The model is rough and one doubling too many
    quadruples a two-occurrence grid, so each :math:`\rho` is rated by the largest stop within
    :data:`ENTIRE_REACH` of it, and the middle of the best :math:`\rho` is taken.  The error of the value is
    still estimated by :func:`_converge`; the model only chooses the contour."""
    widths = np.arange(WIDEST, _widest_entire(scale, 30.0) + 1e-9, 0.05)
    reach = int(round(ENTIRE_REACH / 0.05))
    best = None
    for first in FIRST_COUNTS:
        stops = [_modelled_stop(first, rho, scale, dps) for rho in widths]
        for i in range(len(widths)):
            key = (max(stops[max(0, i - reach):i + reach + 1]), stops[i])
            if best is None or key < best[0]:
                best = (key, first, [i])
            elif key == best[0] and first == best[1]:
                best[2].append(i)
    (_, stop), first, indices = best
    return stop, round(float(widths[indices[len(indices) // 2]]), 2), first


#: The first node counts :func:`_entire_choice` chooses from (each doubles from there).
FIRST_COUNTS = (16, 20, 24, 28)
#: The change in :math:`\rho` against which :func:`_entire_choice` makes its choice robust.
ENTIRE_REACH = 0.1


def _entire_error(count: int, rho: float, scale: float) -> float:
    r"""The logarithm :math:`E(N)` of the modelled trapezoid error of :func:`_entire_choice` with ``count`` nodes on
    the ellipse ``rho``, for :math:`e^{-sz}` with :math:`sh` = ``scale``."""
    if scale == 0:
        return -count * rho
    outer = max(rho, math.asinh(count / scale))
    return max(-count * rho, scale * (math.cosh(outer) - 1) - count * (outer - rho))


def _modelled_stop(first: int, rho: float, scale: float, dps) -> float:
    """The node count at which :func:`_converge`, doubling from ``first``, stops when its changes are those of the
    model of :func:`_entire_choice` (infinity if beyond its largest count)."""
    digits, largest = _limits(dps)
    log_tolerance = -digits * math.log(10)
    previous, count = None, 2 * first
    while count <= largest:
        change = _entire_error(count // 2, rho, scale)
        shrink = change - previous if previous is not None else 0.0
        error = change + shrink if shrink < math.log(0.5) else change
        if max(error, _entire_error(count, rho, scale)) <= log_tolerance:
            return count
        previous, count = change, 2 * count
    return math.inf


def _removable(function: sympy.Lambda, poles: list, subs: dict, points: np.ndarray) -> bool:
    """Whether every pole of the parts of a :class:`_Split` cancels in ``function`` itself at the parameter
    values of ``points``: the residue, the mean of :math:`f(z)(z - z_0)` on a small circle around the pole
    :math:`z_0` (exact up to the 16th order for an analytic function), vanishes."""
    variable = function.variables[0]
    parameters = sorted(function.free_symbols, key=str)
    compiled = sympy.lambdify([variable] + parameters, function.expr, modules="numpy")
    values = [np.asarray(np.ravel(subs[p]), dtype=float)[points] if np.ndim(subs[p]) else float(subs[p])
              for p in parameters]
    angles = np.exp(2j * np.pi * np.arange(16) / 16)
    for pole in poles:
        radius = 1e-3 * (1 + abs(pole))
        offsets = radius * angles[:, None]
        f = compiled(pole + offsets, *[np.asarray(v)[None] if np.ndim(v) else v for v in values])
        f = np.broadcast_to(f, offsets.shape[:1] + (points.size,))
        residue = np.abs(np.mean(f * offsets, axis=0))
        if not np.all(np.isfinite(f)) or np.any(residue > 1e-8 * radius * (1 + np.max(np.abs(f), axis=0))):
            return False
    return True


def _poles(split: _Split, variable, values: dict):
    """The distinct poles of the parts of ``split`` at the parameter ``values``, or None if one is not real."""
    poles = []
    for denominator in split.denominators:
        polynomial = sympy.Poly(denominator.xreplace(values), variable)
        for root in np.roots([complex(c) for c in polynomial.all_coeffs()]):
            if abs(root.imag) > 1e-12 * (1 + abs(root)):
                return None
            if not any(abs(root.real - pole) <= 1e-12 * (1 + abs(pole)) for pole in poles):
                poles.append(float(root.real))
    return sorted(poles)


def _clusters(poles: tuple, atoms: tuple, lowest: float, rate: float) -> list:
    """Circles ``(centre, radius, has_atom)`` around the poles and the atoms left of the hyperbola: points closer
    than ``1/rate`` share a circle (a pole next to an atom would make the parts of the function large and
    cancelling on a small circle around the atom alone), and a circle with an atom reaches at most ``1/rate``
    beyond its points, so that :math:`e^{-sz}` grows by at most a factor of order one on it."""
    points = sorted([(x, False) for x in poles] + [(x, True) for x in atoms])
    groups: list = []
    for x, is_atom in points:
        if groups and x - groups[-1][-1][0] < 1 / rate:
            groups[-1].append((x, is_atom))
        else:
            groups.append([(x, is_atom)])
    edges = [(group[0][0], group[-1][0]) for group in groups]
    circles = []
    for position, group in enumerate(groups):
        low, high = edges[position]
        others = [lowest] + [edge for j, pair in enumerate(edges) if j != position for edge in pair]
        distance = min(min(abs(other - low), abs(other - high)) for other in others)
        has_atom = any(is_atom for _, is_atom in group)
        margin = min(distance / 4, 1 / rate) if has_atom else distance / 4
        circles.append(((low + high) / 2, (high - low) / 2 + margin, has_atom))
    return circles


def _anchor(found, poles: list):
    """Where the hyperbola of a split plan crosses the real axis: the lowest bulk edge or an atom below it, the
    one with the widest gap to the poles and atoms below it (those atoms get circles of their own).  Returns
    ``(atoms below, anchor)``, or None if a pole lies right of the anchor."""
    bulk = min(float(a) for a, _ in found.intervals)
    below = sorted(float(x) for x, _ in found.atoms if float(x) < bulk)
    best = None
    for position, anchor in enumerate(below + [bulk]):
        lower = [p for p in poles if p < anchor] + below[:position]
        if len(lower) < len(poles) + position:
            continue  # a pole right of this anchor
        gap = anchor - max(lower, default=-np.inf)
        if best is None or gap > best[0]:
            best = (gap, tuple(below[:position]), anchor)
    return None if best is None else best[1:]


#: The angles of the hyperbolas bounding the strip of analyticity of :func:`_hyperbola`'s parametrisation.
HYPERBOLA_ANGLES = (0.5, 1.45)


def _hyperbola(lowest: float, gap: float, rates: tuple, count: int, multiprecision: bool):
    r"""The trapezoid nodes :math:`u_k = kh`, :math:`|k| \le` ``count``, of the hyperbola
    :math:`z(u) = x_0 - \mu(1 - \sin(\alpha + iu))` (:math:`x_0` the lowest point of the spectrum), which
    wraps the spectrum from the left and opens to the right, where :math:`e^{-sz}` decays.

    Shifting :math:`u` by :math:`iv` turns the angle :math:`\alpha` into :math:`\alpha + v`; the integrand is
    analytic for angles in :data:`HYPERBOLA_ANGLES` (:math:`(\alpha_-, \alpha_+)`): below :math:`\pi/2` the
    hyperbolas stay off the spectrum, and :math:`\mu(1 - \sin\alpha_-) \le` ``gap``/2 keeps them right of
    the poles.  For rates :math:`s \in [s_-, s_+]` the trapezoid error is about
    :math:`e^{s_+\mu(1 - \sin\alpha_-) - 2\pi\delta/h}` (:math:`\delta = (\alpha_+ - \alpha_-)/2`) and the
    truncation at :math:`|u| \le L` about :math:`e^{-s_-\mu(\sin\alpha\cosh L - 1)}` (Weideman and
    Trefethen, *Math. Comp.* 76, 2007); :math:`\mu` and :math:`L = Nh` minimise the larger, with the
    growth :math:`s_+\mu(1 - \sin\alpha_-)` of the integrand left of the spectrum at most
    :data:`GROWTH` (in floats; 30 with the guard digits of arbitrary precision), the factor by which
    rounding errors of the resolvents are amplified.
    """
    context = precision.context()
    low, high = rates
    lower_angle, upper_angle = HYPERBOLA_ANGLES
    alpha, delta = (lower_angle + upper_angle) / 2, (upper_angle - lower_angle) / 2
    growth_factor = 1 - math.sin(lower_angle)
    largest = min((30.0 if multiprecision else GROWTH) / (high * growth_factor), gap / (2 * growth_factor))
    mu = largest * np.geomspace(1e-3, 1, 64)
    lengths = np.empty_like(mu)
    bounds = np.array([1e-3, 40.0])
    for position, value in enumerate(mu):  # the truncation that balances the two errors (the difference grows in L)
        left, right = bounds
        for _ in range(80):
            middle = (left + right) / 2
            discretisation = high * value * growth_factor - 2 * np.pi * delta * count / middle
            truncation = -low * value * (math.sin(alpha) * math.cosh(middle) - 1)
            left, right = (middle, right) if discretisation < truncation else (left, middle)
        lengths[position] = left
    errors = high * mu * growth_factor - 2 * np.pi * delta * count / lengths
    best = int(np.argmin(errors))
    mu, step = float(mu[best]), float(lengths[best]) / count
    number = context.mpf if multiprecision else float
    sin, cos, sinh, cosh = ((context.sin, context.cos, context.sinh, context.cosh) if multiprecision
                            else (math.sin, math.cos, math.sinh, math.cosh))
    z, dz = [], []
    for k in range(-count, count + 1):
        u = number(k) * number(step)
        z.append(number(lowest) - number(mu) * (1 - sin(number(alpha)) * cosh(u))
                 - 1j * number(mu) * cos(number(alpha)) * sinh(u))
        derivative = number(mu) * sin(number(alpha)) * sinh(u) - 1j * number(mu) * cos(number(alpha)) * cosh(u)
        dz.append(derivative * number(step) / (2 * context.pi if multiprecision else 2 * math.pi))
    return z, dz, np.arange(2 * count, -1, -1)


@lru_cache(maxsize=32)
def _grid(normalised_trace, symbols: tuple, dims_key: tuple, subs_key: tuple, spectra: tuple, plans: tuple, count: int,
          dps):
    """The contours (``count`` nodes per part), the grid axes (the first occurrence on its upper nodes) and
    the resolvent trace on the grid: kept for the other quantities and calls with the same trace and values,
    in memory and on disk (:func:`_stored_traces`).  The traces of the grid with ``count / 2`` nodes (which
    :func:`_converge` computed before) are reused at the nodes the two grids share (:func:`_shared`)."""
    multiprecision = dps is not None
    contours = [_contour(found, plan, count, multiprecision) for found, plan in zip(spectra, plans)]
    axes = [np.flatnonzero(contours[0].upper)] + [np.arange(len(c.z)) for c in contours[1:]]
    setting = (normalised_trace, symbols, dims_key, subs_key, spectra, plans, count, dps)
    shape = [len(a) for a in axes]

    def solve():
        known = (_shared(_grid(*setting[:6], count // 2, dps), contours, axes) if count // 2 >= _fewest(plans)
                 else (np.array([], dtype=int), np.array([])))
        return _solve_grid(normalised_trace, symbols, dims_key, subs_key, spectra, plans, contours, axes, dps, known)

    traces = _stored_traces(setting, int(np.prod(shape)), solve)
    return contours, axes, traces.reshape(shape)


def _shared(coarse: tuple, contours: list, axes: list) -> tuple:
    """The flat indices in the grid of ``contours`` and ``axes`` of the points of the ``coarse`` grid (a result of
    :func:`_grid`) that are also points of it, and their traces: the nodes of an ellipse or a circle with
    :math:`N/2` nodes are every other one of those with :math:`N` (the same numbers: the angles
    :math:`2\\pi k/N` are exact multiples), while a hyperbola's nodes move with :math:`N`."""
    coarse_contours, coarse_axes, traces = coarse
    positions = []
    for coarse_contour, coarse_axis, contour, axis in zip(coarse_contours, coarse_axes, contours, axes):
        index = {_exact(z): k for k, z in enumerate(contour.z)}
        node = np.array([index.get(_exact(z), -1) for z in coarse_contour.z[coarse_axis]])
        where = np.searchsorted(axis, node)
        found = (node >= 0) & (where < len(axis)) & (axis[np.minimum(where, len(axis) - 1)] == node)
        positions.append(np.where(found, where, -1))
    mesh = np.meshgrid(*positions, indexing="ij")
    inside = np.all([m >= 0 for m in mesh], axis=0)
    flat = np.ravel_multi_index([m[inside] for m in mesh], [len(a) for a in axes])
    return flat, traces[inside]


def _exact(z):
    """A key for the exact value of a node (float or mpmath, real or complex)."""
    return z._mpc_ if hasattr(z, "_mpc_") else (z._mpf_, None) if hasattr(z, "_mpf_") else complex(z)


def _stored_traces(setting: tuple, size: int, solve) -> np.ndarray:
    """The flat grid of ``size`` resolvent traces of ``setting`` (the arguments of :func:`_grid`) from the disk
    cache (:mod:`pencils.cache`, kind ``"contour_grid"``), or ``solve()`` stored there.  The entry is keyed by the
    exact text of every argument (numbers by their ``repr``, which round-trips) and the package's source
    (:meth:`pencils.derivations.DerivationStore.fingerprint`); it holds the floats themselves, or the exact
    binary mantissas and exponents of mpmath numbers, so that a hit gives identical values."""
    *expressions, subs_key, spectra, plans, count, dps = setting
    subs_text = ", ".join(f"{sympy.srepr(key)}: {sympy.srepr(value) if isinstance(value, sympy.Basic) else repr(value)}"
                          for key, value in subs_key)
    description = "\n".join([*(sympy.srepr(part) for part in expressions), subs_text, repr(spectra), repr(plans),
                              f"count={count}, dps={dps}"])

    def make(payload):
        if dps is None:
            traces = np.array(payload["real"], dtype=float) + 1j * np.array(payload["imag"], dtype=float)
        else:
            make_mpc = mpmath.mp.make_mpc
            traces = np.array([make_mpc(tuple((int(sign), int(mantissa), int(exponent), int(bits))
                                              for sign, mantissa, exponent, bits in parts))
                               for parts in payload["exact"]], dtype=object)
        if traces.shape != (size,):
            raise ValueError(f"{traces.shape[0] if traces.ndim else 0} values for a grid of {size}")
        return traces

    def build(_, __):
        traces = solve()
        if dps is None:
            return {"real": traces.real.tolist(), "imag": traces.imag.tolist()}
        exact = [value._mpc_ if hasattr(value, "_mpc_") else (value._mpf_, mpmath.libmp.fzero) for value in traces]
        return {"exact": [[[int(field) for field in part] for part in value] for value in exact]}

    return derivations.store.from_disk("contour_grid", description, (), build, make)


def _solve_grid(normalised_trace, symbols, dims_key, subs_key, spectra, plans, contours, axes, dps,
                known: tuple) -> np.ndarray:
    """The resolvent trace on the grid of ``contours`` (flat), one solve per orbit (:func:`_orbits`) except where
    ``known`` (flat indices and their traces) gives it.  In arbitrary precision the traces are solved to
    ``dps +`` :data:`pencils.precision.GUARD_DIGITS` digits: the weights of the trapezoid sum grow up to
    :math:`e^{30}` times the integrand on the spectrum (:func:`_hyperbola`, :func:`_entire_contour`), and so do the
    rounding errors of the traces, which would otherwise spoil the last digits of the sum."""
    multiprecision = dps is not None
    grid = [index.reshape(-1) for index in np.meshgrid(*axes, indexing="ij")]
    same = len(set(zip(spectra, plans))) == 1
    representative, conjugated = _orbits(normalised_trace, symbols, same, contours, grid)
    traces = np.empty(len(grid[0]), dtype=object if multiprecision else complex)
    indices, values = known
    traces[indices] = values
    unknown = np.ones(len(grid[0]), dtype=bool)
    unknown[indices] = False
    solved = np.unique(representative)
    solved = solved[unknown[solved]]
    if solved.size:
        points = {z: contour.z[index[solved]] for z, contour, index in zip(symbols, contours, grid)}
        starts = {}
        for z, nodes in points.items():  # each path comes down to its node from its own side of the real axis
            floats = nodes.astype(complex)
            side = np.where(floats.imag < 0, -1.0, 1.0)
            starts[z] = floats + 1j * side * (1 + np.abs(floats))
        digits = dps + precision.GUARD_DIGITS if multiprecision else None
        start = time.perf_counter()
        values = rational_limit(normalised_trace, dict(dims_key), {**dict(subs_key), **points}, dps=digits,
                                path_from=starts)
        _logger.debug("contour grid on %s, %s nodes per occurrence: %d solves in %.2f s", plans,
                      [len(contour.z) for contour in contours], solved.size, time.perf_counter() - start)
        traces[solved] = np.asarray(values, dtype=traces.dtype).reshape(-1)
    traces = traces[representative]
    if np.any(conjugated):
        conjugate = np.frompyfunc(_conjugate, 1, 1) if multiprecision else np.conj
        traces[conjugated] = conjugate(traces[conjugated])
    return traces


def _conjugate(value):
    """The exact conjugate of an mpmath number (``conjugate()`` rounds it to the precision of ``mpmath.mp``)."""
    if not hasattr(value, "_mpc_"):
        return value
    real, imaginary = value._mpc_
    return mpmath.mp.make_mpc((real, mpmath.libmp.mpf_neg(imaginary)))


def _orbits(normalised_trace, symbols: tuple, same: bool, contours: list, grid: list):
    r"""For each grid point (flat index), the flat index of the point whose solve gives its value, and
    whether that value is conjugated.  Two symmetries of the resolvent trace :math:`\tau` are used:
    conjugation, :math:`\tau(\bar z_1, \dots, \bar z_k) = \overline{\tau(z_1, \dots, z_k)}`, and for
    two occurrences with the same nodes (``same``), the exchange :math:`\tau(z_2, z_1) = \tau(z_1, z_2)` when
    the trace is unchanged by it (:func:`_exchange_symmetric`); with both, about a quarter of the
    :math:`k = 2` grid is solved."""
    size = len(grid[0])
    flat = np.arange(size)
    if len(symbols) != 2 or not same or not _exchange_symmetric(normalised_trace, *symbols):
        return flat, np.zeros(size, dtype=bool)
    nodes = len(contours[0].z)
    conjugate = contours[0].conjugate
    lookup = -np.ones((nodes, nodes), dtype=int)
    lookup[grid[0], grid[1]] = flat
    first, second = grid
    candidates = [(first, second, False), (second, first, False), (conjugate[first], conjugate[second], True),
                  (conjugate[second], conjugate[first], True)]
    representative, conjugated = flat.copy(), np.zeros(size, dtype=bool)
    for i, j, conj in candidates:
        index = lookup[i, j]
        better = (index >= 0) & (index < representative)
        representative[better], conjugated[better] = index[better], conj
    return representative, conjugated


def _exchange_symmetric(normalised_trace, first, second) -> bool:
    """Whether the trace of a product is unchanged by exchanging ``first`` and ``second``: the exchanged
    product, transposed, is a cyclic rotation of the original (the resolvents of a self-adjoint argument
    are symmetric)."""
    coefficient, factors = _coefficient_and_factors(normalised_trace)
    exchanged = normalised_trace.xreplace({first: second, second: first})
    exchanged = exchanged.xreplace({trace: sympy.Trace(trace.arg.T.doit()) for trace in exchanged.atoms(sympy.Trace)})
    other_coefficient, other_factors = _coefficient_and_factors(exchanged)
    if factors is None or other_factors is None or sympy.simplify(coefficient - other_coefficient) != 0:
        return False
    return any(tuple(factors[k:] + factors[:k]) == tuple(other_factors) for k in range(len(factors)))


def _coefficient_and_factors(normalised_trace):
    """The scalar coefficient and the list of matrix factors of ``c tr(M_1 ... M_r)``, or ``(None, None)``."""
    coefficient, traces = sympy.S.One, []
    for factor in sympy.Mul.make_args(normalised_trace):
        if isinstance(factor, sympy.Trace):
            traces.append(factor)
        else:
            coefficient *= factor
    if len(traces) != 1:
        return None, None
    argument = traces[0].arg
    if isinstance(argument, sympy.MatMul):
        scalar, matrices = argument.as_coeff_matrices()
        return coefficient * scalar, list(matrices)
    return coefficient, [argument]


def _trapezoid(normalised_trace, occurrences, spectra, plans, count, dims, scalar_subs, subs, dps):
    """The trapezoid rule with ``count`` nodes per contour part, the first occurrence on its upper nodes;
    an array over the (flat) values of the functions' parameters."""

    contours, axes, traces = _grid(normalised_trace, tuple(z for _, z in occurrences), dims_key(dims),
                                   subs_key(scalar_subs), spectra, plans, count, dps)
    multiprecision = dps is not None
    weights = [_weights(f, contour, axis, subs, multiprecision) for (f, _), contour, axis in zip(occurrences, contours, axes)]
    weights[0] = weights[0] * np.where(contours[0].doubled[axes[0]], 2, 1)
    shape = np.broadcast_shapes(*(w.shape[:-1] for w in weights))
    size = int(np.prod(shape))
    total = np.frompyfunc(precision.context().convert, 1, 1)(traces)[None] if multiprecision else traces[None]
    for position in range(len(weights) - 1, -1, -1):  # contract the last grid axis, point by point in the parameters
        weight = np.broadcast_to(weights[position], shape + weights[position].shape[-1:]).reshape(size, -1)
        total = (total * weight.reshape((size,) + (1,) * position + (-1,))).sum(axis=-1)
    total = total.reshape(shape)
    if multiprecision:
        context = precision.context()
        return np.vectorize(context.re, otypes=[object])(total) if shape else context.re(total.item())
    return np.real(total) if shape else float(np.real(total))


def _weights(matrix_function: MatrixFunction, contour: _Contour, axis: np.ndarray, subs: dict, multiprecision):
    r"""The weights :math:`-f(z)\,dz/i` of the nodes ``axis`` of ``contour``, shape (parameters..., nodes), with
    the part of :math:`f` that each node integrates (:attr:`_Contour.piece`)."""
    function = matrix_function.function
    variable = function.variables[0]
    parameters = sorted(function.free_symbols, key=str)
    values = [np.asarray(subs[p], dtype=object if multiprecision else None) for p in parameters]
    shape = np.broadcast_shapes(*(v.shape for v in values)) if values else ()
    values = [np.broadcast_to(v, shape)[..., None] for v in values]
    z, dz, piece = contour.z[axis], contour.dz[axis], contour.piece[axis]
    split = _split(function)
    expressions = {WHOLE: function.expr, RATIONAL: split and split.rational, EXPONENTIAL: split and split.exponential}
    if multiprecision:  # in this thread's context
        from .solve.compiled import compile_expressions

        context = precision.context()
        convert = np.frompyfunc(context.convert, 1, 1)
        f = np.empty(shape + z.shape, dtype=object)
        for kind in np.unique(piece):
            compiled = compile_expressions([variable] + parameters, expressions[kind], "mpmath")
            nodes = piece == kind
            f[..., nodes] = np.frompyfunc(compiled, 1 + len(parameters), 1)(convert(z[nodes]), *(convert(v) for v in values))
        return -f * convert(dz) / context.mpc(0, 1)
    f = np.empty(shape + z.shape, dtype=complex)
    for kind in np.unique(piece):
        compiled = sympy.lambdify([variable] + parameters, expressions[kind], modules="numpy")
        nodes = piece == kind
        f[..., nodes] = compiled(z[nodes], *values) * np.ones(shape + (int(nodes.sum()),))
    return -f * dz / 1j
