"""Limiting eigenvalue densities over histograms of sampled eigenvalues.

Left: the free sum of two Wisharts, X1^T X1/n1 + X2^T X2/n2 (d/n1 = 1/2, d/n2 = 1/5).  Right: the DSM
feature matrix U = Ft Ft^T/n + h mu1^2 W W^T/d + s^2 I_p at t = 0.5 (ReLU, psi_n = 1/2, psi_p = 3):
two bulks and an atom at s^2 of mass 1 - (psi_n + 1)/psi_p = 1/2.  The densities are solved on the real
axis (pencils.spectral_density), the support, atoms and masses located by pencils.spectrum; the
histograms are the eigenvalues of one draw of each matrix (pencils.sampling).

    python examples/spectral_density.py [--out DIR] [--quick]

Writes spectral_density.png to DIR (default: the current directory).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import sympy  # noqa: E402

from pencils import Gaussian, spectrum  # noqa: E402
from pencils.expression import Dimensions, shape_symbols  # noqa: E402
from pencils.models import dsm  # noqa: E402
from pencils.pencil import draw_sizes  # noqa: E402
from pencils.plots import plot_density  # noqa: E402
from pencils.evaluation import draw, evaluate  # noqa: E402

PSI_N, PSI_P, TIME = 0.5, 3.0, 0.5


def sampled_eigenvalues(H, dims, subs, size, seed=0):
    """Eigenvalues of one draw of ``H`` at base dimension ``size``."""
    dimensions = Dimensions.from_mapping(dims, shape_symbols(H))
    sizes = draw_sizes(dimensions, size, subs)
    matrix = evaluate(H, draw(H, sizes, np.random.default_rng(seed)), sizes, subs)
    return np.linalg.eigvalsh(np.real(matrix))


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("."), help="directory for the PNG (default: .)")
    parser.add_argument("--quick", action="store_true", help="smaller draws (for tests)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    size = 300 if args.quick else 2000
    start = time.time()

    d, n1, n2 = sympy.symbols("d n_1 n_2")
    X1, X2 = Gaussian("X_1", n1, d), Gaussian("X_2", n2, d)
    free_sum, free_sum_dims = X1.T * X1 / n1 + X2.T * X2 / n2, {d: d, n1: 2 * d, n2: 5 * d}

    symbols = dsm.symbols
    U = dsm.feature_matrix()
    n, p = sympy.symbols("n p")
    U_dims = {d: d, n: symbols["psi_n"] * d, p: symbols["psi_p"] * d}
    values = dsm.substitutions(PSI_N, PSI_P, TIME, 0.0)
    U_subs = {key: value for key, value in values.items()
              if key in U.free_symbols or key in (symbols["psi_n"], symbols["psi_p"])}

    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    panels = [
        (free_sum, free_sum_dims, {}, size, "free sum of two Wisharts"),
        (U, U_dims, U_subs, size // 3 if args.quick else 600, f"DSM features U (t = {TIME}, ReLU)"),
    ]
    for ax, (H, dims, subs, base, title) in zip(axes, panels):
        eigenvalues = sampled_eigenvalues(H, dims, subs, base)
        plot_density(H, dims, subs, ax=ax, eigenvalues=eigenvalues)
        found = spectrum(H, dims, subs)
        print(f"{title}: bulks {found.intervals}, masses {found.bulk_masses}, atoms {found.atoms}")
        ax.set_title(f"{title}; {eigenvalues.size} x {eigenvalues.size} draw", fontsize="medium")
    figure.tight_layout()
    path = (args.out / "spectral_density.png").resolve()
    figure.savefig(path, dpi=120)
    print(f"saved {path} ({time.time() - start:.1f} s)")
    return path


if __name__ == "__main__":
    main()
