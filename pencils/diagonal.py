r"""Deterministic diagonal matrices with a limiting spectrum.

A :class:`Diagonal` of size :math:`N_d` is the matrix
:math:`\operatorname{diag}(\sigma(u_1), \dots, \sigma(u_{N_d}))` whose
empirical spectral distribution converges to a law given either by *atoms*
:math:`\sigma_1, \dots, \sigma_K` with masses :math:`w_1, \dots, w_K`, or by its
*quantile function* :math:`\sigma(u)` on :math:`(0, 1)`.  Every
:class:`Diagonal` of one dimension is diagonal in the same basis and read at
the same spectral variable :math:`u` (at the same atom index), so that
:math:`C = \operatorname{diag}(c(u))` and
:math:`\Sigma = \operatorname{diag}(\sigma(u))` describe a teacher aligned with
a covariance.

In the Dyson equation a :class:`Diagonal` is a deterministic block whose entry
depends on :math:`u`: the normalised traces average over it,
:math:`\mathbb E_u f(u) = \sum_k w_k f(k)` for atoms and
:math:`\int_0^1 f(u)\,du` for a quantile function, integrated by
Gauss-Legendre quadrature (tanh-sinh where the quantile function or its first
two derivatives are not finite at an end point) with the number of nodes
doubled until two rules agree (:func:`quadrature`).
"""

from __future__ import annotations

from functools import lru_cache

import mpmath
import numpy as np
import sympy
from sympy import MatrixSymbol
from sympy.core.symbol import Str

from .arguments import as_sympy
from .errors import DimensionError, ParameterError

__all__ = ["Diagonal", "quadrature", "spectral_groups"]

#: The variable of a quantile function.
SPECTRAL_VARIABLE = sympy.Symbol("u")


