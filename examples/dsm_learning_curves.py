"""Learning curves of denoising score matching with a random-features score (George, Veiga, Macris).

Theory: the exact d -> infinity limits of pencils.models.dsm.errors (ReLU unless stated).
Simulation: real DSM training at finite d (pencils.models.dsm.simulate), drawn only where it is
cheap and exact: finite m with ReLU, and m = inf with rho = sin (closed-form Gaussian expectations).
Finite-size corrections are O(1/d) and large at small t for p > n, so the simulations are shown at two
values of d: they move towards the theory as d grows.

Figures (PNG, in --out):
  dsm_minf_vs_t.png           m = inf, psi_n = 20, lambda = 1e-3: test/train vs psi_p for several t
  dsm_minf_vs_psin.png        m = inf, t = 0.01: several psi_n, dotted lines at psi_p = psi_n
  dsm_m1_vs_t.png             the same as the first for m = 1
  dsm_m1_vs_psin.png          the same as the second for m = 1
  dsm_vs_m.png                m = 1, 2, 4, 16, inf at psi_n = 20, t = 0.01, with ReLU simulations
  dsm_minf_sin_simulation.png m = inf with rho = sin: theory vs exact finite-d training

    python examples/dsm_learning_curves.py [--out DIR] [--quick]

The finite-m theory costs about half a second per point (a 195-unknown Dyson system), so its psi_p
grids are coarser than the m = inf ones (a log grid refined around psi_p = psi_n).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from pencils.models import dsm  # noqa: E402

LAM = 1e-3
PSI_N = 20.0          # the paper's psi_n for the curves in t and m
T_SMALL = 0.01        # the paper's t for the curves in psi_n and m
TIMES = (0.01, 0.1, 0.5, 1.0)
PSI_NS = (5.0, 10.0, 20.0)
MS = (1, 2, 4, 16, math.inf)


def grid(points: int, psi_ns=(), near=(0.9, 1.0, 1.1)) -> np.ndarray:
    """A log grid of psi_p in [0.1, 1000], refined around each interpolation threshold psi_p = psi_n."""
    extra = [psi_n * np.array(near) for psi_n in psi_ns]
    return np.unique(np.concatenate([np.geomspace(0.1, 1000.0, points), *extra]))


def finite_grid(quick: bool, psi_ns=()) -> np.ndarray:
    """The coarser psi_p grid of the finite-m curves: two points in the flat region psi_p < 1, a log
    grid on [1, 1000], and five points around each psi_p = psi_n, where the m = 1 test error peaks."""
    if quick:
        return np.unique(np.concatenate([[0.1, 1.0, 10.0, 100.0, 1000.0], list(psi_ns)]))
    base = np.concatenate([[0.1, 0.3], np.geomspace(1.0, 1000.0, 11)])
    return np.unique(np.concatenate([base, *[psi_n * np.array([0.8, 0.9, 1.0, 1.1, 1.25]) for psi_n in psi_ns]]))


def m_label(m) -> str:
    return "$\\infty$" if math.isinf(m) else f"{m:g}"


def timed(label, function, *args, **kwargs):
    start = time.time()
    result = function(*args, **kwargs)
    print(f"{label}: {time.time() - start:.1f} s", flush=True)
    return result


def theory(psi_n, psi_p, t, m):
    """Errors broadcast over (curves, psi_p) in one vectorised call; returns (test, train) arrays."""
    result = dsm.errors(psi_n, psi_p, t, LAM, m=m, activation="relu")
    return np.atleast_2d(result.test), np.atleast_2d(result.train)


def simulate(points, d, seeds, psi_n, t, m, activation="relu"):
    """Mean and standard error over seeds of the test and train errors of real training."""
    tests = np.empty((len(points), seeds))
    trains = np.empty_like(tests)
    for i, psi_p in enumerate(points):
        for seed in range(seeds):
            run = dsm.simulate(d, psi_n, float(psi_p), t, LAM, m, activation, seed=seed)
            tests[i, seed], trains[i, seed] = run.test, run.train
    stderr = lambda values: values.std(axis=1, ddof=1) / np.sqrt(seeds)  # noqa: E731
    return tests.mean(axis=1), stderr(tests), trains.mean(axis=1), stderr(trains)


def finish(ax, title, bottom=None):
    ax.plot([], [], color="gray", label="test (solid)")
    ax.plot([], [], color="gray", ls="--", label="train (dashed)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    if bottom is not None:
        ax.set_ylim(bottom=bottom)
    ax.set_xlabel("$\\psi_p = p/d$")
    ax.set_ylabel("error (per dimension)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, ncol=2)


def save(fig, out: Path, name: str) -> Path:
    path = out / name
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"saved {path.resolve()}", flush=True)
    return path


def figure_vs_t(out, m, psi_p, test, train):
    """One curve per t at psi_n = PSI_N; dotted horizontal lines: the optimum exp(-2t)."""
    fig, ax = plt.subplots(figsize=(7, 4.8))
    for k, t in enumerate(TIMES):
        ax.plot(psi_p, test[k], color=f"C{k}", label=f"t = {t:g}")
        ax.plot(psi_p, train[k], color=f"C{k}", ls="--")
        ax.axhline(dsm.optimum(t), color=f"C{k}", ls=":", lw=0.8)
    ax.plot([], [], color="gray", ls=":", lw=0.8, label="optimum $e^{-2t}$")
    ax.axvline(PSI_N, color="k", ls=":", lw=0.8)
    finish(ax, f"DSM theory, m = {m_label(m)}, ReLU, $\\psi_n = {PSI_N:g}$, $\\lambda = {LAM:g}$; "
               "dotted vertical: $\\psi_p = \\psi_n$", bottom=None if math.isinf(m) else 1e-3)
    return save(fig, out, f"dsm_{'minf' if math.isinf(m) else f'm{m:g}'}_vs_t.png")


def figure_vs_psi_n(out, m, curves):
    """``curves``: {psi_n: (psi_p, test, train)}; dotted vertical lines at psi_p = psi_n."""
    fig, ax = plt.subplots(figsize=(7, 4.8))
    for k, (psi_n, (psi_p, test, train)) in enumerate(sorted(curves.items())):
        ax.plot(psi_p, test, color=f"C{k}", label=f"$\\psi_n = {psi_n:g}$")
        ax.plot(psi_p, train, color=f"C{k}", ls="--")
        ax.axvline(psi_n, color=f"C{k}", ls=":")
    ax.axhline(dsm.optimum(T_SMALL), color="k", ls=":", lw=0.8, label="optimum $e^{-2t}$")
    finish(ax, f"DSM theory, m = {m_label(m)}, ReLU, t = {T_SMALL:g}, $\\lambda = {LAM:g}$; "
               "dotted: $\\psi_p = \\psi_n$", bottom=None if math.isinf(m) else 1e-3)
    return save(fig, out, f"dsm_{'minf' if math.isinf(m) else f'm{m:g}'}_vs_psin.png")


def figure_vs_m(out, curves, simulations):
    """``curves``: {m: (psi_p, test, train)}; ``simulations``: {(m, d): (points, seeds, stats)}."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12.5, 5))
    colors = {m: f"C{k}" for k, m in enumerate(MS)}
    for m in MS:
        psi_p, test, train = curves[m]
        left.plot(psi_p, test, color=colors[m], label=f"m = {m_label(m)}, theory")
        right.plot(psi_p, train, color=colors[m], label=f"m = {m_label(m)}, theory")
    sizes = sorted({d for _, d in simulations})
    for (m, d), (points, seeds, (test, test_err, train, train_err)) in sorted(simulations.items()):
        style = dict(fmt="o", color=colors[m], mec="k", capsize=2, ms=6 if d == sizes[-1] else 4,
                     mfc=colors[m] if d == sizes[-1] else "none")
        label = f"m = {m_label(m)}: simulation, d={d}, seeds={seeds}"
        left.errorbar(points, test, yerr=test_err, label=label, **style)
        right.errorbar(points, train, yerr=train_err, label=label, **style)
    for ax, name in ((left, "test"), (right, "train")):
        ax.axvline(PSI_N, color="k", ls=":", lw=0.8, label="$\\psi_p = \\psi_n$")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("$\\psi_p = p/d$")
        ax.set_title(f"{name} error: DSM, ReLU, $\\psi_n = {PSI_N:g}$, t = {T_SMALL:g}, $\\lambda = {LAM:g}$", fontsize=10)
        ax.legend(fontsize=7)
    left.axhline(dsm.optimum(T_SMALL), color="gray", ls=":", lw=0.8)
    left.set_ylabel("error (per dimension)")
    right.set_ylim(bottom=1e-5)
    return save(fig, out, "dsm_vs_m.png")


