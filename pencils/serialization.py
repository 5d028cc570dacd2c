r"""SymPy expressions as plain JSON data, rebuilt without evaluating any text.

What the engine caches on disk (:mod:`pencils.cache`) are scalar expressions:
the coefficients of a Dyson system and the formulas of :func:`pencils.limit`.
They are stored as trees of a fixed set of node types, so that reading an entry
builds SymPy objects from numbers, names and lists, and never runs code: no
``eval``, ``exec``, parsing of text (``sympify`` of a string) or pickle.

A tree is a JSON value, one of

* ``3``, an integer: ``Integer(3)``;
* ``["Rational", p, q]``: ``Rational(p, q)``, in lowest terms with ``q > 1``;
* ``["Float", m, e, b]``: the ``b``-bit binary float :math:`m\,2^e`;
* ``["Symbol", name, assumptions]``: ``Symbol(name, **assumptions)``;
* ``["Dummy", name, index, assumptions]``: ``Dummy(name, dummy_index=index, **assumptions)``;
* ``["ImaginaryUnit"]``, ``["Pi"]``, ``["Exp1"]``: ``I``, ``pi``, ``E``;
* ``["Add", a, b, ...]``, ``["Mul", a, b, ...]``, ``["Pow", base, exponent]``: sums,
  products and powers of the expressions of the trees ``a, b, ...``;
* ``["exp", x]``, ``["atan2", y, x]``, ...: one of :data:`FUNCTIONS` applied to
  the expressions of its trees.

``assumptions`` is the dictionary of a symbol's assumptions as given when it
was made, e.g. ``{"positive": true}`` (as in its pickle), ``{}`` for a plain
symbol.  Floats keep their exact binary
value and their precision; integers are exact.  Nodes are rebuilt as they are
stored (``evaluate=False``), so a tree written by :func:`encode` decodes to an
expression equal to the original, assumptions and precision included.

The node types are those the engine produces and compiles (the functions of
:data:`FUNCTIONS` are those its numpy and mpmath code printers translate);
:func:`encode` refuses any other, and :func:`decode` refuses any tree that is
not one of the above.

Examples
--------
>>> import sympy
>>> x = sympy.Symbol("x", positive=True)
>>> tree = encode(sympy.exp(-x) / 2 + sympy.Float("0.1", 30))
>>> decode(tree) == sympy.exp(-x) / 2 + sympy.Float("0.1", 30)
True
>>> decode(["Symbol", "x", {}]) == sympy.Symbol("x")
True
>>> decode(["Function", "__import__('os')"])
Traceback (most recent call last):
...
ValueError: not an expression tree: unknown node type 'Function'
"""

from __future__ import annotations

import sympy
from mpmath.libmp import from_man_exp
from sympy.core.assumptions import _assume_defined

from .errors import UnsupportedOperationError

__all__ = ["FUNCTIONS", "encode", "decode"]

FUNCTIONS: dict[str, type] = {
    function.__name__: function
    for function in (
        sympy.exp, sympy.log,
        sympy.sin, sympy.cos, sympy.tan, sympy.cot, sympy.sec, sympy.csc,
        sympy.asin, sympy.acos, sympy.atan, sympy.acot, sympy.atan2,
        sympy.sinh, sympy.cosh, sympy.tanh, sympy.asinh, sympy.acosh, sympy.atanh,
        sympy.Abs, sympy.sign, sympy.floor, sympy.ceiling,
    )
}
"""The functions a tree may apply, by name: those the engine compiles for numpy and mpmath."""

_CONSTANTS = {"ImaginaryUnit": sympy.I, "Pi": sympy.pi, "Exp1": sympy.E}
_OPERATIONS = {"Add": sympy.Add, "Mul": sympy.Mul, "Pow": sympy.Pow}


def encode(expression: sympy.Basic):
    """The JSON tree of a scalar SymPy expression (see the module docstring).

    Parameters
    ----------
    expression : sympy.Basic
        Built from symbols, exact and floating-point numbers, ``I``, ``pi``,
        ``E``, sums, products, powers and the functions of :data:`FUNCTIONS`.

    Returns
    -------
    int or list
        Integers, strings, booleans, lists and dictionaries only.

    Raises
    ------
    UnsupportedOperationError
        For any other node (e.g. ``besselj``, ``zoo``, a matrix), which the
        solver could not compile either.

    Examples
    --------
    >>> import sympy
    >>> z = sympy.Symbol("z")
    >>> encode(1 / (z + 2))
    ['Pow', ['Add', 2, ['Symbol', 'z', {}]], -1]
    >>> encode(sympy.Rational(1, 3) * sympy.I)
    ['Mul', ['Rational', 1, 3], ['ImaginaryUnit']]
    """
    if isinstance(expression, sympy.Integer):
        return int(expression)
    if isinstance(expression, sympy.Rational):
        return ["Rational", int(expression.p), int(expression.q)]
    if isinstance(expression, sympy.Float) and expression.is_finite:
        sign, mantissa, exponent, _ = expression._mpf_
        return ["Float", -mantissa if sign else mantissa, exponent, expression._prec]
    if type(expression) in (sympy.Symbol, sympy.Dummy):
        arguments, assumptions = expression.__getnewargs_ex__()  # as pickled: the assumptions as given
        return [type(expression).__name__, *arguments, dict(sorted(assumptions.items()))]
    for name, constant in _CONSTANTS.items():
        if expression is constant:
            return [name]
    name = type(expression).__name__
    if _OPERATIONS.get(name) is type(expression) or FUNCTIONS.get(name) is type(expression):
        return [name, *map(encode, expression.args)]
    raise UnsupportedOperationError(
        f"{expression} ({type(expression).__name__}) cannot be compiled: scalars must be built from "
        f"symbols, numbers, I, pi, E, +, *, ** and the functions {', '.join(FUNCTIONS)}."
    )


