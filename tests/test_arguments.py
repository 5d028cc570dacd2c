"""Keys of ``subs`` and ``path_from``: symbols or their names, looked up, never parsed; text never parsed."""

import pytest
import sympy

from closed_forms import marchenko_pastur_stieltjes
from pencils import Gaussian, derive, limit, sample_trace, trace_limit
from pencils.arguments import as_sympy, resolve_keys
from pencils.errors import DimensionError, ParameterError

n, d, z, lam, psi = sympy.symbols("n d z lambda psi")
X = Gaussian("X", n, d)
RESOLVENT = (X.T * X / n - z * sympy.Identity(d)).I
DIMS = {n: 2 * d}
STIELTJES = float(marchenko_pastur_stieltjes(-1, 0.5))  # lim tr R / d at z = -1 for n = 2d


def marker_code(marker) -> str:
    return f"__import__('pathlib').Path({str(marker)!r}).touch()"


ENTRY_POINTS = {
    "trace_limit": lambda values: trace_limit(RESOLVENT, DIMS, values),
    "trace_limit path_from": lambda values: trace_limit(RESOLVENT, DIMS, {z: -1.0}, path_from=values),
    "limit": lambda values: limit(sympy.Trace(RESOLVENT) / d, DIMS, values),
    "limit of two": lambda values: limit([sympy.Trace(RESOLVENT) / d, sympy.Trace(X.T * X / n) / d], DIMS, values)[0],
    "limit path_from": lambda values: limit(sympy.Trace(RESOLVENT) / d, DIMS, {z: -1.0}, path_from=values),
    "DysonSystem.solve": lambda values: derive(RESOLVENT, DIMS).solve(values),
    "Solver.target": lambda values: derive(RESOLVENT, DIMS).solver.target(values),
    "sample_trace": lambda values: sample_trace(RESOLVENT, DIMS, values, size=20, seeds=2).mean,
    "Pencil.check": lambda values: derive(RESOLVENT, DIMS).pencil.check(values),
}


@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
def test_code_as_a_key_is_refused_and_never_run(entry_point, tmp_path):
    marker = tmp_path / "ran"
    code = marker_code(marker)
    with pytest.raises(ParameterError, match=r"has the key .*__import__.*names no symbol") as error:
        ENTRY_POINTS[entry_point]({code: 1.0, z: -1.0})
    assert "z" in str(error.value)  # the message lists the names that would do
    assert not marker.exists()


@pytest.mark.parametrize("entry_point", ["trace_limit", "limit", "limit of two", "DysonSystem.solve", "Solver.target"])
def test_a_name_is_looked_up_among_the_symbols(entry_point):
    by_name = ENTRY_POINTS[entry_point]({"z": -1.0})
    assert by_name == ENTRY_POINTS[entry_point]({z: -1.0})
    assert by_name == pytest.approx(STIELTJES, rel=1e-13)


def test_a_name_works_in_path_from_and_for_a_ratio_parameter():
    value = trace_limit(RESOLVENT, DIMS, {z: -1.0}, path_from={"z": -2.0})
    assert value == pytest.approx(STIELTJES, rel=1e-12)
    by_ratio = trace_limit(RESOLVENT, {n: psi * d}, {"psi": 2, "z": -1.0})
    assert by_ratio == pytest.approx(STIELTJES, rel=1e-13)


def test_sample_trace_takes_names_too():
    assert (sample_trace(RESOLVENT, DIMS, {"z": -1.0}, size=20, seeds=2).mean
            == sample_trace(RESOLVENT, DIMS, {z: -1.0}, size=20, seeds=2).mean)


@pytest.mark.parametrize(
    "key, message",
    [
        ("w", r"key 'w', which names no symbol of the quantity \(its symbols are"),
        ("z ", r"key 'z ', which names no symbol"),
        ("1+1", r"key '1\+1', which names no symbol"),
        ("", r"key '', which names no symbol"),
        (3, r"key 3 of type int; keys must be SymPy symbols"),
        (None, r"key None of type NoneType"),
        (2 * z, r"key 2\*z of type Mul"),
        (sympy.Function("f")(z), r"key f\(z\) of type f"),
        (sympy.MatrixSymbol("z", 2, 2), r"key z of type MatrixSymbol"),
        (b"z", r"key b'z' of type bytes"),
    ],
)
def test_other_keys_are_refused_with_the_key_named(key, message):
    with pytest.raises(ParameterError, match=r"^subs has the " + message):
        trace_limit(RESOLVENT, DIMS, {key: 1.0, z: -1.0})


def test_a_symbol_given_twice_is_refused():
    with pytest.raises(ParameterError, match="subs gives z twice"):
        trace_limit(RESOLVENT, DIMS, {"z": -1.0, z: -2.0})


def test_an_ambiguous_name_is_refused():
    other_z = sympy.Symbol("z", negative=True)
    with pytest.raises(ParameterError, match="names 2 different symbols"):
        resolve_keys({"z": 1.0}, [z, other_z], "subs")
    assert resolve_keys({other_z: 1.0}, [z, other_z], "subs") == {other_z: 1.0}


def test_values_that_are_not_a_mapping_are_refused():
    with pytest.raises(ParameterError, match="path_from must be a dict"):
        resolve_keys([(z, -1.0)], [z], "path_from")
    assert resolve_keys(None, [z], "subs") == {}


@pytest.mark.parametrize(
    "call",
    [
        lambda code: trace_limit(RESOLVENT, {n: code}, {z: -1.0}),
        lambda code: trace_limit(RESOLVENT, {code: 2 * d}, {z: -1.0}),
        lambda code: derive(RESOLVENT, {n: code}),
        lambda code: sample_trace(RESOLVENT, {n: code}, {z: -1.0}, size=20, seeds=2),
        lambda code: Gaussian("Y", code, d),
        lambda code: limit(code, DIMS),
        lambda code: limit([sympy.Trace(RESOLVENT) / d, code], DIMS, {z: -1.0}),
    ],
    ids=["dims value", "dims key", "derive", "sample_trace dims", "Gaussian shape", "limit", "limit list"],
)
def test_text_is_never_parsed_as_an_expression(call, tmp_path):
    marker = tmp_path / "ran"
    with pytest.raises((ParameterError, DimensionError), match="text is never parsed"):
        call(f"{marker_code(marker)} or 2*d")
    assert not marker.exists()


def test_a_gaussian_shape_may_be_a_symbol_name():
    assert Gaussian("Y", "n", "d").shape == (n, d)


def test_as_sympy_converts_numbers_exactly():
    assert as_sympy(3, "dims") == 3 and as_sympy(0.5, "dims") == sympy.Float(0.5)
    with pytest.raises(DimensionError, match=r"dims holds \['n'\] \(list\)"):
        as_sympy(["n"], "dims", DimensionError)
