"""Large arrays are solved in batches (bounded memory) with the values of one call."""

import numpy as np
import pytest
import sympy

from closed_forms import marchenko_pastur_stieltjes
from pencils import Gaussian, SolverOptions, limit, trace_limit
from pencils.models import dsm

PSI_P, LAM = (a.ravel() for a in np.broadcast_arrays(np.geomspace(0.5, 8.0, 6)[:, None], [[1e-3, 1e-2, 1e-1]]))


def _errors(m: float, batch_points: int | None = None, continuation: str = "neighbours", full_output=False):
    """The DSM test and train errors at psi_n = 2, t = 0.5 over (PSI_P, LAM) (p <= n m: the primal form
    at finite m, continued from the ridge dsm.RIDGE_START as ``dsm.errors`` does), solved in batches
    of ``batch_points`` points."""
    options = SolverOptions() if batch_points is None else SolverOptions(batch_points=batch_points)
    found = dsm.quantities(finite_m=bool(np.isfinite(m)))
    path_from = {dsm.symbols["lam"]: np.maximum(LAM, dsm.RIDGE_START)} if np.isfinite(m) else None
    return limit([found["test"], found["train"]], dsm.dims, dsm.substitutions(2.0, PSI_P, 0.5, LAM, m),
                 path_from=path_from, continuation=continuation, options=options, full_output=full_output)


@pytest.mark.parametrize("m", [np.inf, 4.0])
def test_batches_equal_one_call_bit_for_bit_when_points_are_independent(m):
    """With continuation="variance" every point is solved on its own path, so batching changes nothing."""
    whole = _errors(m, continuation="variance")
    batched = _errors(m, batch_points=4, continuation="variance")
    assert batched[0].shape == (18,)
    np.testing.assert_array_equal(batched[0], whole[0])
    np.testing.assert_array_equal(batched[1], whole[1])


def test_the_batched_errors_are_those_of_the_model():
    """The helper above solves what ``dsm.errors`` solves: the same numbers, to rounding (``dsm.errors``
    passes psi_n and t as arrays, which moves the neighbour paths by rounding).  Where the certified
    relative error bound exceeds 1e-13 (near the ridge, train errors of 0.016), the two paths may differ
    by their rounding: there both values are checked against the 30-digit limit, within that bound."""
    for m in (np.inf, 4.0):
        model = dsm.errors(2.0, PSI_P, 0.5, LAM, m=m)
        result = _errors(m, full_output=True)
        for field, values, bound in zip(("test", "train"), result.value, result.relative_error):
            loose = bound > 1e-13
            np.testing.assert_allclose(values[~loose], getattr(model, field)[~loose], rtol=1e-13)
            for k in np.flatnonzero(loose):
                exact = float(getattr(dsm.errors(2.0, PSI_P[k], 0.5, LAM[k], m=m, dps=30), field))
                assert abs(values[k] - exact) <= bound[k] * abs(exact)
                assert abs(getattr(model, field)[k] - exact) <= bound[k] * abs(exact)


def test_batches_with_neighbour_continuation_agree_to_rounding():
    """Continuation from neighbours follows other paths in a batch, so the values move by rounding only
    (Newton stops at a relative residual of a few machine epsilons)."""
    whole = _errors(4.0)
    batched = _errors(4.0, batch_points=5)
    np.testing.assert_allclose(batched[0], whole[0], rtol=1e-12)
    np.testing.assert_allclose(batched[1], whole[1], rtol=1e-12)


def test_trace_limit_batches_keep_the_shape_and_arbitrary_precision():
    n, d, z = sympy.symbols("n d z")
    X = Gaussian("X", n, d)
    resolvent = (X.T * X / n - z * sympy.Identity(d)).I
    z_values = -np.linspace(0.5, 3.0, 8).reshape(2, 4)
    values = trace_limit(resolvent, {n: 2 * d}, {z: z_values}, dps=25, options=SolverOptions(batch_points=3))
    assert values.shape == (2, 4) and values.dtype == object
    import mpmath

    with mpmath.workdps(40):
        for value, z_value in zip(values.ravel(), z_values.ravel()):
            closed = marchenko_pastur_stieltjes(mpmath.mpf(z_value), mpmath.mpf(1) / 2)
            assert abs(value - closed) < mpmath.mpf(10) ** -23
