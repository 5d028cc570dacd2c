"""Command line: ``pencils dsm ...`` prints a DSM sweep as CSV and optionally plots it.

Examples
--------
The default learning curve (``m = inf``, ``psi_n = 20``, ``t = 0.01``, ``lam = 1e-3``, ReLU)::

    pencils dsm --plot learning_curve.png

Several times and a finite ``m``; ``psi_p`` as ``start:stop:count`` (log-spaced)::

    pencils dsm --psi-n 5 --psi-p 0.5:50:40 --t 0.01,0.1,1 --m 4

The crossover between generalisation and memorisation (``dsm.crossover``) for each ``psi_n`` and ``m``,
drawn as the phase diagram::

    pencils dsm --phase-diagram --psi-n 1:100:5 --m 1,4,inf --plot phase.png
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Sequence

import numpy as np

from .errors import PencilsError

__all__ = ["main"]


def _values(text: str) -> np.ndarray:
    """``"a,b,c"`` (a list; ``inf`` allowed) or ``"start:stop:count"`` (log-spaced)."""
    try:
        if ":" in text:
            start, stop, count = text.split(":")
            return np.geomspace(float(start), float(stop), int(count))
        return np.array([math.inf if item.strip() in ("inf", "infinity") else float(item) for item in text.split(",")])
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a comma-separated list of numbers nor start:stop:count"
        ) from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pencils", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    dsm = commands.add_parser(
        "dsm",
        help="test and train errors of denoising score matching with random features",
        description="Asymptotic DSM learning curves (conventions: docs/dsm.md). "
        "Values are a comma-separated list or start:stop:count (log-spaced); every combination is computed.",
    )
    dsm.add_argument("--psi-n", type=_values, default=_values("20"), help="n/d (default 20)")
    dsm.add_argument("--psi-p", type=_values, default=_values("1:100:41"), help="p/d (default 1:100:41)")
    dsm.add_argument("--t", type=_values, default=_values("0.01"), help="diffusion time (default 0.01)")
    dsm.add_argument("--lam", type=_values, default=_values("1e-3"), help="ridge (default 1e-3)")
    dsm.add_argument("--m", type=_values, default=_values("inf"), help="noise draws per sample, >= 1 or inf (default inf)")
    dsm.add_argument("--activation", default="relu", help="relu, tanh, erf, sin, cos, ... (default relu)")
    dsm.add_argument("--dps", type=int, default=None, help="decimal digits (mpmath) instead of floats")
    dsm.add_argument("--plot", metavar="FILE", help="save test and train errors against psi_p to FILE (PNG, PDF, ...)")
    dsm.add_argument("--phase-diagram", action="store_true",
                     help="print the crossover psi_p (normalised gap = 1, see dsm.crossover) for each psi_n and m "
                     "instead of errors; --plot draws the regions; --psi-p is ignored")
    return parser


def _phase_diagram(arguments) -> int:
    """``--phase-diagram``: the crossover on the grid psi_n x m as CSV, and the regions with ``--plot``."""
    from .models import dsm

    if arguments.t.size > 1 or arguments.lam.size > 1 or arguments.dps is not None:
        print("pencils dsm: --phase-diagram takes one --t and one --lam, in floats (no --dps)", file=sys.stderr)
        return 2
    try:
        boundary = dsm.phase_boundary(arguments.psi_n, m=arguments.m, t=arguments.t.item(), lam=arguments.lam.item(),
                                      activation=arguments.activation)
    except PencilsError as error:
        print(f"pencils dsm: {error}", file=sys.stderr)
        return 2
    sys.stdout.write(boundary.to_csv())
    if arguments.plot:
        import matplotlib

        matplotlib.use("Agg")
        from .models.dsm_figures import draw_phase_diagram

        axis = draw_phase_diagram(boundary)
        axis.set_title(f"DSM, {arguments.activation}, t = {arguments.t.item():g}, lambda = {arguments.lam.item():g}", fontsize=9)
        axis.figure.savefig(arguments.plot, dpi=150, bbox_inches="tight")
        print(f"# plot saved to {arguments.plot}", file=sys.stderr)
    return 0


def _plot(curve, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axes = curve.axes
    psi_p = axes["psi_p"]
    others = [name for name in axes if name != "psi_p"]
    figure, axis = plt.subplots(figsize=(6.4, 4.4))
    order = [list(axes).index(name) for name in others] + [list(axes).index("psi_p")]
    test = np.transpose(curve["test"], order).reshape(-1, psi_p.size)
    train = np.transpose(curve["train"], order).reshape(-1, psi_p.size)
    labels = [", ".join(f"{name}={value:g}" for name, value in zip(others, combo))
              for combo in np.stack(np.meshgrid(*(axes[o] for o in others), indexing="ij"), -1).reshape(-1, len(others))] if others else [""]
    for k, label in enumerate(labels):
        line, = axis.plot(psi_p, test[k].astype(float), label=f"test {label}".strip())
        axis.plot(psi_p, train[k].astype(float), "--", color=line.get_color(), label=f"train {label}".strip())
    for psi_n in np.atleast_1d(axes.get("psi_n", curve.fixed.get("psi_n"))):
        axis.axvline(float(psi_n), color="grey", linestyle=":", linewidth=1)
    axis.set_xscale("log")
    axis.set_xlabel(r"$\psi_p = p/d$")
    axis.set_ylabel("error")
    title = ", ".join(f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}" for key, value in curve.fixed.items())
    axis.set_title(f"DSM with random features: {title}", fontsize=9)
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=150)
    plt.close(figure)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pencils`` console script."""
    arguments = _parser().parse_args(argv)
    if arguments.phase_diagram:
        return _phase_diagram(arguments)
    from .models import dsm
    from .sweep import sweep

    grid, fixed = {}, {"activation": arguments.activation}
    if arguments.dps is not None:
        fixed["dps"] = arguments.dps
    for name in ("psi_n", "psi_p", "t", "lam", "m"):
        values = getattr(arguments, name)
        if values.size > 1 or name == "psi_p":
            grid[name] = values
        else:
            fixed[name] = values.item()
    try:
        curve = sweep(dsm.errors, grid, **fixed)
    except PencilsError as error:
        print(f"pencils dsm: {error}", file=sys.stderr)
        return 2
    sys.stdout.write(curve.to_csv())
    if arguments.plot:
        _plot(curve, arguments.plot)
        print(f"# plot saved to {arguments.plot}", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
