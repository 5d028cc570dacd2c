"""Figures of the memorisation experiment (matplotlib, the optional ``[plots]`` extra).

* :func:`plot_fractions`: the copy fraction against ``p/n``, one line per ``m``, with
  error bars and the theory's crossover ``p = n``;
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
    """Save the copy fraction against ``p/n`` per ``m`` (log ``p/n``) to ``path``; return the path."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6.0, 4.2))
    for m in sorted({row["m"] for row in sweep.rows}):
        rows = [row for row in sweep.rows if row["m"] == m]
        axis.errorbar([row["p_over_n"] for row in rows], [row["fraction"] for row in rows],
                      yerr=[row["stderr"] for row in rows], marker="o", capsize=3, label=f"m = {m}")
    axis.axvline(1.0, color="grey", linestyle="--", linewidth=1, label="theory crossover p = n")
    axis.set_xscale("log")
    axis.set_ylim(-0.03, 1.03)
    axis.set_xlabel("p / n")
    axis.set_ylabel(f"fraction of copies (nearest < {COPY_THRESHOLD:.2g} x second nearest)")
    axis.set_title(title or f"random-features DSM score, n = {sweep.n}", fontsize=9)
    axis.legend(fontsize=8)
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
