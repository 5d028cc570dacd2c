"""The reduced Dyson systems: unknowns before and after, time to reduce from a cold start, and the
reduced system as a solver path at 50 digits against the full solver.

Run ``python benchmarks/reduction.py [row ...]`` (substrings of the rows to run, e.g. ``DSM`` or
``dsm.errors``; all by default).  Prints Markdown table rows; nothing is asserted.  The
reduced path is: the full solver in floats, then Newton's method on the reduced equations in
mpmath (the default of ``DysonSystem.solve``, ``trace_limit`` and ``limit`` at ``dps`` for systems of at
most ``SolverOptions.max_reduced_unknowns`` unknowns that the reduction at least halves; forced here
for every row); the full path is the full solver at ``dps``
(float continuation, then Newton on the full matrix equation in mpmath,
``max_reduced_unknowns=0``).  Both are timed warm (compiled), best of 20.  "reduce, warm" is ``reduce()`` in a fresh process whose disk cache
holds the reduced system.  The last table times the DSM errors at ``m = inf`` at 50 digits (a trace
and its derivatives in the tilt and the ridge: on the reduced path, by the implicit function theorem on
the reduced equations), through ``pencils.limit`` on either path, the first time in a fresh cache and warm (best of 20), and
``dsm.errors`` itself warm.
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
        "from pencils.derivations import dims_key; from pencils.quantities import trace_matrices; "
        f"found = trace_matrices(sympy.Tuple(*dsm.quantities(True, {_dual}).values()), dims_key(dsm.dims)); "
        "system = max((derive(m, dsm.dims) for m in found), key=lambda s: len(s.unknowns)); "
        "subs = dsm.substitutions(0.5, 3.0, 0.5, 1e-2, m=2, dps=50)"
    )

for _key in ("test", "train"):
    SETUP[f"random-features {_key} error traces"] = (
        "import sympy; from pencils import derive; from pencils.models import random_features as rf; "
        "from pencils.derivations import dims_key; from pencils.quantities import trace_matrices; "
        f"found = trace_matrices(sympy.Tuple(rf.quantities()[{_key!r}]), dims_key(rf.dims)); "
        "system = max((derive(m, rf.dims) for m in found), key=lambda s: len(s.unknowns)); "
        "S = rf.symbols; subs = {S['psi_n']: 2, S['psi_p']: sympy.Rational(3, 2), S['lam']: sympy.Rational(1, 10), "
        "S['mu1']: sympy.Rational(1, 2), S['v2']: sympy.Rational(1, 5), S['signal']: 1, S['noise']: sympy.Rational(3, 10)}"
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
def best(f, repeat=20):
    times = []
    for _ in range(repeat):
        t = time.perf_counter(); value = f(); times.append(time.perf_counter() - t)
    return min(times), value
t_full, v_full = best(lambda: system.solver.target(subs, dps=50, options=full_options))
t_reduced, v_reduced = best(lambda: system.solver.target(subs, dps=50, options=reduced_options))
with mpmath.workdps(60):
    print(t_full, t_reduced, mpmath.nstr(abs(v_full - v_reduced) / max(1, abs(v_full)), 3))
"""


ERRORS = """
import dataclasses, time, mpmath
from pencils import limit
from pencils.models import dsm
from pencils.solve.options import DEFAULT_OPTIONS
full_options = dataclasses.replace(DEFAULT_OPTIONS, max_reduced_unknowns=0)
subs = dsm.substitutions(2.0, 1.5, 0.5, "0.01", dps=50)
forms = dsm.quantities(False)
quantities = [forms["test"], forms["train"]]
start = time.perf_counter()
limit(quantities, dsm.dims, subs, dps=50, options={cold_options})
cold = time.perf_counter() - start
def best(f, repeat=20):
    times = []
    for _ in range(repeat):
        t = time.perf_counter(); value = f(); times.append(time.perf_counter() - t)
    return min(times), value
t_full, v_full = best(lambda: limit(quantities, dsm.dims, subs, dps=50, options=full_options))
t_reduced, v_reduced = best(lambda: limit(quantities, dsm.dims, subs, dps=50))
t_errors, _ = best(lambda: dsm.errors(2.0, 1.5, 0.5, "0.01", dps=50))
with mpmath.workdps(60):
    difference = max(abs(a - b) / abs(b) for a, b in zip(v_reduced, v_full))
print(cold, t_full, t_reduced, t_errors, mpmath.nstr(difference, 3))
"""


def run(code: str, cache: str) -> list:
    environment = dict(os.environ, PENCILS_CACHE_DIR=cache, PYTHONPATH=os.getcwd())
    output = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=environment)
    return output.stdout.split()


def main() -> None:
    print("| system | unknowns full -> reduced | derive [s] | reduce, cold [s] | reduce, warm [s] "
          "| full path dps=50 [ms] | reduced path dps=50 [ms] | relative difference |")
    print("|---|---|---|---|---|---|---|---|")
    wanted = sys.argv[1:]  # substrings of the rows to run (all by default)
    for name, setup in SETUP.items():
        if wanted and not any(w in name for w in wanted):
            continue
        with tempfile.TemporaryDirectory() as cache:
            before, after, derive_time, reduce_time = run(MEASURE.format(setup=setup), cache)
            (warm,) = run(WARM.format(setup=setup), cache)
            full, reduced, difference = run(SOLVE.format(setup=setup), cache)
        print(f"| {name} | {before} -> {after} | {float(derive_time):.2f} | {float(reduce_time):.2f} "
              f"| {float(warm):.2f} | {1e3 * float(full):.1f} | {1e3 * float(reduced):.1f} | {difference} |",
              flush=True)
    if wanted and not any(w in "dsm.errors" for w in wanted):
        return
    colds = []
    for cold_options in ("full_options", "None"):
        with tempfile.TemporaryDirectory() as cache:
            cold, full, reduced, errors, difference = run(ERRORS.format(cold_options=cold_options), cache)
            colds.append(cold)
    print("\n| DSM errors, m = inf, one point at dps = 50 (a 12-unknown trace, its value and 2 derivatives) "
          "| full path | reduced path |")
    print("|---|---|---|")
    print(f"| `limit` of test and train, cold (fresh cache) [s] | {float(colds[0]):.2f} | {float(colds[1]):.2f} |")
    print(f"| `limit` of test and train, warm [ms] | {1e3 * float(full):.1f} | {1e3 * float(reduced):.1f} |")
    print(f"| `dsm.errors(2, 1.5, 0.5, 0.01, dps=50)`, warm [ms] (default path) | | {1e3 * float(errors):.1f} |")
    print(f"| relative difference of the values | {difference} | |")


if __name__ == "__main__":
    main()
