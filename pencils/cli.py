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

``pencils memorization ...`` trains the random-features score by DSM on images, samples by the
reverse process and prints the fraction of samples that copy a training image as CSV::

    pencils memorization --data digits --p 60,600,6000 --m 1,4 --plot fractions.png --images copies.png
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

#: ``--psi-n`` of a learning curve when not given.
CURVE_PSI_N = "20"
#: ``--psi-n`` of the phase diagram when not given: its horizontal axis, log-spaced.
PHASE_DIAGRAM_PSI_N = "1:100:5"

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
    dsm.add_argument("--psi-n", type=_values, default=None,
                     help="n/d (default 20; with --phase-diagram 1:100:5, the diagram's horizontal axis)")
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
    _memorization_parser(commands)
    return parser


def _memorization_parser(commands) -> None:
    command = commands.add_parser(
        "memorization",
        help="fraction of diffusion samples that copy a training image (random-features DSM score)",
        description="Train the random-features score by DSM at each time of a grid on image data, sample by the "
        "reverse process and count the samples whose nearest training image is closer than a third of the second "
        "nearest. Prints CSV (one row per p and m); --plot and --images save figures.",
    )
    command.add_argument("--data", default="digits",
                         help="digits (scikit-learn's 8x8), mnist:PATH or fashion-mnist:PATH (IDX directory or .npz; "
                         "never downloaded) (default digits)")
    command.add_argument("--n", type=int, default=300, help="training images (default 300)")
    command.add_argument("--held-out", type=int, default=300, help="held-out images for the generalisation proxy (default 300)")
    command.add_argument("--downsample", type=int, default=4, help="block-average factor of the images (default 4: 2 x 2 "
                         "digits, d = 4, where p = 6000 > n (d + 1) copies; 2: 4 x 4, rare copies; --p must be at least d)")
    command.add_argument("--p", type=_values, default=_values("60,600,6000"), help="random features (default 60,600,6000)")
    command.add_argument("--m", type=_values, default=_values("1,4"), help="noise draws per image (default 1,4)")
    command.add_argument("--lam", type=float, default=1e-6, help="ridge (default 1e-6)")
    command.add_argument("--bias", type=float, default=1.0, help="standard deviation of random feature offsets, features "
                         "rho(W x / sqrt(d) + b) (default 1; 0: none, the theory's model, far fewer copies)")
    command.add_argument("--times", type=_values, default=_values("0.001:3:12"), help="time grid as start:stop:count "
                         "(default 0.001:3:12, enough for the ODE sampler; the SDE needs 25-50)")
    command.add_argument("--samples", type=int, default=200, help="generated samples per run (default 200)")
    command.add_argument("--seeds", type=int, default=1, help="independent runs per point (default 1)")
    command.add_argument("--sampler", choices=("sde", "ode"), default="ode", help="reverse SDE (Euler-Maruyama) or "
                         "probability-flow ODE (Heun) (default ode)")
    command.add_argument("--activation", default="relu", help="activation (default relu)")
    command.add_argument("--threads", type=int, default=1, help="BLAS threads (default 1: the default grid took 4.5 s "
                         "on one thread and 30 s on two of a two-core machine; its matrices are too small to share)")
    command.add_argument("--plot", metavar="FILE", help="save the fraction against p/n per m to FILE")
    command.add_argument("--images", metavar="FILE", help="save generated images beside their nearest training images "
                         "(largest p and m) to FILE")
    command.set_defaults(run=_memorization)


