"""The reduced Dyson systems: unknowns before and after, time to reduce from a cold start, and the
reduced system as a solver path at 50 digits against the full solver.

Run ``python benchmarks/reduction.py``.  Prints Markdown table rows; nothing is asserted.  The
reduced path is: the full solver in floats, then Newton's method on the reduced equations in
mpmath (the default of ``DysonSystem.solve`` and ``trace_limit`` at ``dps`` for systems of at most
``SolverOptions.max_reduced_unknowns`` unknowns); the full path is the full solver at ``dps``
(float continuation, then Newton on the full matrix equation in mpmath,
``max_reduced_unknowns=0``).  Both are timed warm (compiled), best of 5.  "reduce, warm" is ``reduce()`` in a fresh process whose disk cache
holds the reduced system.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

SETUP = {
    "Marchenko-Pastur": (
        "from pencils.models import marchenko_pastur; import sympy; system = marchenko_pastur.system(); "
        "subs = {sympy.Symbol('z'): sympy.Rational(-3, 4), sympy.Symbol('gamma'): sympy.Rational(1, 2)}"
    ),
    "free anticommutator": (
        "import sympy; from pencils import Gaussian, derive; d, z = sympy.symbols('d z'); "
        "A, B = ((Y + Y.T) / sympy.sqrt(2 * d) for Y in (Gaussian('Y_1', d, d), Gaussian('Y_2', d, d))); "
        "system = derive((A * B + B * A - z * sympy.Identity(d)).I, {d: d}); subs = {z: sympy.Rational(1, 4) + sympy.I}"
    ),
    "random features, cross term": (
        "import sympy; from pencils import Gaussian, derive; from pencils.models import random_features as rf; "
        "d, n, p = sympy.symbols('d n p'); S = rf.symbols; "
        "W, X, Xi = Gaussian('W', p, d), Gaussian('X', d, n), Gaussian('Xi', p, n); "
        "F = S['mu1'] * W * X / sympy.sqrt(d) + sympy.sqrt(S['v2']) * Xi; "
        "K = (F * F.T / n + p * S['lam'] / d * sympy.Identity(p)).I; "
        "system = derive(W.T * K * F * X.T / (n * sympy.sqrt(d)), rf.dims); "
        "subs = {S['psi_n']: 2, S['psi_p']: sympy.Rational(3, 2), S['lam']: sympy.Rational(1, 10), "
        "S['mu1']: sympy.Rational(1, 2), S['v2']: sympy.Rational(1, 5)}"
    ),
    "DSM m = inf (resolvent trace)": (
        "import sympy; from pencils import derive; from pencils.models import dsm; "
        "(T,) = {x.expr for x in dsm.quantities(False)['test'].atoms(sympy.Derivative)}; "
        "system = derive(T.arg, dsm.dims); subs = dsm.substitutions(2.0, 1.5, 0.5, 1e-2, dps=50)"
    ),
}
for _dual, _name in ((False, "DSM finite m, test trace"), (True, "DSM finite m, dual test trace")):
    SETUP[_name] = (
        "import sympy; from pencils import derive; from pencils.models import dsm; "
        "from pencils.derivations import dims_key, store; from pencils.quantities import limit_payload; "
        f"q = sympy.Tuple(*dsm.quantities(True, {_dual}).values()); found = []; "
        "limit_payload(q, dims_key(dsm.dims), lambda m, k: found.append(m) or store.system(m, k)); "
        "system = max((derive(m, dsm.dims) for m in found), key=lambda s: len(s.unknowns)); "
        "subs = dsm.substitutions(0.5, 3.0, 0.5, 1e-2, m=2, dps=50)"
    )

MEASURE = """
import time
start = time.perf_counter()
{setup}
derived = time.perf_counter()
reduced = system.reduce()
done = time.perf_counter()
print(len(system.unknowns), len(reduced.unknowns), derived - start, done - derived)
"""

WARM = """
import time
{setup}
start = time.perf_counter()
system.reduce()
print(time.perf_counter() - start)
"""

SOLVE = """
import dataclasses, time, mpmath
from pencils.solve.options import DEFAULT_OPTIONS
{setup}
reduced = system.reduce()
full_options = dataclasses.replace(DEFAULT_OPTIONS, max_reduced_unknowns=0)
reduced_options = dataclasses.replace(DEFAULT_OPTIONS, max_reduced_unknowns=len(system.unknowns))
full = system.solver.target(subs, dps=50, options=full_options); system.solver.target(subs, dps=50, options=reduced_options)   # compile both
def best(f, repeat=5):
    times = []
    for _ in range(repeat):
        t = time.perf_counter(); value = f(); times.append(time.perf_counter() - t)
    return min(times), value
t_full, v_full = best(lambda: system.solver.target(subs, dps=50, options=full_options))
t_reduced, v_reduced = best(lambda: system.solver.target(subs, dps=50, options=reduced_options))
with mpmath.workdps(60):
    print(t_full, t_reduced, mpmath.nstr(abs(v_full - v_reduced) / max(1, abs(v_full)), 3))
"""


def run(code: str, cache: str) -> list:
    environment = dict(os.environ, PENCILS_CACHE_DIR=cache, PYTHONPATH=os.getcwd())
    output = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=environment)
    return output.stdout.split()


def main() -> None:
    print("| system | unknowns full -> reduced | derive [s] | reduce, cold [s] | reduce, warm [s] "
          "| full path dps=50 [ms] | reduced path dps=50 [ms] | relative difference |")
    print("|---|---|---|---|---|---|---|---|")
    for name, setup in SETUP.items():
        with tempfile.TemporaryDirectory() as cache:
            before, after, derive_time, reduce_time = run(MEASURE.format(setup=setup), cache)
            (warm,) = run(WARM.format(setup=setup), cache)
            full, reduced, difference = run(SOLVE.format(setup=setup), cache)
        print(f"| {name} | {before} -> {after} | {float(derive_time):.2f} | {float(reduce_time):.2f} "
              f"| {float(warm):.2f} | {1e3 * float(full):.1f} | {1e3 * float(reduced):.1f} | {difference} |",
              flush=True)


if __name__ == "__main__":
    main()
