"""Random float-versus-arbitrary-precision cases for the float accuracy promise (shared by the tests and
``benchmarks/differential.py``).

Each case is one quantity of the engine (resolvents, products and sums of traces merged by
``limit``, derivatives, block matrices, random features and the DSM errors) at random dimension
ratios and parameters, over-weighting the hard places: ``d > n`` with a tiny ridge, the
interpolation thresholds ``p = n`` and ``p = n m``, and differences of nearly equal traces.  The
float result (``dps=None``) is compared with the same limit at ``dps=30``; a case *fails* if they
differ by more than ``SolverOptions.float_accuracy`` (relative) and the float call issued no
``PrecisionWarning``.  A float call that raises a ``PencilsError`` is counted as refused, not failed.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from functools import lru_cache

import mpmath
import sympy

from pencils import Diagonal, Gaussian, limit
from pencils.errors import PencilsError, PrecisionWarning
from pencils.models import dsm, random_features
from pencils.solve import SolverOptions

d, n, m1, z, lam, sigma, shift = sympy.symbols("d n m1 z lambda sigma shift")
ratio = sympy.Symbol("ratio", positive=True)
Tr = sympy.Trace


@dataclass(frozen=True)
class Case:
    family: str
    quantity: object
    dims: dict
    subs: dict

    def describe(self) -> str:
        values = ", ".join(f"{key}={float(value):.6g}" for key, value in self.subs.items())
        return f"{self.family} at {values}"


@dataclass(frozen=True)
class Outcome:
    case: Case
    value: float | None
    reference: float | None
    warned: bool
    refused: str = ""

    @property
    def error(self) -> float:
        """The relative difference to the reference (absolute where the reference is 0)."""
        if self.value is None or self.reference is None:
            return 0.0
        scale = abs(self.reference) or 1.0
        return abs(self.value - self.reference) / scale

    @property
    def silent(self) -> bool:
        """Off by more than the promise, with no warning."""
        return not self.warned and not self.refused and not (self.error <= SolverOptions().float_accuracy)


@lru_cache(maxsize=1)
def _expressions() -> dict:
    X = Gaussian("X", n, d)
    S = X.T * X / n
    I_d = sympy.Identity(d)
    R = (S + lam * I_d).I
    Rs = (S + lam * (1 + shift) * I_d).I
    W = Gaussian("W", m1, d)
    F = W * X.T / sympy.sqrt(d)
    Y = Gaussian("Y", d, d)
    X1, X2 = Gaussian("X1", n, d), Gaussian("X2", m1, d)
    block = sympy.BlockMatrix([[X1], [X2]])
    first = sympy.BlockMatrix([[sympy.Identity(n), sympy.ZeroMatrix(n, m1)]])
    return {
        "resolvent": Tr(R) / d,
        "ridge bias + variance": lam**2 * Tr(R * R) / d + sigma**2 * Tr(R * S * R) / n,
        "ridge risk as a list": [lam**2 * Tr(R * R) / d, sigma**2 * Tr(R * S * R) / n],
        "tr(R R S)": Tr(R * R * S) / d,
        "derivative of the resolvent": sympy.Derivative(Tr(R), lam) / d,
        "difference of close resolvents": (Tr(R) - Tr(Rs)) / (d * shift),
        "product of traces": Tr(R) / d * Tr(R * S) / d - 1,
        "ridge identity": Tr(S * R) / d + lam * Tr(R) / d,
        "free product": Tr((F * F.T / n + lam * sympy.Identity(m1)).I) / m1,
        "semicircle": Tr(((Y + Y.T) / sympy.sqrt(2 * d) - z * I_d).I) / d,
        "block Gram": Tr(first * (block * block.T / d + lam * sympy.Identity(n + m1)).I * first.T) / n,
    }


def _dims(family: str, r: float, q: float) -> dict:
    if family in ("free product", "block Gram"):
        return {n: sympy.nsimplify(r) * d, m1: sympy.nsimplify(q) * d}
    if family == "semicircle":
        return {d: d}
    return {n: sympy.nsimplify(r) * d}


def _ratio(rng) -> float:
    """n/d: mostly d > n (near-ridgeless regime), sometimes exactly 1 (threshold) or n > d; rational."""
    kind = rng.random()
    if kind < 0.2:
        return 1.0
    if kind < 0.6:
        return float(rng.choice([0.1, 0.25, 0.5, 0.8, 0.9]))
    return float(rng.choice([1.25, 2.0, 4.0, 10.0]))


def _ridge(rng) -> float:
    return float(10.0 ** rng.uniform(-10, 1))


def engine_cases(rng, count: int) -> list:
    """``count`` random cases of the engine's expressions."""
    families = list(_expressions())
    cases = []
    for _ in range(count):
        family = families[rng.integers(len(families))]
        quantity = _expressions()[family]
        r, q = _ratio(rng), _ratio(rng)
        subs = {lam: _ridge(rng)}
        if family in ("ridge bias + variance", "ridge risk as a list"):
            subs[sigma] = float(rng.uniform(0.1, 2.0))
        if family == "difference of close resolvents":
            subs[shift] = float(10.0 ** rng.uniform(-7, -1))
        if family == "semicircle":
            subs = {z: float(rng.uniform(-4, -2.05) if rng.random() < 0.5 else rng.uniform(2.05, 4))}
        cases.append(Case(family, quantity, _dims(family, r, q), subs))
    return cases


