r"""Eigenvalues at finite dimension of a diagonal matrix given by its limiting spectral law.

The trainers of anisotropic models draw data :math:`x = \Sigma^{1/2} g` with
:math:`\Sigma = \operatorname{diag}(\lambda_1, \dots, \lambda_d)` whose empirical
spectral distribution approximates a law given as in :class:`pencils.Diagonal`:
atoms with weights, or a quantile function :math:`Q` on :math:`(0, 1)`.

* atoms :math:`\lambda^{(j)}` with weights :math:`w_j`: :math:`\lambda^{(j)}` is
  repeated :math:`c_j` times, :math:`c_j` the largest-remainder rounding of
  :math:`w_j d` (so :math:`\sum_j c_j = d` and :math:`|c_j - w_j d| < 1`);
* a quantile function: :math:`\lambda_k = Q((k - 1/2)/d)`, the midpoint rule, whose
  normalised traces :math:`\frac1d\sum_k f(\lambda_k)` differ from
  :math:`\int_0^1 f(Q(u))\,du` by :math:`O(d^{-2})` for smooth :math:`f\circ Q`.

Several profiles (a covariance and a teacher) are paired by atom index or by
:math:`u`, as the engine pairs :class:`pencils.Diagonal` matrices of one dimension.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import sympy

from ..errors import ParameterError

__all__ = ["as_profile", "profile_values"]


def _counts(weights: np.ndarray, d: int) -> np.ndarray:
    """Largest-remainder rounding of ``weights * d`` to integers summing to ``d``."""
    exact = weights * d
    counts = np.floor(exact).astype(int)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: d - counts.sum()]] += 1
    return counts


def profile_values(d: int, values: Any, weights: Sequence | None = None) -> np.ndarray:
    r"""The ``d`` diagonal entries of a profile given by atoms (and weights) or a quantile ``Lambda``.

    Parameters
    ----------
    d : int
        Dimension.
    values : sequence of numbers or sympy.Lambda
        Atoms, or the quantile function :math:`u \mapsto Q(u)` on :math:`(0, 1)`.
    weights : sequence of numbers, optional
        Masses of the atoms (equal by default; they must sum to 1).

    Examples
    --------
    >>> import sympy
    >>> profile_values(4, [1, 3], [0.25, 0.75])
    array([1., 3., 3., 3.])
    >>> u = sympy.Symbol("u")
    >>> profile_values(2, sympy.Lambda(u, 1 + u))
    array([1.25, 1.75])
    """
    if isinstance(values, sympy.Lambda):
        if weights is not None:
            raise ParameterError("weights are for atoms; a quantile function (sympy.Lambda) takes no weights.")
        quantile = sympy.lambdify(values.variables, values.expr, "numpy")
        return np.broadcast_to(np.asarray(quantile((np.arange(d) + 0.5) / d), dtype=float), (d,)).copy()
    atoms = np.asarray([float(value) for value in values])
    masses = np.full(atoms.size, 1.0 / atoms.size) if weights is None else np.asarray([float(w) for w in weights])
    if masses.shape != atoms.shape or abs(masses.sum() - 1) > 1e-12 or np.any(masses < 0):
        raise ParameterError(f"weights must be one non-negative mass per atom summing to 1; got {weights} for {len(atoms)} atoms.")
    return np.repeat(atoms, _counts(masses, d))


def as_profile(profile: Any, name: str, like: Any = None) -> tuple[Any, Sequence | None]:
    r"""``(values, weights)`` of a profile given as a quantile ``Lambda``, atoms, or ``(atoms, weights)``.

    ``like``: the covariance a teacher profile is paired with; a teacher must be of
    the same kind (a ``Lambda`` of :math:`u` with a quantile, one value per atom with atoms).

    Examples
    --------
    >>> as_profile([1, 4], "covariance")
    ([1, 4], None)
    >>> as_profile(([1, 4], [0.25, 0.75]), "covariance")
    ([1, 4], [0.25, 0.75])
    >>> as_profile([1, 2, 3], "teacher", like=[1, 4])
    Traceback (most recent call last):
    ...
    pencils.errors.ParameterError: teacher must give one value per atom of the covariance (2); got 3 values.
    """
    if isinstance(profile, sympy.Lambda):
        if len(profile.variables) != 1:
            raise ParameterError(f"{name} as a quantile function must be a sympy.Lambda of one variable u; got {profile}.")
        values, weights = profile, None
    elif isinstance(profile, tuple) and len(profile) == 2 and all(np.ndim(part) == 1 for part in profile):
        values, weights = profile
    elif np.ndim(profile) == 1 and len(profile) > 0:
        values, weights = profile, None
    else:
        raise ParameterError(f"{name} must be a sympy.Lambda(u, ...) quantile function, a list of atoms, or "
                             f"(atoms, weights); got {profile!r}.")
    if like is not None:
        reference = as_profile(like, "covariance")[0]
        if isinstance(reference, sympy.Lambda) != isinstance(values, sympy.Lambda):
            raise ParameterError(f"{name} must be of the same kind as the covariance: a sympy.Lambda of u with a "
                                 f"quantile function, one value per atom with atoms.")
        if weights is not None:
            raise ParameterError(f"{name} takes the weights of the covariance; give its values only.")
        if not isinstance(values, sympy.Lambda) and len(values) != len(reference):
            raise ParameterError(f"{name} must give one value per atom of the covariance ({len(reference)}); "
                                 f"got {len(values)} values.")
        weights = None if isinstance(values, sympy.Lambda) else as_profile(like, "covariance")[1]
    return values, weights
