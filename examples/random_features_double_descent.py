"""Random-features ridge regression: double descent at psi_p = psi_n.

Theory (exact d -> infinity limit from pencils.models.random_features.errors) against real
training with the ReLU activation at finite d (pencils.models.random_features.simulate).

    python examples/random_features_double_descent.py [--out DIR] [--quick]

Writes random_features_double_descent.png to DIR (default: the current directory).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from pencils.models import random_features  # noqa: E402

PSI_N = 1.0
LAM = 1e-4
SIGNAL, NOISE = 1.0, 0.2
ACTIVATION = "relu"


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("."), help="directory for the PNG (default: .)")
    parser.add_argument("--quick", action="store_true", help="coarse grid and a few small simulations (for tests)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.time()

    if args.quick:
        curve = np.geomspace(0.1, 10, 15)
        sim_points, d, seeds = np.array([0.3, 0.8, 1.5, 4.0]), 60, 2
    else:
        # a log grid plus points hugging the interpolation threshold psi_p = psi_n
        curve = np.unique(np.concatenate([np.geomspace(0.1, 10, 50), PSI_N * np.array([0.9, 0.95, 0.98, 1.02, 1.05, 1.1])]))
        sim_points, d, seeds = np.array([0.2, 0.4, 0.6, 0.8, 0.9, 1.1, 1.25, 1.5, 2.0, 3.0, 5.0, 8.0]), 200, 5

    theory = random_features.errors(PSI_N, curve, LAM, ACTIVATION, signal=SIGNAL, noise=NOISE)
    print(f"theory: {curve.size} points in {time.time() - start:.1f} s")

    t0 = time.time()
    tests = np.empty((sim_points.size, seeds))
    trains = np.empty_like(tests)
    for i, psi_p in enumerate(sim_points):
        for seed in range(seeds):
            run = random_features.simulate(d, PSI_N, float(psi_p), LAM, ACTIVATION, SIGNAL, NOISE, seed=seed)
            tests[i, seed], trains[i, seed] = run.test, run.train
    print(f"simulation: {tests.size} trainings at d = {d} in {time.time() - t0:.1f} s")

    def stderr(values):
        return values.std(axis=1, ddof=1) / np.sqrt(values.shape[1])

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    left.plot(curve, theory.test, color="C0", label="theory ($d\\to\\infty$)")
    left.errorbar(sim_points, tests.mean(axis=1), yerr=stderr(tests), fmt="o", color="k", ms=4, capsize=2,
                  label=f"simulation, d={d}, {seeds} seeds (mean $\\pm$ s.e.)")
    left.set_title("test error")
    right.plot(curve, theory.train, color="C1", label="theory ($d\\to\\infty$)")
    right.errorbar(sim_points, trains.mean(axis=1), yerr=stderr(trains), fmt="s", color="k", ms=4, capsize=2,
                   label=f"simulation, d={d}, {seeds} seeds (mean $\\pm$ s.e.)")
    right.set_title("train error")
    for ax in (left, right):
        ax.axvline(PSI_N, color="gray", ls=":", label="$\\psi_p = \\psi_n$")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("$\\psi_p = p/d$")
        ax.legend(fontsize=8)
    left.set_ylabel("error")
    fig.suptitle(f"Random-features ridge regression, ReLU: $\\psi_n = {PSI_N:g}$, $\\lambda = {LAM:g}$, "
                 f"$\\|\\beta\\|^2 = {SIGNAL:g}$, label noise {NOISE:g}")
    fig.tight_layout()
    path = args.out / "random_features_double_descent.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"saved {path.resolve()} ({time.time() - start:.1f} s)")
    return path


if __name__ == "__main__":
    main()
