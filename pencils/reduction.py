r"""The Dyson system in the few scalar unknowns a theorist would write.

(Why one module of some 700 lines: the exact elimination and the reduced system it returns,
with its names, legend and polynomial, are one pipeline; each step needs the previous one's
unknowns and their names.  The numbers, Newton's method on the reduced equations, are in
:mod:`pencils.solve.reduced`.)

:class:`pencils.dyson.DysonSystem` states :math:`g = (\Lambda - \eta(g))^{-1}`
in every block trace :math:`g_{lm}` that :math:`\eta` reads.  Most of them are
redundant, and :func:`reduce_system` removes them in four exact steps, all in
the field :math:`\mathbb Q(\text{parameters}, \text{unknowns})` of SymPy's
sparse polynomial arithmetic (:class:`sympy.polys.matrices.DomainMatrix`):

1. **Unknowns read together.**  :math:`\eta(g) = \sum_u C_u\, g_u` with one
   coefficient matrix :math:`C_u` per unknown.  Unknowns whose matrices are
   proportional, :math:`C_u = c_u C_{u_0}`, only enter through
   :math:`\sum_u c_u g_u`: a trace of a sum of blocks, one unknown.
2. **Unknowns equal by symmetry.**  The coarsest partition of the unknowns such
   that identifying the unknowns of each class gives identical right-hand sides
   within each class (partition refinement, started from a single class).  The
   identified system has a solution that solves the full one; on the physical
   branch (continued from :math:`g = \Lambda^{-1}`, where the identified
   right-hand sides agree) it is that solution, since
   :math:`[(\Lambda - s\eta(g))^{-1}]_u` is the right-hand side at :math:`sg`.
3. **Explicit unknowns.**  An unknown whose equation :math:`g_u = R_u(g)` does
   not involve :math:`g_u` is substituted into the others, greedily (the one
   read by the fewest equations first) until every remaining unknown lies on
   a cycle of the dependency graph.  An unknown stays where its substitution
   could give an equation of more than :data:`MAX_TERMS` terms, or twice that
   before cancellation: the multivariate gcds of the cancellation (in some
   twenty generators for the DSM at finite :math:`m`) take minutes beyond.
4. **Unknowns proportional by structure.**  Where no explicit unknown is left to
   substitute, unknowns whose right-hand sides are proportional,
   :math:`R_a(g) = c\, R_b(g)` identically with :math:`c` free of the unknowns,
   satisfy :math:`g_a = c\, g_b` at every solution: :math:`g_a` is replaced by
   :math:`c\, g_b` and its equation dropped (it follows from that of
   :math:`g_b`).  The smaller equations may let step 3 go on; the two steps
   alternate until neither applies (random-features error traces: 58 -> 10 and
   66 -> 9 unknowns instead of 58 -> 12 and 66 -> 20).

The entries of :math:`(\Lambda - \eta(g))^{-1}` are computed column by column
by block forward substitution over the strongly connected components of the
matrix (:meth:`DomainMatrix.scc` orders them block lower triangular), each
diagonal block inverted fraction-free (:meth:`DomainMatrix.adj_det` over the
polynomial ring, after clearing the denominators of its rows).
"""

from __future__ import annotations

import contextlib
from typing import Mapping

import numpy as np
import sympy
from sympy.polys.matrices import DomainMatrix

from . import precision
from .errors import EliminationTooLargeError, ParameterError
from .pencil import IDENTITY
from .serialization import decode, encode
from .solve.reduced import ReducedEquations

__all__ = ["ReducedSystem", "reduce_system"]

#: An explicit unknown is not substituted where that would give an equation (or the target) of more
#: terms than this, counting numerator and denominator: the reduction stops short of unreadable sizes.
MAX_TERMS = 300

#: Equations of at most this many terms (numerator and denominator) are printed factored; factoring
#: larger ones in many parameters takes minutes.
FACTORED_TERMS = 80


# --------------------------------------------------------------------------- exact linear algebra


