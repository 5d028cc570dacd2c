"""Peak memory and throughput of the DSM errors on large arrays, batched and not.

Run ``python benchmarks/memory.py`` (``--large`` adds 10^6 points at m = inf).  Each
measurement runs in a fresh interpreter: the errors are computed once on 10 points
(imports, derivation, cache), then on the array; the figures are the growth of the
peak resident set size (``resource.getrusage(...).ru_maxrss``) during that call, per
point and in total, and the points per second.  ``batch_points`` is
:attr:`pencils.SolverOptions.batch_points`; "unbatched" sets it above the array size.
The errors are those of ``dsm.errors`` (psi_n = 2, t = 0.5, lam = 1e-2, p <= n m), through
:func:`pencils.limit` with the options.
Nothing is asserted; timings depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

MEASURE = """
import json, resource, sys, time
import numpy as np
from pencils import SolverOptions, limit
from pencils.models import dsm
points, m, batch = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
options, found = SolverOptions(batch_points=batch), dsm.quantities(finite_m=m != float("inf"))
def errors(psi_p):
    subs = dsm.substitutions(2.0, psi_p, 0.5, 1e-2, m)
    return limit([found["test"], found["train"]], dsm.dims, subs, options=options)
psi_p = np.geomspace(0.5, 5.0, points)
errors(psi_p[:10])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
errors(psi_p)
seconds = time.perf_counter() - start
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "growth_kb": after - before, "peak_kb": after}))
"""


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def measure(points: int, m: float, batch: int) -> dict:
    """One measurement in a fresh interpreter (see the module notes)."""
    environment = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    output = subprocess.run([sys.executable, "-c", MEASURE, str(points), str(m), str(batch)], check=True,
                            capture_output=True, text=True, env=environment).stdout
    return json.loads(output.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large", action="store_true", help="also 10^6 points at m = inf")
    arguments = parser.parse_args()
    sys.path.insert(0, ROOT)
    from pencils import SolverOptions

    batch_points = SolverOptions().batch_points

    cases = [(10**3, "inf"), (10**4, "inf"), (10**5, "inf"), (500, "4"), (5000, "4")]
    if arguments.large:
        cases.append((10**6, "inf"))
    print(f"| points | m | batch | points/s | peak growth (MB) | per point (KB) | peak RSS (MB) |")
    print("|---|---|---|---|---|---|---|")
    for points, m in cases:
        for batch, label in ((batch_points, str(batch_points)), (10**9, "unbatched")):
            if label == "unbatched" and points <= batch_points:
                continue
            result = measure(points, float(m), batch)
            print(f"| {points} | {m} | {label} | {points / result['seconds']:.0f} | "
                  f"{result['growth_kb'] / 1024:.0f} | {result['growth_kb'] / points:.2f} | "
                  f"{result['peak_kb'] / 1024:.0f} |", flush=True)


if __name__ == "__main__":
    main()
