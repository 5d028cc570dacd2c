"""Phase diagram of DSM with a random-features score: generalisation and memorisation over psi_n, psi_p and m.

Left: the crossover psi_p*(psi_n) for each m, computed by dsm.phase_boundary (the smallest psi_p where the
normalised gap (test - train)/exp(-2t) reaches 1, located by brentq on the theory), with the memorisation
region above it filled in that m's colour, so that the overlaps make a gradient in m.  Right: the normalised
gap for m = inf on a grid, with the computed m = inf crossover over it: the crossover must follow the
contour gap/optimum = 1 of the grid.

    python examples/dsm_phase_diagram.py [--out DIR] [--quick] [--m 1,2,4,16,inf] [--jobs N] [--csv]

Writes dsm_phase_diagram.png (and, with --csv, the crossovers and the grid as CSV next to it), and prints
the time per m.
"""

from __future__ import annotations

import argparse
import math
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402

from pencils.models import dsm  # noqa: E402
from pencils.models.dsm.figures import draw_phase_diagram  # noqa: E402
from pencils.sweep import Sweep  # noqa: E402

T, LAM = 0.01, 1e-3
RANGE = (0.5, 100.0)


def boundaries(psi_n: np.ndarray, ms: list, jobs: int) -> Sweep:
    """dsm.phase_boundary one m at a time, timed."""
    parts = []
    executor = ProcessPoolExecutor(jobs) if jobs > 1 else None
    try:
        for m in ms:
            start = time.time()
            parts.append(dsm.phase_boundary(psi_n, m=[m], t=T, lam=LAM, executor=executor, progress=False))
            ratios = ", ".join(f"{value:.4f}" for value in parts[-1]["ratio"][:, 0])
            print(f"m = {m:g}: crossover at {len(psi_n)} values of psi_n in {time.time() - start:.1f} s; "
                  f"psi_p*/psi_n = {ratios}", flush=True)
    finally:
        if executor is not None:
            executor.shutdown()
    values = {field: np.concatenate([part[field] for part in parts], axis=1) for field in ("psi_p", "ratio")}
    return Sweep({"psi_n": psi_n, "m": np.array(ms, dtype=float)}, values, parts[0].fixed)


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("."), help="directory for the PNG (default: .)")
    parser.add_argument("--quick", action="store_true", help="few points and m = 1, inf (for tests)")
    parser.add_argument("--m", default="1,2,4,16,inf", help="values of m (default 1,2,4,16,inf)")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--csv", action="store_true", help="also write the crossovers and the grid as CSV")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.time()

    ms = [1.0, math.inf] if args.quick else [float(value) for value in args.m.split(",")]
    psi_n = np.geomspace(*RANGE, 3 if args.quick else 9)
    boundary = boundaries(psi_n, ms, args.jobs)

    axis = np.geomspace(*RANGE, 8 if args.quick else 40)
    grid_start = time.time()
    grid = dsm.phase_diagram(axis, axis, t=T, lam=LAM, progress=False)
    print(f"m = inf: {len(axis)} x {len(axis)} grid of errors in {time.time() - grid_start:.1f} s", flush=True)
    normalised = (np.asarray(grid["gap"], dtype=float) / math.exp(-2 * T)).T  # rows: psi_p

    fig, (left, right) = plt.subplots(1, 2, figsize=(12.4, 5.2))
    draw_phase_diagram(boundary, ax=left, top=4 * RANGE[1])
    left.set_title("crossover: (test - train) / optimum = 1, per m", fontsize=10)
    mesh = right.pcolormesh(axis, axis, np.clip(normalised, 1e-3, None), norm=LogNorm(vmin=1e-3), shading="nearest")
    right.contour(axis, axis, normalised, levels=[1.0], colors="w", linewidths=1.0)
    infinite = int(np.flatnonzero(np.isinf(boundary.axes["m"]))[0]) if np.any(np.isinf(boundary.axes["m"])) else None
    if infinite is not None:
        right.plot(psi_n, boundary["psi_p"][:, infinite], "r.-", label="computed crossover, m = inf")
    right.plot(RANGE, RANGE, "k--", lw=1, label=r"$\psi_p = \psi_n$")
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel(r"$\psi_n = n/d$")
    right.set_ylabel(r"$\psi_p = p/d$")
    right.set_title(f"m = inf: (test - train) / optimum on a {len(axis)} x {len(axis)} grid, contour at 1", fontsize=10)
    right.legend(loc="lower right", fontsize=8)
    fig.colorbar(mesh, ax=right, label="normalised gap")
    fig.suptitle(f"DSM, ReLU, t = {T:g}, $\\lambda = {LAM:g}$", fontsize=11)
    path = args.out / "dsm_phase_diagram.png"
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    if args.csv:
        for name, result in (("crossover", boundary), ("grid_minf", grid)):
            csv = args.out / f"dsm_phase_diagram_{name}.csv"
            csv.write_text(result.to_csv())
            print(f"saved {csv.resolve()}")
    print(f"saved {path.resolve()} ({time.time() - start:.1f} s)")
    return path


if __name__ == "__main__":
    main()