class Diagonal(MatrixSymbol):
    r"""A deterministic ``dim x dim`` diagonal matrix whose spectrum converges to a given law.

    Parameters
    ----------
    name : str
        The name of the matrix.
    dim : sympy.Expr or str
        Its dimension (a dimension symbol, or its name), with a ratio given
        later by ``dims`` like the shapes of :class:`pencils.Gaussian`.
    values : list or sympy.Lambda
        Either the atoms of the law (numbers, exact SymPy numbers, or
        expressions in parameter symbols), or its quantile function on
        :math:`(0, 1)`: a :class:`sympy.Lambda` of one variable, e.g.
        ``Lambda(u, sqrt(1 + 3*u))``, integrated to the requested precision.
    weights : list, optional
        The masses of the atoms: numbers that sum to 1 (equal masses by default).
        Not allowed with a quantile function.

    Notes
    -----
    Several :class:`Diagonal` matrices of one dimension commute and are paired:
    by atom index (they must then have the same number of atoms and the same
    masses), or by the variable of their quantile functions.  At finite size
    (:func:`pencils.sample_trace`) atom :math:`k` is repeated
    :math:`\approx w_k N_d` times, and a quantile function is read at
    :math:`u_j = (j - 1/2)/N_d`.

    Examples
    --------
    A population covariance with two levels, 1 and 4, of equal mass: the
    resolvent trace of :math:`\Sigma^{1/2} X^T X \Sigma^{1/2}/n` at ``z = -1``
    for ``n = 2 d`` (Silverstein's equation gives the same number):

    >>> import sympy
    >>> from pencils import Diagonal, Gaussian, trace_limit
    >>> n, d, z = sympy.symbols("n d z")
    >>> root = Diagonal("R", d, [1, 2])
    >>> X = Gaussian("X", n, d)
    >>> resolvent = (root * X.T * X * root / n - z * sympy.Identity(d)).I
    >>> round(trace_limit(resolvent, {n: 2 * d}, {z: -1.0}), 10)
    0.4222598387
    >>> u = sympy.Symbol("u")
    >>> Diagonal("S", d, sympy.Lambda(u, 1 + 3 * u)).shape
    (d, d)
    """

    def __new__(cls, name: str, dim, values, weights=None):
        if isinstance(name, Str):
            name = name.name
        if not isinstance(name, str) or not name:
            raise ParameterError(f"the name of a Diagonal must be a non-empty string; got {name!r}.")
        dim = sympy.Symbol(dim) if isinstance(dim, str) and dim.isidentifier() else as_sympy(
            dim, "the dimension of a Diagonal", DimensionError)
        if dim.is_number or dim.is_nonpositive or not dim.free_symbols:
            raise DimensionError(
                f"the dimension of the Diagonal {name} is {dim}; give a dimension symbol (e.g. d) whose ratio "
                f"to the base is set by dims, not a number or a non-positive quantity."
            )
        values, weights = _law(name, values, weights)
        return sympy.Basic.__new__(cls, Str(name), dim, values, weights)

    @property
    def shape(self) -> tuple:
        return (self.args[1], self.args[1])

    @property
    def dim(self) -> sympy.Expr:
        """The dimension."""
        return self.args[1]

    @property
    def values(self):
        """The atoms (a :class:`sympy.Tuple`) or the quantile function (a :class:`sympy.Lambda`)."""
        return self.args[2]

    @property
    def weights(self) -> sympy.Tuple:
        """The masses of the atoms (empty for a quantile function)."""
        return self.args[3]

    @property
    def is_quantile(self) -> bool:
        """Whether the law is given by its quantile function."""
        return isinstance(self.values, sympy.Lambda)

    @property
    def free_symbols(self) -> set:
        """The matrix itself and the parameter symbols of its law."""
        return {self} | self.parameters

    @property
    def parameters(self) -> set:
        """The scalar symbols of the law (the variable of a quantile function excluded)."""
        if self.is_quantile:
            return set(self.values.expr.free_symbols) - set(self.values.variables)
        return set().union(*(value.free_symbols for value in self.values))

    @property
    def symbol(self) -> sympy.Symbol:
        r"""The scalar that stands for the eigenvalue at :math:`u` in a pencil and its Dyson equation."""
        return sympy.Symbol(f"{self.name}(u)")

    def quantile(self) -> sympy.Expr:
        """The quantile function as an expression in :data:`SPECTRAL_VARIABLE`."""
        return self.values.expr.xreplace({self.values.variables[0]: SPECTRAL_VARIABLE})

    def _eval_transpose(self):
        return self

    def eigenvalues(self, size: int, values: dict) -> np.ndarray:
        r"""The ``size`` diagonal entries at finite size, for the parameter ``values``.

        Atom :math:`k` is repeated :math:`\lfloor w_k N\rceil` times (the largest
        remainders rounded up, so that the counts add up to ``size``), in the
        order of the atoms; a quantile function is read at :math:`(j - 1/2)/N`.

        Examples
        --------
        >>> import sympy
        >>> d = sympy.Symbol("d")
        >>> Diagonal("S", d, [1, 4], [sympy.Rational(1, 4), sympy.Rational(3, 4)]).eigenvalues(8, {})
        array([1., 1., 4., 4., 4., 4., 4., 4.])
        """
        missing = self.parameters - set(values)
        if missing:
            names = ", ".join(sorted(map(str, missing)))
            raise ParameterError(f"the law of the Diagonal {self.name} needs a value for {names}; add it to the values.")
        if self.is_quantile:
            function = sympy.lambdify(SPECTRAL_VARIABLE, self.quantile().subs(values), "numpy")
            entries = np.broadcast_to(function((np.arange(size) + 0.5) / size), (size,))
        else:
            atoms = [complex(value.subs(values)) for value in self.values]
            entries = np.repeat(atoms, atom_counts([float(w) for w in self.weights], size))
        entries = np.asarray(entries, dtype=complex)
        return entries.real.copy() if np.all(entries.imag == 0) else entries


def atom_counts(weights: list, size: int) -> np.ndarray:
    """How many times each atom is repeated in a matrix of ``size`` rows (largest-remainder rounding)."""
    exact = np.asarray(weights) * size
    counts = np.floor(exact).astype(int)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: size - counts.sum()]] += 1
    return counts


def _law(name: str, values, weights) -> tuple:
    """Check the law of a Diagonal: ``(values, weights)`` as SymPy objects."""
    if isinstance(values, sympy.Lambda):
        if len(values.variables) != 1:
            raise ParameterError(
                f"the quantile function of the Diagonal {name} is a Lambda of {len(values.variables)} variables; "
                f"give a function of one variable u on (0, 1), e.g. Lambda(u, sqrt(1 + 3*u))."
            )
        if weights is not None and len(weights):
            raise ParameterError(
                f"the Diagonal {name} has a quantile function, whose masses are implied; drop weights=."
            )
        return values, sympy.Tuple()
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise ParameterError(
            f"the values of the Diagonal {name} must be a list of atoms or a sympy.Lambda quantile function; "
            f"got {values!r}."
        )
    atoms = [as_sympy(value, f"the values of the Diagonal {name}") for value in values]
    if not atoms:
        raise ParameterError(f"the Diagonal {name} has no atoms; give at least one value.")
    for atom in atoms:
        if getattr(atom, "is_Matrix", False) or (atom.is_number and not atom.is_finite):
            raise ParameterError(f"the atom {atom} of the Diagonal {name} is not a finite scalar.")
    if weights is None:
        masses = [sympy.Rational(1, len(atoms))] * len(atoms)
    else:
        if isinstance(weights, (str, bytes)) or not hasattr(weights, "__iter__"):
            raise ParameterError(f"the weights of the Diagonal {name} must be a list of numbers; got {weights!r}.")
        masses = [as_sympy(weight, f"the weights of the Diagonal {name}") for weight in weights]
        if len(masses) != len(atoms):
            raise ParameterError(
                f"the Diagonal {name} has {len(atoms)} atoms and {len(masses)} weights; give one weight per atom."
            )
        for mass in masses:
            if not mass.is_number or not mass.is_real or mass.is_negative:
                raise ParameterError(
                    f"the weight {mass} of the Diagonal {name} is not a non-negative real number; weights are masses."
                )
        total = sympy.Add(*masses)
        exact = all(not mass.has(sympy.Float) for mass in masses)
        if (exact and total != 1) or (not exact and abs(float(total) - 1) > 1e-12):
            raise ParameterError(
                f"the weights of the Diagonal {name} sum to {total}, not 1; they are the masses of the atoms: "
                f"divide them by their sum."
            )
    return sympy.Tuple(*atoms), sympy.Tuple(*masses)