def figure_sin(out, quick):
    """m = inf is exact at finite d only for sin/cos: check the theory against it."""
    psi_n, t = 5.0, 0.1
    psi_p = grid(12 if quick else 40, [psi_n])
    result = timed("m = inf, sin, theory", dsm.errors, psi_n, psi_p, t, LAM, m=math.inf, activation="sin")
    if quick:
        sizes, seeds, points = (20,), 2, np.array([1.0, 5.0])
    else:
        sizes, seeds, points = (30, 90), 3, np.array([0.3, 1.0, 2.5, 4.0, 6.0, 10.0, 20.0])
    fig, ax = plt.subplots(figsize=(7, 4.8))
    ax.plot(psi_p, result.test, color="C0", label="test, theory")
    ax.plot(psi_p, result.train, color="C1", ls="--", label="train, theory")
    for d in sizes:
        test, test_err, train, train_err = timed(f"  simulation sin, m = inf exact, d = {d}", simulate,
                                                 points, d, seeds, psi_n, t, math.inf, "sin")
        filled = d == sizes[-1]
        ax.errorbar(points, test, yerr=test_err, fmt="o", color="C0", mec="k", capsize=2, mfc="C0" if filled else "none",
                    label=f"test, simulation (exact m = $\\infty$), d={d}, seeds={seeds}")
        ax.errorbar(points, train, yerr=train_err, fmt="s", color="C1", mec="k", capsize=2, mfc="C1" if filled else "none",
                    label=f"train, simulation (exact m = $\\infty$), d={d}, seeds={seeds}")
    ax.axvline(psi_n, color="k", ls=":", lw=0.8, label="$\\psi_p = \\psi_n$")
    ax.axhline(dsm.optimum(t), color="gray", ls=":", lw=0.8, label="optimum $e^{-2t}$")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("$\\psi_p = p/d$")
    ax.set_ylabel("error (per dimension)")
    ax.set_title(f"DSM, m = $\\infty$, $\\rho = \\sin$, $\\psi_n = {psi_n:g}$, t = {t}, $\\lambda = {LAM:g}$", fontsize=10)
    ax.legend(fontsize=7)
    return save(fig, out, "dsm_minf_sin_simulation.png")


