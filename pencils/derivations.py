"""The derivation store: what :func:`pencils.trace_limit` and :func:`pencils.limit` derive, kept for reuse.

An expression's Dyson system, its compiled solver, its reduced system
(:meth:`pencils.dyson.DysonSystem.reduce`, which the solver uses for evaluations
in arbitrary precision) and the compiled form of a scalar quantity of traces
are kept in memory for the process and on disk (:mod:`pencils.cache`) for the next ones, keyed by the expression, the
dimensions, the package version and a hash of the package's source (every
module, found by walking the package, so that no change to what shapes a
derivation can reuse an old entry).  The disk entry holds plain data
(:meth:`pencils.dyson.DysonSystem.record`), so that a fresh process skips the
linearisation and the derivation.  :data:`store` is the process's store;
``store.clear()`` empties its memory (the disk entries stay).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Mapping

import sympy

from . import cache, quantities
from .arguments import as_sympy
from .dyson import DysonSystem, check_record
from .errors import DimensionError
from .pencil import linearize
from .solve import Solver

__all__ = ["DerivationStore", "dims_key", "store", "subs_key"]


def dims_key(dims: Mapping) -> tuple:
    """``dims`` as a hashable, sorted tuple of ``(dimension, multiple of the base)`` pairs (SymPy objects)."""
    if not isinstance(dims, Mapping):
        raise DimensionError(f"dims must be a dict {{dimension: multiple of the base}}, e.g. {{n: 2*d}}; got {dims!r}.")
    pairs = ((as_sympy(k, "dims", DimensionError), as_sympy(v, "dims", DimensionError)) for k, v in dims.items())
    return tuple(sorted(pairs, key=str))


def subs_key(subs: Mapping) -> tuple:
    """Scalar values as a hashable tuple sorted by name (numbers, SymPy numbers and mpmath numbers are hashable)."""
    return tuple(sorted(subs.items(), key=lambda item: str(item[0])))


class DerivationStore:
    """Derived Dyson systems, solvers and compiled quantities, in memory and on disk.

    Parameters
    ----------
    root : pathlib.Path
        The package directory whose source keys the disk entries (:meth:`fingerprint`).

    Attributes
    ----------
    system(expr, dims_key)
        The :class:`pencils.DysonSystem` of a square matrix expression (memory only).
    solver(expr, dims_key)
        Its :class:`pencils.solve.Solver`: from memory, the disk cache, or a derivation.
    compiled_limit(quantities, dims_key)
        The :class:`pencils.quantities.CompiledLimit` of a tuple of scalar quantities, likewise.
    reduced(expr, dims_key)
        The :class:`pencils.reduction.ReducedSystem` of its Dyson system, likewise.
    trace_matrices(quantities, dims_key)
        The normalised matrices whose traces enter a tuple of quantities
        (:func:`pencils.quantities.trace_matrices`; memory only), found once for all its traces.
    """

    def __init__(self, root: Path = Path(__file__).parent):
        self.root = root
        self.system = lru_cache(maxsize=256)(self._system)
        self.solver = lru_cache(maxsize=256)(self._solver)
        self.compiled_limit = lru_cache(maxsize=64)(self._compiled_limit)
        self.reduced = lru_cache(maxsize=256)(self._reduced)
        self.trace_matrices = lru_cache(maxsize=64)(quantities.trace_matrices)
        self.fingerprint = lru_cache(maxsize=1)(self._fingerprint)

    def clear(self) -> None:
        """Forget everything held in memory (the next call reads the disk cache, or derives again)."""
        for function in (self.system, self.solver, self.compiled_limit, self.reduced, self.trace_matrices,
                         self.fingerprint):
            function.cache_clear()

    def _system(self, expr, dims_key: tuple) -> DysonSystem:
        system = DysonSystem(linearize(expr, dict(dims_key)))
        system.solver_source = _StoredSolver(expr, dims_key)  # one route to a solver: through the store
        system.reduced_source = _StoredReduced(expr, dims_key)  # and to its reduced system
        return system

    def _fingerprint(self) -> str:
        """A hash of the package's source (part of every cache key): every module under :attr:`root`,
        subpackages included, but the command line."""
        digest = hashlib.sha256()
        for path in sorted(self.root.rglob("*.py")):
            name = path.relative_to(self.root).as_posix()
            if name != "cli.py":
                digest.update(f"{name}\0".encode())
                digest.update(hashlib.sha256(path.read_bytes()).digest())
        return digest.hexdigest()

    def from_disk(self, kind: str, expr, dims_key: tuple, build, make):
        """``make(payload)`` of the disk-cache entry of ``expr`` under ``kind``, where ``build(expr, dims_key)``
        makes the payload on a miss, or when ``make`` refuses the stored one (which is then rebuilt and
        replaced, with one :class:`pencils.errors.CacheWarning` per process)."""
        digest = cache.key(kind, sympy.srepr(expr), sympy.srepr(dims_key), self.fingerprint())
        payload = cache.load(kind, digest)
        if payload is not None:
            try:
                return make(payload)
            except (ValueError, TypeError, LookupError, ArithmeticError, RecursionError) as error:
                cache.discard(kind, digest, f"holds a malformed {kind} payload ({type(error).__name__}: {error})")
        payload = build(expr, dims_key)
        made = make(payload)
        cache.store(kind, digest, payload)
        return made

    def _solver(self, expr, dims_key: tuple) -> Solver:
        solver = self.from_disk("trace", expr, dims_key, lambda e, k: {"record": self.system(e, k).record()},
                                _trace_solver)
        solver.reduced_source = _StoredReduced(expr, dims_key, numbers=True)
        return solver

    def _reduced(self, expr, dims_key: tuple):
        from .reduction import ReducedSystem, reduce_system

        return self.from_disk("reduced", expr, dims_key, lambda e, k: reduce_system(self.system(e, k)).record(),
                              lambda payload: ReducedSystem.from_record(self.system(expr, dims_key), payload))

    def _compiled_limit(self, quantity_tuple: sympy.Tuple, dims_key: tuple) -> quantities.CompiledLimit:
        compiled = self.from_disk("limit", quantity_tuple, dims_key,
                                  lambda q, k: quantities.limit_payload(q, k, self.system), quantities.CompiledLimit)
        for index, solver in enumerate(compiled.solvers):
            solver.reduced_source = _ReducedTrace(quantity_tuple, dims_key, index)
        return compiled


class _StoredSolver:
    """The solver of ``expr`` from :data:`store` (a picklable callable, for :attr:`DysonSystem.solver_source`)."""

    def __init__(self, expr, dims_key: tuple):
        self.expr, self.dims_key = expr, dims_key

    def __call__(self) -> Solver:
        return store.solver(self.expr, self.dims_key)


class _StoredReduced:
    """The reduced system of ``expr`` from :data:`store`, or its :class:`pencils.solve.reduced.ReducedEquations`
    if ``numbers`` (a picklable callable, for :attr:`DysonSystem.reduced_source` and :attr:`Solver.reduced_source`)."""

    def __init__(self, expr, dims_key: tuple, numbers: bool = False):
        self.expr, self.dims_key, self.numbers = expr, dims_key, numbers

    def __call__(self):
        reduced = store.reduced(self.expr, self.dims_key)
        return reduced.numbers if self.numbers else reduced


class _ReducedTrace:
    """The :class:`pencils.solve.reduced.ReducedEquations` of the ``index``-th trace of ``quantities`` (a picklable
    callable, for the :attr:`Solver.reduced_source` of the solvers of :meth:`DerivationStore.compiled_limit`).
    The matrices of the tuple are found once per process for all its traces (:attr:`DerivationStore.trace_matrices`)."""

    def __init__(self, quantity_tuple: sympy.Tuple, dims_key: tuple, index: int):
        self.quantity_tuple, self.dims_key, self.index = quantity_tuple, dims_key, index
        self.matrix = None

    def __call__(self):
        if self.matrix is None:
            self.matrix = store.trace_matrices(self.quantity_tuple, self.dims_key)[self.index]
        return store.reduced(self.matrix, self.dims_key).numbers


def _trace_solver(payload: dict) -> Solver:
    """The solver of a ``"trace"`` payload, checked."""
    check_record(payload["record"])
    return Solver(payload["record"])


#: The store of this process.
store = DerivationStore()