def _inverse_columns(matrix: sympy.Matrix, field, wanted: set) -> dict:
    r"""The entries ``wanted`` (pairs ``(i, j)``) of ``matrix^{-1}``, as elements of ``field``.

    Block forward substitution over the strongly connected components: with the
    components in the order of :meth:`DomainMatrix.scc` the matrix is block
    lower triangular, so column :math:`j` of the inverse vanishes above the
    component :math:`J` of :math:`j`, is :math:`M_{JJ}^{-1} e_j` on it and
    :math:`-M_{II}^{-1} \sum_{K < I} M_{IK} x_K` below.
    """
    size = matrix.rows
    entries: dict = {}
    for (i, j), value in matrix.todok().items():
        element = field.from_sympy(value)
        if element:
            entries.setdefault(i, {})[j] = element
    domain_matrix = DomainMatrix(entries, (size, size), field)
    components = domain_matrix.scc()
    component_of = {i: c for c, members in enumerate(components) for i in members}
    inverses = {}
    ring = field.get_ring()
    fraction = field.field  # FracElement constructor

    def block_inverse(c: int) -> dict:
        """``{(i, j): (M_cc^{-1})_ij}`` for the diagonal block of component ``c``, fraction-free."""
        if c not in inverses:
            members = components[c]
            rows = []
            for i in members:
                row = [entries.get(i, {}).get(j, field.zero) for j in members]
                denominator = ring.one
                for value in row:
                    denominator = denominator.lcm(value.denom)
                rows.append(([value.numer * denominator.exquo(value.denom) for value in row], denominator))
            ring_matrix = DomainMatrix([r for r, _ in rows], (len(members), len(members)), ring)
            adjugate, determinant = ring_matrix.adj_det()
            adjugate = adjugate.to_sdm()
            # (D M)^{-1} = M^{-1} D^{-1}, so M^{-1}_{ab} = adj(D M)_{ab} d_b / det(D M).
            inverses[c] = {
                (members[a], members[b]): fraction(adjugate.get(a, {}).get(b, ring.zero) * rows[b][1]) / fraction(determinant)
                for a in range(len(members)) for b in range(len(members))
            }
        return inverses[c]

    result = {}
    for column in sorted({j for _, j in wanted}):
        start = component_of[column]
        solution = {i: value for (i, j), value in block_inverse(start).items() if j == column and value}
        for c in range(start + 1, len(components)):
            right = {}
            for i in components[c]:
                total = field.zero
                for k, value in entries.get(i, {}).items():
                    if k in solution and component_of[k] != c:
                        total -= value * solution[k]
                if total:
                    right[i] = total
            if right:
                for (i, k), value in block_inverse(c).items():
                    if k in right:
                        solution[i] = solution.get(i, field.zero) + value * right[k]
        for i, j in wanted:
            if j == column:
                result[(i, j)] = solution.get(i, field.zero)
    return result


def _substitute(fraction, variable, replacement):
    r"""``fraction`` with the generator ``variable`` replaced by the fraction ``replacement`` (exactly).

    With :math:`p(x) = \sum_k c_k x^k` of degree :math:`n` and :math:`x = a/b`,
    :math:`p(a/b) = \sum_k c_k a^k b^{n-k} / b^n`.
    """
    field = fraction.field
    a, b = replacement.numer, replacement.denom

    def homogenised(polynomial):
        degree = polynomial.degree(variable)
        if degree <= 0:
            return polynomial, 0
        total = polynomial.ring.zero
        for k in range(degree + 1):
            coefficient = polynomial.coeff_wrt(variable, k)
            if coefficient:
                total += coefficient * a**k * b ** (degree - k)
        return total, degree

    numerator, numerator_degree = homogenised(fraction.numer)
    denominator, denominator_degree = homogenised(fraction.denom)
    shift = denominator_degree - numerator_degree
    if shift > 0:
        numerator *= b**shift
    elif shift < 0:
        denominator *= b ** (-shift)
    return field(numerator) / field(denominator)


def _size(fraction) -> int:
    """The number of terms of a fraction's numerator and denominator."""
    return len(fraction.numer) + len(fraction.denom)


def _size_bound(fraction, variable, replacement) -> int:
    """An upper bound on the terms of :func:`_substitute`'s result, before any cancellation."""
    a, b = len(replacement.numer), len(replacement.denom)
    total = 0
    for polynomial in (fraction.numer, fraction.denom):
        degree = max(polynomial.degree(variable), 0)
        total += sum(len(polynomial.coeff_wrt(variable, k)) * a**k * b ** (degree - k) for k in range(degree + 1))
    return total


def _depends(fraction, variable) -> bool:
    return fraction.numer.degree(variable) > 0 or fraction.denom.degree(variable) > 0


def _tidy(expression: sympy.Expr) -> sympy.Expr:
    """A rational function as ``numerator / denominator``, the denominator's signs made mostly positive.

    ``expression`` comes from a cancelled fraction of the reduction's field.  Each part is factored if
    the fraction has at most :data:`FACTORED_TERMS` terms; larger ones (whose factorisation in many
    parameters takes minutes) are expanded, with only their content taken out.
    """
    numerator, denominator = sympy.fraction(sympy.together(expression))
    small = len(sympy.Add.make_args(numerator)) + len(sympy.Add.make_args(denominator)) <= FACTORED_TERMS
    if small:
        numerator, denominator = sympy.fraction(sympy.cancel(numerator / denominator))
    shape = sympy.factor if small else sympy.factor_terms

    def negative_terms(polynomial) -> int:
        return sum(1 for term in sympy.Add.make_args(sympy.expand(polynomial)) if term.could_extract_minus_sign())

    kept = negative_terms(numerator) + negative_terms(denominator)
    changed = negative_terms(-numerator) + negative_terms(-denominator)
    flipped = changed < kept or (changed == kept and negative_terms(-denominator) < negative_terms(denominator))
    numerator, denominator = (shape(-numerator), shape(-denominator)) if flipped else (shape(numerator), shape(denominator))
    if denominator.is_Number:
        return numerator / denominator
    return sympy.Mul(numerator, sympy.Pow(denominator, -1, evaluate=False), evaluate=False) if numerator != 1 else (
        sympy.Pow(denominator, -1, evaluate=False))


