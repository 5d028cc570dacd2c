"""Measure the cost of a Diagonal (a population covariance with a spectrum) against its number of atoms.

The ridge resolvent trace ``tr((R X^T X R / n + lam I)^{-1}) / d`` with ``R = Sigma^{1/2}`` and a power-law
covariance (eigenvalues ``k^-1``, ``k = 1..K``, equal masses), ``n = 2 d``: one point, and a 200-point ridge
curve, for ``K = 2, 4, ..., 256`` atoms (the Dyson equation averages over the atoms: its cost should grow at most
linearly in ``K``), then a quantile function and one point at 30 digits.

Run ``python benchmarks/diagonal.py`` from the repository root.  Every figure is printed as a Markdown table row
(see ``benchmarks/run.py``); nothing here is asserted.
"""

from __future__ import annotations

import time

import numpy as np
import sympy

from run import best_time, row

from pencils import Diagonal, Gaussian, trace_limit


def main() -> None:
    n, d, lam = sympy.symbols("n d lambda", positive=True)
    X = Gaussian("X", n, d)
    dims = {n: 2 * d}
    ridges = np.geomspace(1e-3, 1.0, 200)
    reference = {}
    for atoms in 2 ** np.arange(1, 9):
        root = Diagonal("R", d, [sympy.sqrt(sympy.Rational(1, k)) for k in range(1, atoms + 1)])
        resolvent = (root * X.T * X * root / n + lam * sympy.Identity(d)).I
        start = time.perf_counter()
        trace_limit(resolvent, dims, {lam: 0.1})
        first = time.perf_counter() - start
        point = best_time(lambda: trace_limit(resolvent, dims, {lam: 0.1}), repeat=3)
        curve = best_time(lambda: trace_limit(resolvent, dims, {lam: ridges}), repeat=2)
        reference.setdefault("point", point)
        reference.setdefault("curve", curve)
        row(f"power-law covariance, {atoms} atoms: one point / 200-point ridge curve, floats",
            f"{point * 1e3:.0f} ms / {curve:.2f} s",
            f"x{point / reference['point']:.1f} / x{curve / reference['curve']:.1f} the 2-atom times; "
            f"first call (derivation, compilation) {first:.2f} s")
    start = time.perf_counter()
    trace_limit(resolvent, dims, {lam: 0.1}, dps=30)
    row("the same, 256 atoms, one point at dps=30", f"{time.perf_counter() - start:.1f} s")
    u = sympy.Symbol("u")
    quantile = Diagonal("Q", d, sympy.Lambda(u, sympy.sqrt(1 + 3 * u)))
    resolvent = (quantile * X.T * X * quantile / n + lam * sympy.Identity(d)).I
    trace_limit(resolvent, dims, {lam: 0.1})
    point = best_time(lambda: trace_limit(resolvent, dims, {lam: 0.1}), repeat=3)
    curve = best_time(lambda: trace_limit(resolvent, dims, {lam: ridges}), repeat=2)
    row("quantile function sqrt(1 + 3u) (Gauss-Legendre, nodes doubled until two rules agree to 1e-11): "
        "one point / 200-point ridge curve, floats", f"{point * 1e3:.0f} ms / {curve:.2f} s")
    start = time.perf_counter()
    trace_limit(resolvent, dims, {lam: 0.1}, dps=30)
    row("the same, one point at dps=30", f"{time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
