r"""Closed forms of random-matrix theory that the tests compare against, written from the textbook formulas,
independently of ``pencils``.

Marchenko-Pastur: for ``X`` (``n x d``) with standard Gaussian entries and ``S = X^T X / n``, ratio
:math:`\gamma = d/n`, the Stieltjes transform :math:`m(z) = \lim \operatorname{tr}(S - z)^{-1}/d` is the root of
:math:`\gamma z m^2 + (z + \gamma - 1) m + 1 = 0` that is a Stieltjes transform: off the real axis the root with
:math:`\operatorname{Im} m` of the sign of :math:`\operatorname{Im} z`; on the real axis left of the support
(:math:`z < 0`) the positive root (the roots have opposite signs there), right of it the root of smaller modulus
(:math:`m \sim -1/z`).  The law has the density :math:`\sqrt{(x_+ - x)(x - x_-)}/(2\pi\gamma x)` on
:math:`[x_-, x_+] = [(1 - \sqrt\gamma)^2, (1 + \sqrt\gamma)^2]`, and an atom :math:`1 - 1/\gamma` at 0 when
:math:`\gamma > 1`.

Semicircle: the Stieltjes transform of Wigner's law on :math:`[-2, 2]`, the root of :math:`m^2 + z m + 1 = 0`.

Gaussian moments of activations, for :math:`g, g'` standard normal with correlation :math:`r`:
:math:`\mu_0 = E\rho(g)`, :math:`\mu_1 = E g\rho(g)`, :math:`\|\rho\|^2 = E\rho(g)^2` and the kernel
:math:`c(r) = E\rho(g)\rho(g')`: the arc-cosine kernels of ReLU and :math:`|x|` (Cho and Saul), the arcsine
kernel of erf (Williams), :math:`e^{-1}\sinh r` and :math:`e^{-1}\cosh r` for sin and cos (from
:math:`E e^{i(ag + bg')} = e^{-(a^2 + 2abr + b^2)/2}`), and :math:`r` for the identity.

Scalars give mpmath numbers at the caller's ``mpmath.mp`` precision (wrap calls in ``mpmath.workdps``); numpy
arrays give float (or complex) arrays, computed elementwise at 30 digits.

Examples
--------
>>> import mpmath
>>> from closed_forms import marchenko_pastur_stieltjes
>>> with mpmath.workdps(30):
...     mpmath.nstr(marchenko_pastur_stieltjes(-1, "0.5"), 25)  # (sqrt(17) - 3)/2
'0.5615528128088302749107049'
"""

import mpmath
import numpy as np

__all__ = ["activation_kernel", "activation_moments", "close", "marchenko_pastur_density", "marchenko_pastur_edges",
           "marchenko_pastur_integral", "marchenko_pastur_stieltjes", "semicircle_stieltjes"]


def close(value, expected, digits=40):
    """``value`` agrees with ``expected`` to ``digits`` digits, relative to ``max(|expected|, 1)``."""
    with mpmath.workdps(digits + 20):
        error = abs(mpmath.mpmathify(value) - expected) / max(abs(expected), mpmath.mpf(1))
        return error < mpmath.mpf(10) ** (-digits)


def _elementwise(scalar_function):
    """Apply ``scalar_function`` to numpy arrays elementwise at 30 digits (float or complex results)."""

    def function(*arguments):
        if not any(np.ndim(argument) for argument in arguments):
            return scalar_function(*arguments)
        with mpmath.workdps(30):
            values = np.vectorize(lambda *xs: complex(scalar_function(*xs)), otypes=[complex])(*arguments)
        return values.real if np.all(values.imag == 0) else values

    function.__name__, function.__doc__ = scalar_function.__name__, scalar_function.__doc__
    return function


def marchenko_pastur_edges(gamma):
    """The edges ``(1 - sqrt(gamma))^2`` and ``(1 + sqrt(gamma))^2`` of the Marchenko-Pastur support."""
    gamma = mpmath.mpmathify(gamma)
    return (1 - mpmath.sqrt(gamma)) ** 2, (1 + mpmath.sqrt(gamma)) ** 2


