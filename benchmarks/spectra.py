"""Measure densities, spectra and functions of random matrices.

A 400-point density (target < 0.5 s warm), the cost of a spectrum, and a 50-point gradient-flow
time curve of least squares, of DSM and of random features (MatrixFunction traces: one contour integral serves every
time), also over training times up to 1e4.

Run ``python benchmarks/spectra.py`` from the repository root.  Every figure is printed as a
Markdown table row (see ``benchmarks/run.py``); nothing here is asserted.
"""

from __future__ import annotations

import time

import numpy as np
import sympy

from run import best_time, row

from pencils import Gaussian, spectral_density, spectrum
from pencils.models import dsm, linear_regression, random_features


def main() -> None:
    n, d, p = sympy.symbols("n d p")
    X = Gaussian("X", n, d)
    wishart, wishart_dims = X.T * X / n, {n: 2 * d}
    U = dsm.feature_matrix()
    symbols = dsm.symbols
    U_dims = {d: d, n: symbols["psi_n"] * d, p: symbols["psi_p"] * d}
    U_subs = {key: value for key, value in dsm.substitutions(0.5, 3.0, 0.5, 0.0).items()
              if key in U.free_symbols or key in (symbols["psi_n"], symbols["psi_p"])}
    cases = (
        ("Marchenko-Pastur, ratio 1/2", wishart, wishart_dims, {}, np.linspace(-0.5, 3.5, 400)),
        ("DSM features U (t = 0.5, psi_n = 1/2, psi_p = 3)", U, U_dims, U_subs, np.linspace(0.0, 3.2, 400)),
    )
    for label, H, dims, subs, x in cases:
        spectral_density(H, dims, x, subs)  # warm-up: derivation, compilation
        seconds = best_time(lambda: spectral_density(H, dims, x, subs), repeat=5)
        row(f"{label}: 400-point density, floats", f"{seconds * 1e3:.0f} ms", "best of 5, warm; target 500 ms")
        start = time.perf_counter()
        found = spectrum(H, dims, subs)
        row(f"{label}: spectrum (edges, atoms, masses), floats", f"{time.perf_counter() - start:.1f} s",
            f"{len(found.intervals)} bulk(s), {len(found.atoms)} atom(s), total mass 1 - {1 - found.total_mass:.1e}")
    times = np.geomspace(0.01, 100.0, 50)
    linear_regression.gradient_flow(2.0, times)  # warm-up: derivation and compilation
    for psi_n in (2.5, 3.0):
        start = time.perf_counter()
        linear_regression.gradient_flow(psi_n, times)
        first = time.perf_counter() - start
        start = time.perf_counter()
        linear_regression.gradient_flow(psi_n, times * 1.5)
        again = time.perf_counter() - start
        row(f"least squares by gradient flow, psi_n = {psi_n}: 50-point time curve (test, train, bias, variance)",
            f"{first:.2f} s", f"new parameters (spectrum and contour solves); {again:.2f} s for 50 other times (solves reused)")
    for psi_n, psi_p, t in ((2.0, 1.0, 0.5), (2.0, 4.0, 0.1)):
        start = time.perf_counter()
        dsm.gradient_flow(psi_n, psi_p, t, times / 10, lam=0.1)
        first = time.perf_counter() - start
        start = time.perf_counter()
        flow = dsm.gradient_flow(psi_n, psi_p, t, times / 15, lam=0.1)
        again = time.perf_counter() - start
        row(f"DSM by gradient flow (m = inf, ReLU, psi_n = {psi_n}, psi_p = {psi_p}, t = {t}, lam = 0.1): "
            "50-point time curve of test and train, tau in [1e-3, 10]",
            f"{first:.1f} s", f"new parameters (spectrum, derivation, contour solves); {again:.2f} s for 50 other times")
    start = time.perf_counter()
    random_features.gradient_flow(2.0, 1.0, times / 10, noise=0.2)
    first = time.perf_counter() - start
    start = time.perf_counter()
    random_features.gradient_flow(2.0, 1.0, times / 15, noise=0.2)
    again = time.perf_counter() - start
    row("random features by gradient flow on the second layer (ReLU, psi_n = 2, psi_p = 1, lam = 0): 50-point time "
        "curve of test and train, tau in [1e-3, 10]",
        f"{first:.1f} s", f"new parameters (spectrum, derivation, contour solves); {again:.2f} s for 50 other times")
    long_times = np.geomspace(1e-2, 1e4, 50)
    start = time.perf_counter()
    dsm.gradient_flow(2.0, 1.0, 0.5, long_times, lam=1e-3)
    first = time.perf_counter() - start
    start = time.perf_counter()
    dsm.gradient_flow(2.0, 1.0, 0.5, long_times * 1.2, lam=1e-3)
    again = time.perf_counter() - start
    row("DSM by gradient flow (m = inf, ReLU, psi_n = 2, psi_p = 1, t = 0.5, lam = 1e-3): 50-point time curve, "
        "tau in [1e-2, 1e4] (long times on hyperbolas, one per decade)",
        f"{first:.1f} s", f"new parameters; {again:.2f} s for 50 other times (solves reused)")
    start = time.perf_counter()
    linear_regression.gradient_flow(2.0, [1.0], dps=30)
    row("the same at one time, dps=30", f"{time.perf_counter() - start:.1f} s")
    start = time.perf_counter()
    spectrum(X * X.T / n, {d: n / 2}, dps=50)
    row("Marchenko-Pastur n x n, ratio 1/2: spectrum at dps=50 (edges and the atom to 50 digits)",
        f"{time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
