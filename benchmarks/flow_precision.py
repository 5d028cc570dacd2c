"""Time of one point of the DSM gradient-flow errors at 30 digits (``dsm.gradient_flow(..., dps=30)``).

Run ``python benchmarks/flow_precision.py``.  Each point runs in a fresh interpreter with an empty cache
(import, derivation, spectrum and the contour solves included).  The traces of the errors are contour
integrals (:mod:`pencils.functions`); the test error's two-occurrence trace, a grid of about
:math:`N^2/4` resolvent solves at :math:`N` nodes per contour, takes nearly all of the time.  For each contour
integral, the debug records of :mod:`pencils.functions` are printed: its plan (``("whole", rho, first)`` is the
ellipse of Bernstein parameter ``rho`` around the spectrum, its node count doubling from ``first``), the solves
and their time at each node count, and the node count at which it stopped.  Where the training is long enough
for the flow to have reached the ridge estimator (the exponential part below :math:`10^{-33}`), the difference
from ``dsm.errors(..., dps=30)`` is printed as well.
Nothing is asserted; timings depend on the machine and its load.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MEASURE = """
import logging, sys, mpmath
from pencils.models import dsm
logging.basicConfig(stream=sys.stdout, format="%(message)s")
logging.getLogger("pencils.functions").setLevel(logging.DEBUG)
psi_n, psi_p, t, time, lam = map(float, sys.argv[1:6])
flow = dsm.gradient_flow(psi_n, psi_p, t, [time], lam=lam, dps=30)
print(mpmath.nstr(flow.test[0], 30), mpmath.nstr(flow.train[0], 30))
if sys.argv[6] == "ridge":
    ridge = dsm.errors(psi_n, psi_p, t, lam, dps=30)
    print("difference from the ridge estimator:", mpmath.nstr(abs(flow.test[0] - ridge.test), 3),
          mpmath.nstr(abs(flow.train[0] - ridge.train), 3))
"""

#: (psi_n, psi_p, t, time, lam, whether the flow has reached the ridge estimator)
POINTS = [(2.0, 1.0, 0.5, 2.0, 38.0, "ridge"), (2.0, 8.0, 0.05, 1.0, 1e-3, "-")]


def main() -> None:
    for point in POINTS:
        with tempfile.TemporaryDirectory() as cache:
            environment = dict(os.environ, PENCILS_CACHE_DIR=cache,
                               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
            start = time.perf_counter()
            output = subprocess.run([sys.executable, "-c", MEASURE, *map(str, point)], check=True,
                                    capture_output=True, text=True, env=environment).stdout
            seconds = time.perf_counter() - start
        psi_n, psi_p, t, tau, lam, _ = point
        print(f"psi_n={psi_n} psi_p={psi_p} t={t} tau={tau} lam={lam}: {seconds:.1f} s")
        print("  " + output.strip().replace("\n", "\n  "))


if __name__ == "__main__":
    main()
