r"""The matrix Dyson (self-consistent) equation of a linear pencil.

Write the normalised pencil as :math:`L = \Lambda + R`, with :math:`\Lambda` the
scalar-identity blocks and :math:`R` the Gaussian blocks (entry variance
:math:`1/N`).  For :math:`G = L^{-1}` and the normalised block traces
:math:`g_{ij} = \lim \mathbb E \operatorname{tr}(G_{ij})/N_i` (blocks of equal
size), to leading order in :math:`1/N`,

.. math::  g = \bigl(\Lambda - \eta(g)\bigr)^{-1},

a :math:`K \times K` scalar matrix equation, where :math:`\eta` sums over the
pairings of each Gaussian :math:`X` (:math:`N_a \times N_b`) with its own
transpose:

* :math:`X` in block :math:`(i, l)` with coefficient :math:`c` and
  :math:`X^T` in block :math:`(m, j)` with coefficient :math:`c'`:
  :math:`\eta_{ij} \mathrel{+}= c\,c'\,\alpha_b\, g_{lm}`;
* :math:`X^T` in :math:`(i, l)` with :math:`c'` and :math:`X` in :math:`(m, j)`
  with :math:`c`: :math:`\eta_{ij} \mathrel{+}= c'\,c\,\alpha_a\, g_{lm}`,

with :math:`\alpha_a = N_a/N`.  Only the entries :math:`g_{lm}` that
:math:`\eta` reads are unknowns; the target, the selected block of the pencil,
follows from one inversion.

With :class:`pencils.Diagonal` matrices, :math:`\Lambda` has diagonal blocks
:math:`\operatorname{diag}(f(\sigma(u)))` on the dimensions that carry them:
all entries of :math:`\Lambda - \eta(g)` are diagonal in one basis, so the
resolvent is :math:`(\Lambda(u) - \eta(g))^{-1}` at each spectral variable
:math:`u`, and a normalised trace is its average over :math:`u`:

.. math::  g_S = \mathbb E_u\bigl[(\Lambda(u) - \eta(g))^{-1}\bigr]_S,

with the same unknowns as without them (:math:`\eta` only reads normalised
traces).  :math:`\Lambda - \eta(g)` only couples blocks of equal size, so
each entry depends on the spectral variable of its own dimension, and the
average of an entry is over that variable alone: a weighted sum over atoms, or
an integral over :math:`u \in (0, 1)` for a quantile function.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import sympy

from .graph import structurally_nonzero
from .diagonal import SPECTRAL_VARIABLE, endpoint_regular, spectral_groups
from .errors import UnsupportedOperationError
from .pencil import IDENTITY, Pencil
from .validation import check_solve_arguments
from .serialization import encode

__all__ = ["Coupling", "DysonSystem", "check_record"]


@dataclass(frozen=True)
class Coupling:
    r"""One term of :math:`\eta`: ``eta[row, col] += weight * g[unknown]``."""

    row: int
    col: int
    unknown: int
    weight: sympy.Expr


class DysonSystem:
    r"""The self-consistent equations of a pencil, in the few block traces that matter.

    Parameters
    ----------
    pencil : Pencil
        A (reduced) linear pencil, from :func:`pencils.linearize`.

    Attributes
    ----------
    pencil : Pencil
    deterministic : sympy.Matrix
        :math:`\Lambda`, the ``K x K`` matrix of identity coefficients.
    unknowns : list of tuple
        The blocks ``(l, m)`` whose traces :math:`g_{lm}` enter :math:`\eta`.
    symbols : list of sympy.Symbol
        :math:`g_{lm}` as symbols, in the order of ``unknowns``.
    couplings : list of Coupling
        The linear map :math:`\eta`.
    parameters : tuple of sympy.Symbol
        The scalar symbols the solution depends on (ratios and the parameters of
        the laws of Diagonals included), sorted by name.
    spectral_groups : list of (sympy.Expr, list of Diagonal)
        The Diagonals grouped by dimension (one spectral variable per group).
    block_groups : list of int
        For each block, the index of the group of its dimension (-1 if none).

    Examples
    --------
    >>> import sympy
    >>> from pencils import Gaussian, derive
    >>> n, d, z = sympy.symbols("n d z")
    >>> X = Gaussian("X", n, d)
    >>> system = derive((X.T * X / n - z * sympy.Identity(d)).I, {n: 2 * d})
    >>> system.symbols
    [g_00, g_11]
    >>> for equation in system.equations():
    ...     print(equation)
    Eq(g_00, 2/(g_11 + 2))
    Eq(g_11, -1/(-g_00 + z))
    """

    def __init__(self, pencil: Pencil):
        self.pencil = pencil
        size = len(pencil.sizes)
        self.ratios = pencil.ratios
        self.deterministic = sympy.zeros(size, size)
        occurrences: dict = {}
        for (i, j), entry in pencil.entries.items():
            for key, coefficient in entry.items():
                if key is IDENTITY:
                    self.deterministic[i, j] = coefficient
                else:
                    gaussian, transposed = key
                    occurrences.setdefault(gaussian, []).append((i, j, coefficient, transposed))
        terms: dict = {}
        for gaussian, places in occurrences.items():
            rows_ratio, cols_ratio = (pencil.dims.ratio(s) for s in gaussian.shape)
            for i, l, c, transposed_left in places:
                for m, j, c_prime, transposed_right in places:
                    if transposed_left == transposed_right:
                        continue  # X ... X pairings vanish in the limit
                    ratio = rows_ratio if transposed_left else cols_ratio
                    key = (i, j, l, m)
                    terms[key] = terms.get(key, 0) + c * c_prime * ratio
        terms = {key: sympy.cancel(weight) for key, weight in sorted(terms.items())}
        terms = {key: weight for key, weight in terms.items() if weight != 0}
        nonzero = structurally_nonzero(size, set(self.deterministic_pattern()), terms)
        terms = {key: weight for key, weight in terms.items() if nonzero[key[2], key[3]]}
        self.unknowns = sorted({(l, m) for (_, _, l, m) in terms})
        index = {block: k for k, block in enumerate(self.unknowns)}
        self.couplings = [Coupling(i, j, index[(l, m)], weight) for (i, j, l, m), weight in terms.items()]
        self.symbols = [sympy.Symbol(f"g_{l}{m}" if size <= 10 else f"g_{l},{m}") for l, m in self.unknowns]
        self.spectral_groups = spectral_groups(pencil.diagonals)
        self.block_groups = [
            next((k for k, (dim, _) in enumerate(self.spectral_groups) if sympy.sympify(size) == dim), -1)
            for size in pencil.sizes
        ]
        free = (set(self.deterministic.free_symbols) - pencil.spectral) | set(pencil.scale.free_symbols)
        for coupling in self.couplings:
            free |= coupling.weight.free_symbols
        for ratio in self.ratios:
            free |= sympy.sympify(ratio).free_symbols
        for diagonal in pencil.diagonals:
            free |= diagonal.parameters
        self.parameters = tuple(sorted(free, key=str))
        self._reduced = None

    def deterministic_pattern(self):
        """The blocks ``(i, j)`` where :math:`\\Lambda` is non-zero, row by row."""
        return ((i, j) for i in range(self.deterministic.rows) for j in range(self.deterministic.cols)
                if self.deterministic[i, j] != 0)

    # ----------------------------------------------------------------- symbolic forms

    def matrix(self) -> sympy.Matrix:
        r""":math:`\Lambda - \eta(g)` with the unknowns as symbols."""
        result = self.deterministic.copy()
        for coupling in self.couplings:
            result[coupling.row, coupling.col] -= coupling.weight * self.symbols[coupling.unknown]
        return result

    @cached_property
    def _inverse_entries(self) -> dict:
        """Entries of ``(Lambda - eta(g))^{-1}`` needed by the equations and the target.

        Blocks that are neither read by ``eta`` nor selected are eliminated by
        Schur complements first, so that only a small matrix is inverted.
        """
        matrix = self.matrix()
        wanted = sorted({b for pair in self.unknowns for b in pair} | {self.pencil.out, self.pencil.into})
        entries = {(i, j): matrix[i, j] for i in range(matrix.rows) for j in range(matrix.cols) if matrix[i, j] != 0}
        alive = set(range(matrix.rows))
        for k in sorted(set(range(matrix.rows)) - set(wanted)):
            pivot = entries.pop((k, k), 0)
            column = {i: entries.pop((i, k)) for i in sorted(alive) if (i, k) in entries}
            row = {j: entries.pop((k, j)) for j in sorted(alive) if (k, j) in entries}
            for i, left in column.items():
                for j, right in row.items():
                    entries[(i, j)] = sympy.cancel(entries.get((i, j), 0) - left * right / pivot)
            alive.discard(k)
        small = sympy.Matrix(len(wanted), len(wanted), lambda r, c: entries.get((wanted[r], wanted[c]), 0))
        inverse = small.inv(method="LU")
        position = {block: k for k, block in enumerate(wanted)}
        needed = set(self.unknowns) | {(self.pencil.out, self.pencil.into)}
        return {pair: sympy.factor(sympy.cancel(inverse[position[pair[0]], position[pair[1]]])) for pair in needed}

    def equations(self) -> list:
        r"""The self-consistent equations :math:`g_{lm} = [(\Lambda - \eta(g))^{-1}]_{lm}`.

        The right-hand sides come from a symbolic inversion (after eliminating the
        blocks ``eta`` does not touch), which is quick for a handful of unknowns
        and slow for tens of them; :meth:`matrix` gives the same system as the
        matrix :math:`\Lambda - \eta(g)` at no cost.  The numeric solvers never
        need this form.
        """
        return [sympy.Eq(symbol, self._averaged(pair)) for symbol, pair in zip(self.symbols, self.unknowns)]

    def target(self) -> sympy.Expr:
        """The limit of the normalised trace, in terms of the unknowns and parameters."""
        return self.pencil.scale * self._averaged((self.pencil.out, self.pencil.into))

    def _averaged(self, pair: tuple) -> sympy.Expr:
        r"""The entry ``pair`` of :math:`(\Lambda - \eta(g))^{-1}`, averaged over the spectral variable
        of its dimension: a sum over atoms (written out for at most 4, else a :class:`sympy.Sum` over
        indexed atoms ``name[k]`` and masses ``w[k]``), or an integral over ``u`` in (0, 1)."""
        entry = self._inverse_entries[pair]
        group = self.block_groups[pair[0]]
        if group < 0:
            return entry
        _, diagonals = self.spectral_groups[group]
        first = diagonals[0]
        if first.is_quantile:
            return sympy.Integral(entry.xreplace({d.symbol: d.quantile() for d in diagonals}), (SPECTRAL_VARIABLE, 0, 1))
        if len(first.values) <= 4:
            return sympy.Add(*(weight * entry.xreplace({d.symbol: d.values[k] for d in diagonals})
                               for k, weight in enumerate(first.weights)))
        k = sympy.Symbol("k", integer=True)
        atoms = {d.symbol: sympy.IndexedBase(d.name)[k] for d in diagonals}
        weight = sympy.Rational(1, len(first.values)) if len(set(first.weights)) == 1 else sympy.IndexedBase("w")[k]
        return sympy.Sum(weight * entry.xreplace(atoms), (k, 1, len(first.values)))

    def reduce(self):
        r"""The same equations in the fewest unknowns, with readable names (:class:`pencils.reduction.ReducedSystem`).

        Unknowns read together, equal by symmetry or proportional by structure are merged, and those the
        others determine explicitly are eliminated, by exact sparse rational
        arithmetic (see :mod:`pencils.reduction`).  Computed once per system (and kept on disk by the
        derivation store for the systems of :func:`pencils.derive`).

        Examples
        --------
        >>> import sympy
        >>> from pencils import Gaussian, derive
        >>> n, d, z = sympy.symbols("n d z")
        >>> X = Gaussian("X", n, d)
        >>> derive((X.T * X / n - z * sympy.Identity(d)).I, {n: 2 * d}).reduce()
        ReducedSystem(1 unknown from 2, parameters z)
        """
        if self.pencil.diagonals:
            raise UnsupportedOperationError(
                "reduce() handles systems without Diagonal matrices only (its elimination does not average over "
                "the spectral variable); use equations() or the numeric solver."
            )
        if self._reduced is None:
            from .reduction import reduce_system

            self._reduced = self.reduced_source() if self.reduced_source is not None else reduce_system(self)
        return self._reduced

    #: Set by the derivation store for the systems it derives (:func:`pencils.derive`): returns their reduced
    #: system from the store, which keeps it on disk.
    reduced_source = None

    def latex(self) -> str:
        r"""The equations and the target as a LaTeX ``aligned`` environment."""
        lines = [f"{sympy.latex(eq.lhs)} &= {sympy.latex(eq.rhs)}" for eq in self.equations()]
        lines.append(r"\lim \tfrac{1}{N}\operatorname{tr} &= " + sympy.latex(self.target()))
        return "\\begin{aligned}\n" + " \\\\\n".join(lines) + "\n\\end{aligned}"

    def _repr_latex_(self) -> str:
        """The equations and the target (:meth:`latex`), for notebooks."""
        return f"$\\displaystyle {self.latex()}$"

    def __repr__(self) -> str:
        return (
            f"DysonSystem({len(self.unknowns)} unknowns, {len(self.pencil.sizes)} blocks, "
            f"parameters {', '.join(map(str, self.parameters))})"
        )

    # ----------------------------------------------------------------- numbers

    def record(self) -> dict:
        r"""The numeric problem as plain data: what :class:`pencils.solve.Solver` needs.

        Integers, lists, strings and dictionaries only (expressions as the trees
        of :func:`pencils.serialization.encode`), so that it can be written to
        the on-disk cache as JSON and read back without evaluating any text
        (:func:`check_record` checks its structure).  The couplings are sorted
        by unknown.  ``spectral`` holds, for each dimension that carries
        Diagonals, its ``blocks``, the eigenvalue ``symbols`` that the
        coefficients of :math:`\Lambda` contain, and their law: ``atoms`` (one
        list per symbol) and ``weights``, or ``quantiles`` (expressions in
        ``u``) and the quadrature ``rule``.

        Examples
        --------
        >>> import sympy
        >>> from pencils import Gaussian, derive
        >>> n, d, z = sympy.symbols("n d z")
        >>> X = Gaussian("X", n, d)
        >>> record = derive((X.T * X / n - z * sympy.Identity(d)).I, {n: 2 * d}).record()
        >>> record["unknowns"], record["parameters"]
        ([[0, 0], [1, 1]], [['Symbol', 'z', {}]])
        """
        identity = list(self.deterministic_pattern())
        couplings = sorted(self.couplings, key=lambda c: c.unknown)
        expressions = (
            [self.deterministic[i, j] for i, j in identity]
            + [c.weight for c in couplings]
            + [sympy.sympify(r) for r in self.ratios]
            + [self.pencil.scale]
        )
        return {
            "parameters": [encode(p) for p in self.parameters],
            "size": len(self.pencil.sizes),
            "identity": [[int(i), int(j)] for i, j in identity],
            "couplings": [[c.row, c.col, c.unknown] for c in couplings],
            "unknowns": [[int(l), int(m)] for l, m in self.unknowns],
            "ratios": [str(r) for r in self.ratios],
            "coefficients": [encode(e) for e in expressions],
            "out": int(self.pencil.out),
            "into": int(self.pencil.into),
            "spectral": [self._spectral_record(group) for group in range(len(self.spectral_groups))],
        }

    #: Set by the derivation store for the systems it derives (:func:`pencils.derive`): returns their solver
    #: from the store, which keeps it on disk.
    solver_source = None

    def _spectral_record(self, group: int) -> dict:
        """The law of one spectral variable as plain data (see :meth:`record`)."""
        _, diagonals = self.spectral_groups[group]
        first = diagonals[0]
        law = {
            "blocks": [block for block, owner in enumerate(self.block_groups) if owner == group],
            "symbols": [encode(d.symbol) for d in diagonals],
        }
        if first.is_quantile:
            quantiles = [d.quantile() for d in diagonals]
            law["rule"] = "legendre" if all(map(endpoint_regular, quantiles)) else "tanh-sinh"
            law["quantiles"] = [encode(q) for q in quantiles]
        else:
            law["atoms"] = [[encode(value) for value in d.values] for d in diagonals]
            law["weights"] = [encode(weight) for weight in first.weights]
        return law

    @cached_property
    def solver(self):
        """The compiled numeric solver (:class:`pencils.solve.Solver`): the derivation store's (kept on disk)
        for a system from :func:`pencils.derive`, else compiled from :meth:`record`."""
        if self.solver_source is not None:
            return self.solver_source()
        from .solve import Solver

        return Solver(self.record())

    def solve(self, subs: dict | None = None, dps: int | None = None, path_from: dict | None = None,
              continuation: str = "neighbours"):
        """Solve at parameter values and return the target (see :func:`pencils.trace_limit`)."""
        subs, dps, path_from = check_solve_arguments(subs, dps, path_from)
        return self.solver.target(subs, dps=dps, path_from=path_from, continuation=continuation)


def check_record(record) -> None:
    """Check that ``record`` has the structure of :meth:`DysonSystem.record` (e.g. one read from disk).

    Every block index must lie within the pencil, every coupling read a listed
    unknown (in order), and there must be one coefficient per identity entry,
    coupling and block, plus the scale.  The expressions themselves are checked
    when they are decoded (:func:`pencils.serialization.decode`).

    Raises
    ------
    ValueError
        Naming the first field that is wrong.

    Examples
    --------
    >>> import sympy
    >>> from pencils import Gaussian, derive
    >>> n, d, z = sympy.symbols("n d z")
    >>> X = Gaussian("X", n, d)
    >>> record = derive((X.T * X / n - z * sympy.Identity(d)).I, {n: 2 * d}).record()
    >>> check_record(record)
    >>> check_record(dict(record, couplings=[[0, 5, 0]]))
    Traceback (most recent call last):
    ...
    ValueError: the record's couplings are not lists of 3 integers within (2, 2, 2)
    """
    if not isinstance(record, dict):
        raise ValueError("the record is not a dictionary")
    size = record.get("size")
    if type(size) is not int or size < 1:
        raise ValueError(f"the record's size is {size!r}, not a positive integer")

    def rows(field: str, bounds: tuple) -> list:
        value = record.get(field)
        if type(value) is not list or not all(
            type(row) is list and len(row) == len(bounds)
            and all(type(k) is int and 0 <= k < bound for k, bound in zip(row, bounds))
            for row in value
        ):
            raise ValueError(f"the record's {field} are not lists of {len(bounds)} integers within {bounds}")
        return value

    unknowns = rows("unknowns", (size, size))
    identity = rows("identity", (size, size))
    couplings = rows("couplings", (size, size, len(unknowns)))
    if [c[2] for c in couplings] != sorted(c[2] for c in couplings):
        raise ValueError("the record's couplings are not sorted by unknown")
    for field, length in [("ratios", size), ("parameters", None),
                          ("coefficients", len(identity) + len(couplings) + size + 1)]:
        value = record.get(field)
        if type(value) is not list or (length is not None and len(value) != length):
            raise ValueError(f"the record's {field} are not a list" + (f" of {length}" if length else ""))
    if not all(type(ratio) is str for ratio in record["ratios"]):
        raise ValueError("the record's ratios are not strings")
    for field in ("out", "into"):
        if type(record.get(field)) is not int or not 0 <= record[field] < size:
            raise ValueError(f"the record's {field} is {record.get(field)!r}, not a block index below {size}")
    spectral = record.get("spectral")
    if type(spectral) is not list:
        raise ValueError("the record's spectral laws are not a list")
    for law in spectral:
        if type(law) is not dict or type(law.get("blocks")) is not list or type(law.get("symbols")) is not list:
            raise ValueError("a spectral law of the record is not a dictionary with blocks and symbols")
        if not law["symbols"] or not all(type(b) is int and 0 <= b < size for b in law["blocks"]):
            raise ValueError("a spectral law of the record has no symbols or a block outside the pencil")
        count = len(law["symbols"])
        if "atoms" in law:
            atoms, weights = law["atoms"], law.get("weights")
            if (type(atoms) is not list or len(atoms) != count or type(weights) is not list or not weights
                    or not all(type(row) is list and len(row) == len(weights) for row in atoms)):
                raise ValueError("a spectral law of the record has atoms that do not match its symbols and weights")
        elif type(law.get("quantiles")) is not list or len(law["quantiles"]) != count or law.get("rule") not in (
                "legendre", "tanh-sinh"):
            raise ValueError("a spectral law of the record has neither atoms nor quantile functions with a rule")