def spectral_groups(diagonals) -> list:
    r"""The Diagonals grouped by dimension, checked to be paired consistently.

    Returns a list of ``(dim, [diagonal, ...])`` sorted by dimension: the
    members of a group share one spectral variable.

    Raises
    ------
    ParameterError
        If two Diagonals of one dimension do not pair: a quantile function
        with atoms, different numbers of atoms, or different masses; or two
        different Diagonals have one name.

    Examples
    --------
    >>> import sympy
    >>> d = sympy.Symbol("d")
    >>> spectral_groups([Diagonal("A", d, [1, 2]), Diagonal("B", d, [1, 2, 3])])
    Traceback (most recent call last):
    ...
    pencils.errors.ParameterError: the Diagonals A and B of dimension d have 2 and 3 atoms; Diagonals of one dimension are paired by atom index, so give them the same number of atoms (repeat an atom to split its mass).
    """
    groups: dict = {}
    names: dict = {}
    for diagonal in sorted(set(diagonals), key=lambda item: item.name):
        if names.setdefault(diagonal.name, diagonal) != diagonal:
            raise ParameterError(
                f"two different Diagonals are named {diagonal.name}; give each matrix its own name."
            )
        groups.setdefault(diagonal.dim, []).append(diagonal)
    for dim, members in groups.items():
        first = members[0]
        for other in members[1:]:
            pair = f"the Diagonals {first.name} and {other.name} of dimension {dim}"
            if first.is_quantile != other.is_quantile:
                raise ParameterError(
                    f"{pair} mix atoms and a quantile function; give both as atoms or both as quantile functions "
                    f"of the same variable u (they are paired by u)."
                )
            if not first.is_quantile and len(first.values) != len(other.values):
                raise ParameterError(
                    f"{pair} have {len(first.values)} and {len(other.values)} atoms; Diagonals of one dimension "
                    f"are paired by atom index, so give them the same number of atoms (repeat an atom to split "
                    f"its mass)."
                )
            if not first.is_quantile and first.weights != other.weights:
                raise ParameterError(
                    f"{pair} have different masses ({list(first.weights)} and {list(other.weights)}); atoms "
                    f"paired by index must have the same masses."
                )
    return sorted(groups.items(), key=lambda item: str(item[0]))


# --------------------------------------------------------------------------- quadrature


def endpoint_regular(quantile: sympy.Expr) -> bool:
    """Whether a quantile function and its first two derivatives are finite at ``u = 0`` and ``u = 1``
    (then Gauss-Legendre converges fast; otherwise tanh-sinh is used)."""
    for order in range(3):
        derivative = sympy.diff(quantile, SPECTRAL_VARIABLE, order)
        for end in (0, 1):
            value = derivative.subs(SPECTRAL_VARIABLE, end)
            if value.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo) or value.is_finite is not True:
                return False
    return True