# --------------------------------------------------------------------------- the reduction


class _Unknown:
    """A reduced unknown: ``sum_u coefficient_u * g_u`` over blocks of the full system."""

    def __init__(self, blocks: dict, equal_to: list):
        self.blocks = blocks  # {(l, m): coefficient}
        self.equal_to = equal_to  # other combinations equal to it by symmetry (step 2) or scaled (step 4)


def reduce_system(system) -> "ReducedSystem":
    """Reduce a :class:`pencils.dyson.DysonSystem` (see the module notes); :meth:`DysonSystem.reduce` calls this.

    Examples
    --------
    >>> import sympy
    >>> from pencils import Gaussian, derive
    >>> n, d, z, gamma = sympy.symbols("n d z gamma")
    >>> X = Gaussian("X", n, d)
    >>> reduced = derive((X.T * X / n - z * sympy.Identity(d)).I, {d: d, n: d / gamma}).reduce()
    >>> reduced.equations
    [Eq(g_d, (g_d*gamma + 1)/(-g_d*gamma*z - z + 1))]
    """
    if len(system.unknowns) > ReducedSystem.max_unknowns:
        raise EliminationTooLargeError(
            f"{system!r} has {len(system.unknowns)} unknowns, more than ReducedSystem.max_unknowns = "
            f"{ReducedSystem.max_unknowns} for which the exact reduction runs in about a minute; solve the "
            f"full system (DysonSystem.solve), or raise the bound and expect minutes to hours."
        )
    # 1. Unknowns read together: proportional coefficient matrices.
    columns: dict = {u: {} for u in range(len(system.unknowns))}
    for coupling in system.couplings:
        entry = columns[coupling.unknown]
        entry[(coupling.row, coupling.col)] = entry.get((coupling.row, coupling.col), 0) + coupling.weight
    groups: dict = {}
    for u, column in columns.items():
        first = column[min(column)]
        shape = tuple((place, sympy.cancel(weight / first)) for place, weight in sorted(column.items()))
        groups.setdefault(shape, []).append((u, first))
    combined = []  # (column of the representative, {block: coefficient})
    for members in groups.values():
        representative, scale = members[0]
        blocks = {system.unknowns[u]: sympy.cancel(first / scale) for u, first in members}
        combined.append((columns[representative], blocks))

    symbols = [sympy.Dummy(f"y{k}") for k in range(len(combined))]
    irrational = _irrational_atoms([system.deterministic, system.pencil.scale]
                                   + [w for column, blocks in combined for w in (*column.values(), *blocks.values())])
    base = list(system.parameters) + list(irrational.values())
    combined = [({place: w.xreplace(irrational) for place, w in column.items()},
                 {block: c.xreplace(irrational) for block, c in blocks.items()}) for column, blocks in combined]
    restore = {generator: atom for atom, generator in irrational.items()}
    target_block = (system.pencil.out, system.pencil.into)

    def right_hand_sides(classes: list) -> tuple:
        """The right-hand sides and the target with each unknown replaced by its class's first member,
        in the field of the parameters and those first members."""
        field = sympy.QQ.frac_field(*base, *(symbols[members[0]] for members in classes))
        replacement = {symbols[k]: symbols[members[0]] for members in classes for k in members}
        matrix = system.deterministic.xreplace(irrational)
        for (column, _), symbol in zip(combined, symbols):
            for (i, j), weight in column.items():
                matrix[i, j] -= weight * replacement[symbol]
        wanted = {block for _, blocks in combined for block in blocks} | {target_block}
        inverse = _inverse_columns(matrix, field, wanted)
        sides = [sum((field.from_sympy(c) * inverse[b] for b, c in blocks.items()), field.zero) for _, blocks in combined]
        return field, sides, field.from_sympy(sympy.sympify(system.pencil.scale).xreplace(irrational)) * inverse[target_block]

    # 2. Unknowns equal by symmetry: partition refinement from one class.
    classes = [list(range(len(combined)))] if combined else []
    while True:
        field, sides, target = right_hand_sides(classes)
        refined = []
        for members in classes:
            split: dict = {}
            for k in members:
                split.setdefault(sides[k], []).append(k)
            refined.extend(split.values())
        if len(refined) == len(classes):
            break
        classes = refined

    kept = [members[0] for members in classes]
    equations = {k: sides[k] for k in kept}
    unknowns = {
        k: _Unknown(combined[k][1], [combined[other][1] for other in members[1:]])
        for k, members in zip(kept, classes)
    }

    # 3. Explicit unknowns: substitute those whose equation does not involve themselves.
    field_symbols = {k: field.from_sympy(symbols[k]) for k in kept}
    generator = {k: field.get_ring().ring.gens[field.symbols.index(symbols[k])] for k in kept}
    target_unknowns = [k for k in kept if equations[k] == target]
    refused: set = set()  # unknowns whose substitution would make an equation too large
    while True:
        readers = {k: [j for j in equations if j != k and _depends(equations[j], generator[k])] for k in equations}
        candidates = [k for k in equations if k not in refused and not _depends(equations[k], generator[k])]
        if not candidates:
            target, merged = _merge_proportional(equations, unknowns, generator, field_symbols, target,
                                                 target_unknowns)
            if not merged:
                break
            refused.clear()  # smaller equations now: the refused substitutions may fit
            continue
        k = min(candidates, key=lambda c: (c in target_unknowns, _size(equations[c]) * len(readers[c]), c))
        value = equations[k]
        substituted = {}
        for j, fraction in [(j, equations[j]) for j in readers[k]] + [(None, target)]:
            if not _depends(fraction, generator[k]):
                continue
            if _size_bound(fraction, generator[k], value) > 2 * MAX_TERMS:
                break
            substituted[j] = _substitute(fraction, generator[k], value)
            if _size(substituted[j]) > MAX_TERMS:
                break
        else:
            del equations[k], unknowns[k]
            target = substituted.pop(None, target)
            equations.update(substituted)
            continue
        refused.add(k)
    for k in equations:  # a target equal to an unknown is written as that unknown
        if target == equations[k] or target == field_symbols[k]:
            target = field_symbols[k]
    for unknown in unknowns.values():
        unknown.blocks = {block: c.xreplace(restore) for block, c in unknown.blocks.items()}
        unknown.equal_to = [{block: c.xreplace(restore) for block, c in blocks.items()} for blocks in unknown.equal_to]
    order = list(equations)
    names = _names(system, [unknowns[k] for k in order])
    renaming = {symbols[k]: name for k, name in zip(order, names)}
    right_hand_sides = [_tidy(field.to_sympy(equations[k]).xreplace(restore).xreplace(renaming)) for k in order]
    target = field.to_sympy(target).xreplace(restore).xreplace(renaming)
    return ReducedSystem(system, names, right_hand_sides, target if target in names else _tidy(target),
                         [unknowns[k].blocks for k in order], [unknowns[k].equal_to for k in order])


