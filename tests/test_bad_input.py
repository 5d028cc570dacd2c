"""Bad input raises an exception that names the problem and the fix."""

import numpy as np
import pytest
import sympy
from sympy.matrices.expressions import HadamardProduct

from closed_forms import marchenko_pastur_stieltjes
from pencils import Gaussian, derive, limit, linearize, sample_trace, trace_limit
from pencils.errors import (
    ConvergenceError,
    DimensionError,
    MisScaledError,
    ParameterError,
    PencilsError,
    UnsupportedOperationError,
)

n, d, p, z, lam, psi = sympy.symbols("n d p z lambda psi")
X = Gaussian("X", n, d)
S = X.T * X / n
R = (S - z * sympy.Identity(d)).I


def test_errors_are_value_errors():
    assert issubclass(PencilsError, ValueError)


def test_non_square_target():
    with pytest.raises(ParameterError, match="square"):
        trace_limit(X / sympy.sqrt(d), {n: 2 * d}, {})


def test_missing_dimension():
    with pytest.raises(DimensionError, match="missing from dims"):
        trace_limit(R, {}, {z: -1.0})


def test_dimension_not_proportional():
    with pytest.raises(DimensionError, match="multiple of the base"):
        trace_limit(R, {n: d**2}, {z: -1.0})


def test_grows_without_limit():
    with pytest.raises(MisScaledError, match="no finite non-zero limit"):
        trace_limit(X.T * X, {n: 2 * d}, {})


def test_terms_of_different_orders():
    Y = Gaussian("Y", d, d)
    with pytest.raises(MisScaledError, match="different rates"):
        trace_limit(S + Y * Y.T, {n: 2 * d}, {})


def test_scalar_with_lower_order_term():
    with pytest.raises(MisScaledError, match="single power"):
        trace_limit(X.T * X / (n + 1), {n: 2 * d}, {})


def test_quantity_with_unnormalised_trace():
    with pytest.raises(MisScaledError, match="still depends on"):
        limit(sympy.Trace(S), {n: 2 * d})


def test_unsupported_operation():
    with pytest.raises(UnsupportedOperationError, match="HadamardProduct"):
        trace_limit(HadamardProduct(S, S), {n: 2 * d}, {})


def test_plain_matrix_symbol():
    A = sympy.MatrixSymbol("A", d, d)
    with pytest.raises(UnsupportedOperationError, match="pencils.Gaussian"):
        trace_limit(S * A, {n: 2 * d}, {})


def test_negative_ratio():
    with pytest.raises(ParameterError, match="ratio"):
        trace_limit(R, {n: psi * d}, {z: -1.0, psi: -2.0})


def test_zero_ratio_of_the_target():
    Y = Gaussian("Y", d, n)
    with pytest.raises(ParameterError, match="ratio"):
        trace_limit((Y.T * Y / d + sympy.Identity(n)).I, {n: psi * d}, {psi: np.array([1.0, 0.0])})


def test_missing_parameter():
    with pytest.raises(ParameterError, match="no value given for z"):
        trace_limit(R, {n: 2 * d}, {})


def test_non_numeric_parameter():
    with pytest.raises(ParameterError, match="number"):
        trace_limit(R, {n: 2 * d}, {z: "minus one"})


def test_infinite_coefficient():
    with pytest.raises(ParameterError, match="not finite"):
        trace_limit((S + sympy.Identity(d) / lam).I, {n: 2 * d}, {lam: 0.0})


def test_singular_deterministic_part():
    """S^{-1} with d > n has no limit (S is singular): following a ridge to zero fails, and says so."""
    with pytest.raises(ConvergenceError, match="singular in the limit"):
        trace_limit(S.I, {n: d / 2}, {})


def test_no_convergence_names_the_point():
    with pytest.raises(ConvergenceError, match="z=1.0") as info:
        trace_limit(R, {n: 2 * d}, {z: np.array([-1.0, 1.0])})
    assert info.value.parameters == {"z": 1.0}
    assert info.value.residual > 1e-3


