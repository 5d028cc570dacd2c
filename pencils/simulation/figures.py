"""Figures of the memorisation experiment (matplotlib, the optional ``[plots]`` extra).

* :func:`plot_fractions`: the copy fraction and the generalisation proxy against
  ``p/n``, one line per ``m``, with error bars and the theory's crossover ``p = n``;
* :func:`plot_copies`: generated images above their nearest training images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .diffusion import COPY_THRESHOLD, Memorization, MemorizationSweep

__all__ = ["plot_fractions", "plot_copies"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_fractions(sweep: MemorizationSweep, path: str | Path, title: str = "") -> Path:
    """Save the copy fraction (left) and the generalisation proxy (right) against ``p/n`` per ``m``.

    Log ``p/n`` axis, error bars from :class:`MemorizationSweep`, the large-``d``
    theory's crossover ``p = n`` and the finite-``d`` count ``p = n (d + 1)`` of a
    piecewise-linear score that memorises (:mod:`pencils.simulation.diffusion`); returns
    the path.
    """
    plt = _pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(10.5, 4.2))
    for m in sorted({row["m"] for row in sweep.rows}):
        rows = [row for row in sweep.rows if row["m"] == m]
        ratio = [row["p_over_n"] for row in rows]
        left.errorbar(ratio, [row["fraction"] for row in rows], yerr=[row["stderr"] for row in rows],
                      marker="o", capsize=3, label=f"m = {m}")
        right.plot(ratio, [row["generalisation"] for row in rows], marker="o", label=f"m = {m}")
    d = next(iter(sweep.results.values())).settings["d"]
    for axis in (left, right):
        axis.axvline(1.0, color="grey", linestyle="--", linewidth=1, label="theory crossover p = n")
        axis.axvline(d + 1.0, color="grey", linestyle="-.", linewidth=1, label=f"p = n (d + 1), d = {d}")
        axis.set_xscale("log")
        axis.set_xlabel("p / n")
        axis.legend(fontsize=8)
    left.set_ylim(-0.03, 1.03)
    left.set_ylabel(f"fraction of copies (nearest < {COPY_THRESHOLD:.2g} x second nearest)")
    right.axhline(1.0, color="grey", linestyle=":", linewidth=1)
    right.set_ylabel("median distance to held-out / to training data")
    figure.suptitle(title or f"random-features DSM score, n = {sweep.n}", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=130)
    plt.close(figure)
    return Path(path)


def plot_copies(result: Memorization, train: np.ndarray, shape: tuple, path: str | Path, count: int = 10,
                to_images=None, title: str = "") -> Path:
    """Save ``count`` generated samples (top row) above their nearest training points (bottom row).

    ``shape`` is the image shape; ``to_images`` (e.g. :meth:`pencils.datasets.Dataset.images`)
    maps rows to images in pixel units (default: reshape).  Each sample is labelled with
    its ratio nearest / second-nearest distance (a copy below 1/3).
    """
    plt = _pyplot()
    count = min(count, result.samples.shape[0])
    to_images = to_images or (lambda rows: np.asarray(rows).reshape((-1,) + tuple(shape)))
    generated = to_images(result.samples[:count])
    nearest = to_images(np.asarray(train)[result.nearest[:count]])
    figure, axes = plt.subplots(2, count, figsize=(1.1 * count, 2.6), squeeze=False)
    for k in range(count):
        for row, images in enumerate((generated, nearest)):
            axes[row, k].imshow(images[k], cmap="gray_r")
            axes[row, k].set_xticks([])
            axes[row, k].set_yticks([])
        ratio = result.ratios[k]
        axes[0, k].set_title(f"{ratio:.2f}" + (" copy" if ratio < COPY_THRESHOLD else ""), fontsize=7)
    axes[0, 0].set_ylabel("generated", fontsize=8)
    axes[1, 0].set_ylabel("nearest\ntraining", fontsize=8)
    settings = result.settings
    figure.suptitle(title or f"p = {settings['p']}, m = {settings['m']}, n = {settings['n']}: "
                    f"fraction of copies {result.fraction:.2f}", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=130)
    plt.close(figure)
    return Path(path)
