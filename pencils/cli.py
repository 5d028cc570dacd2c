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
import io
import math
import os
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import ParameterError, PencilsError

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
    if arguments.plot:
        _check_plot_path(arguments.plot)
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
    """Entry point of the ``pencils`` console script.

    Rows are printed as CSV as soon as each chunk of the grid is done; a progress
    bar appears on standard error once a run has taken a second.  Exit status: 0,
    2 for bad input (one line on standard error, before any computing), 130 if
    interrupted (Ctrl-C), after the rows already done.
    """
    arguments = _parser().parse_args(argv)
    try:
        return _phase_diagram(arguments) if arguments.phase_diagram else _dsm(arguments)
    except PencilsError as error:
        print(f"pencils dsm: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        sys.stdout.flush()
        print("pencils dsm: interrupted; the rows printed so far are complete.", file=sys.stderr)
        return 130


def _dsm(arguments: argparse.Namespace) -> int:
    from .activations import get
    from .models import dsm
    from .sweep import sweep, write_csv
    from .validation import check_dps

    grid, fixed = {}, {"activation": arguments.activation}
    get(arguments.activation)
    if arguments.dps is not None:
        fixed["dps"] = check_dps(arguments.dps)
    for name in ("psi_n", "psi_p", "t", "lam", "m"):
        values = getattr(arguments, name)
        dsm.check_parameters(**{name: values})
        if values.size > 1 or name == "psi_p":
            grid[name] = values
        else:
            fixed[name] = values.item()
    if arguments.plot:
        _check_plot_path(arguments.plot)
    total = math.prod(values.size for values in grid.values())
    written = []

    def emit(rows: list) -> None:
        text = io.StringIO()
        write_csv(rows, text, header=not written)
        sys.stdout.write(text.getvalue())
        sys.stdout.flush()
        written.append(len(rows))

    curve = sweep(dsm.errors, grid, chunk_size=max(1, math.ceil(total / 20)), progress=True, on_rows=emit, **fixed)
    if arguments.plot:
        _plot(curve, arguments.plot)
        print(f"# plot saved to {arguments.plot}", file=sys.stderr)
    return 0


def _check_plot_path(path: str) -> None:
    """Refuse a ``--plot`` path that cannot be written, before any computing."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ParameterError("--plot needs matplotlib; install it (pip install 'pencils[plots]') or drop --plot.") from None
    target = Path(path)
    formats = Figure().canvas.get_supported_filetypes()
    if target.suffix.lstrip(".").lower() not in formats:
        raise ParameterError(
            f"--plot {path}: unknown image format {target.suffix!r}; end the name with one of "
            f"{', '.join('.' + name for name in sorted(formats))}."
        )
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir() or not os.access(folder, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise ParameterError(f"--plot {path}: cannot write there; give a path in an existing, writable folder.")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