def test_sample_trace_needs_seeds():
    with pytest.raises(ParameterError, match="seed"):
        sample_trace(R, {n: 2 * d}, {z: -1.0}, size=10, seeds=[])


def test_derive_rejects_scalars():
    with pytest.raises(ParameterError, match="square matrix"):
        derive(z, {n: 2 * d})


def test_linearize_rejects_non_matrices():
    with pytest.raises(UnsupportedOperationError):
        linearize(z + 1, {n: 2 * d})


# --------------------------------------------------------------------------- every public entry point

import math  # noqa: E402

import mpmath  # noqa: E402

from pencils import DysonSystem  # noqa: E402,F401
from pencils import activations  # noqa: E402
from pencils.errors import ParameterTypeError  # noqa: E402
from pencils.models import dsm, marchenko_pastur, random_features  # noqa: E402
from pencils.simulation import dsm as dsm_simulation  # noqa: E402
from pencils.simulation import random_features as random_features_simulation  # noqa: E402
from pencils.sweep import sweep  # noqa: E402
from pencils.validation import MAX_DPS  # noqa: E402

q = sympy.Symbol("q")
ridge = sympy.Symbol("ridge", positive=True)
RIDGE = (S + ridge * sympy.Identity(d)).I


def _raises(exception):
    def boom(x):
        raise exception

    return boom


