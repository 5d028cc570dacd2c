"""Anisotropic data (a covariance and a teacher as pencils.Diagonal): ridge regression, random features, DSM.

Each model is checked against something independent of the engine:

* ridge regression against the deterministic equivalents of the literature, solved on their own with
  mpmath (``ridge_equivalents.py``), to 40 digits, for atoms, a continuous law and a power law, and
  against the ridge trainer (Monte Carlo over the design, exact over teacher and noise);
* random features and DSM with a two-level covariance against real training at finite ``d``,
  extrapolated in ``1/d`` (the tolerance is 4 standard errors of the extrapolated value, from the
  seed-to-seed spread), as for the isotropic models;
* a covariance with one atom at 1 gives the isotropic model to 1e-13;
* the DSM optimum with a covariance: a linear score trained on many samples reaches it.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import sympy

from pencils import limit
from pencils.errors import ParameterError
from pencils.models import dsm, linear_regression, random_features
from pencils.models.covariance import profile_key
from pencils.simulation import linear_regression as ridge_trainer
from pencils.simulation import random_features as random_features_trainer

from extrapolation import extrapolate
from ridge_equivalents import ridge_equivalent

u = sympy.Symbol("u")
HALF = sympy.Rational(1, 2)
#: Two levels of variance, 1 and 4 (masses 1/4 and 3/4), with a teacher weighting them 3 and 1/2.
TWO_LEVELS = {"covariance": ((1, 4), (sympy.Rational(1, 4), sympy.Rational(3, 4))), "teacher": (3, HALF)}
#: A continuous law: the quantile function 1 + 3u (uniform on [1, 4]), teacher 2 - u.
CONTINUOUS = {"covariance": sympy.Lambda(u, 1 + 3 * u), "teacher": sympy.Lambda(u, 2 - u)}
PROFILES = {"two-levels": TWO_LEVELS, "continuous": CONTINUOUS}


#: Sizes and numbers of seeds of the trainings, extrapolated linearly in 1/d.
SIZES_AND_SEEDS = [(100, 48), (200, 24), (400, 12)]


def _extrapolated(runs: list, name: str) -> tuple[float, float]:
    """The mean of ``name`` over the runs at each size, extrapolated in 1/d, and its standard error
    (floored at 1e-12 for quantities that do not fluctuate, such as a ridgeless train error of 0)."""
    values = [np.array([getattr(run, name) for run in at_size]) for at_size in runs]
    means = [float(v.mean()) for v in values]
    errors = [max(float(v.std(ddof=1)) / math.sqrt(len(v)), 1e-12) for v in values]
    return extrapolate([d for d, _ in SIZES_AND_SEEDS], means, errors)


def _reference(psi_n, lam, signal, noise, profile, dps):
    covariance, teacher = profile["covariance"], profile["teacher"]
    if isinstance(covariance, sympy.Lambda):
        return ridge_equivalent(psi_n, lam, signal, noise, covariance=covariance, teacher=teacher, dps=dps)
    atoms, weights = covariance
    return ridge_equivalent(psi_n, lam, signal, noise, covariance=atoms, weights=weights, teacher=teacher, dps=dps)


@pytest.mark.parametrize("profile", PROFILES, ids=str)
@pytest.mark.parametrize("psi_n, lam", [(0.5, 0.125), (2.0, 0.125), (0.5, 0.0), (2.0, 0.0)],
                         ids=["n<d", "n>d", "ridgeless-n<d", "ridgeless-n>d"])
def test_ridge_matches_the_deterministic_equivalent_to_40_digits(profile, psi_n, lam):
    result = linear_regression.errors(psi_n, lam, signal=1.5, noise=0.25, dps=40, **PROFILES[profile])
    reference = _reference(psi_n, lam, 1.5, 0.25, PROFILES[profile], dps=45)
    with mpmath.workdps(60):  # compare at more digits than either side
        for name in ("test", "train", "bias", "variance"):
            value = getattr(result, name)
            assert abs(value - reference[name]) <= mpmath.mpf(10) ** -38 * max(1, abs(reference[name])), \
                (name, mpmath.nstr(value, 45), mpmath.nstr(reference[name], 45))


def test_power_law_matches_the_deterministic_equivalent():
    """Eigenvalues k^-1.5 and teacher k^-1, k = 1..16 (the spectrum truncated at the dimension)."""
    profile = linear_regression.power_law(1.5, 1.0, 16)
    for psi_n in (0.25, 4.0):
        result = linear_regression.errors(psi_n, 1e-3, noise=0.01, dps=30, **profile)
        reference = ridge_equivalent(psi_n, 1e-3, 1, 0.01, covariance=profile["covariance"],
                                     teacher=profile["teacher"], dps=35)
        with mpmath.workdps(50):
            for name in ("test", "train", "bias", "variance"):
                assert abs(getattr(result, name) - reference[name]) <= mpmath.mpf(10) ** -28 * max(1, abs(reference[name])), name


@pytest.mark.parametrize("psi_n, lam", [(0.5, 0.1), (2.0, 0.1), (0.5, 0.0), (1.3, 0.01)])
def test_ridge_matches_monte_carlo_extrapolated_in_one_over_d(psi_n, lam):
    """Ridge trained at d = 100, 200, 400 (48, 24, 12 designs), extrapolated linearly in 1/d:
    within 4 standard errors (the spread over designs; teacher and noise are averaged exactly)."""
    covariance, teacher = ([1, 4], [0.25, 0.75]), [3, 0.5]
    theory = linear_regression.errors(psi_n, lam, signal=1.5, noise=0.25, covariance=covariance, teacher=teacher)
    runs = [[ridge_trainer.simulate(d, psi_n, lam, 1.5, 0.25, covariance, teacher, seed=seed)
             for seed in range(seeds)] for d, seeds in SIZES_AND_SEEDS]
    for name in ("test", "train", "bias", "variance"):
        limit, error = _extrapolated(runs, name)
        print(f"{name}: extrapolated {limit:.6f} +- {error:.1e}, theory {getattr(theory, name):.6f}")
        assert abs(limit - getattr(theory, name)) < 4 * error + 1e-12, (name, limit, error, getattr(theory, name))


def test_ridge_primal_and_dual_forms_agree():
    """Both forms hold at lam > 0: the dual for n >= d, against the default primal."""
    key = profile_key(TWO_LEVELS["covariance"], "covariance")
    teacher = profile_key(TWO_LEVELS["teacher"], "teacher", like=TWO_LEVELS["covariance"])
    subs = {linear_regression.symbols["psi_n"]: 2.0, linear_regression.symbols["lam"]: 0.1,
            linear_regression.symbols["signal"]: 1.0, linear_regression.symbols["noise"]: 0.25,
            linear_regression.symbols["tilt"]: 0}
    names = ("test", "train", "bias", "variance")
    forms = [linear_regression.ridge_quantities(key, teacher, dual) for dual in (False, True)]
    primal, dual = ([limit(form[name], linear_regression.dims, subs) for name in names]
                    for form in forms)
    np.testing.assert_allclose(primal, dual, rtol=1e-12)


def test_one_atom_covariance_is_the_isotropic_model():
    np.testing.assert_allclose(
        [getattr(linear_regression.errors(0.7, 0.05, noise=0.3, covariance=[1]), name) for name in ("test", "train")],
        [getattr(linear_regression.errors(0.7, 0.05, noise=0.3), name) for name in ("test", "train")], rtol=1e-13)
    isotropic = random_features.errors(2.0, 1.5, 0.05, activation="tanh", noise=0.1)
    one_atom = random_features.errors(2.0, 1.5, 0.05, activation="tanh", noise=0.1, covariance=[1])
    np.testing.assert_allclose([one_atom.test, one_atom.train], [isotropic.test, isotropic.train], rtol=1e-13)
    for m in (math.inf, 2.0):
        isotropic = dsm.errors(1.0, 2.0, 0.3, 0.05, m=m)
        one_atom = dsm.errors(1.0, 2.0, 0.3, 0.05, m=m, covariance=[1])
        np.testing.assert_allclose([one_atom.test, one_atom.train, one_atom.optimum],
                                   [isotropic.test, isotropic.train, isotropic.optimum], rtol=1e-13)


def test_dsm_optimum_is_reached_by_a_linear_score_with_many_samples():
    """With rho = x, p >= d and a tiny ridge, the score is any linear map; with n = psi_n d samples its
    excess over the optimal (linear) score decays like 1/psi_n.  The optimum
    tr(a^2 Sigma (a^2 Sigma + h)^{-1})/d is below the isotropic a^2 value for this law here."""
    covariance = ([0.5, 2.0], [0.5, 0.5])
    t = 0.3
    a2, h = math.exp(-2 * t), -math.expm1(-2 * t)
    best = dsm.optimum(t, covariance)
    assert best == pytest.approx((a2 * 0.5 / (a2 * 0.5 + h) + a2 * 2 / (a2 * 2 + h)) / 2, rel=1e-15)
    excess = [dsm.errors(psi_n, 2.0, t, 1e-6, activation="linear", covariance=covariance).test - best
              for psi_n in (1e2, 1e3)]
    assert all(value > 0 for value in excess)
    assert excess[1] < 2e-3 and 8 < excess[0] / excess[1] < 12, excess


def test_bad_profiles_are_refused():
    with pytest.raises(ParameterError, match="teacher"):
        linear_regression.errors(2.0, 0.1, covariance=[1, 4], teacher=[1, 2, 3])
    with pytest.raises(ParameterError, match="teacher"):
        linear_regression.errors(2.0, 0.1, covariance=[1, 4], teacher=sympy.Lambda(u, u))
    with pytest.raises(ParameterError, match="weights"):
        linear_regression.errors(2.0, 0.1, covariance=([1, 4], [0.5, 0.6]))
    with pytest.raises(ParameterError, match="psi_n = 1"):
        linear_regression.errors(1.0, 0.0)


#: Data covariances of the training checks: two levels, and a continuous law (uniform on [1/2, 2]).
COVARIANCES = {"two-levels": ([0.5, 2.0], [0.5, 0.5]), "continuous": sympy.Lambda(u, (1 + 3 * u) / 2)}


@pytest.mark.slow
@pytest.mark.parametrize("law", COVARIANCES)
def test_random_features_with_a_covariance_match_training(law):
    covariance = COVARIANCES[law]
    theory = random_features.errors(2.0, 1.0, 0.1, noise=0.2, covariance=covariance)
    runs = [[random_features_trainer.simulate(d, 2.0, 1.0, 0.1, noise=0.2, seed=seed, covariance=covariance)
             for seed in range(seeds)] for d, seeds in SIZES_AND_SEEDS]
    for name in ("test", "train"):
        limit, error = _extrapolated(runs, name)
        print(f"{name}: extrapolated {limit:.6f} +- {error:.1e}, theory {getattr(theory, name):.6f}")
        assert abs(limit - getattr(theory, name)) < 4 * error, (name, limit, error, getattr(theory, name))


@pytest.mark.slow
@pytest.mark.parametrize("point, law", [
    (dict(psi_n=1.0, psi_p=2.0, t=0.3, lam=0.05, m=2, activation="relu"), "two-levels"),        # primal
    (dict(psi_n=0.5, psi_p=2.0, t=0.3, lam=0.05, m=1, activation="relu"), "two-levels"),        # p > n m: dual
    (dict(psi_n=1.0, psi_p=2.0, t=0.3, lam=0.05, m=math.inf, activation="sin"), "two-levels"),  # exact m = inf
    (dict(psi_n=1.0, psi_p=2.0, t=0.3, lam=0.05, m=2, activation="relu"), "continuous"),
], ids=["m=2", "m=1-dual", "m=inf-sin", "m=2-continuous"])
def test_dsm_with_a_covariance_matches_training(point, law):
    covariance = COVARIANCES[law]
    theory = dsm.errors(**point, covariance=covariance)
    runs = [[dsm.simulate(d, **point, seed=seed, covariance=covariance) for seed in range(seeds)]
            for d, seeds in SIZES_AND_SEEDS]
    assert all(run.test_exact for at_size in runs for run in at_size)
    for name in ("test", "train"):
        limit, error = _extrapolated(runs, name)
        print(f"{name}: extrapolated {limit:.6f} +- {error:.1e}, theory {getattr(theory, name):.6f}")
        assert abs(limit - getattr(theory, name)) < 4 * error, (name, limit, error, getattr(theory, name))
    assert theory.test > theory.optimum
