"""Extrapolation of finite-size estimates to d = infinity, shared by the simulation tests."""

import numpy as np


def extrapolate(sizes, means, errors):
    """Weighted least-squares fit ``mean = limit + slope / d``.

    Returns ``(limit, standard error of the limit)``; the standard error comes
    from the seed-to-seed standard errors of the means (the fit has one degree
    of freedom left with three sizes).
    """
    x = 1.0 / np.asarray(sizes, dtype=float)
    weights = 1.0 / np.asarray(errors, dtype=float) ** 2
    design = np.stack([np.ones_like(x), x], axis=1)
    covariance = np.linalg.inv(design.T @ (weights[:, None] * design))
    limit, _ = covariance @ design.T @ (weights * np.asarray(means, dtype=float))
    return float(limit), float(np.sqrt(covariance[0, 0]))
