"""Measure ridge learning curves on anisotropic data: the cost against the number of atoms of the spectrum.

A 200-point ridge curve (``linear_regression.errors`` along ``psi_n``, floats) for power-law spectra
(eigenvalues ``k^-1.5``, teacher ``k^-2``, ``k = 1..K``) with ``K = 2 .. 256`` atoms: the first call
(derivation and compilation of the Dyson system, or the cache) and the warm curve.

Run ``python benchmarks/structured.py`` from the repository root.  Every figure is printed as a
Markdown table row (see ``benchmarks/run.py``); nothing here is asserted.
"""

from __future__ import annotations

import time

import numpy as np

from run import best_time, row

from pencils.models import linear_regression


def main() -> None:
    ratios = np.geomspace(0.05, 20, 200)
    warm = {}
    for atoms in (2, 16, 64, 256):
        profile = linear_regression.power_law(1.5, 2.0, atoms)
        start = time.perf_counter()
        linear_regression.errors(ratios[:2], 1e-3, noise=0.1, **profile)
        first = time.perf_counter() - start
        warm[atoms] = best_time(lambda: linear_regression.errors(ratios, 1e-3, noise=0.1, **profile), repeat=2)
        row(f"ridge, power-law spectrum with {atoms} atoms: 200-point curve (test, train, bias, variance), floats",
            f"{warm[atoms]:.2f} s", f"warm, best of 2; first call (derivation or cache) {first:.1f} s; "
            f"{warm[atoms] / warm[2]:.1f}x the 2-atom curve")


if __name__ == "__main__":
    main()