@lru_cache(maxsize=64)
def quadrature(rule: str, level: int, dps: int | None) -> tuple:
    r"""Nodes, weights and complements of a rule on :math:`(0, 1)` at a level; the nodes double from one level
    to the next.

    ``rule`` is ``"legendre"`` (:math:`3 \cdot 2^{\text{level}}` Gauss-Legendre
    nodes) or ``"tanh-sinh"`` (step :math:`h = 2^{-\text{level}}`,
    :math:`u = 1/(1 + e^{-\pi \sinh t})`, weight
    :math:`h \pi \cosh t\, u (1 - u)`, truncated where the weights fall below
    the precision).  Returns ``(nodes, weights, complements)``: float arrays if
    ``dps`` is ``None``, else tuples of mpmath numbers at ``dps`` digits.

    The complement :math:`v = 1 - u` of each node is computed directly
    (:math:`v = 1/(1 + e^{\pi \sinh t})`, the mirror node), not as ``1 - u``: tanh-sinh
    nodes crowd at :math:`u = 1` at distances down to :math:`10^{-20}`, where a float
    :math:`u` rounds to 1 or keeps only the leading digits of :math:`1 - u`.  A
    quantile function singular at 1, e.g. :math:`(1 - u)^{-0.4}`, evaluated there
    is off by a fixed amount that does not change from level to level (so no
    error estimate sees it); evaluated as :math:`\sigma(1 - v)` written in
    :math:`v` (above :math:`u = 1/2`, :class:`pencils.solve.spectral.SpectralNodes`)
    it is exact to rounding.  The rule is therefore symmetric, truncated by its
    weights only (at :math:`10^{-25}` for floats), and keeps the nodes whose float
    :math:`u` is 1: dropping them, or the nodes where :math:`1 - u` rounds to 0 at
    20 digits, misses the mass of :math:`(1 - u)^{-0.4}` below
    :math:`1 - u = 10^{-21}`, :math:`10^{-12.6}/0.6`, again at every level.

    Examples
    --------
    >>> nodes, weights, complements = quadrature("legendre", 1, None)
    >>> len(nodes), round(float(sum(weights)), 15), round(float(sum(w * x**5 for x, w in zip(nodes, weights))), 15)
    (6, 1.0, 0.166666666666667)
    >>> nodes, weights, complements = quadrature("tanh-sinh", 2, None)
    >>> int(sum(nodes == 1.0)), float(complements[-1]) > 0  # nodes that are 1 in floats keep their complement
    (2, True)
    """
    context = mpmath.mp.clone()
    context.dps = 20 if dps is None else dps + 10
    _, nodes, complements, weights = zip(*_rule_points(rule, level, context))
    if dps is None:
        return tuple(np.array([float(x) for x in column]) for column in (nodes, weights, complements))
    return nodes, weights, complements


@lru_cache(maxsize=64)
def extended_rule(rule: str, level: int, dps: int) -> tuple:
    r"""The nodes, weights and complements of the float rule (``quadrature(rule, level, None)``) for tables in
    numpy's extended precision (``longdouble``), as mpmath numbers to ``dps`` digits.

    The float rule is truncated where its weights fall below :math:`10^{-25}`;
    here the same nodes are computed again at ``dps + 10`` digits, so that a value
    computed in extended precision has the float value's quadrature error (and
    not its rounding).

    Examples
    --------
    >>> nodes, weights, complements = extended_rule("tanh-sinh", 2, 40)
    >>> len(quadrature("tanh-sinh", 2, None)[0]), len(nodes), mpmath.nstr(sum(weights), 12)
    (29, 29, '1.0')
    """
    coarse = mpmath.mp.clone()
    coarse.dps = 20
    kept = [key for key, *_ in _rule_points(rule, level, coarse)]
    context = mpmath.mp.clone()
    context.dps = dps + 10
    _, nodes, complements, weights = zip(*_rule_points(rule, level, context, keys=kept))
    return nodes, weights, complements


def _rule_points(rule: str, level: int, context, keys: list | None = None) -> list:
    r"""``(key, node, complement, weight)`` of a rule (see :func:`quadrature`) in ``context``, sorted by node;
    ``key`` names a node whatever the precision (its rank for Gauss-Legendre, ``(k, sign)`` of
    :math:`t = \pm k h` for tanh-sinh).  With ``keys``, tanh-sinh computes those nodes only (instead of
    truncating at the precision)."""
    if rule == "legendre":
        from mpmath.calculus.quadrature import GaussLegendre

        pairs = GaussLegendre(context).calc_nodes(level + 1, context.prec)
        return [(rank, x, v, w) for rank, (x, v, w) in enumerate(sorted(((x + 1) / 2, (1 - x) / 2, w / 2)
                                                                         for x, w in pairs))]
    if rule != "tanh-sinh":  # pragma: no cover - internal
        raise ValueError(rule)
    step = context.ldexp(1, -level)

    def point(k: int, sign: int) -> tuple:
        t = k * step
        growth = context.pi * context.sinh(sign * t)
        u, v = 1 / (1 + context.exp(-growth)), 1 / (1 + context.exp(growth))
        return (k, sign), u, v, step * context.pi * context.cosh(t) * u * v

    if keys is not None:
        return sorted((point(*key) for key in keys), key=lambda item: item[1])
    points, tiny, k = [], context.mpf(10) ** -(context.dps + 5), 0
    while True:
        added = [point(k, sign) for sign in ((1,) if k == 0 else (1, -1))]
        if max(item[3] for item in added) < tiny:
            break
        points += added
        k += 1
    return sorted(points, key=lambda item: item[1])
