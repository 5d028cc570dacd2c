"""Expressions as JSON trees: exact round trips, and refusal of anything outside the node table."""

import json

import pytest
import sympy

from pencils import derive
from pencils.errors import UnsupportedOperationError
from pencils.serialization import FUNCTIONS, decode, encode

x, y = sympy.symbols("x y")
positive = sympy.Symbol("lambda", positive=True)
integer = sympy.Symbol("k", integer=True, nonnegative=True)
odd_name = sympy.Symbol("s^2")  # parameter names need not be identifiers
placeholder = sympy.Dummy("tau0", dummy_index=0)

EXPRESSIONS = [
    sympy.Integer(0), sympy.Integer(-1), sympy.Integer(7) ** 200, sympy.Rational(-3, 7), sympy.S.Half,
    sympy.Float("0.1"), sympy.Float("-2.5e-300"), sympy.Float("0.1", 50), sympy.Float(1, 3), sympy.Float(0),
    sympy.Float("1e100000", 20),
    x, positive, integer, odd_name, placeholder, sympy.Dummy("hidden", positive=True),
    sympy.I, sympy.pi, sympy.E,
    1 / (x + 2), (x - y) ** 3 / (1 + positive * x) - 2 * integer, sympy.sqrt(2) * x + sympy.I * y**sympy.Rational(1, 3),
    sympy.Float("0.3", 40) * positive**-2 + sympy.pi * sympy.E * x,
    sympy.atan2(y, x + 1), sympy.Abs(x - 1) + sympy.sign(y), sympy.exp(-positive / 2) * sympy.log(1 + x),
    *(function(x / 3 + sympy.Rational(1, 5)) for name, function in FUNCTIONS.items() if name != "atan2"),
]


@pytest.mark.parametrize("expression", EXPRESSIONS, ids=str)
def test_round_trip_is_exact(expression):
    tree = json.loads(json.dumps(encode(expression)))  # through JSON text, as in the cache
    rebuilt = decode(tree)
    assert rebuilt == expression
    assert sympy.srepr(rebuilt) == sympy.srepr(expression)
    for original, copy in zip(sympy.preorder_traversal(expression), sympy.preorder_traversal(rebuilt)):
        assert type(copy) is type(original)
        if isinstance(original, sympy.Symbol):
            assert copy.assumptions0 == original.assumptions0
        if isinstance(original, sympy.Float):
            assert (copy._prec, copy._mpf_) == (original._prec, original._mpf_)


def test_float_precision_is_kept_not_only_the_value():
    tree = encode(sympy.Float("0.1", 50))
    assert tree[3] > 160  # 50 digits need about 166 bits
    assert decode(tree) != sympy.Float("0.1")


def test_a_derived_system_round_trips(matrices):
    n, d, z, lam, X = matrices["n"], matrices["d"], matrices["z"], matrices["lam"], matrices["X"]
    S = X.T * X / n
    system = derive((S * (S + lam * sympy.Identity(d)).I - z * sympy.Identity(d)).I, {n: 2 * d})
    record = json.loads(json.dumps(system.record()))
    coefficients = [decode(tree) for tree in record["coefficients"]]
    expected = ([system.deterministic[i, j] for i, j in record["identity"]]
                + [c.weight for c in sorted(system.couplings, key=lambda c: c.unknown)])
    assert coefficients[: len(expected)] == expected
    assert tuple(decode(tree) for tree in record["parameters"]) == system.parameters


UNSUPPORTED = [
    sympy.besselj(0, x), sympy.erf(x), sympy.re(x), sympy.Function("f")(x), sympy.zoo, sympy.oo, sympy.nan,
    sympy.Float("inf"), sympy.EulerGamma, sympy.Eq(x, 1), sympy.Wild("w"), sympy.Matrix([x]), sympy.MatrixSymbol("A", 2, 2),
    sympy.Piecewise((x, x > 0), (0, True)), sympy.Derivative(sympy.Function("f")(x), x),
    1 + x * sympy.besselj(0, x), sympy.exp(sympy.erf(x) + 1),
]


@pytest.mark.parametrize("expression", UNSUPPORTED, ids=str)
def test_other_nodes_are_refused_when_encoding(expression):
    with pytest.raises(UnsupportedOperationError, match="cannot be compiled"):
        encode(expression)


MARKER_CODE = "__import__('pathlib').Path('marker').touch()"

FORGED = [
    MARKER_CODE,  # srepr-like text: a tree is never text
    "Symbol('x')",
    ["Function", MARKER_CODE],
    ["eval", MARKER_CODE],
    ["__import__", "os"],
    ["Symbol"],
    ["Symbol", "x"],
    ["Symbol", "x", {"positive": "yes"}],
    ["Symbol", "x", {"__class__": True}],
    ["Symbol", 3, {}],
    ["Dummy", "t", "0", {}],
    ["Rational", 2, 4],
    ["Rational", 1, 0],
    ["Rational", 1, -2],
    ["Rational", 3, 1],
    ["Rational", 1.5, 2],
    ["Float", 3, 0],
    ["Float", 2**80, 0, 53],
    ["Float", 1, 0, 0],
    ["Float", 1, 0, True],
    ["Pow", 10, ["Pow", 10, 10**100]],
    ["Pow", 10, 10**100],
    ["Pow", ["Symbol", "x", {}]],
    ["Add", 1],
    ["Mul"],
    ["exp", 1, 2],
    ["atan2", 1],
    ["Pi", 1],
    True,
    1.5,
    None,
    {"Add": [1, 2]},
    [],
    [["Add"], 1],
]


@pytest.mark.parametrize("tree", FORGED, ids=repr)
def test_forged_trees_are_refused_without_running_anything(tree, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="not an expression tree"):
        decode(tree)
    assert list(tmp_path.iterdir()) == []


def test_deep_nesting_is_a_recursion_error_not_a_crash():
    tree = 1
    for _ in range(5000):
        tree = ["exp", tree]
    with pytest.raises(RecursionError):
        decode(tree)