def main(argv=None) -> list:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("."), help="directory for the PNGs (default: .)")
    parser.add_argument("--quick", action="store_true", help="coarse grids and tiny simulations (for tests)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    quick = args.quick

    # psi_p grids: dense for m = inf (cheap), coarse for finite m, refined near psi_p = psi_n
    dense = grid(25 if quick else 60, PSI_NS)
    coarse = finite_grid(quick, [PSI_N])

    # ---- m = inf
    test, train = timed(f"m = inf, t-curves ({len(TIMES)} x {dense.size})", theory,
                        PSI_N, dense[None, :], np.array(TIMES)[:, None], math.inf)
    paths = [figure_vs_t(args.out, math.inf, dense, test, train)]
    minf_20 = (dense, test[TIMES.index(T_SMALL)], train[TIMES.index(T_SMALL)])
    test, train = timed(f"m = inf, psi_n-curves ({len(PSI_NS)} x {dense.size})", theory,
                        np.array(PSI_NS)[:, None], dense[None, :], T_SMALL, math.inf)
    paths.append(figure_vs_psi_n(args.out, math.inf, {psi_n: (dense, test[k], train[k]) for k, psi_n in enumerate(PSI_NS)}))

    # ---- m = 1 (the psi_n = 20, t = 0.01 curve is shared by three figures)
    test, train = timed(f"m = 1, t-curves ({len(TIMES)} x {coarse.size}; first call derives the finite-m system)",
                        theory, PSI_N, coarse[None, :], np.array(TIMES)[:, None], 1)
    paths.append(figure_vs_t(args.out, 1, coarse, test, train))
    m1_20 = (coarse, test[TIMES.index(T_SMALL)], train[TIMES.index(T_SMALL)])
    curves = {}
    for psi_n in PSI_NS:
        if psi_n != PSI_N:
            psi_p = finite_grid(quick, [psi_n])   # each curve refined around its own threshold
            test, train = timed(f"m = 1, psi_n = {psi_n:g} ({psi_p.size} points)", theory, psi_n, psi_p, T_SMALL, 1)
            curves[psi_n] = (psi_p, test[0], train[0])
    curves[PSI_N] = m1_20
    paths.append(figure_vs_psi_n(args.out, 1, curves))

    # ---- every m
    middle = [m for m in MS if m not in (1, math.inf)]
    test, train = timed(f"m = {middle} ({len(middle)} x {coarse.size})", theory,
                        PSI_N, coarse[None, :], T_SMALL, np.array(middle, dtype=float)[:, None])
    curves = {m: (coarse, test[k], train[k]) for k, m in enumerate(middle)}
    curves[1], curves[math.inf] = m1_20, minf_20
    if quick:
        sizes, seeds, points = (20,), 2, np.array([2.0, 10.0])
    else:
        sizes, seeds, points = (20, 40), 3, np.array([1.0, 5.0, 12.0, 30.0])
    simulations = {}
    for m in (1, 4):
        for d in sizes:
            simulations[(m, d)] = (points, seeds, timed(f"  simulation relu, m = {m}, d = {d}, {seeds} seeds",
                                                        simulate, points, d, seeds, PSI_N, T_SMALL, m))
    paths.append(figure_vs_m(args.out, curves, simulations))

    paths.append(figure_sin(args.out, quick))
    print(f"done: {len(paths)} figures in {args.out.resolve()} ({time.time() - start:.1f} s)")
    return paths


if __name__ == "__main__":
    main()