def _merge_proportional(equations: dict, unknowns: dict, generator: dict, field_symbols: dict, target,
                        preferred: list) -> tuple:
    r"""Step 4 of the reduction (module notes): merge the unknowns whose right-hand sides are proportional.

    Where :math:`R_a(y) = c\, R_b(y)` identically, with :math:`c` free of the
    unknowns, every solution has :math:`y_a = c\, y_b`: :math:`y_a` is replaced by
    :math:`c\, y_b` in the other equations and the target, and its equation,
    implied by that of :math:`y_b`, dropped; its combination of blocks, divided
    by :math:`c`, is recorded as equal to :math:`y_b`.  ``equations``,
    ``unknowns`` (and ``target``, returned) are updated in place; returns
    ``(target, whether any unknown was merged)``.
    """
    def shape(k) -> tuple:
        """The degrees of the equation of ``k`` in each unknown (equal for proportional equations)."""
        fraction = equations[k]
        return tuple((j, fraction.numer.degree(g), fraction.denom.degree(g)) for j, g in generator.items()
                     if j in equations and _depends(fraction, g))

    groups: dict = {}
    for k in sorted(equations, key=lambda k: (k not in preferred, k)):
        if equations[k]:
            groups.setdefault(shape(k), []).append(k)
    positions = [generator[j].ring.gens.index(generator[j]) for j in equations]
    merged = False
    for members in groups.values():
        kept = []
        for a in members:
            for b in kept:
                ratio = _constant_ratio(equations[a], equations[b], positions)
                if ratio is None:
                    continue
                scale = ratio.as_expr()
                others = [unknowns[a].blocks] + unknowns[a].equal_to
                unknowns[b].equal_to.extend({block: sympy.cancel(c / scale) for block, c in blocks.items()}
                                            for blocks in others)
                replacement = ratio * field_symbols[b]
                del equations[a], unknowns[a]
                for j in equations:
                    if _depends(equations[j], generator[a]):
                        equations[j] = _substitute(equations[j], generator[a], replacement)
                if _depends(target, generator[a]):
                    target = _substitute(target, generator[a], replacement)
                merged = True
                break
            else:
                kept.append(a)
    return target, merged


