"""Time dsm.memorization_time and dsm.early_stopping_time over psi_n and print their log-log slopes (nothing asserted).

    python benchmarks/memorization_time.py [--psi-n 0.5,1,2,4] [--ratio 4 | --psi-p 8] [--t 0.05] [--lam 1e-3] [--span 1e-1,1e5]

``psi_p = ratio * psi_n`` (features grow with the data), or a fixed ``psi_p`` (a fixed model and more data),
away from the hard edge ``psi_p = psi_n + 1``; ``m = inf``.  Each row: psi_n,
the memorisation time (the gap reaches half of its ``tau = inf`` value), the best early-stopping time
(or the reason there is none), and the wall seconds of each call.  On a shared machine the wall time is
inflated by the load.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from pencils.errors import ConvergenceError
from pencils.models import dsm


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    try:
        return function(*args, **kwargs), time.perf_counter() - start
    except ConvergenceError as error:
        return str(error), time.perf_counter() - start


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--psi-n", default="0.5,1,2,4")
    parser.add_argument("--ratio", type=float, default=4.0)
    parser.add_argument("--psi-p", type=float, default=None, help="a fixed psi_p instead of ratio * psi_n")
    parser.add_argument("--t", type=float, default=0.05)
    parser.add_argument("--lam", type=float, default=1e-3)
    parser.add_argument("--span", default="1e-1,1e5")
    args = parser.parse_args(argv)
    span = tuple(float(value) for value in args.span.split(","))
    print("| psi_n | psi_p | tau_mem | s | tau_early | s |\n|---|---|---|---|---|---|")
    found = []
    for psi_n in (float(value) for value in args.psi_n.split(",")):
        psi_p = args.psi_p if args.psi_p is not None else args.ratio * psi_n
        memorization, memorization_seconds = timed(dsm.memorization_time, psi_n, psi_p, args.t, args.lam, span=span)
        early, early_seconds = timed(dsm.early_stopping_time, psi_n, psi_p, args.t, args.lam, span=span)
        print(f"| {psi_n:g} | {psi_p:g} | {memorization if isinstance(memorization, str) else f'{memorization:.6g}'} | "
              f"{memorization_seconds:.0f} | {early if isinstance(early, str) else f'{early:.6g}'} | {early_seconds:.0f} |",
              flush=True)
        found.append((psi_n, memorization, early))
    for name, column in (("tau_mem", 1), ("tau_early", 2)):
        points = [(row[0], row[column]) for row in found if not isinstance(row[column], str)]
        if len(points) >= 2:
            slope = np.polyfit(np.log([p for p, _ in points]), np.log([v for _, v in points]), 1)[0]
            print(f"log-log slope of {name} in psi_n: {slope:.3f}")


if __name__ == "__main__":
    main()