def decode(tree) -> sympy.Expr:
    """The SymPy expression of a tree written by :func:`encode`, rebuilt without evaluating text.

    Parameters
    ----------
    tree : int or list
        A JSON value as described in the module docstring.

    Returns
    -------
    sympy.Expr

    Raises
    ------
    ValueError
        If ``tree`` is not such a tree: an unknown node type (any name outside
        the table, e.g. ``"Function"`` or ``"eval"``), a wrong number or type
        of fields, a non-finite or malformed number, unknown assumptions.

    Examples
    --------
    >>> decode(["Pow", ["Add", 2, ["Symbol", "z", {}]], -1])
    1/(z + 2)
    >>> decode(["Float", 1, -1, 53])
    0.500000000000000
    >>> decode(["Symbol", "z", {"positive": True}]).is_positive
    True
    """
    if type(tree) is int:
        return sympy.Integer(tree)
    if type(tree) is not list or not tree or type(tree[0]) is not str:
        raise ValueError(f"not an expression tree: {_preview(tree)}")
    name, fields = tree[0], tree[1:]
    if name in _OPERATIONS or name in FUNCTIONS:
        return _decode_application(name, [decode(field) for field in fields])
    if name in _CONSTANTS and not fields:
        return _CONSTANTS[name]
    decoders = {"Rational": _decode_rational, "Float": _decode_float, "Symbol": _decode_symbol, "Dummy": _decode_dummy}
    if name not in decoders:
        raise ValueError(f"not an expression tree: unknown node type {name!r}")
    return decoders[name](*_fields(name, fields))


def _decode_application(name: str, arguments: list) -> sympy.Expr:
    """An operation or function of decoded arguments, as stored (a stored tree is already canonical)."""
    if name == "Pow":
        if len(arguments) != 2:
            raise ValueError(f"not an expression tree: Pow takes 2 arguments, got {len(arguments)}")
        base, exponent = arguments
        if isinstance(base, sympy.Number) and isinstance(exponent, sympy.Integer):
            # SymPy always evaluates these: a stored one is forged (and may be 10**10**4000).
            raise ValueError(f"not an expression tree: unevaluated power of numbers {base}**{exponent}")
        return sympy.Pow(base, exponent, evaluate=False)
    if name in _OPERATIONS:
        if len(arguments) < 2:
            raise ValueError(f"not an expression tree: {name} of {len(arguments)} terms")
        return _OPERATIONS[name](*arguments, evaluate=False)
    function = FUNCTIONS[name]
    if len(arguments) not in function.nargs:
        raise ValueError(f"not an expression tree: {name} of {len(arguments)} arguments")
    return function(*arguments, evaluate=False)


def _fields(name: str, fields: list) -> list:
    """Check the number and the JSON types of a leaf's fields."""
    types = {"Rational": (int, int), "Float": (int, int, int), "Symbol": (str, dict), "Dummy": (str, int, dict)}[name]
    if len(fields) != len(types) or any(type(field) is not kind for field, kind in zip(fields, types)):
        expected = ", ".join(kind.__name__ for kind in types)
        raise ValueError(f"not an expression tree: {name} takes ({expected}), got {_preview(fields)}")
    return fields


def _decode_rational(numerator: int, denominator: int) -> sympy.Rational:
    value = sympy.Rational(numerator, denominator) if denominator > 1 else None
    if value is None or (value.p, value.q) != (numerator, denominator):
        raise ValueError(f"not an expression tree: {numerator}/{denominator} is not a reduced fraction")
    return value


def _decode_float(mantissa: int, exponent: int, precision: int) -> sympy.Float:
    if not 1 <= precision <= 10**6 or abs(mantissa).bit_length() > precision:
        raise ValueError(f"not an expression tree: Float of {abs(mantissa).bit_length()} bits at precision {precision}")
    if mantissa == 0:
        return sympy.Float(0, precision=precision)
    return sympy.Float(from_man_exp(mantissa, exponent), precision=precision)  # exact: no rounding


def _decode_symbol(name: str, assumptions: dict) -> sympy.Symbol:
    return sympy.Symbol(name, **_assumptions(assumptions))


def _decode_dummy(name: str, index: int, assumptions: dict) -> sympy.Dummy:
    return sympy.Dummy(name, dummy_index=index, **_assumptions(assumptions))


def _assumptions(assumptions: dict) -> dict:
    """Check that every key is a SymPy assumption and every value a boolean."""
    for key, value in assumptions.items():
        if key not in _assume_defined or type(value) is not bool:
            raise ValueError(f"not an expression tree: assumption {_preview(key)}: {_preview(value)}")
    return assumptions


def _preview(value) -> str:
    """A short representation of a (possibly huge) value for an error message."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