def _constant_ratio(first, second, positions: list):
    r"""``first / second`` if it is free of the generators at ``positions`` (the unknowns), else ``None``.

    With :math:`R_1 = N_1/D_1` and :math:`R_2 = N_2/D_2`, the ratio is free of the
    unknowns exactly when :math:`P_1 = N_1 D_2` and :math:`P_2 = N_2 D_1` are
    proportional as polynomials in the unknowns: their coefficients :math:`c_1, c_2`
    (polynomials in the parameters) of one monomial in the unknowns then give
    :math:`c_2 P_1 = c_1 P_2` and the ratio :math:`c_1 / c_2`.  Products only, no gcd:
    a division of the fractions with its cancellation takes seconds for equations
    of a hundred terms.
    """
    products = [first.numer * second.denom, second.numer * first.denom]
    ring = products[0].ring

    def split(polynomial) -> dict:
        """``{exponents of the unknowns: coefficient terms}`` of ``polynomial``."""
        parts: dict = {}
        for monomial, coefficient in polynomial.items():
            key = tuple(monomial[i] for i in positions)
            rest = tuple(0 if i in positions else e for i, e in enumerate(monomial))
            parts.setdefault(key, {})[rest] = coefficient
        return parts

    parts = [split(p) for p in products]
    if set(parts[0]) != set(parts[1]) or not parts[0]:
        return None
    key = next(iter(parts[0]))
    c1, c2 = (ring.from_dict(p[key]) for p in parts)
    if products[0] * c2 != products[1] * c1:
        return None
    return first.field(c1) / first.field(c2)


def _irrational_atoms(expressions: list) -> dict:
    """The non-rational building blocks of the coefficients (``sqrt(h)``, ``exp(t)``), each with a generator.

    They are treated as independent generators of the field (identities such
    as ``sqrt(h)**2 = h`` are restored when the results are turned back into
    SymPy expressions), which keeps every computation exact.
    """
    atoms = set()
    for expression in expressions:
        expression = sympy.sympify(expression)
        atoms |= {a for a in expression.atoms(sympy.Pow) if not a.exp.is_Integer}
        atoms |= expression.atoms(sympy.Function)
    return {atom: sympy.Dummy(f"a{k}") for k, atom in enumerate(sorted(atoms, key=sympy.default_sort_key))}


# --------------------------------------------------------------------------- names


def _reading_gaussians(pencil, block: tuple) -> list:
    """The Gaussians whose pairings read the trace of ``block = (l, m)``, each with the space it lies in."""
    l, m = block
    found = []
    for (i, j), entry in sorted(pencil.entries.items()):
        if j != l:
            continue
        for key in entry:
            if key is IDENTITY:
                continue
            gaussian, transposed = key
            partner = any((gaussian, not transposed) in other for (r, _), other in pencil.entries.items() if r == m)
            if partner:
                space = "row" if transposed else "column"
                if (gaussian.name, space) not in found:
                    found.append((gaussian.name, space))
    return found


def _names(system, unknowns: list) -> list:
    """Symbols ``g_N`` (``g_{N,1}``, ``g_{N,2}`` if several) after the dimension ``N`` of each unknown's space."""
    spaces = [system.pencil.sizes[next(iter(u.blocks))[0]] for u in unknowns]
    taken = {str(p) for p in system.parameters}
    names = []
    for k, space in enumerate(spaces):
        label = sympy.latex(space)
        same = [j for j, other in enumerate(spaces) if other == space]
        name = f"g_{label}" if len(same) == 1 else f"g_{{{label},{same.index(k) + 1}}}"
        while name in taken:
            name += "'"
        names.append(sympy.Symbol(name))
    return names


# --------------------------------------------------------------------------- the reduced system


