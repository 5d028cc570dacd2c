"""Phase diagram of DSM with a random-features score: the generalization gap test - train.

The gap is evaluated on a log grid of (psi_n, psi_p) with pencils.sweep (vectorised), for m = inf and
for a finite m, at small time t.  The line psi_p = psi_n separates generalization (p < n, small gap)
from memorization (p > n, large gap).

    python examples/dsm_phase_diagram.py [--out DIR] [--quick] [--m M] [--jobs N] [--csv]

Writes dsm_phase_diagram.png (and, with --csv, the grids as CSV next to it).  The finite-m theory is a much larger
Dyson system (~0.5 s per point against ~0.05 s for m = inf), so its grid is coarser; each panel states
its resolution, and the cells are drawn as computed (no interpolation).
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

from pencils.errors import ConvergenceError  # noqa: E402
from pencils.models import dsm  # noqa: E402
from pencils.sweep import sweep  # noqa: E402

T, LAM = 0.01, 1e-3
RANGE = (0.5, 100.0)


def errors_or_nan(psi_n, psi_p, t, lam, m):
    """dsm.errors on arrays; a point where the solver gives up becomes NaN instead of failing the grid.

    On a ConvergenceError the arrays are split in halves until the failing points are isolated.
    """
    psi_n, psi_p = np.broadcast_arrays(np.asarray(psi_n, dtype=float), np.asarray(psi_p, dtype=float))
    try:
        result = dsm.errors(psi_n, psi_p, t, lam, m=m)
        test, train = np.asarray(result.test, dtype=float), np.asarray(result.train, dtype=float)
        return {"test": test, "train": train, "gap": test - train}
    except ConvergenceError as error:
        if psi_n.size == 1:
            print(f"  no convergence at psi_n={psi_n.item():.4g}, psi_p={psi_p.item():.4g} (m={m}): left blank ({error.__class__.__name__})")
            return {key: np.full(psi_n.shape, np.nan) for key in ("test", "train", "gap")}
    half = psi_n.size // 2
    flat_n, flat_p = psi_n.reshape(-1), psi_p.reshape(-1)
    parts = [errors_or_nan(flat_n[s], flat_p[s], t, lam, m) for s in (slice(0, half), slice(half, None))]
    return {key: np.concatenate([part[key] for part in parts]).reshape(psi_n.shape) for key in ("test", "train", "gap")}


def gap_grid(points: int, m: float, jobs: int):
    axis = np.geomspace(*RANGE, points)
    start = time.time()
    executor = ProcessPoolExecutor(jobs) if jobs > 1 else None
    try:
        chunk = math.ceil(points * points / jobs) if jobs > 1 else 2500
        result = sweep(errors_or_nan, {"psi_n": axis, "psi_p": axis}, t=T, lam=LAM, m=m,
                       executor=executor, chunk_size=chunk, progress=False)
    finally:
        if executor is not None:
            executor.shutdown()
    print(f"m = {m}: {points} x {points} grid in {time.time() - start:.1f} s", flush=True)
    return result


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("."), help="directory for the PNG (default: .)")
    parser.add_argument("--quick", action="store_true", help="coarse grids (for tests)")
    parser.add_argument("--m", type=float, default=1.0, help="the finite m of the second panel (default 1)")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes for the sweeps (default 1)")
    parser.add_argument("--csv", action="store_true", help="also write each grid as CSV (Sweep.to_csv)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.time()

    resolutions = {math.inf: 8 if args.quick else 40, args.m: 4 if args.quick else 10}
    sweeps = {m: gap_grid(points, m, args.jobs) for m, points in resolutions.items()}

    gaps = [np.asarray(s["gap"], dtype=float) for s in sweeps.values()]
    positive = np.concatenate([g[np.isfinite(g) & (g > 0)] for g in gaps])
    norm = LogNorm(vmin=max(positive.min(), 1e-3), vmax=positive.max())
    fig, axes = plt.subplots(1, len(sweeps), figsize=(6.2 * len(sweeps), 5.2), squeeze=False)
    for ax, (m, result) in zip(axes[0], sweeps.items()):
        psi_n, psi_p = result.axes["psi_n"], result.axes["psi_p"]
        gap = np.asarray(result["gap"], dtype=float).T          # rows: psi_p, columns: psi_n
        mesh = ax.pcolormesh(psi_n, psi_p, np.clip(gap, norm.vmin, None), norm=norm, shading="nearest", cmap="viridis")
        if min(gap.shape) >= 6:
            levels = [level for level in (0.01, 0.1, 1.0, 10.0) if norm.vmin < level < norm.vmax]
            lines = ax.contour(psi_n, psi_p, gap, levels=levels, colors="w", linewidths=0.8)
            ax.clabel(lines, fmt="%g", fontsize=7)
        ax.plot(RANGE, RANGE, "r--", lw=1.5, label="$\\psi_p = \\psi_n$")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(psi_n[0], psi_n[-1])
        ax.set_ylim(psi_p[0], psi_p[-1])
        ax.set_xlabel("$\\psi_n = n/d$")
        ax.set_ylabel("$\\psi_p = p/d$")
        label = "$\\infty$" if math.isinf(m) else f"{m:g}"
        ax.set_title(f"m = {label}: gap = test - train ({len(psi_n)} x {len(psi_p)} grid)", fontsize=10)
        ax.legend(loc="lower right", fontsize=8)
        if args.csv:
            csv = args.out / f"dsm_phase_diagram_m{'inf' if math.isinf(m) else f'{m:g}'}.csv"
            csv.write_text(result.to_csv())
            print(f"saved {csv.resolve()}")
    fig.colorbar(mesh, ax=axes[0].tolist(), label="generalization gap (log scale)")
    fig.suptitle(f"DSM, ReLU, t = {T:g}, $\\lambda = {LAM:g}$: memorization (large gap) above $\\psi_p = \\psi_n$",
                 fontsize=11)
    path = args.out / "dsm_phase_diagram.png"
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    print(f"saved {path.resolve()} ({time.time() - start:.1f} s)")
    return path


if __name__ == "__main__":
    main()
