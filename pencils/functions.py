r"""Functions of self-adjoint random matrices in traces, as Cauchy integrals of resolvents.

For :math:`f` analytic on a neighbourhood of the spectrum of a self-adjoint
:math:`H`,

.. math::  f(H) = \frac{1}{2\pi i}\oint_\Gamma f(z)\,(z - H)^{-1}\,dz
                = -\frac{1}{2\pi i}\oint_\Gamma f(z)\,(H - zI)^{-1}\,dz,

with :math:`\Gamma` around the spectrum (:func:`pencils.spectrum`): one contour
per part of it, an ellipse with foci at the edges of each bulk
(:math:`z = c + h\cosh(\rho + i\theta)`, :math:`\rho \le` :data:`WIDEST`, at most
half the :math:`\rho` of the nearest other part) and a circle around each atom
of 1/32 of its distance to the other parts (an atom within the reach of a bulk's
widest contour is enclosed with the bulk, :func:`_parts`).  A trace with :math:`k` occurrences
:math:`f_1(H_1), \dots, f_k(H_k)` becomes the :math:`k`-fold integral of a trace
of :math:`k` resolvents :math:`(H_j - z_jI)^{-1}`; the trapezoid rule in
:math:`\theta` (geometric convergence for a periodic analytic integrand) puts
the :math:`z_j` on a tensor grid of nodes, all solved in one batch by
:func:`pencils.limit`, and the values are contracted with the weights
:math:`-f_j(z_j)\,z_j'(\theta)/(iN)`.  The resolvent traces do not depend on the
parameters of the :math:`f_j`, so every value of those (all the times of a
curve) reuses the same solves.  The integrand is conjugate-symmetric
(:math:`f_j` real on the real axis, :math:`\overline{\tau(z)} = \tau(\bar z)`),
so the first occurrence only needs the nodes in the closed upper half plane; when
two occurrences share a spectrum and the trace is unchanged by exchanging them
(:math:`\operatorname{tr} A R(z_1) B R(z_2)` with symmetric :math:`A, B`), one point
per orbit under exchange and conjugation is solved (:func:`_orbits`).
The quadrature error is estimated by comparing :math:`N` nodes per contour with
the :math:`N/2` among them; :math:`N` doubles until they agree to the working
accuracy.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Mapping

import numpy as np
import sympy

from .arguments import as_sympy, resolve_keys
from . import precision
from .errors import ConvergenceError, ParameterError, UnsupportedOperationError

__all__ = ["MatrixFunction", "function_limit"]

#: The widest contour around a bulk, as its Bernstein parameter :math:`\rho` (:math:`\cosh\rho = 1.03`): close to the
#: bulk, so that a function growing off the real axis (:math:`e^{-tz}` at large :math:`t`) stays small on it.
WIDEST = 0.25


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
    """Nodes ``z`` and derivatives ``dz`` (in theta) of the contours around the parts of one spectrum,
    ``N`` nodes per part; ``upper`` marks the nodes in the closed upper half plane, ``doubled`` those
    of them whose conjugate is another node."""

    z: np.ndarray
    dz: np.ndarray
    upper: np.ndarray
    doubled: np.ndarray


def _contour(found, count: int, multiprecision: bool) -> _Contour:
    """``count`` trapezoid nodes on a contour around each bulk and each atom of ``found`` (a Spectrum)."""
    parts = _parts(found)
    landmarks = np.array([e for _, a, b in parts for e in (a, b)])
    context = precision.context()  # multiprecision: nodes in this thread's context, kept as numbers of mpmath.mp
    number = context.mpf if multiprecision else float
    exp = context.exp if multiprecision else np.exp
    z, dz, upper, doubled = [], [], [], []
    for kind, a, b in parts:
        others = np.array([p for p in landmarks if p < a or p > b])
        theta = [2 * context.pi * k / count for k in range(count)] if multiprecision else 2 * np.pi * np.arange(count) / count
        if kind == "bulk":
            half, center = (b - a) / 2, (a + b) / 2
            nearest = np.min(np.abs(others - center)) / half if others.size else np.inf
            rho = min(WIDEST, np.arccosh(nearest) / 2) if np.isfinite(nearest) else WIDEST
            for angle in theta:  # center + half cosh(rho + i angle)
                w = context.mpc(rho, angle) if multiprecision else complex(rho, angle)
                z.append(number(center) + number(half) * (exp(w) + exp(-w)) / 2)
                dz.append(1j * number(half) * (exp(w) - exp(-w)) / 2)
        else:
            # a pole plus a part analytic up to the nearest other landmark: a small circle converges as
            # 32^-N and keeps a function that grows off the real axis small on it
            radius = np.min(np.abs(others - a)) / 32 if others.size else (1 + abs(a)) / 32
            for angle in theta:
                point = number(radius) * exp(context.mpc(0, angle) if multiprecision else 1j * angle)
                z.append(number(a) + point)
                dz.append(1j * point)
        upper.extend(k <= count // 2 for k in range(count))
        doubled.extend(0 < k < count // 2 for k in range(count))
    z = np.array(z, dtype=object if multiprecision else complex)
    dz = np.array(dz, dtype=object if multiprecision else complex)
    # the two nodes on the real axis are exactly real (they lie in gaps)
    for k in range(0, len(z), count):
        for m in (k, k + count // 2):
            z[m] = z[m].real
    if multiprecision:  # cached (_grid) and shared between threads
        z, dz = (np.frompyfunc(precision.public, 1, 1)(nodes) for nodes in (z, dz))
    return _Contour(z, dz, np.array(upper), np.array(doubled))


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


def _occurrences(expr, counter: list):
    """``expr`` with every occurrence of a MatrixFunction replaced by ``(H - z_j I)^{-1}``, a fresh ``z_j`` each."""
    if isinstance(expr, MatrixFunction):
        z = sympy.Symbol(f"zeta_{len(counter)}")
        counter.append((expr, z))
        return (expr.argument - z * sympy.Identity(expr.shape[0])).I
    if isinstance(expr, (sympy.Lambda,)) or not expr.args:
        return expr
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
    from .limits import limit
    from .spectra import spectrum

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
    return limit(quantity.xreplace(replacements), dims, {**subs, **values}, dps)


def _integral(normalised_trace, occurrences: list, dims, subs: dict, dps, spectrum):
    """The k-fold contour integral of one normalised trace of resolvents (see the module notes)."""
    function_symbols = set().union(*(f.function.free_symbols for f, _ in occurrences))
    scalar_subs = {key: value for key, value in subs.items() if key not in function_symbols}
    for key, value in scalar_subs.items():
        if np.ndim(value):
            raise ParameterError(
                f"{key} has an array of values; only the parameters of the functions in a MatrixFunction "
                f"({', '.join(sorted(map(str, function_symbols))) or 'none here'}) may be arrays."
            )
    spectra = [spectrum(f.argument, dims, scalar_subs) for f, _ in occurrences]
    multiprecision = dps is not None
    tolerance = precision.context().mpf(10) ** -dps if multiprecision else 1e-12
    largest = 512 if multiprecision else 1024
    previous, count = None, 16
    while count <= largest:
        with precision.digits(dps + 15) if multiprecision else contextlib.nullcontext():
            value = _trapezoid(normalised_trace, occurrences, spectra, count, dims, scalar_subs, subs, dps)
            if previous is not None:
                error = np.max(np.abs(np.asarray(value - previous, dtype=complex if not multiprecision else object)))
                scale = 1 + np.max(np.abs(np.asarray(value, dtype=object if multiprecision else float)))
                if error <= tolerance * scale:
                    return np.frompyfunc(precision.public, 1, 1)(value) if multiprecision else value
        previous, count = value, 2 * count
    raise ConvergenceError(
        f"the contour integral of {normalised_trace} did not converge with {largest} nodes per contour "
        f"(the change from {largest // 2} was {float(error):.1e}); the function grows too fast off the real axis "
        f"or is not analytic next to the spectrum."
    )


@lru_cache(maxsize=32)
def _grid(normalised_trace, symbols: tuple, dims_key: tuple, subs_key: tuple, spectra: tuple, count: int, dps):
    """The contours (``count`` nodes per part), the grid axes (the first occurrence on its upper nodes) and
    the resolvent trace on the grid: kept for the other quantities and calls with the same trace and values."""
    from .limits import limit

    multiprecision = dps is not None
    contours = [_contour(found, count, multiprecision) for found in spectra]
    axes = [np.flatnonzero(contours[0].upper)] + [np.arange(len(c.z)) for c in contours[1:]]
    grid = [index.reshape(-1) for index in np.meshgrid(*axes, indexing="ij")]
    representative, conjugated = _orbits(normalised_trace, symbols, spectra, contours, grid, count)
    solved = np.unique(representative)
    points = {z: contour.z[index[solved]] for z, contour, index in zip(symbols, contours, grid)}
    starts = {}
    for z, nodes in points.items():  # each path comes down to its node from its own side of the real axis
        floats = nodes.astype(complex)
        side = np.where(floats.imag < 0, -1.0, 1.0)
        starts[z] = floats + 1j * side * (1 + np.abs(floats))
    values = limit(normalised_trace, dict(dims_key), {**dict(subs_key), **points}, dps=dps, path_from=starts)
    values = np.asarray(values, dtype=object if multiprecision else complex).reshape(-1)
    traces = values[np.searchsorted(solved, representative)]
    if np.any(conjugated):
        traces[conjugated] = np.conj(traces[conjugated]) if not multiprecision else [v.conjugate() for v in traces[conjugated]]
    return contours, axes, traces.reshape([len(a) for a in axes])


def _orbits(normalised_trace, symbols: tuple, spectra: tuple, contours: list, grid: list, count: int):
    r"""For each grid point (flat index), the flat index of the point whose solve gives its value, and
    whether that value is conjugated.  Two symmetries of the resolvent trace :math:`\tau` are used:
    conjugation, :math:`\tau(\bar z_1, \dots, \bar z_k) = \overline{\tau(z_1, \dots, z_k)}`, and for
    two occurrences with the same spectrum, the exchange :math:`\tau(z_2, z_1) = \tau(z_1, z_2)` when
    the trace is unchanged by it (:func:`_exchange_symmetric`); with both, about a quarter of the
    :math:`k = 2` grid is solved."""
    size = len(grid[0])
    flat = np.arange(size)
    if len(symbols) != 2 or spectra[0] != spectra[1] or not _exchange_symmetric(normalised_trace, *symbols):
        return flat, np.zeros(size, dtype=bool)
    nodes = len(contours[0].z)
    conjugate = (np.arange(nodes) // count) * count + (-np.arange(nodes)) % count  # the node at the conjugate point
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


def _trapezoid(normalised_trace, occurrences, spectra, count, dims, scalar_subs, subs, dps):
    """The trapezoid rule with ``count`` nodes per contour part, the first occurrence on its upper nodes;
    an array over the broadcast values of the functions' parameters."""
    from .spectra import _dims_key, _subs_key

    contours, axes, traces = _grid(normalised_trace, tuple(z for _, z in occurrences), _dims_key(dims),
                                   _subs_key(scalar_subs), tuple(spectra), count, dps)
    multiprecision = dps is not None
    weights = [_weights(f, contour.z[axis], contour.dz[axis], count, subs, multiprecision)
               for (f, _), contour, axis in zip(occurrences, contours, axes)]
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