#: (entry point, call, the error class, a word the message must contain).  Every class of bad input:
#: negative, zero, NaN, inf, complex where real is meant, strings, None, bool, empty and mismatched
#: arrays, m < 1, unknown activations, callables that raise or return NaN, dps of 0, negative, huge.
BAD = [
    # trace_limit: values, dps, path_from
    ("trace_limit z=nan", lambda: trace_limit(R, {n: 2 * d}, {z: math.nan}), ParameterError, "subs[z] is nan"),
    ("trace_limit z=inf", lambda: trace_limit(R, {n: 2 * d}, {z: -math.inf}), ParameterError, "subs[z] is -inf"),
    ("trace_limit z=string", lambda: trace_limit(R, {n: 2 * d}, {z: "-1"}), ParameterError, "subs[z]"),
    ("trace_limit z=None", lambda: trace_limit(R, {n: 2 * d}, {z: None}), ParameterError, "subs[z]"),
    ("trace_limit z=bool", lambda: trace_limit(R, {n: 2 * d}, {z: True}), ParameterError, "boolean"),
    ("trace_limit z=empty", lambda: trace_limit(R, {n: 2 * d}, {z: np.array([])}), ParameterError, "empty"),
    ("trace_limit z=nan in array", lambda: trace_limit(R, {n: 2 * d}, {z: np.array([-1.0, np.nan])}),
     ParameterError, "nan"),
    ("trace_limit mismatched", lambda: trace_limit((S - z * sympy.Identity(d)).I * q, {n: 2 * d},
                                                   {z: -np.ones(2), q: np.ones(3)}), ParameterError, "broadcast"),
    ("trace_limit complex for real", lambda: trace_limit(RIDGE, {n: 2 * d}, {ridge: 1 + 1j}), ParameterError,
     "declared real"),
    ("trace_limit negative ridge ratio", lambda: trace_limit(R, {n: psi * d}, {z: -1.0, psi: -1.0}),
     ParameterError, "ratio"),
    ("trace_limit zero ridge", lambda: trace_limit((S + sympy.Identity(d) / lam).I, {n: 2 * d}, {lam: 0}),
     ParameterError, "not finite"),
    ("trace_limit dps=0", lambda: trace_limit(R, {n: 2 * d}, {z: -1.0}, dps=0), ParameterError, "dps"),
    ("trace_limit dps=-5", lambda: trace_limit(R, {n: 2 * d}, {z: -1.0}, dps=-5), ParameterError, "dps"),
    ("trace_limit dps huge", lambda: trace_limit(R, {n: 2 * d}, {z: -1.0}, dps=10**6), ParameterError, "dps"),
    ("trace_limit dps=False", lambda: trace_limit(R, {n: 2 * d}, {z: -1.0}, dps=False), ParameterTypeError, "dps"),
    ("trace_limit dps=1.5", lambda: trace_limit(R, {n: 2 * d}, {z: -1.0}, dps=1.5), ParameterTypeError, "dps"),
    ("trace_limit dps=string", lambda: trace_limit(R, {n: 2 * d}, {z: -1.0}, dps="30"), ParameterTypeError, "dps"),
    ("trace_limit path_from nan", lambda: trace_limit(R, {n: 2 * d}, {z: -1.0}, path_from={z: math.nan}),
     ParameterError, "path_from[z]"),
    ("trace_limit dims None", lambda: trace_limit(R, None, {z: -1.0}), DimensionError, "dims"),
    ("trace_limit subs list", lambda: trace_limit(R, {n: 2 * d}, [-1.0]), ParameterError, "subs"),
    # limit
    ("limit q=nan", lambda: limit(sympy.Trace(S) / d * q, {n: 2 * d}, {q: math.nan}), ParameterError, "subs[q]"),
    ("limit q=inf", lambda: limit(sympy.Trace(S) / d * q, {n: 2 * d}, {q: math.inf}), ParameterError, "subs[q]"),
    ("limit q=string", lambda: limit(sympy.Trace(S) / d * q, {n: 2 * d}, {q: "two"}), ParameterError, "subs[q]"),
    ("limit dps=0", lambda: limit(sympy.Trace(S) / d, {n: 2 * d}, dps=0), ParameterError, "dps"),
    ("limit list dps=True", lambda: limit([sympy.Trace(S) / d], {n: 2 * d}, dps=True), ParameterTypeError, "dps"),
    ("limit exp", lambda: limit(sympy.exp(S), {n: 2 * d}), UnsupportedOperationError, "not rational"),
    ("limit log det", lambda: limit(sympy.log(sympy.Determinant(S)) / d, {n: 2 * d}), UnsupportedOperationError,
     "log det"),
    # derive and DysonSystem.solve
    ("derive exp", lambda: derive(sympy.exp(S), {n: 2 * d}), UnsupportedOperationError, "not rational"),
    ("derive dims list", lambda: derive(S, [n, d]), DimensionError, "dims"),
    ("DysonSystem.solve dps=0", lambda: derive(R, {n: 2 * d}).solve({z: -1.0}, dps=0), ParameterError, "dps"),
    ("DysonSystem.solve z=nan", lambda: derive(R, {n: 2 * d}).solve({z: math.nan}), ParameterError, "subs[z]"),
    # sample_trace
    ("sample_trace size=0", lambda: sample_trace(R, {n: 2 * d}, {z: -1.0}, size=0), ParameterError, "size"),
    ("sample_trace size=-3", lambda: sample_trace(R, {n: 2 * d}, {z: -1.0}, size=-3), ParameterError, "size"),
    ("sample_trace size=1.5", lambda: sample_trace(R, {n: 2 * d}, {z: -1.0}, size=1.5), ParameterError, "size"),
    ("sample_trace size=None", lambda: sample_trace(R, {n: 2 * d}, {z: -1.0}, size=None), ParameterError, "size"),
    ("sample_trace seeds=-1", lambda: sample_trace(R, {n: 2 * d}, {z: -1.0}, size=10, seeds=-1), ParameterError,
     "seeds"),
    ("sample_trace seed=1.5", lambda: sample_trace(R, {n: 2 * d}, {z: -1.0}, size=10, seeds=[1.5]),
     ParameterError, "seed"),
    ("sample_trace z=nan", lambda: sample_trace(R, {n: 2 * d}, {z: math.nan}, size=10), ParameterError, "subs[z]"),
    ("sample_trace mismatched", lambda: sample_trace((S - z * sympy.Identity(d)).I * q, {n: 2 * d},
                                                     {z: -np.ones(2), q: np.ones(3)}, size=10), ParameterError,
     "broadcast"),
    # sweep
    ("sweep chunk_size=-2", lambda: sweep(random_features.errors, {"psi_p": [1.0, 2.0]}, psi_n=2.0, lam=0.1,
                                          chunk_size=-2), ParameterError, "chunk_size"),
    ("sweep chunk_size=0", lambda: sweep(random_features.errors, {"psi_p": [1.0]}, psi_n=2.0, lam=0.1,
                                         chunk_size=0), ParameterError, "chunk_size"),
    ("sweep chunk_size=1.5", lambda: sweep(random_features.errors, {"psi_p": [1.0]}, psi_n=2.0, lam=0.1,
                                           chunk_size=1.5), ParameterError, "chunk_size"),
    ("sweep chunk_size=None", lambda: sweep(random_features.errors, {"psi_p": [1.0]}, psi_n=2.0, lam=0.1,
                                            chunk_size=None), ParameterError, "chunk_size"),
    ("sweep chunk_size=True", lambda: sweep(random_features.errors, {"psi_p": [1.0]}, psi_n=2.0, lam=0.1,
                                            chunk_size=True), ParameterError, "chunk_size"),
    ("sweep empty axis", lambda: sweep(random_features.errors, {"psi_p": []}, psi_n=2.0, lam=0.1), ParameterError,
     "psi_p"),
    # dsm.errors
    ("dsm psi_n=0", lambda: dsm.errors(0.0, 1.0, 0.5, 1e-2), ParameterError, "psi_n"),
    ("dsm psi_n=-1", lambda: dsm.errors(-1.0, 1.0, 0.5, 1e-2), ParameterError, "psi_n"),
    ("dsm psi_p=nan", lambda: dsm.errors(2.0, math.nan, 0.5, 1e-2), ParameterError, "psi_p"),
    ("dsm t=inf", lambda: dsm.errors(2.0, 1.0, math.inf, 1e-2), ParameterError, "t must"),
    ("dsm lam complex", lambda: dsm.errors(2.0, 1.0, 0.5, 1e-2 + 1e-3j), ParameterError, "lam must be real"),
    ("dsm lam string", lambda: dsm.errors(2.0, 1.0, 0.5, "small"), ParameterError, "lam"),
    ("dsm t=None", lambda: dsm.errors(2.0, 1.0, None, 1e-2), ParameterError, "t must"),
    ("dsm t=bool", lambda: dsm.errors(2.0, 1.0, True, 1e-2), ParameterError, "t is a boolean"),
    ("dsm m=0.5", lambda: dsm.errors(2.0, 1.0, 0.5, 1e-2, m=0.5), ParameterError, "m must be >= 1"),
    ("dsm m=nan", lambda: dsm.errors(2.0, 1.0, 0.5, 1e-2, m=math.nan), ParameterError, "m must be >= 1"),
    ("dsm m=-inf", lambda: dsm.errors(2.0, 1.0, 0.5, 1e-2, m=-math.inf), ParameterError, "m must be >= 1"),
    ("dsm empty psi_p", lambda: dsm.errors(2.0, np.array([]), 0.5, 1e-2), ParameterError, "psi_p is an empty"),
    ("dsm mismatched", lambda: dsm.errors(2.0, np.ones(2), 0.5, np.full(3, 1e-2)), ParameterError, "broadcast"),
    ("dsm unknown activation", lambda: dsm.errors(2.0, 1.0, 0.5, 1e-2, activation="swish"), ParameterError,
     "unknown activation 'swish'"),
    ("dsm activation not callable", lambda: dsm.errors(2.0, 1.0, 0.5, 1e-2, activation=3), ParameterTypeError,
     "activation"),
    ("dsm activation raises", lambda: dsm.errors(2.0, 1.0, 0.5, 1e-2, activation=_raises(ZeroDivisionError)),
     ParameterTypeError, "failed"),
    ("dsm activation nan", lambda: dsm.errors(2.0, 1.0, 0.5, 1e-2, activation=lambda x: x * math.nan),
     ParameterError, "finite"),
    ("dsm dps=0", lambda: dsm.errors(2.0, 1.0, 0.5, 1e-2, dps=0), ParameterError, "dps"),
    ("dsm dps huge", lambda: dsm.errors(2.0, 1.0, 0.5, 1e-2, dps=MAX_DPS + 1), ParameterError, "dps"),
    ("dsm continuation", lambda: dsm.errors(2.0, 1.0, 0.5, 1e-2, continuation="fast"), ParameterError,
     "continuation"),
    # random_features.errors
    ("rf lam=0", lambda: random_features.errors(2.0, 1.0, 0.0), ParameterError, "lam"),
    ("rf signal=-1", lambda: random_features.errors(2.0, 1.0, 0.1, signal=-1.0), ParameterError, "signal"),
    ("rf noise=nan", lambda: random_features.errors(2.0, 1.0, 0.1, noise=math.nan), ParameterError, "noise"),
    ("rf psi_p string", lambda: random_features.errors(2.0, "1", 0.1), ParameterError, "psi_p"),
    ("rf empty", lambda: random_features.errors(2.0, [], 0.1), ParameterError, "empty"),
    ("rf mismatched", lambda: random_features.errors(np.ones(2), np.ones(3), 0.1), ParameterError, "broadcast"),
    ("rf unknown activation", lambda: random_features.errors(2.0, 1.0, 0.1, activation="gelu"), ParameterError,
     "unknown activation"),
    ("rf dps=-1", lambda: random_features.errors(2.0, 1.0, 0.1, dps=-1), ParameterError, "dps"),
    # marchenko_pastur
    ("mp ratio=0", lambda: marchenko_pastur.stieltjes(-1.0, 0.0), ParameterError, "gamma"),
    ("mp ratio=nan", lambda: marchenko_pastur.stieltjes(-1.0, math.nan), ParameterError, "gamma"),
    ("mp ratio string", lambda: marchenko_pastur.stieltjes(-1.0, "half"), ParameterError, "gamma"),
    ("mp z=nan", lambda: marchenko_pastur.stieltjes(math.nan, 0.5), ParameterError, "z"),
    ("mp mismatched", lambda: marchenko_pastur.stieltjes(-np.ones(2), np.full(3, 0.5)), ParameterError,
     "broadcast"),
    ("mp dps=0", lambda: marchenko_pastur.stieltjes(-1.0, 0.5, dps=0), ParameterError, "dps"),
    ("mp density epsilon=0", lambda: marchenko_pastur.density(1.0, 0.5, epsilon=0.0), ParameterError, "epsilon"),
    ("mp density x=inf", lambda: marchenko_pastur.density(math.inf, 0.5), ParameterError, "x must"),
    # simulations
    ("dsm.simulate d=0", lambda: dsm_simulation.simulate(d=0, psi_n=2, psi_p=2, t=0.5, lam=0.01, m=1),
     ParameterError, "d must"),
    ("dsm.simulate psi_n=nan", lambda: dsm_simulation.simulate(d=10, psi_n=math.nan, psi_p=2, t=0.5, lam=0.01, m=1),
     ParameterError, "psi_n"),
    ("dsm.simulate m=0", lambda: dsm_simulation.simulate(d=10, psi_n=2, psi_p=2, t=0.5, lam=0.01, m=0),
     ParameterError, "m must"),
    ("dsm.simulate activation", lambda: dsm_simulation.simulate(d=10, psi_n=2, psi_p=2, t=0.5, lam=0.01, m=1,
                                                                activation="swish"), ParameterError, "swish"),
    ("rf.simulate d=1.5", lambda: random_features_simulation.simulate(d=1.5, psi_n=2, psi_p=1, lam=0.1),
     ParameterError, "d must"),
    ("rf.simulate psi_n=nan", lambda: random_features_simulation.simulate(d=10, psi_n=math.nan, psi_p=1, lam=0.1),
     ParameterError, "psi_n"),
    ("rf.simulate lam string", lambda: random_features_simulation.simulate(d=10, psi_n=2, psi_p=1, lam="0.1"),
     ParameterError, "lam"),
    ("rf.simulate n_test=0", lambda: random_features_simulation.simulate(d=10, psi_n=2, psi_p=1, lam=0.1, n_test=0),
     ParameterError, "n_test"),
    # activations.get
    ("activation unknown", lambda: activations.get("swish"), ParameterError, "known names"),
    ("activation None", lambda: activations.get(None), ParameterTypeError, "activation"),
    ("activation raises", lambda: activations.get(_raises(RuntimeError)), ParameterTypeError, "failed"),
    ("activation nan", lambda: activations.get(lambda x: x * math.nan), ParameterError, "finite"),
]


