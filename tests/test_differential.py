"""The float accuracy promise, tested the hard way: random quantities in floats against ``dps=30``.

Every float result must be within ``SolverOptions.float_accuracy`` (relative) of the 30-digit limit, or
come with a ``PrecisionWarning`` (see ``tests/differential.py`` for the cases; the large sweep is
``benchmarks/differential.py``).
"""

import mpmath
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


@pytest.mark.parametrize("checked_in_extended_precision", [False, True])
def test_the_error_bound_bounds_the_error(checked_in_extended_precision):
    """Before any point is finished: every float trace and derivative is within its own error bound of
    the 30-digit limit (the bound is first order in the rounding; here it is tested where it matters,
    from well conditioned points to ridges of 1e-10 where it exceeds the value), and within the bound
    given by the check in extended precision, which must tighten some bounds at least tenfold."""
    from pencils.derivations import dims_key, store

    if checked_in_extended_precision and np.finfo(np.longdouble).eps >= np.finfo(float).eps:
        pytest.skip("numpy's longdouble is double precision here")
    rng = np.random.default_rng(7)
    checked, tightened = 0, 0
    for case in differential.engine_cases(rng, 60):
        quantities = case.quantity if isinstance(case.quantity, list) else [case.quantity]
        compiled = store.compiled_limit(differential.sympy.Tuple(*quantities), dims_key(case.dims))
        for index, solver in enumerate(compiled.solvers):
            parameters = [p for record, p in compiled.outputs if record == index and p is not None]
            subs = {key: value for key, value in case.subs.items() if key in solver.parameters}
            try:
                result = solver.float_target(subs, None, "neighbours", parameters)
            except differential.PencilsError:  # refused (the tests above count these)
                continue
            first_order = [error.copy() for error in result.errors]
            if checked_in_extended_precision:
                solver.tighten(result, parameters, np.arange(1))
            exact = solver.evaluate(subs, dps=30, derivatives=parameters)
            for value, error, loose, reference in zip(result.values, result.errors, first_order,
                                                      (exact.value, *exact.derivatives)):
                with mpmath.workdps(40):  # the reference not rounded to double: bounds may be below half an ulp
                    actual = float(abs(mpmath.mpmathify(value[0].item()) - reference))
                assert actual <= error[0], f"{case.describe()}: error {actual:.2e} above its bound {error[0]:.2e}"
                checked += 1
                tightened += bool(error[0] < loose[0] / 10)
    assert checked >= 60
    assert tightened >= 10 if checked_in_extended_precision else tightened == 0