@lru_cache(maxsize=1)
def _diagonal_expressions() -> dict:
    """Ridge traces on anisotropic data: a covariance with atoms (a power law), a smooth quantile function, and
    quantile functions singular at u = 0 and at u = 1 (tanh-sinh rules)."""
    u = sympy.Symbol("u")
    X = Gaussian("X", n, d)
    laws = {
        "4-atom power law": [sympy.Integer(k) ** sympy.Rational(-3, 4) for k in range(1, 5)],
        "smooth quantile": sympy.Lambda(u, sympy.sqrt(1 + 3 * u)),
        "quantile singular at 0": sympy.Lambda(u, u ** sympy.Rational(-1, 4)),
        "quantile singular at 1": sympy.Lambda(u, (1 - u) ** sympy.Rational(1, 3)),
    }
    expressions = {}
    for name, law in laws.items():
        root = Diagonal("R", d, law)
        S = root * X.T * X * root / n
        R = (S + lam * sympy.Identity(d)).I
        expressions[f"Diagonal resolvent, {name}"] = Tr(R) / d
        expressions[f"Diagonal ridge bias + variance, {name}"] = lam**2 * Tr(R * R) / d + sigma**2 * Tr(R * S * R) / n
    return expressions


def diagonal_cases(rng, count: int) -> list:
    """``count`` random cases of ridge traces with :class:`pencils.Diagonal` covariances (atoms and quantile
    functions), at the ratios and ridges of :func:`engine_cases` (ridges from 1e-6: the 30-digit references of
    quantile functions at smaller ridges need thousands of nodes)."""
    families = list(_diagonal_expressions())
    cases = []
    for _ in range(count):
        family = families[rng.integers(len(families))]
        subs = {lam: float(10.0 ** rng.uniform(-6, 1)), sigma: float(rng.uniform(0.1, 2.0))}
        if "bias" not in family:
            del subs[sigma]
        cases.append(Case(family, _diagonal_expressions()[family], {n: sympy.nsimplify(_ratio(rng)) * d}, subs))
    return cases


def model_cases(rng, count: int, finite_m: bool = False) -> list:
    """``count`` random random-features and DSM cases, on and near the thresholds ``p = n`` and ``p = n m``."""
    cases = []
    for _ in range(count):
        psi_n = float(10.0 ** rng.uniform(-1, 1))
        m = float(rng.choice([1.0, 2.0, 4.0])) if finite_m else math.inf
        kind = rng.random()
        threshold = psi_n * (m if finite_m else 1.0)
        psi_p = threshold if kind < 0.5 else float(threshold * 10.0 ** rng.uniform(-1, 1))
        ridge = _ridge(rng)
        if rng.random() < 0.3 and not finite_m:
            symbols = random_features.symbols
            subs = {symbols["psi_n"]: psi_n, symbols["psi_p"]: psi_p, symbols["lam"]: ridge, symbols["mu1"]: 0.5,
                    symbols["v2"]: float(rng.uniform(0.01, 0.3)), symbols["signal"]: 1.0,
                    symbols["noise"]: float(rng.uniform(0, 1))}
            found = random_features.quantities()
            cases.append(Case("random features", [found["test"], found["train"]], random_features.dims, subs))
            continue
        t = float(10.0 ** rng.uniform(-2, 0.5))
        dual = finite_m and psi_p > psi_n * m
        subs = dsm.substitutions(psi_n, psi_p, t, ridge, m)
        found = dsm.quantities(finite_m, dual) if finite_m else dsm.quantities(False)
        cases.append(Case("dsm finite m" if finite_m else "dsm m = inf", [found["test"], found["train"]], dsm.dims,
                          {key: value for key, value in subs.items()}))
    return cases


def run(case: Case) -> list:
    """The float values of ``case`` against ``dps=30``: one :class:`Outcome` per quantity."""
    quantities = case.quantity if isinstance(case.quantity, list) else [case.quantity]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            values = limit(quantities, case.dims, case.subs)
        except PencilsError as error:
            return [Outcome(case, None, None, False, refused=str(error).split(";")[0][:120])]
    warned = any(issubclass(w.category, PrecisionWarning) for w in caught)
    try:
        references = limit(quantities, case.dims, case.subs, dps=30)
    except PencilsError as error:
        return [Outcome(case, None, None, warned, refused="reference: " + str(error)[:100])]
    outcomes = []
    for value, reference in zip(values, references):
        with mpmath.workdps(30):
            outcomes.append(Outcome(case, complex(value).real, float(mpmath.re(reference)), warned))
    return outcomes