def _weights(matrix_function: MatrixFunction, z: np.ndarray, dz: np.ndarray, count: int, subs: dict, multiprecision):
    r"""The weights :math:`-f(z)\,z'(\theta)/(iN)` of the nodes, shape (parameters..., nodes)."""
    function = matrix_function.function
    variable = function.variables[0]
    parameters = sorted(function.free_symbols, key=str)
    missing = [p for p in parameters if p not in subs]
    if missing:
        raise ParameterError(f"no value given for {', '.join(map(str, missing))}, a parameter of {function}.")
    values = [np.asarray(subs[p], dtype=object if multiprecision else None) for p in parameters]
    shape = np.broadcast_shapes(*(v.shape for v in values)) if values else ()
    values = [np.broadcast_to(v, shape)[..., None] for v in values]
    if multiprecision:  # in this thread's context
        from .solve.compiled import compile_expressions

        compiled, context = compile_expressions([variable] + parameters, function.expr, "mpmath"), precision.context()
        convert = np.frompyfunc(context.convert, 1, 1)
        f = np.frompyfunc(compiled, 1 + len(parameters), 1)(convert(z), *(convert(v) for v in values))
        return -f * convert(dz) / (context.mpc(0, 1) * count)
    compiled = sympy.lambdify([variable] + parameters, function.expr, modules="numpy")
    f = compiled(z, *values) * np.ones(shape + z.shape)
    return -f * dz / (1j * count)