def _memorization(arguments) -> int:
    from threadpoolctl import threadpool_limits

    from . import datasets
    from .errors import ParameterError
    from .simulation import diffusion

    kind, _, path = arguments.data.partition(":")
    options = dict(n=arguments.n, held_out=arguments.held_out, downsample=arguments.downsample)
    try:
        if kind == "digits" and not path:
            data = datasets.digits(**options)
        elif kind in ("mnist", "fashion-mnist") and path:
            data = (datasets.mnist if kind == "mnist" else datasets.fashion_mnist)(path, **options)
        else:
            raise datasets.DataError(f"--data must be digits, mnist:PATH or fashion-mnist:PATH, got {arguments.data!r}")
        for name in ("p", "m"):
            values = getattr(arguments, name)
            if not np.all((values >= 1) & (values == np.round(values))):
                raise ParameterError(f"--{name} must be integers >= 1, got {values.tolist()}")
        if arguments.threads < 1:
            raise ParameterError(f"--threads must be at least 1, got {arguments.threads}")
        with threadpool_limits(limits=arguments.threads, user_api="blas"):
            sweep = diffusion.memorization_sweep(
                data, arguments.p.astype(int), arguments.m.astype(int), seeds=arguments.seeds, progress=True,
                times=arguments.times, lam=arguments.lam, samples=arguments.samples, sampler=arguments.sampler,
                activation=arguments.activation, bias=arguments.bias,
            )
    except (PencilsError, ValueError) as error:
        print(f"pencils memorization: {error}", file=sys.stderr)
        return 2
    sys.stdout.write(sweep.to_csv())
    if arguments.plot or arguments.images:
        from .simulation import figures

        if arguments.plot:
            figures.plot_fractions(sweep, arguments.plot, title=f"{data.name}, n = {data.n}, d = {data.d}")
            print(f"# plot saved to {arguments.plot}", file=sys.stderr)
        if arguments.images:
            largest = max(sweep.results)
            figures.plot_copies(sweep.results[largest], data.train, data.shape, arguments.images, to_images=data.images)
            print(f"# images saved to {arguments.images}", file=sys.stderr)
    return 0


def _phase_diagram(arguments) -> int:
    """``--phase-diagram``: the crossover on the grid psi_n x m as CSV, and the regions with ``--plot``."""
    from .models import dsm

    if arguments.t.size > 1 or arguments.lam.size > 1 or arguments.dps is not None:
        print("pencils dsm: --phase-diagram takes one --t and one --lam, in floats (no --dps)", file=sys.stderr)
        return 2
    if arguments.psi_n is None:
        arguments.psi_n = _values(PHASE_DIAGRAM_PSI_N)
    if arguments.plot:
        if arguments.psi_n.size < 2:
            print("pencils dsm: the phase diagram's plot spans psi_n: give at least two values, e.g. --psi-n 1:100:5",
                  file=sys.stderr)
            return 2
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
        from .models.dsm.figures import draw_phase_diagram

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
    interrupted (Ctrl-C), after the rows already done, 141 if the reader of
    standard output closed it (``pencils dsm | head``), without a traceback.
    """
    arguments = _parser().parse_args(argv)
    run = getattr(arguments, "run", None) or (_phase_diagram if arguments.phase_diagram else _dsm)
    try:
        return run(arguments)
    except PencilsError as error:
        print(f"pencils {arguments.command}: {error}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, SystemError) as error:
        if not _interrupted(error):
            raise
        sys.stdout.flush()
        print(f"pencils {arguments.command}: interrupted; the rows printed so far are complete.", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of standard output stopped (e.g. ``| head``): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def _interrupted(error: BaseException | None) -> bool:
    """Whether ``error`` is Ctrl-C, directly or wrapped: a ``KeyboardInterrupt`` raised inside a C extension's call
    (mpmath arithmetic on numpy object arrays) can surface as a ``SystemError`` caused by it."""
    while error is not None:
        if isinstance(error, KeyboardInterrupt):
            return True
        error = error.__cause__ or error.__context__
    return False


def _dsm(arguments: argparse.Namespace) -> int:
    from .activations import get
    from .models import dsm
    from .sweep import sweep, write_csv
    from .validation import check_dps

    grid, fixed = {}, {"activation": arguments.activation}
    get(arguments.activation)
    if arguments.psi_n is None:
        arguments.psi_n = _values(CURVE_PSI_N)
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
