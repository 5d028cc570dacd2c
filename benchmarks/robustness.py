"""Measure the robustness of the DSM errors on a log grid of (psi_n, psi_p), for every (m, t, lam).

The requirement measured: on a ``size x size`` log grid ``psi_n, psi_p`` in [0.1, 100]
(the diagonal has ``psi_p = psi_n`` exactly), for ``t`` in {1e-3, 1e-2, 1}, ``lam`` in
{1e-9, 1e-3, 1} and ``m`` in {1, 4, inf}, every point converges (the engine's relative
residual tolerance is 1e-12), is on the physical branch and is not NaN; where convergence
fails, the error says where and why.

For each (m, t, lam) the script

* evaluates ``dsm.errors(psi[:, None], psi[None, :], t, lam, m=m)`` with the default
  continuation from neighbours and records its wall time, the number of
  :class:`pencils.errors.PrecisionWarning` and the points they name;
* if it raises :class:`pencils.errors.ConvergenceError`, prints the start of the message and
  re-runs the grid one ``psi_n`` row at a time to count the failing rows and keep the
  converged ones (the engine's message gives the number of failing points in each row);
* counts NaN and checks the physics: ``test >= a^2 (1 - 1e-9)`` with ``a^2 = exp(-2t)`` the
  best possible test error, and ``train >= 0``;
* checks the physical branch at sampled converged points (one on the diagonal, the others
  random with a fixed seed): each point alone at ``dps=30`` with ``continuation="variance"``
  (an independent path from zero variance, then Newton in arbitrary precision), reporting the
  largest relative (and, in the notes, absolute) difference to the float grid values.

Nothing is asserted: the outcome is one Markdown table and a summary line.

Run ``python benchmarks/robustness.py`` (60 x 60 grid, all m; slow for finite m),
``python benchmarks/robustness.py --quick`` (12 x 12, 2 sampled points),
or e.g. ``python benchmarks/robustness.py --m inf --size 60 --csv /tmp/robustness.csv``.
"""

from __future__ import annotations

import argparse
import csv
import math
import re
import signal
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from pencils.errors import ConvergenceError, PrecisionWarning
from pencils.models import dsm

TIMES = (1e-3, 1e-2, 1.0)
RIDGES = (1e-9, 1e-3, 1.0)
COLUMNS = ("m", "t", "lam", "time (s)", "converged points", "NaN", "precision warnings", "min(test - a^2)",
           "max rel. diff vs dps=30 (test, train)", "notes")


@dataclass
class Grid:
    """Float results on the grid; NaN where a row failed (``converged`` is then False)."""

    test: np.ndarray
    train: np.ndarray
    converged: np.ndarray
    seconds: float
    error: str = ""
    notes: list[str] = field(default_factory=list)
    warned_points: int = 0
    warning_count: int = 0