@_elementwise
def marchenko_pastur_stieltjes(z, gamma):
    """The Marchenko-Pastur Stieltjes transform ``m(z)`` for the ratio ``gamma = d/n`` (module docstring): ``z``
    off the real axis, or real outside the support."""
    z, gamma = mpmath.mpmathify(z), mpmath.mpmathify(gamma)
    root = mpmath.sqrt((z - 1 - gamma) ** 2 - 4 * gamma)
    candidates = [(1 - gamma - z + sign * root) / (2 * gamma * z) for sign in (1, -1)]
    if mpmath.im(z) != 0:
        return max(candidates, key=lambda m: mpmath.im(m) * mpmath.sign(mpmath.im(z)))
    if z < 0:
        return max(candidates)
    if z <= marchenko_pastur_edges(gamma)[1]:
        raise ValueError(f"z = {z} is not left or right of the support; give z < 0, z > the upper edge or complex z")
    return min(candidates, key=abs)


def marchenko_pastur_density(x, gamma):
    """The density of the continuous part of the Marchenko-Pastur law (zero outside the support)."""
    lower, upper = (float(edge) for edge in marchenko_pastur_edges(gamma)) if np.ndim(x) else marchenko_pastur_edges(gamma)
    if np.ndim(x):
        return np.sqrt(np.clip((upper - x) * (x - lower), 0, None)) / (2 * np.pi * gamma * x)
    x, gamma = mpmath.mpmathify(x), mpmath.mpmathify(gamma)
    return mpmath.sqrt(max((upper - x) * (x - lower), 0)) / (2 * mpmath.pi * gamma * x)


def marchenko_pastur_integral(function, gamma):
    """The integral of ``function`` (on mpmath numbers) against the Marchenko-Pastur law: tanh-sinh quadrature of
    the density at the caller's precision, plus the atom ``(1 - 1/gamma) function(0)`` for ``gamma > 1``."""
    gamma = mpmath.mpmathify(gamma)
    value = mpmath.quad(lambda y: function(y) * marchenko_pastur_density(y, gamma), list(marchenko_pastur_edges(gamma)))
    return value + ((1 - 1 / gamma) * function(mpmath.mpf(0)) if gamma > 1 else 0)


def semicircle_stieltjes(z):
    """Stieltjes transform of the semicircle law on [-2, 2]: ``z`` off the real axis or outside [-2, 2]."""
    z = mpmath.mpmathify(z)
    candidates = [(-z + sign * mpmath.sqrt(z * z - 4)) / 2 for sign in (1, -1)]
    if mpmath.im(z) > 0:
        return max(candidates, key=lambda m: mpmath.im(m))
    return min(candidates, key=abs)


def activation_moments(name):
    """``(mu0, mu1, ||rho||^2)`` of the activation ``name`` (relu, abs, erf, sin, cos or linear), in mpmath."""
    pi = +mpmath.pi
    return {
        "relu": (1 / mpmath.sqrt(2 * pi), mpmath.mpf(1) / 2, mpmath.mpf(1) / 2),
        "abs": (mpmath.sqrt(2 / pi), mpmath.mpf(0), mpmath.mpf(1)),
        "erf": (mpmath.mpf(0), 2 / mpmath.sqrt(3 * pi), 2 * mpmath.asin(mpmath.mpf(2) / 3) / pi),
        "sin": (mpmath.mpf(0), mpmath.exp(-mpmath.mpf(1) / 2), -mpmath.expm1(-2) / 2),
        "cos": (mpmath.exp(-mpmath.mpf(1) / 2), mpmath.mpf(0), (1 + mpmath.exp(-2)) / 2),
        "linear": (mpmath.mpf(0), mpmath.mpf(1), mpmath.mpf(1)),
    }[name]


def activation_kernel(name, r):
    """The kernel ``c(r) = E rho(g) rho(g')`` of the activation ``name`` at the correlation ``r``, in mpmath."""
    r, pi = mpmath.mpmathify(r), +mpmath.pi
    return {
        "relu": lambda: (mpmath.sqrt(1 - r * r) + r * (pi - mpmath.acos(r))) / (2 * pi),
        "abs": lambda: 2 * (mpmath.sqrt(1 - r * r) + r * mpmath.asin(r)) / pi,
        "erf": lambda: 2 * mpmath.asin(2 * r / 3) / pi,
        "sin": lambda: mpmath.sinh(r) / mpmath.e,
        "cos": lambda: mpmath.cosh(r) / mpmath.e,
        "linear": lambda: r,
    }[name]()
