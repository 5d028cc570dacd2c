"""Large arrays are solved in batches (bounded memory) with the values of one call."""

import numpy as np
import pytest
import sympy

import pencils.limits
from closed_forms import marchenko_pastur_stieltjes
from pencils import Gaussian, trace_limit
from pencils.models import dsm

PSI_P = np.geomspace(0.5, 8.0, 6)[:, None]
LAM = np.array([1e-3, 1e-2, 1e-1])[None, :]


@pytest.mark.parametrize("m", [np.inf, 4.0])
def test_batches_equal_one_call_bit_for_bit_when_points_are_independent(m, monkeypatch):
    """With continuation="variance" every point is solved on its own path, so batching changes nothing."""
    whole = dsm.errors(2.0, PSI_P, 0.5, LAM, m=m, continuation="variance")
    monkeypatch.setattr(pencils.limits, "batch_points", 4)
    batched = dsm.errors(2.0, PSI_P, 0.5, LAM, m=m, continuation="variance")
    assert batched.test.shape == (6, 3)
    np.testing.assert_array_equal(batched.test, whole.test)
    np.testing.assert_array_equal(batched.train, whole.train)


def test_batches_with_neighbour_continuation_agree_to_rounding(monkeypatch):
    """Continuation from neighbours follows other paths in a batch, so the values move by rounding only
    (Newton stops at a relative residual of a few machine epsilons)."""
    whole = dsm.errors(2.0, PSI_P, 0.5, LAM, m=4.0)
    monkeypatch.setattr(pencils.limits, "batch_points", 5)
    batched = dsm.errors(2.0, PSI_P, 0.5, LAM, m=4.0)
    np.testing.assert_allclose(batched.test, whole.test, rtol=1e-12)
    np.testing.assert_allclose(batched.train, whole.train, rtol=1e-12)


def test_trace_limit_batches_keep_the_shape_and_arbitrary_precision(monkeypatch):
    n, d, z = sympy.symbols("n d z")
    X = Gaussian("X", n, d)
    resolvent = (X.T * X / n - z * sympy.Identity(d)).I
    z_values = -np.linspace(0.5, 3.0, 8).reshape(2, 4)
    monkeypatch.setattr(pencils.limits, "batch_points", 3)
    values = trace_limit(resolvent, {n: 2 * d}, {z: z_values}, dps=25)
    assert values.shape == (2, 4) and values.dtype == object
    import mpmath

    with mpmath.workdps(40):
        for value, z_value in zip(values.ravel(), z_values.ravel()):
            closed = marchenko_pastur_stieltjes(mpmath.mpf(z_value), mpmath.mpf(1) / 2)
            assert abs(value - closed) < mpmath.mpf(10) ** -23
