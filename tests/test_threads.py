"""Arbitrary precision from threads and processes: the same digits as serially, and the caller's state untouched.

Every arbitrary-precision computation runs in a private mpmath context of its
thread, never in ``mpmath.mp`` (whose precision belongs to the caller), and the
single-threaded BLAS the solver asks for is restored once the last overlapping
call ends.  The reference is the Marchenko-Pastur Stieltjes transform in closed form,
and for the models, constants, densities and reduced systems their serial values,
bit for bit.
"""

import dataclasses
import itertools
import multiprocessing
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import mpmath
import numpy as np
import pytest
import sympy
from threadpoolctl import threadpool_info, threadpool_limits

from pencils import Gaussian, activations, derive, limit, spectral_density, trace_limit
from pencils.models import dsm, random_features
from pencils.sweep import sweep

n, d, z = sympy.symbols("n d z")
X = Gaussian("X", n, d)
RESOLVENT = (X.T * X / n - z * sympy.Identity(d)).I
DIMS = {n: 2 * d}
POINTS = [-0.25 - k / 7 for k in range(16)]


def stieltjes(value, dps: int):
    r"""The Marchenko-Pastur Stieltjes transform :math:`\operatorname{tr}(X^T X/n - z)^{-1}/d` for d/n = 1/2."""
    with mpmath.workdps(dps + 10):
        ratio, value = mpmath.mpf(1) / 2, mpmath.mpf(value)
        linear = 1 - ratio - value
        return (linear - mpmath.sqrt(linear**2 - 4 * ratio * value)) / (2 * ratio * value)


def resolvent_trace(value):
    return trace_limit(RESOLVENT, DIMS, {z: value}, dps=50)


def blas_threads() -> list:
    return [library["num_threads"] for library in threadpool_info() if library["user_api"] == "blas"]


@pytest.fixture
def unusual_precision():
    """The caller works at 23 digits: the results must neither depend on it nor change it."""
    saved = mpmath.mp.dps
    mpmath.mp.dps = 23
    yield 23
    mpmath.mp.dps = saved


def test_threads_give_the_serial_digits_and_leave_the_caller_alone(unusual_precision):
    with threadpool_limits(limits=2, user_api="blas"):
        serial = [resolvent_trace(value) for value in POINTS]
        with ThreadPoolExecutor(max_workers=8) as executor:
            threaded = list(executor.map(resolvent_trace, POINTS * 2))
        assert blas_threads() and all(count == 2 for count in blas_threads())
    assert mpmath.mp.dps == unusual_precision
    assert [mpmath.nstr(v, 60) for v in threaded] == [mpmath.nstr(v, 60) for v in serial * 2]  # bit for bit
    with mpmath.workdps(60):
        assert max(abs(v - stieltjes(x, 60)) for v, x in zip(serial, POINTS)) < mpmath.mpf(10) ** -49


def test_threaded_floats_and_sweeps_leave_the_caller_alone(unusual_precision):
    lam = sympy.Symbol("lambda")
    quantity = sympy.Trace((X.T * X / n + lam * sympy.Identity(d)).I) / d
    values = np.geomspace(1e-9, 1.0, 12)
    serial = limit(quantity, DIMS, {lam: values})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with ThreadPoolExecutor(max_workers=8) as executor:
            threaded = list(executor.map(lambda value: limit(quantity, DIMS, {lam: value}), values))
            swept = sweep(_mp_limit, {"value": np.array([0.5, 1.0, 2.0])}, executor=executor, progress=False,
                          chunk_size=1)
    np.testing.assert_allclose(threaded, serial, rtol=1e-12)
    assert mpmath.mp.dps == unusual_precision
    with mpmath.workdps(60):
        assert all(abs(v - stieltjes(-x, 60)) < mpmath.mpf(10) ** -39 for v, x in zip(swept["value"], [0.5, 1.0, 2.0]))


def _mp_limit(value):
    return trace_limit(RESOLVENT, DIMS, {z: -value}, dps=40)


def test_processes_give_the_serial_digits(unusual_precision):
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    serial = [resolvent_trace(value) for value in POINTS[:4]]
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context(method)) as executor:
        pooled = list(executor.map(resolvent_trace, POINTS[:4]))
    assert [mpmath.nstr(v, 60) for v in pooled] == [mpmath.nstr(v, 60) for v in serial]
    assert mpmath.mp.dps == unusual_precision


# Cheap points of every public arbitrary-precision entry point beyond trace_limit.
CASES = {
    "dsm": lambda dps: dsm.errors(2.0, 3.0, 0.1, 1e-2, dps=dps),
    "dsm, m = 4": lambda dps: dsm.errors(2.0, 3.0, 0.1, 1e-2, m=4, dps=dps),
    "random features": lambda dps: random_features.errors(2.0, 1.0, 1e-2, dps=dps),
    "tanh kernel": lambda dps: activations.get("tanh").kernel("0.5", dps=dps),
    "relu split": lambda dps: activations.get("relu").correlated_split("0.3", dps=dps),
    "density": lambda dps: spectral_density(X.T * X / n, DIMS, [0.5, 2.0], dps=dps),
    "reduced": lambda dps: derive(RESOLVENT, DIMS).reduce().solve({z: -1}, dps=dps),
}
TASKS = [(case, dps) for case in CASES for dps in (20, 40)]


def exact_numbers(value) -> list:
    """Every number of a result (nested containers, arrays, dataclasses) as its exact mpmath mantissa and exponent."""
    if dataclasses.is_dataclass(value):
        value = dataclasses.astuple(value)
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (tuple, list, np.ndarray)):
        return [number for item in np.ravel(np.asarray(value, dtype=object)) for number in exact_numbers(item)]
    assert isinstance(value, (mpmath.mpf, mpmath.mpc)), f"{value!r} is not a number of mpmath.mp"
    return [getattr(value, "_mpc_", None) or value._mpf_]


def compute(task: tuple) -> list:
    case, dps = task
    return exact_numbers(CASES[case](dps))


def test_models_from_threads_at_mixed_precisions_give_the_serial_digits(unusual_precision):
    """Threads at 20 and 40 digits side by side, while the caller keeps changing ``mpmath.mp.dps``: a
    computation that read the global precision would lose digits when the caller is at 5."""
    serial = [compute(task) for task in TASKS]
    assert mpmath.mp.dps == unusual_precision
    with ThreadPoolExecutor(max_workers=8) as executor:  # each case at both precisions at once
        futures = [executor.submit(compute, task) for task in TASKS]
        for caller_dps in itertools.cycle([5, 80, 11, 33]):
            mpmath.mp.dps = caller_dps
            if all(future.done() for future in futures):
                break
            time.sleep(0.002)
        threaded = [future.result() for future in futures]
    assert mpmath.mp.dps == caller_dps  # set by this thread only
    assert threaded == serial


def test_models_from_processes_give_the_serial_digits(unusual_precision):
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    serial = [compute(task) for task in TASKS]
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context(method)) as executor:
        pooled = list(executor.map(compute, TASKS))
    assert pooled == serial
    assert mpmath.mp.dps == unusual_precision
