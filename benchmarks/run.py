"""Measure the figures reported in the README: derivation and cache, throughput, precision, theory vs simulation.

Run ``python benchmarks/run.py`` (``--quick`` for smaller grids and fewer seeds).  Every
figure is printed as a Markdown table row with what was measured; nothing here is
asserted.  The robustness grid has its own script, ``benchmarks/robustness.py``.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import subprocess
import sys
import tempfile
import time

import mpmath
import numpy as np

FIRST_VALUE = "from pencils.models import dsm; dsm.errors(20.0, 5.0, 0.01, 1e-3{})"


def fresh_process(code: str, cache: str) -> float:
    """Wall time of ``python -c code`` in a new interpreter (import included), with the cache in ``cache``."""
    environment = dict(os.environ, PENCILS_CACHE_DIR=cache)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, env=environment)
    return time.perf_counter() - start


def best_time(function, repeat: int) -> float:
    """Best wall time of ``repeat`` calls."""
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def row(what: str, value: str, note: str = "") -> None:
    print(f"| {what} | {value} | {note} |", flush=True)


def derivation_and_cache() -> None:
    """Target 1: the first value in a fresh process, without and with the on-disk cache."""
    for label, extra in (("m=inf", ""), ("m=4", ", m=4")):
        code = FIRST_VALUE.format(extra)
        with tempfile.TemporaryDirectory() as cache:
            cold = fresh_process(code, cache)
            warm = min(fresh_process(code, cache) for _ in range(3))
        row(f"DSM {label}: first value in a fresh process, empty cache (import + derivation + solve)", f"{cold:.2f} s")
        row(f"DSM {label}: first value in a fresh process, with the on-disk cache", f"{warm:.2f} s", "best of 3")


def throughput(grid_size: int) -> None:
    """Target 2: a 200-point learning curve and a (psi_n, psi_p) grid, after warm-up."""
    from pencils import limit
    from pencils.models import dsm

    direct = dsm.quantities(finite_m=False, direct=True)

    def direct_form(psi_n, psi_p, t, lam):
        return limit([direct["test"], direct["train"]], dsm.dims, dsm.substitutions(psi_n, psi_p, t, lam))

    psi_p = np.geomspace(1.0, 100.0, 200)
    psi = np.geomspace(0.1, 100.0, grid_size)
    for t in (0.01, 1.0):
        dsm.errors(20.0, psi_p, t, 1e-3)  # warm-up: derivation, compilation, lazily compiled derivatives
        seconds = best_time(lambda: dsm.errors(20.0, psi_p, t, 1e-3), repeat=5)
        row(f"DSM m=inf: 200-point psi_p learning curve, psi_n=20, t={t}, lam=1e-3 (test and train)",
            f"{seconds * 1e3:.0f} ms", f"{seconds / 200 * 1e3:.2f} ms/point; target 50 ms")
        direct_form(20.0, psi_p, t, 1e-3)
        before = best_time(lambda: direct_form(20.0, psi_p, t, 1e-3), repeat=3)
        row("same curve, the errors written with two resolvents (dsm.quantities(False, direct=True))",
            f"{before * 1e3:.0f} ms", f"{before / seconds:.1f}x the time: pencils of 18 and 21 blocks, solved once each")
    grid = (psi[:, None], psi[None, :], 0.1, 1e-3)
    dsm.errors(psi[:4, None], psi[None, :4], 0.1, 1e-3)
    seconds = best_time(lambda: dsm.errors(*grid), repeat=2)
    row(f"DSM m=inf: {grid_size}x{grid_size} (psi_n, psi_p) grid, t=0.1, lam=1e-3", f"{seconds:.2f} s",
        f"{seconds / grid_size**2 * 1e3:.3f} ms/point; target 2 s for 100x100")
    before = best_time(lambda: direct_form(*grid), repeat=1)
    row("same grid, the two-resolvent form", f"{before:.2f} s", f"{before / seconds:.1f}x the time")
    variance = best_time(lambda: dsm.errors(*grid, continuation="variance"), repeat=1)
    row("same grid, each point on its own path from zero variance", f"{variance:.2f} s",
        f"{variance / seconds:.1f}x the time of continuation from neighbours")
    finite_m(psi_p)


def finite_m(psi_p: np.ndarray) -> None:
    """Finite m: the 30 x 30 grid against m = inf in the same run, and curves against the two-resolvent forms."""
    from pencils import limit
    from pencils.models import dsm

    psi = np.geomspace(0.1, 100.0, 30)
    grid = (psi[:, None], psi[None, :], 0.1, 1e-3)
    dsm.errors(psi[:4, None], psi[None, :4], 0.1, 1e-3, m=4)
    wall, processor = {math.inf: math.inf, 4: math.inf}, {math.inf: math.inf, 4: math.inf}
    for _ in range(3):  # interleaved, so that both meet the same load
        for m in wall:
            started, cpu = time.perf_counter(), time.process_time()
            dsm.errors(*grid, m=m)
            wall[m] = min(wall[m], time.perf_counter() - started)
            processor[m] = min(processor[m], time.process_time() - cpu)
    row("DSM m=4 vs m=inf: 30x30 (psi_n, psi_p) grid in [0.1, 100], t=0.1, lam=1e-3 (warm, best of 3 each)",
        f"{wall[4]:.2f} s vs {wall[math.inf]:.2f} s", f"{wall[4] / wall[math.inf]:.1f}x (CPU time "
        f"{processor[4]:.2f} s vs {processor[math.inf]:.2f} s, {processor[4] / processor[math.inf]:.1f}x); target 10x")

    curves = (  # (psi_n, psi_p, lam, dual, what, the default's system, the two-resolvent form's unknowns)
        (20.0, np.geomspace(1.0, 10.0, 50), 1e-2, False, "psi_n=20, psi_p in [1, 10], lam=1e-2", "45 unknowns", "106 + 195"),
        (1.0, np.geomspace(4.5, 100.0, 50), 1e-9, True, "lam=1e-9, p > n m: psi_n=1, psi_p in [4.5, 100]",
         "50 + 12 unknowns, dual form, continued in lam", "90 + 48"),
    )
    for psi_n, curve, lam, dual, what, unknowns, direct_unknowns in curves:
        direct = dsm.quantities(True, dual, direct=True)
        path_from = {dsm.symbols["lam"]: dsm.RIDGE_START} if lam < dsm.RIDGE_START else None

        def direct_form(points):
            subs = dsm.substitutions(psi_n, points, 0.1, lam, 4)
            return limit([direct["test"], direct["train"]], dsm.dims, subs, path_from=path_from)

        dsm.errors(psi_n, curve[:3], 0.1, lam, m=4)
        seconds = best_time(lambda: dsm.errors(psi_n, curve, 0.1, lam, m=4), repeat=3)
        row(f"DSM m=4: 50-point learning curve, {what}", f"{seconds:.2f} s",
            f"{seconds / 50 * 1e3:.1f} ms/point ({unknowns})")
        direct_form(curve[:3])
        before = best_time(lambda: direct_form(curve), repeat=1)
        row(f"same curve, the errors written with two resolvents (dsm.quantities(True, {dual}, direct=True))",
            f"{before:.2f} s", f"{before / seconds:.1f}x the time: {direct_unknowns} unknowns")


def precision() -> None:
    """Target 3: one point at dps=50, and agreement between precisions."""
    from pencils import Gaussian, trace_limit
    from pencils.models import dsm

    point = (20.0, 5.0, 0.1, 1e-3)
    dsm.errors(*point, dps=30)
    seconds = best_time(lambda: dsm.errors(*point, dps=50), repeat=2)
    row("DSM m=inf: one point at dps=50 (test and train, warm)", f"{seconds:.2f} s", "target 1 s")
    dsm.errors(2.0, 5.0, 0.1, 1e-2, m=4, dps=30)
    seconds = best_time(lambda: dsm.errors(2.0, 5.0, 0.1, 1e-2, m=4, dps=30), repeat=1)
    row("DSM m=4: one point at dps=30 (primal form, 45 unknowns, warm)", f"{seconds:.2f} s",
        "Newton's systems by mixed-precision refinement")
    precise, floats, higher = dsm.errors(*point, dps=50), dsm.errors(*point), dsm.errors(*point, dps=60)
    for name in ("test", "train"):
        exact = getattr(precise, name)
        row(f"DSM m=inf {name}: float vs dps=50, relative", f"{abs(float(exact) - getattr(floats, name)) / abs(float(exact)):.1e}",
            "target 1e-12")
        with mpmath.workdps(80):
            row(f"DSM m=inf {name}: dps=50 vs dps=60, relative", mpmath.nstr(abs(exact - getattr(higher, name)) / abs(exact), 3),
                "target 1e-50")
    import sympy

    n, d, z = sympy.symbols("n d z")
    X = Gaussian("X", n, d)
    value = trace_limit((X.T * X / n - z * sympy.Identity(d)).I, {n: 2 * d}, {z: -1}, dps=50)
    with mpmath.workdps(80):
        error = abs(value - (mpmath.sqrt(17) - 3) / 2)
    row("Marchenko-Pastur at dps=50 vs its closed form", mpmath.nstr(error, 3), "absolute")


def against_simulation(seeds: int) -> None:
    """Target 5: one theory point against one simulation at d=400, and the gap between them."""
    from pencils.models import dsm

    arguments = (2.0, 3.0, 0.1, 1e-2, math.inf)
    runs = []
    start = time.perf_counter()
    for seed in range(seeds):
        runs.append(dsm.simulate(400, *arguments, activation="sin", seed=seed))
    simulation = (time.perf_counter() - start) / seeds
    dsm.errors(*arguments[:4], activation="sin")
    theory = best_time(lambda: dsm.errors(*arguments[:4], activation="sin"), repeat=3)
    row("one theory point vs one training run at d=400 (m=inf, sin)", f"{theory * 1e3:.0f} ms vs {simulation:.2f} s",
        f"theory {simulation / theory:.0f}x faster")
    predicted = dsm.errors(*arguments[:4], activation="sin")
    for name in ("test", "train"):
        values = np.array([getattr(run, name) for run in runs])
        mean, error = values.mean(), values.std(ddof=1) / np.sqrt(len(values))
        row(f"theory - simulation at d=400, {name} ({seeds} seeds)", f"{getattr(predicted, name) - mean:+.4f}",
            f"simulation {mean:.4f} +- {error:.4f}; the finite-d bias is O(1/d)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 30x30 grid instead of 100x100, 4 seeds instead of 16")
    arguments = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.processor() or 'unknown CPU'}, "
          f"Python {platform.python_version()}, numpy {np.__version__}\n")
    print("| figure | measured | note |\n|---|---|---|")
    derivation_and_cache()
    throughput(30 if arguments.quick else 100)
    precision()
    against_simulation(4 if arguments.quick else 16)


if __name__ == "__main__":
    main()