class ReducedSystem:
    r"""The self-consistent equations of a trace limit in the fewest unknowns (see :func:`reduce_system`).

    Attributes
    ----------
    system : DysonSystem
        The full system it comes from.
    unknowns : list of sympy.Symbol
        The reduced unknowns, each a normalised trace (or a combination of
        traces) of blocks of the pencil's inverse, named after the dimension of
        its space (see :meth:`legend`).
    equations : list of sympy.Eq
        One equation ``unknown = rational function of the unknowns and parameters`` per unknown.
    target : sympy.Expr
        The limit of the normalised trace in the unknowns and parameters.
    parameters : tuple of sympy.Symbol
        As in the full system.
    combinations : list of dict
        For each unknown, ``{(l, m): c}``: the unknown is :math:`\sum c\, g_{lm}`
        in the traces of the full system.

    Examples
    --------
    >>> import sympy
    >>> from pencils import Gaussian, derive
    >>> n, d, z, gamma = sympy.symbols("n d z gamma")
    >>> X = Gaussian("X", n, d)
    >>> reduced = derive((X.T * X / n - z * sympy.Identity(d)).I, {d: d, n: d / gamma}).reduce()
    >>> reduced
    ReducedSystem(1 unknown from 2, parameters gamma, z)
    >>> reduced.target
    g_d
    """

    def __init__(self, system, unknowns: list, right_hand_sides: list, target: sympy.Expr, combinations: list,
                 equal_to: list):
        self.system = system
        self.parameters = system.parameters
        self.unknowns = list(unknowns)
        self.equations = [sympy.Eq(symbol, rhs) for symbol, rhs in zip(self.unknowns, right_hand_sides)]
        self.target = target
        self.combinations = list(combinations)
        self._equal_to = list(equal_to)
        self.numbers = ReducedEquations(self.parameters, self.unknowns, right_hand_sides, target, self.combinations)

    def record(self) -> dict:
        """The reduced system as plain data (:meth:`ReducedEquations.record` and the unknowns equal by structure),
        which the derivation store keeps on disk."""
        record = self.numbers.record()
        record["equal_to"] = [[[[l, m, encode(c)] for (l, m), c in blocks.items()] for blocks in others]
                              for others in self._equal_to]
        return record

    @classmethod
    def from_record(cls, system, record: Mapping) -> "ReducedSystem":
        """The reduced system of ``system`` stored as ``record`` (see :meth:`record`)."""
        numbers = ReducedEquations.from_record(record)
        if numbers.parameters != tuple(system.parameters):
            raise ValueError("a reduced record of other parameters than its system's")
        equal_to = [[{(int(l), int(m)): decode(c) for l, m, c in blocks} for blocks in others]
                    for others in record["equal_to"]]
        if len(equal_to) != len(numbers.unknowns):
            raise ValueError("a reduced record needs the unknowns equal by structure to each of its unknowns")
        return cls(system, numbers.unknowns, numbers.right_hand_sides, numbers.target, numbers.combinations, equal_to)

    def __repr__(self) -> str:
        count = len(self.unknowns)
        return (f"ReducedSystem({count} unknown{'s' if count != 1 else ''} from {len(self.system.unknowns)}, "
                f"parameters {', '.join(map(str, self.parameters))})")

    # ----------------------------------------------------------------- printing

    def legend(self) -> list:
        r"""What each unknown is, as LaTeX: ``g = \lim \tfrac1N \operatorname{tr}(\dots)``, its space and Gaussians."""
        pencil = self.system.pencil
        lines = []
        for symbol, blocks, others in zip(self.unknowns, self.combinations, self._equal_to):
            size = pencil.sizes[next(iter(blocks))[0]]
            terms = sympy.Add(*(c * sympy.Symbol(f"G_{{{l}{m}}}" if len(pencil.sizes) <= 10 else f"G_{{{l},{m}}}")
                                for (l, m), c in blocks.items()))
            gaussians = {}
            for block in blocks:
                for name, space in _reading_gaussians(pencil, block):
                    gaussians.setdefault(space, []).append(name)
            where = r"\text{; }".join(
                rf"\text{{{space} space of }} " + ", ".join(sympy.latex(sympy.Symbol(n)) for n in dict.fromkeys(names))
                for space, names in gaussians.items()
            )
            line = (f"{sympy.latex(symbol)} &= \\lim \\tfrac{{1}}{{{sympy.latex(size)}}}\\operatorname{{tr}}"
                    f"\\bigl({sympy.latex(terms)}\\bigr) && {where}")
            if others:
                line += f"\\text{{; equal by structure to {len(others)} other trace{'s' if len(others) > 1 else ''}}}"
            lines.append(line)
        return lines

    def latex(self) -> str:
        r"""The equations, the target and the legend as one LaTeX ``aligned`` environment.

        :math:`G = L^{-1}` is the inverse of the pencil (:attr:`DysonSystem.pencil`), :math:`G_{lm}` its block
        :math:`(l, m)`.
        """
        lines = [f"{sympy.latex(e.lhs)} &= {sympy.latex(e.rhs)}" for e in self.equations]
        lines.append(r"\lim \tfrac{1}{N}\operatorname{tr} &= " + sympy.latex(self.target))
        lines.append(r"&\text{where } G = L^{-1} \text{ (the pencil)}:")
        lines.extend(self.legend())
        return "\\begin{aligned}\n" + " \\\\\n".join(lines) + "\n\\end{aligned}"

    def _repr_latex_(self) -> str:
        return f"$\\displaystyle {self.latex()}$"

    # ----------------------------------------------------------------- numbers

    def values(self, subs: Mapping, dps: int | None = None) -> dict:
        r"""The unknowns on the physical branch at ``subs`` (broadcast), from the full system's solver.

        Each unknown is :math:`\sum c\, g_{lm}` (:attr:`combinations`) of the
        traces :math:`g_{lm}` that :meth:`pencils.solve.Solver.solve` finds.

        Returns
        -------
        dict
            ``{unknown: value}``: floats or numpy arrays, mpmath numbers (object arrays) if ``dps``.

        Examples
        --------
        >>> import sympy
        >>> from pencils import Gaussian, derive
        >>> n, d, z = sympy.symbols("n d z")
        >>> X = Gaussian("X", n, d)
        >>> reduced = derive((X.T * X / n - z * sympy.Identity(d)).I, {n: 2 * d}).reduce()
        >>> round(reduced.values({z: -1.0})[reduced.unknowns[0]], 12)
        0.561552812809
        """
        inverse, _, shape = self.system.solver.solve(dict(subs), dps=dps)
        columns = self._columns(subs, dps, inverse.shape[0])
        return {symbol: _shaped(column, shape, dps)
                for symbol, column in zip(self.unknowns, self.numbers.start(inverse, columns, dps))}

    def _columns(self, subs: Mapping, dps: int | None, count: int) -> list:
        """The parameter values as flat arrays of ``count`` points (mpmath numbers if ``dps``)."""
        subs = {sympy.sympify(key): value for key, value in subs.items()}
        missing = [str(p) for p in self.parameters if p not in subs]
        if missing:
            raise ParameterError(f"no value given for {', '.join(missing)}; pass subs={{{missing[0]}: ...}}.")
        arrays = np.broadcast_arrays(*(np.asarray(subs[p], dtype=object if dps else None) for p in self.parameters))
        arrays = [np.broadcast_to(a.reshape(-1), (count,)) for a in arrays]
        if dps is None:
            return arrays
        with precision.working(dps):
            return [np.array([_mpmath_number(x) for x in a], dtype=object) for a in arrays]

    def residuals(self, unknowns: Mapping, subs: Mapping, dps: int | None = None) -> np.ndarray:
        r"""The residuals :math:`y - R(y)` of the reduced equations at given unknowns and parameters, shape (U, P)."""
        count = max([np.size(v) for v in unknowns.values()] + [np.size(v) for v in subs.values()] + [1])
        columns = self._columns(subs, dps, count)
        values = [np.broadcast_to(np.asarray(unknowns[s], dtype=object if dps else complex).reshape(-1), (count,))
                  for s in self.unknowns]
        return self.numbers.residuals(values, columns, count, dps)

    def solve(self, subs: Mapping, dps: int | None = None, start: Mapping | None = None,
              max_iterations: int = 60) -> tuple:
        r"""The unknowns and the target by Newton's method on the reduced equations.

        Starts from ``start`` (``{unknown: value}``), by default the full system's
        float solution (:meth:`values`), and iterates (:meth:`ReducedEquations.newton`)
        :math:`y \leftarrow y - J(y)^{-1} (y - R(y))` with the exact Jacobian, in
        float (batched) or in mpmath at ``dps +`` :data:`pencils.precision.GUARD_DIGITS` digits until the step is
        below :math:`10^{-(\mathrm{dps} + 8)}` relative.

        Returns
        -------
        unknowns : dict
            ``{unknown: value}``, shaped like the broadcast parameters.
        target : float, complex, numpy.ndarray or mpmath number

        Raises
        ------
        ConvergenceError
            If Newton's method does not converge (the start is too far, or the
            reduced Jacobian is singular there).

        Examples
        --------
        >>> import mpmath, sympy
        >>> from pencils import Gaussian, derive
        >>> n, d, z = sympy.symbols("n d z")
        >>> X = Gaussian("X", n, d)
        >>> reduced = derive((X.T * X / n - z * sympy.Identity(d)).I, {n: 2 * d}).reduce()
        >>> _, target = reduced.solve({z: -1}, dps=40)
        >>> mpmath.nstr(target, 40)
        '0.5615528128088302749107049279870385125736'
        """
        start = self.values({key: _float_value(value) for key, value in subs.items()}) if start is None else start
        shape = np.broadcast_shapes(*(np.shape(v) for v in list(subs.values()) + list(start.values())))
        count = int(np.prod(shape)) if shape else 1
        columns = self._columns(subs, dps, count)
        y, target, _ = self.numbers.newton([start[s] for s in self.unknowns], columns, count, dps, max_iterations)
        with contextlib.nullcontext() if dps is None else precision.working(dps):
            unknowns = {s: _shaped(column, shape, dps) for s, column in zip(self.unknowns, y)}
            return unknowns, _shaped(target, shape, dps)

    # ----------------------------------------------------------------- elimination

    #: The most unknowns of a full system that :func:`reduce_system` attempts.  The exact rational
    #: arithmetic grows quickly with the unknowns and the parameters: measured cold on a loaded 2-core
    #: machine (``benchmarks/reduction.py``), 12 unknowns (DSM m = inf) 0.3-0.5 s, 45 and 50 with 12
    #: parameters and 7 square roots (DSM finite m, test traces) 15 s and 6.6 s, 58 and 66
    #: (random-features errors) 7.6 s and 10 s, 32 for ``(S**2 + lambda)**-2`` 15 s (no unknown is explicit).
    max_unknowns = 66

    #: The largest Bezout number (product of the total degrees of the equations, cleared of
    #: denominators, and of the target's equation) for which :meth:`polynomial` attempts the elimination.
    max_bezout = 64

    def polynomial(self, symbol: sympy.Symbol | None = None) -> sympy.Poly:
        r"""One polynomial equation :math:`P(\tau, \text{parameters}) = 0` satisfied by the limit :math:`\tau`.

        The equations :math:`D_k y_k - N_k = 0` (cleared of denominators) and
        :math:`D\tau - N = 0` for the target are reduced to one polynomial in
        :math:`\tau` by successive resultants in the unknowns; of its
        irreducible factors, the one that vanishes at the solver's value at a
        test point (real ratios in :math:`(1, 2)`, other parameters complex) is
        returned.

        Parameters
        ----------
        symbol : sympy.Symbol, optional
            The name of the limit in the polynomial (default ``tau``).

        Returns
        -------
        sympy.Poly
            In ``symbol``, with coefficients polynomial in the parameters.

        Raises
        ------
        EliminationTooLargeError
            If the Bezout number of the system exceeds :attr:`max_bezout`.

        Examples
        --------
        >>> import sympy
        >>> from pencils import Gaussian, derive
        >>> n, d, z, gamma = sympy.symbols("n d z gamma")
        >>> X = Gaussian("X", n, d)
        >>> reduced = derive((X.T * X / n - z * sympy.Identity(d)).I, {d: d, n: d / gamma}).reduce()
        >>> reduced.polynomial().as_expr()
        gamma*tau**2*z + tau*(gamma + z - 1) + 1
        """
        tau = symbol if symbol is not None else sympy.Symbol("tau")
        polynomials = [sympy.numer(sympy.together(e.lhs - e.rhs)) for e in self.equations]
        polynomials.append(sympy.numer(sympy.together(tau - self.target)))
        variables = list(self.unknowns)
        bezout = 1
        for polynomial in polynomials:
            bezout *= max(sympy.Poly(polynomial, *variables, tau).total_degree(), 1)
        if bezout > self.max_bezout:
            raise EliminationTooLargeError(
                f"eliminating {len(variables)} unknowns from equations of Bezout number {bezout} exceeds "
                f"ReducedSystem.max_bezout = {self.max_bezout}; solve the reduced system numerically "
                f"(ReducedSystem.solve) or raise the bound."
            )
        polynomials = [sympy.Poly(p, *variables, tau) for p in polynomials]
        for variable in variables:
            with_it = [p for p in polynomials if p.degree(variable) > 0]
            without = [p for p in polynomials if p.degree(variable) <= 0]
            pivot = min(with_it, key=lambda p: (p.degree(variable), len(p.terms())))
            eliminated = [sympy.Poly(sympy.resultant(pivot.as_expr(), other.as_expr(), variable), *variables, tau)
                          for other in with_it if other is not pivot]
            polynomials = without + [p for p in eliminated if not p.is_zero]
        candidates = []
        for polynomial in polynomials:
            for factor, _ in sympy.factor_list(polynomial.as_expr())[1]:
                if factor.has(tau) and factor not in candidates:
                    candidates.append(factor)
        if len(candidates) == 1:
            return sympy.Poly(candidates[0], tau)
        point = self._test_point()
        with precision.digits(30) as context:
            value = context.convert(self.system.solve(point, dps=30))
            sizes = []
            for factor in candidates:
                polynomial = sympy.Poly(factor.subs(point), tau)
                terms = sum(abs(_mpmath_number(c)) * abs(value) ** k for (k,), c in polynomial.terms())
                sizes.append(abs(polynomial.eval(sympy.Float(str(value.real), 30) + sympy.I * sympy.Float(str(value.imag), 30)))
                             / terms)
        best = int(np.argmin([float(s) for s in sizes]))
        return sympy.Poly(candidates[best], tau)

    def _test_point(self) -> dict:
        """Parameter values at which to tell factors apart: ratios real in (1, 2), the others complex."""
        ratios = set().union(*(sympy.sympify(r).free_symbols for r in self.system.ratios))
        point = {}
        for k, parameter in enumerate(self.parameters):
            if parameter in ratios:
                point[parameter] = sympy.Rational(11 + 3 * k, 10)
            else:
                point[parameter] = sympy.Rational(3 + k, 10) + sympy.I * sympy.Rational(11 + k, 10)
        return point


def _mpmath_number(value):
    from .solve.compiled import to_mpmath

    return to_mpmath(value)


def _float_value(value):
    """A parameter value as a float, complex or numpy array (exact SymPy numbers and strings rounded)."""
    if isinstance(value, np.ndarray):
        return np.asarray(value.tolist(), dtype=complex) if value.dtype == object else value
    number = complex(_mpmath_number(value) if isinstance(value, str) else sympy.sympify(value))
    return number.real if number.imag == 0 else number


def _shaped(values, shape: tuple, dps: int | None):
    from .solve.compiled import shaped

    return shaped(np.asarray(values), shape, dps)
