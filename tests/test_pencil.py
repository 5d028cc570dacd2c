"""The pencil realises the expression: u^T L^{-1} v equals it on random finite draws."""

import sympy
import pytest

from pencils import linearize


def expressions(m):
    d, n, p, z, lam = m["d"], m["n"], m["p"], m["z"], m["lam"]
    X, Y, W, Z = m["X"], m["Y"], m["W"], m["Z"]
    I_d, I_n, I_p = m["I_d"], m["I_n"], m["I_p"]
    S = X.T * X / n
    R = (S + lam * I_d).I
    return {
        "wishart": S,
        "resolvent": (S - z * I_d).I,
        "sum": S + Y * Y.T / d + 2 * I_d,
        "product of resolvents": R * R,
        "transpose of a product": (X.T * Z.T / n).T,
        "rectangular chain": W.T * (W * W.T / d + I_p).I * W / d,
        "nested inverse": (I_d + (Y * Y.T / d + lam * I_d).I).I,
        "same gaussian twice": (Y + Y.T) / sympy.sqrt(d) * R * (Y + Y.T) / sympy.sqrt(d),
        "square non-symmetric": (Y / sympy.sqrt(d) + 3 * I_d).I * Y.T / sympy.sqrt(d),
        "integer powers": (S**2 + lam * I_d) ** -2,
        "random features": (W * X.T * X * W.T / (n * d) + lam * I_p).I * W * W.T / d,
        "scalar coefficients": sympy.Rational(3, 2) * R - lam * R * S * R,
    }


NAMES = [
    "wishart", "resolvent", "sum", "product of resolvents", "transpose of a product", "rectangular chain",
    "nested inverse", "same gaussian twice", "square non-symmetric", "integer powers", "random features",
    "scalar coefficients",
]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("reduce", [True, False])
def test_pencil_realises_expression(matrices, name, reduce):
    m = matrices
    expr = expressions(m)[name]
    dims = {m["n"]: 2 * m["d"], m["p"]: sympy.Rational(3, 2) * m["d"]}
    pencil = linearize(expr, dims, reduce=reduce)
    values = {m["z"]: -0.7, m["lam"]: 0.4}
    for seed in range(3):
        assert pencil.check(values, size=6, seed=seed) < 1e-9


def test_reduction_shrinks_the_pencil(matrices):
    m = matrices
    expr = expressions(m)["product of resolvents"]
    dims = {m["n"]: 2 * m["d"]}
    full, reduced = linearize(expr, dims, reduce=False), linearize(expr, dims)
    assert len(reduced.sizes) < len(full.sizes)


def test_pencil_blocks_are_affine(matrices):
    """Every entry of the reduced pencil holds at most an identity and single Gaussians."""
    m = matrices
    pencil = linearize(expressions(m)["random features"], {m["n"]: 2 * m["d"], m["p"]: 3 * m["d"]})
    for (i, j), entry in pencil.entries.items():
        for key in entry:
            if key is None:
                assert pencil.sizes[i] == pencil.sizes[j]
            else:
                gaussian, transposed = key
                rows, cols = gaussian.shape[::-1] if transposed else gaussian.shape
                assert (pencil.sizes[i], pencil.sizes[j]) == (rows, cols)
