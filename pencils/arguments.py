"""Symbols and expressions given as arguments, taken without ever parsing text.

Every entry point that takes values of scalar symbols (``subs``,
``path_from``) accepts, as keys, the symbols themselves or their names as
strings (:func:`resolve_keys`).  A name is looked up among the symbols of the
quantity, never parsed: ``{"z": -1}`` means the symbol of the quantity named
``z``, and a string that names none of them is refused.  Symbolic arguments
such as the dimensions are converted by :func:`as_sympy`, which refuses text
(``sympy.sympify`` would parse it, and parsing evaluates Python code).
"""

from __future__ import annotations

from typing import Iterable, Mapping

import sympy

from .errors import ParameterError, PencilsError

__all__ = ["resolve_keys", "as_sympy"]


def resolve_keys(values: Mapping | None, symbols: Iterable[sympy.Symbol], argument_name: str) -> dict:
    """``values`` with every key a SymPy symbol: string keys replaced by the symbol of that name.

    Parameters
    ----------
    values : dict or None
        Keys are :class:`sympy.Symbol` (kept as they are, whether or not they
        are among ``symbols``) or strings naming exactly one of ``symbols``.
        ``None`` means no values.
    symbols : iterable of sympy.Basic
        The symbols of the quantity, among which names are looked up (other
        objects, e.g. matrix symbols, are ignored).
    argument_name : str
        The name of the argument, for error messages (e.g. ``"subs"``).

    Returns
    -------
    dict
        A new dictionary, same values, symbol keys.

    Raises
    ------
    ParameterError
        If ``values`` is not a mapping, a string key names no symbol or several
        symbols of that name (with different assumptions), a key is neither a
        symbol nor a string, or two keys name the same symbol.

    Examples
    --------
    >>> import sympy
    >>> z, lam = sympy.symbols("z lambda")
    >>> resolve_keys({"z": -1.0, lam: 0.5}, [z, lam], "subs") == {z: -1.0, lam: 0.5}
    True
    >>> resolve_keys({"__import__('os').system('ls')": 1.0}, [z, lam], "subs")
    Traceback (most recent call last):
    ...
    pencils.errors.ParameterError: subs has the key "__import__('os').system('ls')", which names no symbol of the quantity (its symbols are lambda, z); use one of those names or the symbol itself.
    """
    if values is None:
        return {}
    if not isinstance(values, Mapping):
        raise ParameterError(
            f"{argument_name} must be a dict from symbols (or their names) to values; got {type(values).__name__}."
        )
    by_name: dict = {}
    for symbol in symbols:
        if isinstance(symbol, sympy.Symbol):  # not a matrix symbol of the same name
            by_name.setdefault(symbol.name, set()).add(symbol)
    resolved: dict = {}
    for key, value in values.items():
        symbol = _symbol(key, by_name, argument_name)
        if symbol in resolved:
            raise ParameterError(f"{argument_name} gives {symbol} twice (as a symbol and by name); give it once.")
        resolved[symbol] = value
    return resolved


def _symbol(key, by_name: dict, argument_name: str) -> sympy.Symbol:
    """The symbol a key stands for."""
    if isinstance(key, sympy.Symbol):
        return key
    if not isinstance(key, str):
        raise ParameterError(
            f"{argument_name} has the key {key!r} of type {type(key).__name__}; keys must be SymPy symbols "
            f"or their names as strings."
        )
    matches = by_name.get(key, set())
    if len(matches) == 1:
        return next(iter(matches))
    if matches:
        raise ParameterError(
            f"{argument_name} has the key {key!r}, which names {len(matches)} different symbols of the quantity "
            f"(with different assumptions); use the symbol itself."
        )
    names = ", ".join(sorted(by_name)) or "none"
    raise ParameterError(
        f"{argument_name} has the key {_preview(key)}, which names no symbol of the quantity (its symbols are "
        f"{names}); use one of those names or the symbol itself."
    )


def _preview(value) -> str:
    """A value as Python writes it, shortened if long."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def as_sympy(value, argument_name: str, error: type[PencilsError] = ParameterError) -> sympy.Basic:
    """``value`` as a SymPy object: SymPy objects as they are, numbers converted, text refused.

    Parameters
    ----------
    value : sympy.Basic, int, float, complex, fractions.Fraction, numpy number
        Anything with an exact conversion to SymPy (``sympy.sympify(value, strict=True)``).
    argument_name : str
        The name of the argument, for error messages (e.g. ``"dims"``).
    error : type
        The :class:`pencils.errors.PencilsError` subclass raised.

    Raises
    ------
    PencilsError
        (of type ``error``) for a string or any object without such a conversion.

    Examples
    --------
    >>> import sympy
    >>> as_sympy(2, "dims") * sympy.Symbol("d")
    2*d
    >>> as_sympy("2*d", "dims")
    Traceback (most recent call last):
    ...
    pencils.errors.ParameterError: dims holds '2*d' (str); give SymPy symbols and expressions, e.g. 2*d with d = sympy.Symbol("d"): text is never parsed.
    """
    try:
        return sympy.sympify(value, strict=True)
    except sympy.SympifyError:
        raise error(
            f"{argument_name} holds {_preview(value)} ({type(value).__name__}); give SymPy symbols and expressions, "
            f'e.g. 2*d with d = sympy.Symbol("d"): text is never parsed.'
        ) from None
