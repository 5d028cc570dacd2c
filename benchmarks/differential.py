"""The float accuracy promise over many random cases: float results against ``dps=30``.

Draws ``--count`` cases (``tests/differential.py``: the engine's expressions at random ratios
and ridges, random features and DSM at ``m = inf``, and with ``--finite-m`` a few DSM cases at
finite ``m``, whose 30-digit references take seconds each), evaluates each in floats (recording
``PrecisionWarning``) and at ``dps=30``, and reports the number of quantities compared, the
warned, refused and *silent* ones (off by more than ``SolverOptions.float_accuracy`` with no warning:
each one is a failure of the promise), the worst silent and the worst overall relative error,
and the time taken.  Nothing is asserted; the exit status is 1 if any disagreement is silent.

Run ``python benchmarks/differential.py --count 10000 --seed 0 --finite-m 40`` (41 minutes on a
loaded 2-core machine, 246 ms a case; measured: 13202 quantities, 14 warned, 33 refused, 0 silent,
worst unwarned relative error 2.7e-11) or ``--count 300`` for a quick look.  ``--diagonal N`` adds ridge
cases with :class:`pencils.Diagonal` covariances (atoms, and quantile functions smooth or singular at an end).

The tightness of the bounds is measured too: for every trace (its value, and each derivative of it
that a quantity asks), the float error bound of ``Solver.float_target`` (before any tightening in
extended precision) against its true error, the distance of the float result to the trace at
``dps=30``, wherever that error is nonzero (the float result is not the 30-digit value correctly
rounded; points Newton left to arbitrary precision aside): the minimum, median and maximum of
bound / true error over values and over derivatives (a ratio below 1 is a bound that does not hold).
Measured with ``--count 300 --seed 3 --diagonal 60`` (490 s): 360 cases, 455 quantities, 0 warned, 8 refused,
0 silent, worst unwarned 8.5e-11; 303 values, bound / error from 2.7 over a median of 19 to 4.1e4; 127
derivatives, from 9 over 118 to 5.0e3: no bound below its error.  A quantile function singular at ``u = 1`` is
evaluated as ``sigma(1 - v)`` at each node's exact complement ``v = 1 - u`` (:func:`pencils.diagonal.quadrature`):
with ``1 - u`` formed in floats, where the tanh-sinh nodes within 2**-53 of 1 round to 1, a Diagonal resolvent
with the quantile ``(1 - u)**(1/3)`` at ``lambda = 6.6e-6`` was 7.1e-12 off at every level from 217 to 1728
nodes, unseen by the change from level to level, against a bound of 5.3e-12 (bound / error 0.75); it is now
8.3e-15 off, bound 2.0e-13.
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import differential  # noqa: E402
import mpmath  # noqa: E402

from pencils.solve.solver import Solver  # noqa: E402


class TraceRecorder:
    """Records, from :meth:`watch` on, each ``Solver.float_target`` (its values and bounds, copied before any
    tightening) and each ``Solver.evaluate`` (its value and derivatives) of the process."""

    def __init__(self):
        self.floats, self.exacts = [], []

    def watch(self):
        float_target, evaluate = Solver.float_target, Solver.evaluate
        recorder = self

        def recorded_float_target(solver, *arguments, **keywords):
            evaluation = float_target(solver, *arguments, **keywords)
            recorder.floats.append((solver, [v.copy() for v in evaluation.values],
                                    [e.copy() for e in evaluation.errors], evaluation.finished.copy()))
            return evaluation

        def recorded_evaluate(solver, *arguments, **keywords):
            result = evaluate(solver, *arguments, **keywords)
            recorder.exacts.append((solver, [result.value, *result.derivatives]))
            return result

        Solver.float_target, Solver.evaluate = recorded_float_target, recorded_evaluate

    def ratios(self, case) -> tuple:
        """``(values, derivatives)``: ``(bound / true error, case)`` of each trace output of ``case`` whose true error
        is nonzero, from the float evaluations and the last as many evaluations in arbitrary precision (the
        reference, at ``dps=30``, which follows the float one; none where either was refused); then forget the
        records."""
        found = ([], [])
        references = self.exacts[len(self.exacts) - len(self.floats):] if len(self.exacts) >= len(self.floats) else []
        if len(references) != len(self.floats) or any(f[0] is not r[0] for f, r in zip(self.floats, references)):
            references = []
        for (_, values, errors, finished), (_, exacts) in zip(self.floats, references):
            for output, (value, error, exact) in enumerate(zip(values, errors, exacts)):
                exact = np.asarray(exact, dtype=object).reshape(-1)
                for point in np.flatnonzero(~finished):
                    with mpmath.workdps(40):
                        reference = mpmath.mpmathify(exact[point])
                        if complex(reference) == complex(value[point]):
                            continue  # the float result is the reference correctly rounded: no error to bound
                        true = float(abs(mpmath.mpmathify(complex(value[point])) - reference))
                    found[output > 0].append((error[point] / true, case))
        self.floats, self.exacts = [], []
        return found


def tightness_row(name: str, found: list) -> str:
    """A row of the tightness table: ``found`` holds ``(bound / true error, case)`` pairs."""
    if not found:
        return f"| {name} | 0 | | | | |"
    ratios = np.array([ratio for ratio, _ in found])
    return (f"| {name} | {ratios.size} | {ratios.min():.2g} | {np.median(ratios):.3g} | {ratios.max():.3g} "
            f"| {np.count_nonzero(ratios < 1)} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000, help="cases (a case may hold several quantities)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--finite-m", type=int, default=0, help="extra DSM cases at finite m (slow references)")
    parser.add_argument("--diagonal", type=int, default=0, help="extra ridge cases with Diagonal covariances")
    arguments = parser.parse_args()
    rng = np.random.default_rng(arguments.seed)
    models = arguments.count // 4
    cases = differential.engine_cases(rng, arguments.count - models) + differential.model_cases(rng, models)
    cases += differential.model_cases(rng, arguments.finite_m, finite_m=True)
    cases += differential.diagonal_cases(rng, arguments.diagonal)
    start = time.perf_counter()
    by_family = collections.defaultdict(lambda: [0, 0, 0, 0, 0.0])  # compared, warned, refused, silent, worst
    worst, worst_silent, refusals = None, None, collections.Counter()
    recorder, tightness = TraceRecorder(), ([], [])
    recorder.watch()
    for number, case in enumerate(cases, 1):
        outcomes = differential.run(case)
        for kind, ratios in zip(tightness, recorder.ratios(case)):
            kind.extend(ratios)
        for outcome in outcomes:
            row = by_family[case.family]
            row[0] += 1
            row[1] += outcome.warned
            row[2] += bool(outcome.refused)
            row[3] += outcome.silent
            if outcome.refused:
                refusals[outcome.refused[:90]] += 1
            if not outcome.warned and not outcome.refused:
                row[4] = max(row[4], outcome.error)
                if worst is None or outcome.error > worst.error:
                    worst = outcome
            if outcome.silent:
                print(f"SILENT {outcome.error:.2e}: {case.describe()}", flush=True)
                if worst_silent is None or outcome.error > worst_silent.error:
                    worst_silent = outcome
        if number % 500 == 0:
            print(f"{number} cases, {time.perf_counter() - start:.0f} s", flush=True)
    elapsed = time.perf_counter() - start
    print(f"\n| family | quantities | warned | refused | silent | worst unwarned error |\n|---|---|---|---|---|---|")
    for family, (compared, warned, refused, silent, error) in sorted(by_family.items()):
        print(f"| {family} | {compared} | {warned} | {refused} | {silent} | {error:.1e} |")
    total = [sum(row[k] for row in by_family.values()) for k in range(4)]
    print(f"\n{len(cases)} cases, {total[0]} quantities, {total[1]} warned, {total[2]} refused, {total[3]} silent, "
          f"in {elapsed:.0f} s ({elapsed / len(cases) * 1e3:.0f} ms a case, float and dps=30).")
    if worst is not None:
        print(f"worst unwarned relative error {worst.error:.2e} at {worst.case.describe()}")
    if worst_silent is not None:
        print(f"worst SILENT error {worst_silent.error:.2e} at {worst_silent.case.describe()}")
    for reason, count in refusals.most_common(5):
        print(f"refused {count}x: {reason}")
    print("\n| trace outputs with a nonzero float error | compared | bound / error: min | median | max | below 1 |"
          "\n|---|---|---|---|---|---|")
    print(tightness_row("values", tightness[0]))
    print(tightness_row("derivatives", tightness[1]))
    for name, found in zip(("value", "derivative"), tightness):
        for ratio, case in sorted(found, key=lambda pair: pair[0])[:3]:
            if ratio < 1:
                print(f"the bound of a {name} does not hold (bound / error {ratio:.2g}) at {case.describe()}")
    return 1 if total[3] else 0


if __name__ == "__main__":
    sys.exit(main())
