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
    for number, case in enumerate(cases, 1):
        for outcome in differential.run(case):
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
    return 1 if total[3] else 0


if __name__ == "__main__":
    sys.exit(main())
