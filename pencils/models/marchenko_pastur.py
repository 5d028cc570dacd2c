r"""The Marchenko-Pastur law, from the engine.

For :math:`X \in \mathbb R^{n \times d}` with i.i.d. :math:`\mathcal N(0, 1)`
entries and :math:`d/n \to \gamma`, the Stieltjes transform of the spectrum of
the sample covariance :math:`S = X^T X / n` is

.. math::  m(z) = \lim \tfrac1d \operatorname{tr}\,(S - z I_d)^{-1},

computed here by :func:`pencils.trace_limit` (no closed form is used; the tests
compare with it).  The density follows from the Stieltjes inversion
:math:`\rho(x) = \lim_{\varepsilon \downarrow 0} \operatorname{Im} m(x + i\varepsilon)/\pi`.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import sympy

from ..gaussian import Gaussian
from ..limits import derive
from ..validation import check_real, check_shapes

__all__ = ["stieltjes", "density", "system"]

n, d, z, ratio = sympy.symbols("n d z gamma")


@lru_cache(maxsize=1)
def system():
    r"""The Dyson system of :math:`(X^T X/n - z)^{-1}` with :math:`n = d/\gamma`.

    Examples
    --------
    >>> from pencils.models import marchenko_pastur
    >>> marchenko_pastur.system()
    DysonSystem(2 unknowns, 2 blocks, parameters gamma, z)
    """
    X = Gaussian("X", n, d)
    return derive((X.T * X / n - z * sympy.Identity(d)).I, {d: d, n: d / ratio})


def stieltjes(z, ratio, dps: int | None = None):
    r"""The Marchenko-Pastur Stieltjes transform :math:`m(z)` for aspect ratio :math:`\gamma = d/n`.

    Parameters
    ----------
    z : complex or array_like
        Spectral parameter, off the support :math:`[(1-\sqrt\gamma)^2, (1+\sqrt\gamma)^2]`
        (and off 0 if :math:`\gamma > 1`).
    ratio : float or array_like
        :math:`\gamma = d / n > 0`.
    dps : int, optional
        Decimal digits (mpmath) instead of floats.

    Examples
    --------
    >>> from pencils.models import marchenko_pastur
    >>> round(marchenko_pastur.stieltjes(-1.0, 0.5), 12)
    0.561552812809
    """
    check_shapes({"z": z, "ratio": check_real(ratio, "ratio (gamma = d/n)")})
    return system().solve({sympy.Symbol("z"): z, sympy.Symbol("gamma"): ratio}, dps=dps)


def density(x, ratio, epsilon: float = 1e-10):
    r"""The Marchenko-Pastur density :math:`\operatorname{Im} m(x + i\varepsilon)/\pi`.

    The continuous part only (for :math:`\gamma > 1` an atom of mass
    :math:`1 - 1/\gamma` sits at 0); the error is of order :math:`\varepsilon`
    inside the bulk and :math:`\sqrt\varepsilon` at its edges.  The solution
    is followed from :math:`z = x + i` down to :math:`x + i\varepsilon`.

    Examples
    --------
    >>> import numpy as np
    >>> from pencils.models import marchenko_pastur
    >>> values = marchenko_pastur.density(np.array([0.5, 1.0, 4.0]), 0.5)
    >>> np.round(values, 6)
    array([0.63662 , 0.421084, 0.      ])
    """
    check_real(x, "x", minimum=-np.inf)
    check_real(epsilon, "epsilon")
    check_shapes({"x": x, "ratio": check_real(ratio, "ratio (gamma = d/n)")})
    x = np.asarray(x, dtype=float)
    z = sympy.Symbol("z")
    values = system().solve({z: x + 1j * epsilon, sympy.Symbol("gamma"): ratio}, path_from={z: x + 1j})
    return np.imag(values) / np.pi
