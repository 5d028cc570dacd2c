"""Ridge learning curves on anisotropic data: a two-level covariance and a power-law spectrum.

Theory (exact d -> infinity limits of pencils.models.linear_regression.errors, the covariance and the
teacher as pencils.Diagonal matrices) against ridge trained at finite d
(pencils.simulation.linear_regression.simulate; errors averaged exactly over teacher and noise, mean
and standard error over designs).

* two levels: variances 1 (mass 0.9) and 25 (mass 0.1), the teacher on the strong directions; the
  test error against n/d for several ridges, with the ridgeless curve (double descent at n = d).
* power law: eigenvalues k^-alpha and teacher k^-beta, k = 1..K (the spectrum truncated at the
  dimension d = K, each eigenvalue an atom of mass 1/K); the (noiseless) test error against n on log axes, with the slope
  -(alpha + beta - 1) of the ridgeless bias for n << d (valid while beta < alpha + 1): the bias
  sums lambda_k theta_k^2 over the directions k > n not yet learnt, with theta_k^2 = k^-beta.

    python examples/structured_learning_curves.py [--out DIR] [--quick]

Writes structured_two_levels.png and structured_power_law.png to DIR (default: the current directory).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from pencils.models import linear_regression  # noqa: E402
from pencils.simulation.linear_regression import simulate  # noqa: E402

TWO_LEVELS = {"covariance": ([1, 25], [0.9, 0.1]), "teacher": [0.2, 8.2]}  # E beta^T Sigma beta = 0.18 + 20.5
NOISE = 0.5
ALPHA, BETA = 1.5, 2.0


def two_levels(out: Path, quick: bool) -> Path:
    ratios = np.geomspace(0.05, 20, 25 if quick else 120)
    ratios = ratios[np.abs(ratios - 1) > 1e-3]
    sim_ratios, d, seeds = (np.array([0.3, 2.0, 5.0]), 60, 2) if quick else (np.geomspace(0.1, 10, 9), 200, 6)
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for index, lam in enumerate((0.0, 1e-2, 1e-1, 1.0)):
        start = time.time()
        theory = linear_regression.errors(ratios, lam, noise=NOISE, **TWO_LEVELS)
        print(f"two levels, lam = {lam:g}: {ratios.size} points in {time.time() - start:.1f} s")
        ax.plot(ratios, theory.test, color=f"C{index}", label=f"theory, $\\lambda = {lam:g}$")
        runs = np.array([[simulate(d, float(r), lam, noise=NOISE, seed=seed, **TWO_LEVELS).test for seed in range(seeds)]
                         for r in sim_ratios if abs(r - 1) > 0.05])
        kept = sim_ratios[np.abs(sim_ratios - 1) > 0.05]
        ax.errorbar(kept, runs.mean(axis=1), yerr=runs.std(axis=1, ddof=1) / np.sqrt(seeds), fmt="o",
                    color=f"C{index}", ms=3, capsize=2)
    ax.axvline(1, color="gray", ls=":")
    title = f"Two-level covariance (1 and 25, masses 0.9/0.1); points: ridge at d={d}, {seeds} designs"
    return _save(fig, ax, "$\\psi_n = n/d$", "test error (label noise included)", title,
                 out / "structured_two_levels.png")


def power_law(out: Path, quick: bool) -> Path:
    size = 16 if quick else 256
    profile = linear_regression.power_law(ALPHA, BETA, size)
    ratios = np.geomspace(1 / size, 0.5, 8 if quick else 30)  # n from 1 to d/2
    # ridge trained at d = K (the deterministic equivalent is accurate there once n is not tiny)
    sim_ratios, seeds = (ratios[-2:], 2) if quick else (ratios[ratios * size >= 8][::3], 6)
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for index, lam in enumerate((1e-6, 1e-3)):
        start = time.time()
        theory = linear_regression.errors(ratios, lam, **profile)
        print(f"power law, {size} atoms, lam = {lam:g}: {ratios.size} points in {time.time() - start:.1f} s")
        ax.plot(ratios * size, theory.test, color=f"C{index}", label=f"theory, $\\lambda = {lam:g}$")
        runs = np.array([[simulate(size, float(r), lam, seed=seed, **profile).test for seed in range(seeds)]
                         for r in sim_ratios])
        ax.errorbar(sim_ratios * size, runs.mean(axis=1), yerr=runs.std(axis=1, ddof=1) / np.sqrt(seeds), fmt="o",
                    color=f"C{index}", ms=3, capsize=2)
    # noiseless ridgeless rate for n << d: sum_{k > n} k^-(alpha + beta) ~ n^-(alpha + beta - 1)
    guide, middle = ratios * size, len(ratios) // 3
    rate = ALPHA + BETA - 1
    reference = linear_regression.errors(ratios[middle], 1e-6, **profile).test
    ax.plot(guide, reference * (guide / guide[middle]) ** -rate, "k--", lw=0.8,
            label=f"$n^{{-(\\alpha + \\beta - 1)}}$, slope {-rate:g}")
    title = (f"Power law: eigenvalues $k^{{-{ALPHA:g}}}$, teacher $k^{{-{BETA:g}}}$, $k \\leq d = {size}$; "
             f"points: ridge at d = {size}")
    return _save(fig, ax, "samples $n$", "test error (no label noise)", title, out / "structured_power_law.png")


def _save(fig, ax, xlabel: str, ylabel: str, title: str, path: Path) -> Path:
    """Log axes, labels and legend, then the PNG."""
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv=None) -> list:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("."), help="directory for the PNGs (default: .)")
    parser.add_argument("--quick", action="store_true", help="coarse grids, few atoms and small simulations (tests)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    paths = [two_levels(args.out, args.quick), power_law(args.out, args.quick)]
    print(f"saved {', '.join(str(path.resolve()) for path in paths)} ({time.time() - start:.1f} s)")
    return paths


if __name__ == "__main__":
    main()
