r"""Figures of the DSM model: the phase diagram of generalisation and memorisation over ``m``.

Matplotlib is imported when a figure is drawn, not with the module.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ...sweep import Sweep

__all__ = ["draw_phase_diagram"]


def draw_phase_diagram(boundary: Sweep, ax: Any = None, cmap: str = "viridis_r", top: float | None = None) -> Any:
    r"""Draw the memorisation regions of :func:`pencils.models.dsm.phase_boundary`, one per ``m``.

    Axes :math:`\psi_n` (x) and :math:`\psi_p` (y), logarithmic.  For each
    ``m`` the region above its crossover :math:`\psi_p^*(\psi_n)` is filled
    with that ``m``'s colour from ``cmap`` at partial opacity, so that where
    the regions overlap the colours add up to a gradient in ``m``; the
    crossovers are drawn as lines of the same colours, with the line
    :math:`p = n` dashed.

    Parameters
    ----------
    boundary : Sweep
        From :func:`~pencils.models.dsm.phase_boundary` (axes ``psi_n`` and ``m``, field ``psi_p``).
    ax : matplotlib Axes, optional
        Where to draw; a new figure otherwise.
    cmap : str
        Matplotlib colormap over the values of ``m`` (in increasing order, ``inf`` last).
    top : float, optional
        Upper edge of the regions (default: 4 times the largest crossover).

    Returns
    -------
    matplotlib Axes

    Examples
    --------
    Two crossovers given by hand (``dsm.phase_boundary`` computes them):

    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> boundary = Sweep(axes={"psi_n": np.array([2.0, 8.0]), "m": np.array([4, math.inf])},
    ...                  values={"psi_p": np.array([[1.6, 2.0], [6.5, 8.2]])}, fixed={})
    >>> ax = draw_phase_diagram(boundary)
    >>> [text.get_text() for text in ax.get_legend().get_texts()]
    ['m = 4', 'm = ∞', '$\\psi_p = \\psi_n$']
    """
    import matplotlib.pyplot as plt

    if ax is None:
        ax = plt.subplots(figsize=(6.0, 5.0))[1]
    psi_n = np.asarray(boundary.axes["psi_n"], dtype=float)
    ms = np.asarray(boundary.axes["m"], dtype=float)
    crossings = np.asarray(boundary["psi_p"], dtype=float)
    order = np.argsort(ms)
    top = 4 * np.nanmax(crossings) if top is None else top
    colours = plt.get_cmap(cmap)(np.linspace(0.15, 0.9, len(ms)))
    for colour, k in zip(colours, order):
        label = "∞" if math.isinf(ms[k]) else f"{ms[k]:g}"
        ax.fill_between(psi_n, crossings[:, k], top, color=colour, alpha=min(0.6, 1.5 / len(ms)), linewidth=0)
        ax.plot(psi_n, crossings[:, k], color=colour, linewidth=1.8, label=f"m = {label}")
    bottom = min(np.nanmin(crossings), psi_n.min()) / 4
    ax.plot([psi_n.min(), psi_n.max()], [psi_n.min(), psi_n.max()], "k--", linewidth=1, label=r"$\psi_p = \psi_n$")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(psi_n.min(), psi_n.max())
    ax.set_ylim(bottom, top)
    ax.set_xlabel(r"$\psi_n = n/d$")
    ax.set_ylabel(r"$\psi_p = p/d$")
    ax.text(0.04, 0.95, "memorisation", transform=ax.transAxes, va="top", fontsize=11)
    ax.text(0.96, 0.05, "generalisation", transform=ax.transAxes, ha="right", fontsize=11)
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 0.08), fontsize=8)
    return ax
