"""Figures of limiting spectra (matplotlib is imported only when a figure is drawn)."""

from __future__ import annotations

from typing import Mapping

import numpy as np
import sympy

from .errors import ParameterError
from .spectra import spectral_density, spectrum

__all__ = ["plot_density"]


def plot_density(
    H: sympy.MatrixExpr,
    dims: Mapping,
    subs: Mapping | None = None,
    ax=None,
    eigenvalues=None,
    points: int = 400,
    bins: int = 80,
    label: str = "limit",
):
    r"""Draw the limiting eigenvalue density of ``H``, its atoms, and optionally a histogram of eigenvalues.

    The window covers the support found by :func:`pencils.spectrum` with a 5 %
    margin; the density (:func:`pencils.spectral_density`) is drawn on a uniform
    grid plus points clustered at every edge, so that square-root edges and the
    exact zeros outside the support show.  Each atom is a vertical line labelled
    with its mass.  A histogram of ``eigenvalues`` is normalised over all of them,
    so that its bars match the density of the continuous part (an atom shows as
    one tall bar, cut at the top of the axes).

    Parameters
    ----------
    H, dims, subs
        As in :func:`pencils.spectral_density`.
    ax : matplotlib.axes.Axes, optional
        Where to draw (default: a new figure).
    eigenvalues : array_like, optional
        Eigenvalues of a finite-size draw, e.g. ``numpy.linalg.eigvalsh`` of a sample.
    points : int
        Points of the uniform grid (as many again cluster at the edges).
    bins : int
        Bins of the histogram over the window.
    label : str
        Legend label of the density curve.

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import sympy
    >>> from pencils import Gaussian
    >>> from pencils.plots import plot_density
    >>> n, d = sympy.symbols("n d")
    >>> X = Gaussian("X", n, d)
    >>> ax = plot_density(X.T * X / n, {n: 2 * d})
    >>> ax.get_xlabel()
    'eigenvalue'
    """
    try:
        import matplotlib.pyplot as plt
    except ImportError as error:  # pragma: no cover - matplotlib is an optional dependency
        raise ImportError("plot_density needs matplotlib: pip install 'pencils[plots]'.") from error
    if int(points) < 2 or int(bins) < 1:
        raise ParameterError(f"points must be >= 2 and bins >= 1; got points={points}, bins={bins}.")
    found = spectrum(H, dims, subs)
    landmarks = [float(e) for interval in found.intervals for e in interval] + [float(x) for x, _ in found.atoms]
    lower, upper = min(landmarks), max(landmarks)
    margin = 0.05 * (upper - lower) if upper > lower else 0.5 * (1 + abs(lower))
    lower, upper = lower - margin, upper + margin
    theta = np.linspace(0, np.pi, int(points))
    clustered = [a + (b - a) * (1 - np.cos(theta)) / 2 for a, b in ((float(a), float(b)) for a, b in found.intervals)]
    x = np.unique(np.concatenate([np.linspace(lower, upper, int(points))] + clustered))
    density = spectral_density(H, dims, x, subs)
    if ax is None:
        _, ax = plt.subplots()
    if eigenvalues is not None:
        eigenvalues = np.asarray(eigenvalues, dtype=float).ravel()
        weights = np.full(eigenvalues.size, 1.0 / eigenvalues.size)
        width = (upper - lower) / int(bins)
        ax.hist(eigenvalues, bins=int(bins), range=(lower, upper), weights=weights / width, alpha=0.35,
                color="tab:gray", label=f"eigenvalues ({eigenvalues.size})")
    ax.plot(x, density, color="tab:blue", label=label)
    top = 1.15 * float(np.max(density)) if np.max(density) > 0 else 1.0
    for location, mass in found.atoms:
        ax.axvline(float(location), color="tab:red", linestyle="--", linewidth=1)
        ax.annotate(f"atom, mass {float(mass):.4g}", (float(location), 0.9 * top), color="tab:red",
                    xytext=(4, 0), textcoords="offset points", fontsize="small")
    ax.set_xlim(lower, upper)
    ax.set_ylim(0, top)
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("density")
    ax.legend(loc="upper right", fontsize="small")
    return ax
