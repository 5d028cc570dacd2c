"""Measure the figures reported in the README: derivation, throughput, precision, theory vs simulation.

Run ``python benchmarks/run.py`` (add ``--quick`` for smaller grids).  Every figure is printed
as a Markdown table row with what was measured; nothing here is asserted.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import subprocess
import sys
import time

import mpmath
import numpy as np


def fresh_process(code: str) -> float:
    """Wall time of ``python -c code`` in a new interpreter (import included)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return time.perf_counter() - start


def timed(function, repeat: int = 3) -> float:
    """Best wall time of ``repeat`` calls."""
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def row(what: str, value: str, note: str = "") -> None:
    print(f"| {what} | {value} | {note} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller grids")
    arguments = parser.parse_args()
    grid_size = 30 if arguments.quick else 100

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"numpy {np.__version__}\n")
    print("| figure | measured | note |\n|---|---|---|")

    first = "from pencils.models import dsm; dsm.errors(20.0, 5.0, 0.01, 1e-3)"
    row("DSM m=inf: first value in a fresh process (import + derivation + solve)", f"{fresh_process(first):.2f} s")
    first_m = "from pencils.models import dsm; dsm.errors(20.0, 5.0, 0.01, 1e-3, m=4)"
    row("DSM m=4: first value in a fresh process", f"{fresh_process(first_m):.2f} s")
    first_rf = "from pencils.models import random_features as rf; rf.errors(2.0, 1.0, 1e-2)"
    row("RF: first value in a fresh process", f"{fresh_process(first_rf):.2f} s")

    from pencils import Gaussian, trace_limit
    from pencils.models import dsm

    dsm.errors(20.0, 5.0, 0.01, 1e-3)  # warm-up: derivation and compilation
    psi_p = np.geomspace(1.0, 100.0, 200)
    for t in (1.0, 0.01):
        seconds = timed(lambda: dsm.errors(20.0, psi_p, t, 1e-3), repeat=2)
        row(f"DSM m=inf: 200-point psi_p learning curve, t={t}, lam=1e-3 (warm)", f"{seconds:.2f} s",
            f"{1e3 * seconds / 200:.1f} ms/point")
    psi = np.geomspace(0.1, 100.0, grid_size)
    seconds = timed(lambda: dsm.errors(psi[:, None], psi[None, :], 0.1, 1e-3), repeat=1)
    row(f"DSM m=inf: {grid_size}x{grid_size} (psi_n, psi_p) grid, t=0.1, lam=1e-3 (warm)", f"{seconds:.2f} s",
        f"{1e3 * seconds / grid_size**2:.2f} ms/point")
    dsm.errors(2.0, 1.0, 0.1, 1e-2, m=4)
    seconds = timed(lambda: dsm.errors(20.0, np.geomspace(1, 100, 20), 0.1, 1e-3, m=4), repeat=1)
    row("DSM m=4: 20-point learning curve (warm)", f"{seconds:.2f} s", f"{seconds / 20:.2f} s/point")

    dsm.errors(20.0, 5.0, 0.1, 1e-3, dps=30)
    seconds = timed(lambda: dsm.errors(20.0, 5.0, 0.1, 1e-3, dps=50), repeat=1)
    row("DSM m=inf: one point at dps=50 (warm)", f"{seconds:.2f} s", "test and train")
    precise, floats = dsm.errors(20.0, 5.0, 0.1, 1e-3, dps=50), dsm.errors(20.0, 5.0, 0.1, 1e-3)
    row("DSM m=inf: float vs dps=50, relative", f"{abs(float(precise.test) - floats.test) / floats.test:.1e}")
    higher = dsm.errors(20.0, 5.0, 0.1, 1e-3, dps=60)
    with mpmath.workdps(70):
        row("DSM m=inf: dps=50 vs dps=60", mpmath.nstr(abs(precise.test - higher.test), 3))

    import sympy

    n, d, z = sympy.symbols("n d z")
    X = Gaussian("X", n, d)
    value = trace_limit((X.T * X / n - z * sympy.Identity(d)).I, {n: 2 * d}, {z: -1}, dps=50)
    with mpmath.workdps(80):
        error = abs(value - (mpmath.sqrt(17) - 3) / 2)
    row("Marchenko-Pastur at dps=50 vs closed form", mpmath.nstr(error, 3), "absolute")

    simulation = timed(lambda: dsm.simulate(400, 2.0, 3.0, 0.1, 1e-2, math.inf, activation="sin"), repeat=1)
    dsm.errors(2.0, 3.0, 0.1, 1e-2, activation="sin")
    theory = timed(lambda: dsm.errors(2.0, 3.0, 0.1, 1e-2, activation="sin"), repeat=3)
    row("one theory point vs one simulation at d=400 (m=inf, sin)", f"{theory * 1e3:.0f} ms vs {simulation:.2f} s",
        f"ratio {simulation / theory:.0f}")


if __name__ == "__main__":
    main()