@pytest.mark.parametrize("call, error, word", [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_bad_input_is_refused_by_name(call, error, word):
    with pytest.raises(error) as info:
        call()
    assert isinstance(info.value, PencilsError)
    assert word in str(info.value)


def test_complex_where_allowed_is_the_marchenko_pastur_solution():
    z_value = -1.0 + 0.5j
    value = trace_limit(R, {n: 2 * d}, {z: z_value})
    assert abs(value - complex(marchenko_pastur_stieltjes(z_value, 0.5))) < 1e-13
    assert value.imag > 0  # the Stieltjes transform maps the upper half-plane to itself


@pytest.mark.parametrize("dps", [np.int64(20), 1])
def test_dps_as_numpy_integer_and_one_digit(dps):
    value = trace_limit(R, {n: 2 * d}, {z: -1}, dps=dps)
    with mpmath.workdps(40):
        assert abs(value - (mpmath.sqrt(17) - 3) / 2) < mpmath.mpf(10) ** (1 - int(dps))


def test_infinite_m_and_integer_values_work():
    result = dsm.errors(2, 1, 1, 1, m=math.inf)
    other = dsm.errors(2.0, 1.0, 1.0, 1.0, m=math.inf)
    assert result.test == other.test and result.optimum < result.test


@pytest.mark.parametrize("ratio", [1.5, 2.0, 4.0])
def test_inverse_with_no_ridge_is_continued_from_a_ridge(ratio):
    """tr(S^{-1})/d and tr(S^{-2})/d of a Wishart S = X^T X/n with gamma = d/n < 1 are 1/(1 - gamma) and
    1/(1 - gamma)^3 (inverse Wishart moments), although the pencil is singular where solutions start."""
    gamma = 1 / ratio
    assert abs(trace_limit(S.I, {n: psi * d}, {psi: ratio}) - 1 / (1 - gamma)) < 1e-12
    assert abs(trace_limit(S**-2, {n: psi * d}, {psi: ratio}) - 1 / (1 - gamma) ** 3) < 1e-11
    first, second = limit([sympy.Trace(S.I) / d, sympy.Trace(S.I * S.I) / d], {n: psi * d}, {psi: ratio})
    assert abs(first - 1 / (1 - gamma)) < 1e-12 and abs(second - 1 / (1 - gamma) ** 3) < 1e-11
    with mpmath.workdps(40):
        exact = trace_limit(S.I, {n: psi * d}, {psi: ratio}, dps=30) - 1 / (1 - 1 / mpmath.mpf(ratio))
        assert abs(exact) < mpmath.mpf(10) ** -29


def test_singular_start_of_a_dyson_system_says_how_to_continue():
    """Below trace_limit a DysonSystem has no expression to add a ridge to: the message gives the recipe,
    and following it gives the limit 1/(1 - 1/2) = 2."""
    with pytest.raises(ConvergenceError, match=r"path_from=\{lam: 1.0\}"):
        derive(S.I, {n: 2 * d}).solve({})
    ridge_symbol = sympy.Symbol("lam")
    value = derive((S + ridge_symbol * sympy.Identity(d)).I, {n: 2 * d}).solve({ridge_symbol: 0.0},
                                                                               path_from={ridge_symbol: 1.0})
    assert abs(value - 2.0) < 1e-12


def test_messages_for_functions_of_matrices_and_mixed_sums():
    with pytest.raises(UnsupportedOperationError, match="functions of matrices are not rational"):
        trace_limit(sympy.exp(S), {n: 2 * d}, {})
    with pytest.raises(UnsupportedOperationError, match="functions of matrices are not rational"):
        trace_limit(sympy.log(S), {n: 2 * d}, {})
    with pytest.raises(UnsupportedOperationError, match=r"d/dlam = Trace\(\(S \+ lam\*I\)\*\*-1\)/N"):
        limit(sympy.log(sympy.det(S)) / d, {n: 2 * d})
    m = sympy.Symbol("m")
    Y = Gaussian("Y", m, m)
    with pytest.raises(DimensionError, match=r"different shapes .*m x m.*d x d.*m = 3\*d"):
        trace_limit(S + Y * Y.T / m, {n: 2 * d, m: 3 * d}, {})


# --------------------------------------------------------------------------- sample_trace agrees with trace_limit

Y_block = Gaussian("Y", d, d)
PARITY = [
    ("resolvent", R, {z: -1.0}),
    ("resolvent array", R, {z: np.array([-1.0, -2.0])}),
    ("ridge ratio", (S + lam * sympy.Identity(d)).I, {lam: 0.5}),
    ("whole block", sympy.BlockMatrix([[S, sympy.Identity(d)], [sympy.Identity(d), S]]), {}),
    ("non-square", X / n, {}),
    ("grows", X.T * X, {}),
    ("different orders", S + Y_block * Y_block.T, {}),
    ("Hadamard", HadamardProduct(S, S), {}),
    ("exp", sympy.exp(S), {}),
    ("missing value", R, {}),
    ("nan value", R, {z: math.nan}),
    ("string value", R, {z: "x"}),
    ("mismatched", (S - z * sympy.Identity(d)).I * q, {z: -np.ones(2), q: np.ones(3)}),
    ("zero ridge", (S + sympy.Identity(d) / lam).I, {lam: 0.0}),
    ("negative ratio", R, {z: -1.0, psi: -2.0}),
]


def _outcome(call):
    try:
        call()
    except PencilsError as error:
        return type(error)
    return None


@pytest.mark.parametrize("expr, subs", [case[1:] for case in PARITY], ids=[case[0] for case in PARITY])
def test_sample_trace_accepts_and_refuses_what_trace_limit_does(expr, subs):
    dims = {n: psi * d} if psi in subs else {n: 2 * d}
    expected = _outcome(lambda: trace_limit(expr, dims, subs))
    got = _outcome(lambda: sample_trace(expr, dims, subs, size=20, seeds=2))
    assert got == expected


def test_sample_trace_refuses_an_inverse_that_is_singular_in_the_draw():
    """With d > n, S = X^T X/n has rank n < d: trace_limit finds no limit, and a draw has no inverse."""
    with pytest.raises(ConvergenceError):
        trace_limit(S.I, {n: d / 2}, {})
    with pytest.raises(ParameterError, match="singular in this draw"):
        sample_trace(S.I, {n: d / 2}, {}, size=20, seeds=2)
