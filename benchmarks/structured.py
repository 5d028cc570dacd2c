"""Measure ridge learning curves on anisotropic data: the cost against the number of atoms of the spectrum.

Power-law spectra (eigenvalues ``k^-1.5``, teacher ``k^-2``, ``k = 1..K``, ``lam = 1e-3``, ``psi_n`` from 0.05
to 20) with ``K = 2 .. 256`` atoms:

* the first call (derivation and compilation of the Dyson systems, or the on-disk cache);
* a 200-point curve of test, train, bias and variance (``linear_regression.errors`` along ``psi_n``,
  floats) with the solver's float audit as in the package (points whose rounding-error bound exceeds
  the float promise after the check in extended precision are finished at 30 digits), and how many;
* the same curve with that finishing turned off (``SolverOptions(max_finished_unknowns=0)``, the
  flagged points left in floats with a warning): the cost of the float solve itself, and the largest
  relative change that the finishing makes, which says how pessimistic the bound is.

Run ``python benchmarks/structured.py [--largest K]`` from the repository root.  Every figure is
printed as a Markdown table row (see ``benchmarks/run.py``); nothing here is asserted.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from run import row

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pencils import limit
from pencils.models import linear_regression
from pencils.models.covariance import profile_key
from pencils.solve.options import DEFAULT_OPTIONS

NAMES = ("test", "train", "bias", "variance")


def curve(profile: dict, ratios: np.ndarray, lam: float, finishing: bool) -> tuple:
    """The errors along ``ratios`` (primal and dual forms as in ``linear_regression.errors``), with the float
    audit's finishing at 30 digits or without it (flagged points left in floats); returns the values, the
    number of warnings and the number of points finished at 30 digits."""
    covariance = profile_key(profile["covariance"], "covariance")
    teacher = profile_key(profile["teacher"], "teacher", like=profile["covariance"])
    options = DEFAULT_OPTIONS if finishing else dataclasses.replace(DEFAULT_OPTIONS, max_finished_unknowns=0)
    values, finished = {name: np.empty(ratios.size) for name in NAMES}, 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for dual in (False, True):
            mask = ratios < 1 if dual else ratios >= 1
            subs = {linear_regression.symbols["psi_n"]: ratios[mask], linear_regression.symbols["lam"]: lam,
                    linear_regression.symbols["signal"]: 1.0, linear_regression.symbols["noise"]: 0.1,
                    linear_regression.symbols["tilt"]: 0}
            found = linear_regression.ridge_quantities(covariance, teacher, dual)
            result = limit([found[name] for name in NAMES], linear_regression.dims, subs, options=options,
                           full_output=True)
            finished += int(np.sum(result.finished))
            for name, value in zip(NAMES, result.value):
                values[name][mask] = value
    return values, len(caught), finished


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--largest", type=int, default=256, help="largest number of atoms (default 256)")
    parser.add_argument("--finished", type=int, default=16,
                        help="largest number of atoms for the curve with the default finishing (default 16)")
    args = parser.parse_args()
    ratios, lam = np.geomspace(0.05, 20, 200), 1e-3
    base = None
    for atoms in (2, 16, 64, 256):
        if atoms > args.largest:
            break
        profile = linear_regression.power_law(1.5, 2.0, atoms)
        start = time.perf_counter()
        linear_regression.errors(ratios[[0, -1]], lam, noise=0.1, **profile)
        first = time.perf_counter() - start
        start = time.perf_counter()
        raw, flagged, _ = curve(profile, ratios, lam, finishing=False)
        seconds = time.perf_counter() - start
        base = base or seconds
        row(f"ridge, power law with {atoms} atoms: 200-point curve (test, train, bias, variance), floats, "
            f"float audit's finishing off", f"{seconds:.1f} s",
            f"{seconds / base:.1f}x the 2-atom curve; first call (derivation or cache) {first:.1f} s; "
            f"{flagged} warning(s) of the float audit")
        if atoms <= args.finished:
            start = time.perf_counter()
            finished, _, count = curve(profile, ratios, lam, finishing=True)
            seconds = time.perf_counter() - start
            change = max(float(np.max(np.abs(raw[name] - finished[name]) / np.abs(finished[name])))
                         for name in NAMES if np.all(finished[name] != 0))
            row(f"ridge, power law with {atoms} atoms: the same curve, defaults (flagged points finished at 30 digits)",
                f"{seconds:.1f} s", f"{count} of {ratios.size} points finished at 30 digits; "
                f"largest relative change made by the finishing {change:.1e}")


if __name__ == "__main__":
    main()
