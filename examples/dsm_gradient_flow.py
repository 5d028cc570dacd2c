"""DSM test and train errors against the training time of gradient flow, for several n.

The m = inf score trained by gradient flow from B = 0 (pencils.models.dsm.gradient_flow, ReLU,
t = 0.5, psi_p = 1, ridge lam = 0.1): test error (solid) and train error (dashed) against the training
time tau for several psi_n = n/d, the memorisation time (vertical line: the gap test - train reaches half
of its tau = inf value) and, where the test error has a minimum inside the range, the best early-stopping
time (circle).

    python examples/dsm_gradient_flow.py [--out DIR] [--quick]

Writes dsm_gradient_flow.png to DIR (default: the current directory).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from pencils.errors import ConvergenceError  # noqa: E402
from pencils.models import dsm  # noqa: E402

PSI_P, DIFFUSION_TIME, RIDGE = 1.0, 0.5, 0.1
SPAN = (1e-2, 1e2)
#: --quick: two values of n, 12 times, and training times up to 8 only (both memorisation times are near 3.6).  The
#: cost is the number of distinct contours: one per power of 2 of tau above ~0.7 (e^{-tau z} limits how wide the
#: contour around the spectrum of U may be), each refined until its nodes N and N/2 agree, the largest tau needing
#: the most nodes; stopping at 8 instead of 100 leaves 5 of the 9 contours, and the cheapest ones.
QUICK_SPAN = (1e-2, 8.0)


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("."), help="directory for the PNG (default: .)")
    parser.add_argument("--quick", action="store_true", help="two values of n, fewer and shorter times (for tests)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    sample_ratios = (0.5, 2.0) if args.quick else (0.5, 1.0, 2.0, 5.0)
    span = QUICK_SPAN if args.quick else SPAN
    times = np.geomspace(*span, 12 if args.quick else 50)
    start = time.time()
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for color, psi_n in zip(plt.cm.viridis(np.linspace(0, 0.85, len(sample_ratios))), sample_ratios):
        flow = dsm.gradient_flow(psi_n, PSI_P, DIFFUSION_TIME, times, lam=RIDGE)
        axis.plot(times, flow.test, color=color, label=f"psi_n = {psi_n:g}")
        axis.plot(times, flow.train, color=color, linestyle="--")
        memorization = dsm.memorization_time(psi_n, PSI_P, DIFFUSION_TIME, RIDGE, span=span)
        axis.axvline(memorization, color=color, linestyle=":")
        try:
            best = dsm.early_stopping_time(psi_n, PSI_P, DIFFUSION_TIME, RIDGE, span=span)
        except ConvergenceError:  # the test error decreases all along the range
            best = None
        else:
            axis.plot([best], [dsm.gradient_flow(psi_n, PSI_P, DIFFUSION_TIME, best, lam=RIDGE).test], "o", color=color)
        print(f"psi_n = {psi_n:g}: memorisation time {memorization:.4g}, best early stop "
              + (f"{best:.4g}" if best is not None else "none in range"))
    axis.axhline(dsm.optimum(DIFFUSION_TIME), color="gray", linewidth=0.8, label="best possible e^{-2t}")
    axis.set_xscale("log")
    axis.set_xlabel("training time tau")
    axis.set_ylabel("error / d")
    axis.set_title(f"DSM by gradient flow (m = inf, ReLU, t = {DIFFUSION_TIME}, psi_p = {PSI_P:g}, lam = {RIDGE})")
    axis.legend(fontsize=8)
    path = args.out / "dsm_gradient_flow.png"
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    print(f"wrote {path} in {time.time() - start:.1f} s")
    return path


if __name__ == "__main__":
    main()