def solve_recording(psi_n, psi_p, t: float, lam: float, m: float) -> tuple[dsm.Errors, list[str]]:
    """``dsm.errors`` on the given points, with the distinct PrecisionWarning messages it issued.

    Test and train are solved at the same points, so a warning repeated word for word is counted once.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = dsm.errors(psi_n, psi_p, t, lam, m=m)
    return result, list(dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, PrecisionWarning)))


def warned_points(messages: list[str]) -> int:
    """Number of points named by PrecisionWarning messages ("... at N of M point(s) ...")."""
    counts = (re.search(r"at (\d+) of \d+ point", message) for message in messages)
    return sum(int(found.group(1)) for found in counts if found)


def failed_points(error: ConvergenceError, row_size: int) -> int:
    """Number of failing points stated in a ConvergenceError message (the whole row if absent)."""
    found = re.search(r"did not converge at (\d+) of \d+ point", str(error))
    return int(found.group(1)) if found else row_size


def solve_grid(psi: np.ndarray, t: float, lam: float, m: float) -> Grid:
    """The whole grid in one call; on a ConvergenceError, row by row to count and keep what converges."""
    start = time.perf_counter()
    try:
        result, messages = solve_recording(psi[:, None], psi[None, :], t, lam, m)
    except ConvergenceError as error:
        seconds = time.perf_counter() - start
        progress(f"m={m}, t={t:g}, lam={lam:g}: grid raised after {seconds:.1f} s; row by row")
        grid = solve_rows(psi, t, lam, m, seconds)
        grid.error = " ".join(str(error).split())[:200]
        return grid
    seconds = time.perf_counter() - start
    converged = np.ones((psi.size, psi.size), dtype=bool)
    return Grid(np.asarray(result.test, dtype=float), np.asarray(result.train, dtype=float), converged, seconds,
                warned_points=warned_points(messages), warning_count=len(messages))


def solve_rows(psi: np.ndarray, t: float, lam: float, m: float, seconds: float) -> Grid:
    """One ``psi_n`` row at a time, catching the ConvergenceError of each row."""
    size = psi.size
    grid = Grid(np.full((size, size), np.nan), np.full((size, size), np.nan), np.zeros((size, size), dtype=bool),
                seconds)
    start, failing_rows, failing = time.perf_counter(), 0, 0
    for row in range(size):
        try:
            result, messages = solve_recording(psi[row], psi, t, lam, m)
        except ConvergenceError as error:
            failing_rows += 1
            failing += failed_points(error, size)
            progress(f"row {row + 1}/{size} fails ({time.perf_counter() - start:.0f} s so far)")
            continue
        grid.test[row], grid.train[row], grid.converged[row] = result.test, result.train, True
        grid.warned_points += warned_points(messages)
        grid.warning_count += len(messages)
        progress(f"row {row + 1}/{size} converged ({time.perf_counter() - start:.0f} s so far)")
    grid.notes.append(f"row by row ({time.perf_counter() - start:.1f} s): {failing_rows}/{size} rows fail, "
                      f"{failing} points failing per the engine")
    return grid


def sample_points(grid: Grid, count: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """One converged diagonal point (if any) and random converged off-diagonal ones, ``count`` in all."""
    diagonal = [i for i in range(grid.converged.shape[0]) if grid.converged[i, i]]
    chosen = [(int(i), int(i)) for i in rng.choice(diagonal, size=min(1, len(diagonal), count), replace=False)]
    others = [(int(i), int(j)) for i, j in np.argwhere(grid.converged) if i != j]
    picks = rng.choice(len(others), size=min(count - len(chosen), len(others)), replace=False) if others else []
    return chosen + [others[k] for k in picks]


def with_timeout(seconds: float, function: Callable[[], dsm.Errors]) -> dsm.Errors:
    """``function()``, interrupted by TimeoutError after ``seconds`` (SIGALRM; the main thread only)."""

    def interrupt(signum, frame):
        raise TimeoutError(f"no result within {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return function()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def check_branch(grid: Grid, psi: np.ndarray, points: list[tuple[int, int]], t: float, lam: float, m: float,
                 timeout: float) -> tuple[str, list[str], float]:
    """Largest relative differences (test, train) of the float grid to independent dps=30 solves.

    Returns the table cell, notes (absolute differences, failures) and the largest relative difference.
    """
    relative, absolute, notes = {"test": [], "train": []}, {"test": [], "train": []}, []
    progress(f"m={m}, t={t:g}, lam={lam:g}: dps=30 check at {len(points)} point(s)")
    start = time.perf_counter()
    for i, j in points:
        where = f"psi_n={psi[i]:.4g}, psi_p={psi[j]:.4g}"
        try:
            precise = with_timeout(timeout, lambda: dsm.errors(
                float(psi[i]), float(psi[j]), t, lam, m=m, dps=30, continuation="variance"))
        except (ConvergenceError, TimeoutError) as error:
            notes.append(f"dps=30 check at {where} failed: {' '.join(str(error).split())[:120]}")
            continue
        for name in ("test", "train"):
            exact, value = float(getattr(precise, name)), float(getattr(grid, name)[i, j])
            absolute[name].append(abs(value - exact))
            relative[name].append(abs(value - exact) / abs(exact) if exact else math.inf)
    if not relative["test"]:
        return "not checked", notes, math.nan
    notes.append(f"dps=30 at {len(relative['test'])} point(s) ({time.perf_counter() - start:.1f} s): max abs. "
                 f"diff test {max(absolute['test']):.1e}, train {max(absolute['train']):.1e}")
    largest = max(max(relative["test"]), max(relative["train"]))
    return f"{max(relative['test']):.1e}, {max(relative['train']):.1e}", notes, largest


def physics(grid: Grid, t: float) -> tuple[float, list[str]]:
    """``min(test - a^2)`` over the finite values, and notes on violated bounds."""
    optimum = dsm.optimum(t)
    finite = grid.converged & np.isfinite(grid.test) & np.isfinite(grid.train)
    if not np.any(finite):
        return math.nan, []
    notes = []
    below = np.sum(grid.test[finite] < optimum * (1 - 1e-9))
    if below:
        notes.append(f"{below} points with test < a^2")
    negative = np.sum(grid.train[finite] < 0)
    if negative:
        notes.append(f"{negative} points with train < 0 (min {np.min(grid.train[finite]):.1e})")
    return float(np.min(grid.test[finite] - optimum)), notes


def measure(psi: np.ndarray, t: float, lam: float, m: float, samples: int, rng: np.random.Generator,
            timeout: float) -> tuple[dict, dict]:
    """One table row for (m, t, lam), and the numbers the summary needs."""
    grid = solve_grid(psi, t, lam, m)
    nan = int(np.sum(grid.converged & (np.isnan(grid.test) | np.isnan(grid.train))))
    lowest, physics_notes = physics(grid, t)
    cell, check_notes, largest = check_branch(grid, psi, sample_points(grid, samples, rng), t, lam, m, timeout)
    notes = ([f"ConvergenceError: {grid.error}"] if grid.error else []) + grid.notes + physics_notes + check_notes
    warned = f"{grid.warning_count} ({grid.warned_points} points)" if grid.warning_count else "0"
    row = {
        "m": str(m), "t": f"{t:g}", "lam": f"{lam:g}", "time (s)": f"{grid.seconds:.1f}",
        "converged points": f"{int(grid.converged.sum())}/{grid.converged.size}", "NaN": str(nan),
        "precision warnings": warned, "min(test - a^2)": f"{lowest:.2e}",
        "max rel. diff vs dps=30 (test, train)": cell, "notes": "; ".join(notes),
    }
    totals = {"points": grid.converged.size, "converged": int(grid.converged.sum()), "nan": nan,
              "violations": len(physics_notes), "largest": largest, "failed": bool(grid.error)}
    return row, totals


def progress(message: str) -> None:
    """Progress of a long combination, on stderr (the table stays on stdout)."""
    print(f"  [{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def print_row(cells: list[str]) -> None:
    """One Markdown table row."""
    print("| " + " | ".join(cells) + " |", flush=True)


def parse_m(text: str) -> list[float]:
    """``"inf,1,4"`` -> ``[inf, 1.0, 4.0]``."""
    return [math.inf if value.strip() == "inf" else float(value) for value in text.split(",")]


def summary(totals: list[dict], seconds: float) -> str:
    largest = [total["largest"] for total in totals if not math.isnan(total["largest"])]
    return (f"Summary: {sum(t['converged'] for t in totals)}/{sum(t['points'] for t in totals)} points converged; "
            f"{sum(t['failed'] for t in totals)}/{len(totals)} combinations raised ConvergenceError; "
            f"{sum(t['nan'] for t in totals)} NaN; {sum(t['violations'] for t in totals)} physics violations; "
            f"largest relative difference to dps=30 {max(largest, default=math.nan):.1e}; "
            f"total {seconds:.0f} s.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=60, help="grid points per axis (default 60)")
    parser.add_argument("--samples", type=int, default=None,
                        help="points checked at dps=30 per combination (default 4 for m=inf, 1 for finite m)")
    parser.add_argument("--m", type=parse_m, default=[math.inf, 1.0, 4.0], help="comma-separated, e.g. inf,1,4")
    parser.add_argument("--quick", action="store_true", help="size 12, 2 sampled points")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds allowed per dps=30 check")
    parser.add_argument("--csv", default=None, help="also write the rows to this CSV file")
    arguments = parser.parse_args()
    size = 12 if arguments.quick else arguments.size
    samples = 2 if arguments.quick else arguments.samples
    psi = np.geomspace(0.1, 100.0, size)
    rng = np.random.default_rng(0)
    started = time.perf_counter()

    print(f"{size} x {size} log grid psi_n, psi_p in [0.1, 100]; m in {arguments.m}\n", flush=True)
    print_row(list(COLUMNS))
    print_row(["---"] * len(COLUMNS))
    rows, totals = [], []
    for m in arguments.m:
        dsm.errors(2.0, 1.0, 0.1, 1e-2, m=m)  # warm-up: derivation and compilation
        for t in TIMES:
            for lam in RIDGES:
                count = samples if samples is not None else (4 if m == math.inf else 1)
                row, total = measure(psi, t, lam, m, count, rng, arguments.timeout)
                print_row([row[column] for column in COLUMNS])
                rows.append(row)
                totals.append(total)
    print("\n" + summary(totals, time.perf_counter() - started), flush=True)
    if arguments.csv:
        with open(arguments.csv, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(rows)


if __name__ == "__main__":
    main()
