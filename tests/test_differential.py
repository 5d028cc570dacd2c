"""The float accuracy promise, tested the hard way: random quantities in floats against ``dps=30``.

Every float result must be within ``Solver.float_accuracy`` (relative) of the 30-digit limit, or
come with a ``PrecisionWarning`` (see ``tests/differential.py`` for the cases; the large sweep is
``benchmarks/differential.py``).
"""

import numpy as np
import pytest

import differential


@pytest.mark.parametrize("seed", range(4))
def test_no_silent_disagreement(seed):
    rng = np.random.default_rng(seed)
    cases = differential.engine_cases(rng, 50) + differential.model_cases(rng, 12)
    outcomes = [outcome for case in cases for outcome in differential.run(case)]
    silent = [f"{o.case.describe()}: {o.error:.1e}" for o in outcomes if o.silent]
    assert not silent, "\n".join(silent)
    compared = [o for o in outcomes if not o.refused]
    assert len(compared) >= 0.9 * len(outcomes)  # the refusals do not hollow the test out


def test_the_cases_reach_the_hard_places():
    """The generator over-weights the thresholds and tiny ridges: a sample of it must contain them."""
    rng = np.random.default_rng(0)
    cases = differential.engine_cases(rng, 200)
    ridges = [case.subs[differential.lam] for case in cases if differential.lam in case.subs]
    wide = [case for case in cases if differential.n in case.dims and case.dims[differential.n] == differential.d / 2]
    assert min(ridges) < 1e-9 and sum(r < 1e-6 for r in ridges) > 40
    assert wide and any(case.dims[differential.n] == differential.d for case in cases if differential.n in case.dims)
    models = differential.model_cases(rng, 40)
    assert any(case.subs.get(differential.dsm.symbols["psi_p"]) == case.subs.get(differential.dsm.symbols["psi_n"])
               for case in models)
