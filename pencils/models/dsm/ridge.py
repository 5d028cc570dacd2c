r"""Denoising score matching with a random-features score: the ridge estimator, from the engine.

(Why one module of some 720 lines: one model, its expressions for every form (primal, dual,
finite and infinite m, with a covariance), their constants, the errors and the crossover,
all on one set of symbols; gradient flow lives in :mod:`pencils.models.dsm.dynamics`.)

Conventions (``docs/dsm.md``).  Data :math:`x_i \sim \mathcal N(0, I_d)`,
:math:`i \le n`; at time :math:`t > 0`, :math:`a = e^{-t}`, :math:`h = 1 - e^{-2t}`,
and each data point gets :math:`m` noisy copies
:math:`x_{ij} = a x_i + \sqrt h\, z_{ij}`.  The score
:math:`s_A(x) = A\rho(Wx/\sqrt d)/\sqrt p` (:math:`W \in \mathbb R^{p\times d}`
fixed, :math:`\mathcal N(0,1)`) minimises

.. math::  \frac{1}{nm}\sum_{ij}\bigl\|\sqrt h\, s_A(x_{ij}) + z_{ij}\bigr\|^2 + \frac{h\lambda}{p}\|A\|_F^2,

so that :math:`\sqrt h\, s_{A^*}(x) = -B\rho(Wx/\sqrt d)` with
:math:`B = (ZF^T/nm)(FF^T/nm + \lambda I_p)^{-1}`.  Errors are divided by
:math:`d`; the test error is at fresh data and noise, the train error is the
loss without the penalty, and the best possible test error is :math:`a^2`.

Gaussian equivalence (centred :math:`\rho`, constants from
:meth:`pencils.activations.Activation.correlated_split` at correlation
:math:`a^2`): :math:`v_0^2` is the part of the features shared by the noisy
copies of one data point, :math:`s^2` the part that changes from copy to copy,
:math:`v^2 = v_0^2 + s^2`.

* :math:`m = \infty`: :math:`U = F_t F_t^T/n + h\mu_1^2 WW^T/d + s^2 I_p`,
  :math:`F_t = a\mu_1 WX/\sqrt d + v_0\Xi_0`, :math:`V = \sqrt h\,\mu_1 W^T/\sqrt d`,
  :math:`B = V(U + \lambda I)^{-1}`.
* finite :math:`m`: rotating the :math:`nm` columns by an orthogonal matrix
  whose first :math:`n` columns are :math:`(I_n \otimes 1_m)/\sqrt m` leaves
  the noise Gaussian and splits the features into
  :math:`F_a = \mu_1 W(a\sqrt m X + \sqrt h Z_a)/\sqrt d + v_0\sqrt m\,\Xi_0 + s\,\Xi_a`
  (:math:`n` columns) and :math:`F_b = \mu_1\sqrt h\,WZ_b/\sqrt d + s\,\Xi_b`
  (:math:`n(m-1)` columns): :math:`m` enters as the size ratio of a second
  sample block, so one derivation serves every real :math:`m \ge 1`.
  With :math:`F = (F_a\ F_b)` and :math:`Z = (Z_a\ Z_b)`, the ridge estimator
  has two equal forms,

  .. math::  B = \frac{ZF^T}{nm}\Bigl(\frac{FF^T}{nm} + \lambda I_p\Bigr)^{-1}
             = Z\Bigl(\frac{F^TF}{nm} + \lambda I_{nm}\Bigr)^{-1}\frac{F^T}{nm},

  and :math:`Z - BF = \lambda Z (F^TF/nm + \lambda)^{-1}`.  The errors use
  the first (*primal*) for :math:`p \le nm` and the second (*dual*, a block matrix
  in the two sample blocks) for :math:`p > nm`, where :math:`FF^T` has a null
  space and the primal unknowns grow like :math:`1/\lambda^2`, beyond double
  precision at :math:`\lambda = 10^{-9}`.  Finite-:math:`m` points with
  :math:`\lambda <` ``RIDGE_START`` are continued in :math:`\lambda` from
  ``RIDGE_START``: the default path from zero variance starts at unknowns of
  order :math:`1/\lambda^2` there.

Every error is :math:`1 + \frac1d[\operatorname{tr}(BU_*B^T) - 2\operatorname{tr}(BV_*^T)]`
with the matching :math:`U_*, V_*`, handed to :func:`pencils.limit` as matrix
expressions; the test pair is :math:`U_{\rm test} = \mu_1^2 WW^T/d + v^2 I_p`,
:math:`V_{\rm test} = V`.  For :math:`m = \infty` both errors come from one
resolvent trace and its derivatives: with
:math:`T(\lambda, \epsilon) = \operatorname{tr} V(U + \lambda I + \epsilon U_{\rm test})^{-1}V^T`
(``symbols["tilt"]`` is :math:`\epsilon`, evaluated at 0) and
:math:`R = (U + \lambda I)^{-1}`, :math:`RU_{\rm test}R = -\partial_\epsilon(\cdot)^{-1}` and
:math:`RUR = R - \lambda R^2 = R + \lambda\partial_\lambda R`, so

.. math::  E_{\rm test} = 1 - \frac{\partial_\epsilon T + 2T}{d}, \qquad
           E_{\rm train} = 1 + \frac{\lambda\,\partial_\lambda T - T}{d}.

Data :math:`x_i \sim \mathcal N(0, \Sigma)` (``covariance=``, :mod:`pencils.models.covariance`):
the noisy inputs :math:`x_t = ax_0 + \sqrt h z` have covariance :math:`\Sigma_t = a^2\Sigma + hI`,
the pre-activations :math:`\langle w_k, x_t\rangle/\sqrt d` variance :math:`q = a^2\tau + h`
(:math:`\tau = \operatorname{tr}\Sigma/d`) and two noisy copies of one data point correlation
:math:`r = a^2\tau/q`.  The constants are those of :math:`\rho` at input variance :math:`q`
(:meth:`pencils.activations.Activation.at_variance`, split at :math:`r` with :math:`1 - r = h/q`),
the linear part acts on :math:`x_t` with slope :math:`\mu_1(q)/\sqrt q`, :math:`X = \Sigma^{1/2}G`,
and :math:`U_{\rm test} = (\mu_1^2/q)W\Sigma_tW^T/d + v^2I_p`; :math:`V` keeps its form
(:math:`\operatorname{Cov}(z, x_t) = \sqrt h I`).  The optimal score is linear,
:math:`\sqrt h\,s^*(x) = -h\Sigma_t^{-1}x`, and the best test error is
:math:`\frac1d\operatorname{tr}\,a^2\Sigma(a^2\Sigma + hI)^{-1}` (:func:`optimum`).  With
:math:`\Sigma = I` all of this is the isotropic model; ``covariance=None`` keeps its expressions.

Its pencil has 8 blocks and 12 unknowns, against 18 and 21 blocks (33 and 43
unknowns) for the two traces of products of two resolvents, and both errors
share one solve.  Finite :math:`m` uses the same device (:func:`quantities`):
in the primal form both errors come from one trace with derivatives in the
ridge, the tilt and a scale :math:`c` (``symbols["scale"]``, at 0) of the term
:math:`\operatorname{tr} BV^T` (45 unknowns); in the dual form the test error
is one such trace (50 unknowns) and the train error the derivative in
:math:`\lambda` of :math:`\operatorname{tr} Z(F^TF/nm + \lambda)^{-1}Z^T` (12
unknowns), against 106 and 195 (90 and 48 in the dual form) for the traces of
products of two resolvents (``quantities(True, direct=True)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import sympy

from ... import activations, precision
from ...errors import ConvergenceError, ParameterError
from ...gaussian import Gaussian
from ...limits import limit
from .. import difference
from ...simulation.dsm import SimulationResult, simulate
from ...sweep import Sweep, sweep
from ...validation import check_dps, check_real, check_shapes
from ..covariance import diagonal, mean, profile_key, spectral_average

__all__ = [
    "Errors", "errors", "feature_matrix", "learning_curve", "phase_diagram", "crossover", "phase_boundary",
    "quantities", "substitutions", "constants", "optimum",
    "simulate", "SimulationResult", "symbols", "dims", "check_parameters",
]

d, n, p, k = sympy.symbols("d n p k")
psi_n, psi_p, lam, a, h, mu1, v0_squared, s_squared, v_squared, m, tilt, scale, training_time, tau = sympy.symbols(
    "psi_n psi_p lambda a h mu_1 v_0^2 s^2 v^2 m epsilon c tau tr(Sigma)/d"
)
symbols = {
    "psi_n": psi_n, "psi_p": psi_p, "lam": lam, "a": a, "h": h, "mu1": mu1,
    "v0_squared": v0_squared, "s_squared": s_squared, "v_squared": v_squared, "m": m, "tilt": tilt,
    "scale": scale, "time": training_time, "tau": tau,
}
#: Dimensions: ``n = psi_n d``, ``p = psi_p d`` and the second sample block ``k = (m - 1) n``.
dims = {d: d, n: psi_n * d, p: psi_p * d, k: (m - 1) * psi_n * d}
#: Finite-m points with a smaller ridge are continued in the ridge from this value (see the module notes).
RIDGE_START = 1e-3


@lru_cache(maxsize=16)
def quantities(finite_m: bool, dual: bool = False, direct: bool = False, covariance: tuple | None = None) -> dict:
    r"""The test and train errors as SymPy expressions in traces and their derivatives.

    By default each error is one resolvent trace and its first derivatives in the
    ridge :math:`\lambda`, the tilt :math:`\epsilon` (``symbols["tilt"]``) or the
    scale :math:`c` (``symbols["scale"]``), evaluated at :math:`\epsilon = c = 0`
    (as :func:`substitutions` does); :func:`pencils.limit` solves each trace once
    for the value and all its derivatives.  The identities used, with :math:`U_{\rm test}`,
    :math:`V` as in the module notes and :math:`\partial_\theta M^{-1} = -M^{-1}(\partial_\theta M)M^{-1}`:

    * :math:`m = \infty`: the module notes (8 blocks, 12 unknowns, both errors).
    * finite :math:`m`, primal form (:math:`p \le nm`; 24 blocks, 45 unknowns, both
      errors): with :math:`Q = ZF^T/nm` (:math:`d \times p`) the estimator is :math:`B = QR`
      with :math:`R = (FF^T/nm + \lambda I_p)^{-1}`; put
      :math:`R_\epsilon = (R^{-1} + \epsilon U_{\rm test})^{-1}` and
      :math:`T(\lambda, \epsilon, c) = \operatorname{tr} QR_\epsilon(Q^T + cV^T)`.  Then
      :math:`\operatorname{tr} BU_{\rm test}B^T = \operatorname{tr} QRU_{\rm test}RQ^T = -\partial_\epsilon T`
      (at :math:`c = 0`) and :math:`\operatorname{tr} BV^T = \partial_c T` (at :math:`\epsilon = 0`).
      The train residual is :math:`\|Z - BF\|_F^2/nm = \operatorname{tr} ZZ^T/nm - 2\operatorname{tr} QRQ^T
      + \operatorname{tr} QR(R^{-1} - \lambda)RQ^T`, with :math:`\operatorname{tr} ZZ^T/(nmd) \to 1` and
      :math:`\operatorname{tr} QR^2Q^T = -\partial_\lambda T`, so

      .. math::  E_{\rm test} = 1 - \frac{\partial_\epsilon T + 2\,\partial_c T}{d}, \qquad
                 E_{\rm train} = 1 - \frac{T - \lambda\,\partial_\lambda T}{d}.

      The train error is a difference of terms of order one: where it is small, at the
      interpolation threshold :math:`p = nm` with a tiny ridge, it loses digits (at
      :math:`m = 1`, :math:`p = n = d`, :math:`\lambda = 10^{-9}` it is :math:`3 \cdot 10^{-5}`, kept
      to :math:`3 \cdot 10^{-8}` relative, and to :math:`2 \cdot 10^{-7}` or better on the
      threshold for :math:`0.1 \le p/d \le 100`; 1 % below it to :math:`4 \cdot 10^{-13}`).
      The dual train error below has no difference and is right to :math:`10^{-12}` there,
      but at :math:`p \le nm` its unknowns grow like :math:`\lambda^{-1/2}` to
      :math:`\lambda^{-1}` and its continuation in :math:`\lambda` failed at one threshold
      point of 60 (:math:`t = 0.01`, :math:`\lambda = 10^{-9}`): it is used for
      :math:`p > nm` only.
    * finite :math:`m`, dual form (:math:`p > nm`; 20 blocks and 50 unknowns for the test
      error, 10 blocks and 12 unknowns for the train error): with the Gram matrix
      :math:`K = F^TF/nm + \lambda I_{nm}` (a block matrix), :math:`B = ZK^{-1}F^T/nm`, so
      :math:`B^TB = FK^{-1}Z^TZK^{-1}F^T/(nm)^2`.  Put :math:`K_\epsilon = K + \epsilon Z^TZ/nm`
      and :math:`S(\epsilon, c) = \operatorname{tr}(U_{\rm test}F + cV^TZ)K_\epsilon^{-1}F^T/nm`
      (:math:`p \times p`).  Then :math:`\operatorname{tr} BU_{\rm test}B^T = \operatorname{tr}
      U_{\rm test}B^TB = -\partial_\epsilon S` and :math:`\operatorname{tr} BV^T = \operatorname{tr} V^TB
      = \partial_c S`.  The train residual is :math:`Z - BF = Z(I - K^{-1}F^TF/nm) = \lambda ZK^{-1}`
      and :math:`\partial_\lambda K^{-1} = -K^{-2}`, so with :math:`P(\lambda) = \operatorname{tr} ZK^{-1}Z^T`

      .. math::  E_{\rm test} = 1 - \frac{\partial_\epsilon S + 2\,\partial_c S}{d}, \qquad
                 E_{\rm train} = \frac{\lambda^2\operatorname{tr} ZK^{-2}Z^T}{nmd}
                 = -\frac{\lambda^2\,\partial_\lambda P}{nmd},

      one term: of order :math:`\lambda^2` at :math:`p > nm` (interpolation), with its
      relative precision.

    Parameters
    ----------
    finite_m : bool
        ``True`` for the rotated finite-:math:`m` problem, ``False`` for :math:`m = \infty`.
    dual : bool
        For finite :math:`m`: the test error from the :math:`nm \times nm` Gram matrix of
        the samples, well conditioned for :math:`p > nm` (see the module notes).
    direct : bool
        The errors as written above the module notes, traces of products of two
        resolvents (for :math:`m = \infty` pencils of 18 and 21 blocks; for finite
        :math:`m` 106 and 195 unknowns, or 90 and 48 in the dual form, whose train
        error is :math:`\lambda^2\operatorname{tr}(ZK^{-2}Z^T)/(nmd)`), instead of one
        resolvent and its derivatives: slower, an independent check of the default.
    covariance : tuple, optional
        Data :math:`\mathcal N(0, \Sigma)`, the profile as :func:`pencils.models.covariance.profile_key`
        gives it (module notes; ``symbols["tau"]`` is :math:`\operatorname{tr}\Sigma/d`).

    Examples
    --------
    >>> from pencils.models import dsm
    >>> sorted(dsm.quantities(finite_m=True))
    ['test', 'train']
    >>> dsm.quantities(finite_m=True, dual=True)["train"].has(sympy.BlockMatrix)
    True
    >>> dsm.quantities(finite_m=True)["test"].has(sympy.Derivative)
    True
    """
    if dual and not finite_m:
        raise ParameterError("the dual form is for finite m (for m = inf the features have a full-rank part).")
    sqrt, Tr, Derivative = sympy.sqrt, sympy.Trace, sympy.Derivative
    I_p = sympy.Identity(p)
    slope, root = _linear_part(covariance)
    W, X, Xi0 = Gaussian("W", p, d), root * Gaussian("X", d, n), Gaussian("Xi_0", p, n)
    V = sqrt(h) * slope * W.T / sqrt(d)
    if covariance is None:
        U_test = mu1**2 * W * W.T / d + v_squared * I_p
    else:
        noisy_covariance = a**2 * diagonal("Sigma", d, covariance) + h * sympy.Identity(d)
        U_test = slope**2 * W * noisy_covariance * W.T / d + v_squared * I_p
    if not finite_m:
        U = feature_matrix(covariance)
        if not direct:
            T = Tr(V * (U + lam * I_p + tilt * U_test).I * V.T)  # at tilt = 0 (see the module notes)
            return {"test": 1 - (Derivative(T, tilt) + 2 * T) / d,
                    "train": 1 + (lam * Derivative(T, lam) - T) / d}
        B = V * (U + lam * I_p).I
        return {"test": 1 + Tr(B * U_test * B.T - 2 * B * V.T) / d, "train": 1 + Tr(B * U * B.T - 2 * B * V.T) / d}
    Za, Zb = Gaussian("Z_a", d, n), Gaussian("Z_b", d, k)
    Xia, Xib = Gaussian("Xi_a", p, n), Gaussian("Xi_b", p, k)
    Fa = slope * W * (a * sqrt(m) * X + sqrt(h) * Za) / sqrt(d) + sqrt(v0_squared * m) * Xi0 + sqrt(s_squared) * Xia
    Fb = slope * sqrt(h) * W * Zb / sqrt(d) + sqrt(s_squared) * Xib
    F, Z = sympy.BlockMatrix([[Fa, Fb]]), sympy.BlockMatrix([[Za, Zb]])
    gram = F.T * F / (n * m) + lam * sympy.Identity(n + k)
    Q = (Za * Fa.T + Zb * Fb.T) / (n * m)
    covariance = (Fa * Fa.T + Fb * Fb.T) / (n * m) + lam * I_p
    if direct:
        if dual:
            B = Z * gram.I * F.T / (n * m)
            train = lam**2 * Tr(Z * gram.I**2 * Z.T) / (n * m * d)
        else:
            B = Q * covariance.I
            train = Tr((Za - B * Fa) * (Za - B * Fa).T + (Zb - B * Fb) * (Zb - B * Fb).T) / (n * m * d)
        return {"test": 1 + Tr(B * U_test * B.T - 2 * B * V.T) / d, "train": train}
    if dual:
        S = Tr((U_test * F + scale * V.T * Z) * (gram + tilt * Z.T * Z / (n * m)).I * F.T / (n * m))
        return {"test": 1 - (Derivative(S, tilt) + 2 * Derivative(S, scale)) / d,
                "train": -lam**2 * Derivative(Tr(Z * gram.I * Z.T), lam) / (n * m * d)}
    T = Tr(Q * (covariance + tilt * U_test).I * (Q.T + scale * V.T))
    return {"test": 1 - (Derivative(T, tilt) + 2 * Derivative(T, scale)) / d,
            "train": 1 - (T - lam * Derivative(T, lam)) / d}


def _linear_part(covariance: tuple | None) -> tuple:
    r"""The slope of the linear part of the features and :math:`\Sigma^{1/2}` (module notes)."""
    if covariance is None:
        return mu1, sympy.Identity(d)
    return mu1 / sympy.sqrt(a**2 * tau + h), diagonal("Sigma^{1/2}", d, covariance, sympy.Rational(1, 2))


def feature_matrix(covariance: tuple | None = None) -> sympy.MatrixExpr:
    r"""The :math:`p \times p` matrix :math:`U = F_tF_t^T/n + h\mu_1^2 WW^T/d + s^2 I_p` of :math:`m = \infty`.

    In :data:`symbols`, with :math:`F_t = a\mu_1 WX/\sqrt d + v_0\Xi_0`.  It is
    :math:`s^2 I_p` plus a positive semi-definite matrix of rank at most
    :math:`n + d`: for :math:`\psi_p > \psi_n + 1` its spectrum
    (:func:`pencils.spectrum`) has an atom at :math:`s^2` of mass
    :math:`1 - (\psi_n + 1)/\psi_p`.  ``covariance``: data :math:`\mathcal N(0, \Sigma)` (module notes).

    Examples
    --------
    >>> from pencils.models import dsm
    >>> dsm.feature_matrix().shape
    (p, p)
    """
    slope, root = _linear_part(covariance)
    W, X, Xi0 = Gaussian("W", p, d), root * Gaussian("X", d, n), Gaussian("Xi_0", p, n)
    Ft = a * slope * W * X / sympy.sqrt(d) + sympy.sqrt(v0_squared) * Xi0
    return Ft * Ft.T / n + h * slope**2 * W * W.T / d + s_squared * sympy.Identity(p)


def optimum(t, covariance=None, dps: int | None = None):
    r"""The best possible test error: :math:`a^2 = e^{-2t}` (the true score is :math:`-x_t`), or with a covariance
    :math:`\frac1d\operatorname{tr}\,a^2\Sigma(a^2\Sigma + hI)^{-1}`.

    For data :math:`\mathcal N(0, \Sigma)` the noisy input :math:`x_t` is Gaussian of covariance
    :math:`\Sigma_t = a^2\Sigma + hI`, :math:`\mathbb E[z \mid x_t] = \sqrt h\,\Sigma_t^{-1}x_t` and the
    error of that (linear) optimal score is
    :math:`1 - h\operatorname{tr}\Sigma_t^{-1}/d = \mathbb E\,a^2\lambda/(a^2\lambda + h)` over the
    spectral law of :math:`\Sigma` (:func:`pencils.models.covariance.spectral_average`).

    Floats, or mpmath numbers to ``dps`` digits (an object array for an array ``t``).

    Examples
    --------
    >>> from pencils.models import dsm
    >>> round(dsm.optimum(0.5), 12)
    0.367879441171
    >>> round(dsm.optimum(0.5, covariance=[1]), 12)
    0.367879441171
    >>> a2, h = math.exp(-1), -math.expm1(-1)  # t = 0.5
    >>> abs(dsm.optimum(0.5, covariance=[0.5, 2]) - (a2 / (a2 + 2 * h) + 2 * a2 / (2 * a2 + h)) / 2) < 1e-15
    True
    >>> import mpmath
    >>> mpmath.nstr(dsm.optimum("0.5", dps=30), 30)
    '0.367879441171442321595523770161'
    """
    if covariance is None:
        if dps is not None:
            return _apply(lambda context, x: context.exp(-2 * context.mpmathify(x)), t, dps)
        return np.exp(-2 * np.asarray(t, dtype=float)) if np.ndim(t) else math.exp(-2 * float(t))
    key, digits = profile_key(covariance, "covariance"), (dps or 15) + 15

    def best(value):
        with precision.digits(digits) as context:
            time_value = context.mpmathify(value)
            a2, h_value = (sympy.Float(x, digits) for x in (context.exp(-2 * time_value), -context.expm1(-2 * time_value)))
        average = sympy.N(spectral_average(key, lambda x: a2 * x / (a2 * x + h_value), digits), digits)
        if dps is None:
            return float(average)
        with precision.digits(digits) as context:
            return precision.public(context.mpmathify(str(average)))

    if not np.ndim(t):
        return best(np.asarray(t, dtype=object).item())
    values = np.frompyfunc(best, 1, 1)(np.asarray(t, dtype=object))
    return values.astype(float) if dps is None else values


def constants(t, activation="relu", dps: int | None = None, covariance=None) -> dict:
    r"""The Gaussian-equivalence constants of the DSM problem at time ``t``.

    Returns ``mu1``, ``v0_squared`` (:math:`c(a^2) - \mu_0^2 - a^2\mu_1^2`),
    ``s_squared`` (:math:`\|\rho\|^2 - c(a^2) - h\mu_1^2`) and ``v_squared``
    (:math:`\|\rho\|^2 - \mu_0^2 - \mu_1^2`), for the centred activation.
    With the Hermite coefficients :math:`c_k`, :math:`v_0^2 = \sum_{k\ge2} c_k^2 a^{2k}`
    and :math:`s^2 = \sum_{k\ge2} c_k^2 (1 - a^{2k})`: they are computed as such
    sums of non-negative terms (or equivalent closed forms), with
    :math:`1 - a^2 = -\mathrm{expm1}(-2t)`, so that they keep their relative
    accuracy at any :math:`t > 0` (see
    :meth:`pencils.activations.Activation.correlated_split`).

    With a ``covariance`` (module notes) they are those of the activation at input variance
    :math:`q = a^2\tau + h`, split at :math:`r = a^2\tau/q` (:math:`1 - r = h/q`), one
    activation per time (``mu1`` is then broadcast like ``t``), and ``tau`` is added.

    Examples
    --------
    >>> from pencils.models import dsm
    >>> values = dsm.constants(1.0, "relu")
    >>> abs(values["v0_squared"] + values["s_squared"] - values["v_squared"]) < 1e-14
    True
    """
    activation = activations.get(activation)
    if covariance is not None:
        return _anisotropic_constants(t, activation, mean(profile_key(covariance, "covariance"), dps), dps)
    if dps is None:
        t = np.asarray(t, dtype=float)
        split = activation.correlated_split(np.exp(-2 * t), complement=-np.expm1(-2 * t))
        return {"mu1": activation.mu1(), "v0_squared": split.shared, "s_squared": split.private,
                "v_squared": split.total}
    with precision.working(dps) as context:
        splits = [activation.correlated_split(context.exp(-2 * value), dps=dps, complement=-context.expm1(-2 * value))
                  for value in map(context.mpmathify, np.ravel(np.asarray(t, dtype=object)))]

    def field(name):
        values = np.array([getattr(split, name) for split in splits], dtype=object).reshape(np.shape(t))
        return values if np.ndim(t) else values.item()

    return {"mu1": activation.mu1(dps=dps), "v0_squared": field("shared"), "s_squared": field("private"),
            "v_squared": field("total")}


def _anisotropic_constants(t, activation, tau_value, dps: int | None) -> dict:
    r""":func:`constants` for data of covariance with :math:`\operatorname{tr}\Sigma/d =` ``tau_value``."""
    fields = []
    for value in np.ravel(np.asarray(t, dtype=object)):
        if dps is None:
            a2, h_value = math.exp(-2 * float(value)), -math.expm1(-2 * float(value))
            q, shared = a2 * tau_value + h_value, a2 * tau_value
            correlation, complement = shared / q, h_value / q
        else:
            with precision.working(dps) as context:
                a2, h_value = context.exp(-2 * context.mpmathify(value)), -context.expm1(-2 * context.mpmathify(value))
                shared = context.mpmathify(tau_value) * a2
                q = shared + h_value
                q, correlation, complement = (precision.public(x) for x in (q, shared / q, h_value / q))
        at_q = activation.at_variance(q)
        split = at_q.correlated_split(correlation, dps=dps, complement=complement)
        fields.append((at_q.mu1(dps=dps), split.shared, split.private, split.total))
    names = ("mu1", "v0_squared", "s_squared", "v_squared")
    shaped = {name: np.array([entry[i] for entry in fields], dtype=object if dps else float).reshape(np.shape(t))
              for i, name in enumerate(names)}
    result = {name: value if np.ndim(t) else value.item() for name, value in shaped.items()}
    result["tau"] = tau_value
    return result


@dataclass(frozen=True)
class Errors:
    """Asymptotic DSM errors, broadcast over the parameters.

    Attributes
    ----------
    test, train : numpy.ndarray or float
        Test and train errors (divided by ``d``).
    optimum : numpy.ndarray or float
        The best possible test error :math:`e^{-2t}`.
    """

    test: np.ndarray | float
    train: np.ndarray | float
    optimum: np.ndarray | float

    @property
    def gap(self):
        """The generalization gap ``test - train`` (large: memorization)."""
        return difference(self.test, self.train)


def errors(
    psi_n, psi_p, t, lam, m=math.inf, activation="relu", dps: int | None = None, continuation: str = "neighbours",
    covariance=None,
) -> Errors:
    r"""Limits of the DSM test and train errors, for any :math:`m \ge 1` (``math.inf`` allowed).

    Parameters
    ----------
    psi_n, psi_p : float or array_like
        :math:`n/d` and :math:`p/d`, positive.
    t : float or array_like
        Diffusion time, :math:`t > 0`.
    lam : float or array_like
        Ridge :math:`\lambda > 0` on the empirical feature covariance.
    m : float or array_like
        Noise draws per data point: any real :math:`m \ge 1`, or ``math.inf``.
    activation : str, callable or Activation
        See :func:`pencils.activations.get`.
    dps : int, optional
        Decimal digits (mpmath) instead of floats.
    continuation : {"neighbours", "variance"}
        How the points of an array are solved (see :func:`pencils.trace_limit`):
        "variance" solves each on its own, an independent check of the default.
    covariance : sympy.Lambda, list of atoms or (atoms, weights), optional
        Data :math:`\mathcal N(0, \Sigma)` with this spectral law of :math:`\Sigma`
        (:mod:`pencils.models.covariance`, module notes); ``None``: :math:`\mathcal N(0, I_d)`.

    Returns
    -------
    Errors
        ``.test``, ``.train``, ``.optimum`` and ``.gap``, broadcast (``.optimum`` from :func:`optimum`).

    Examples
    --------
    >>> from pencils.models import dsm
    >>> result = dsm.errors(psi_n=2.0, psi_p=1.0, t=0.5, lam=1e-2)
    >>> bool(result.optimum < result.test) and bool(result.train < result.test)
    True
    """
    shape, dps = check_parameters(psi_n=psi_n, psi_p=psi_p, t=t, lam=lam, m=m), check_dps(dps)
    activation = activations.get(activation)
    dtype = object if dps is not None else float
    psi_n, psi_p, t, lam, m = (np.broadcast_to(np.asarray(v, dtype=dtype), shape) for v in (psi_n, psi_p, t, lam, m))
    infinite = np.array([float(value) == math.inf for value in m.ravel()], dtype=bool).reshape(shape)
    wide = np.array([float(q) > float(r) * float(s) for q, r, s in zip(psi_p.ravel(), psi_n.ravel(), m.ravel())],
                    dtype=bool).reshape(shape)  # p > n m
    test = np.empty(shape, dtype=object if dps is not None else float)
    train = np.empty_like(test)
    forms = ((False, False, infinite), (True, False, ~infinite & ~wide), (True, True, ~infinite & wide))
    for finite_m, dual, mask in forms:
        if not np.any(mask):
            continue
        subs = substitutions(psi_n[mask], psi_p[mask], t[mask], lam[mask], m[mask], activation, dps, covariance)
        path_from = None
        if finite_m:
            ridges = np.array([float(value) for value in lam[mask]])
            if np.any(ridges < RIDGE_START):
                path_from = {symbols["lam"]: np.maximum(ridges, RIDGE_START)}
        found = quantities(finite_m, dual) if covariance is None else quantities(
            finite_m, dual, covariance=profile_key(covariance, "covariance"))
        test[mask], train[mask] = limit(
            [found["test"], found["train"]], dims, subs, dps=dps, path_from=path_from, continuation=continuation
        )
    optimum_value = optimum(t, covariance, dps)
    if shape == ():
        return Errors(test.item(), train.item(), optimum_value.item() if isinstance(optimum_value, np.ndarray) else optimum_value)
    return Errors(test, train, optimum_value)


def substitutions(psi_n, psi_p, t, lam, m=math.inf, activation="relu", dps: int | None = None,
                  covariance=None) -> dict:
    r"""The value of every symbol of :func:`quantities` at the given parameters, for :func:`pencils.limit`.

    ``a``, ``h`` and the Gaussian-equivalence constants (:func:`constants`) follow
    from ``t`` and the activation; ``m`` is included where it is finite (the
    :math:`m = \infty` quantities do not use it).  Mpmath numbers if ``dps``.

    Examples
    --------
    >>> from pencils import limit
    >>> from pencils.models import dsm
    >>> subs = dsm.substitutions(2.0, 1.0, 0.5, 1e-2, m=4.0)
    >>> test = limit(dsm.quantities(finite_m=True)["test"], dsm.dims, subs)
    >>> bool(abs(test - dsm.errors(2.0, 1.0, 0.5, 1e-2, m=4.0).test) < 1e-12)
    True
    """
    values = constants(t, activation, dps=dps, covariance=covariance)
    a_value = _apply(lambda context, x: context.exp(-context.mpmathify(x)), t, dps) if dps else np.exp(-np.asarray(t, dtype=float))
    h_value = _apply(lambda context, x: -context.expm1(-2 * context.mpmathify(x)), t, dps) if dps else -np.expm1(-2 * np.asarray(t, dtype=float))
    subs = {
        symbols["psi_n"]: psi_n, symbols["psi_p"]: psi_p, symbols["lam"]: lam, a: a_value, h: h_value,
        mu1: values["mu1"], v0_squared: values["v0_squared"], s_squared: values["s_squared"],
        v_squared: values["v_squared"], tilt: 0, scale: 0,
    }
    if np.all([float(value) != math.inf for value in np.ravel(np.asarray(m, dtype=object))]):
        subs[symbols["m"]] = m
    if covariance is not None:
        subs[tau] = values["tau"]
    return subs


def learning_curve(over: str, values, executor=None, progress: bool | None = None, **fixed) -> Sweep:
    r"""Errors along one parameter (``"psi_p"``, ``"psi_n"``, ``"m"``, ``"t"`` or ``"lam"``).

    The other parameters of :func:`errors` are given as keywords; see
    :func:`pencils.sweep.sweep` for ``executor`` and ``progress``.

    Examples
    --------
    >>> import numpy as np
    >>> from pencils.models import dsm
    >>> curve = dsm.learning_curve("psi_p", np.geomspace(1, 10, 4), psi_n=2.0, t=0.1, lam=1e-2)
    >>> curve["test"].shape, sorted(curve.values)
    ((4,), ['gap', 'optimum', 'test', 'train'])
    """
    if over not in ("psi_n", "psi_p", "t", "lam", "m"):
        raise ParameterError(f"cannot sweep over {over!r}; choose psi_n, psi_p, t, lam or m.")
    return sweep(errors, {over: values}, executor=executor, progress=progress, **fixed)


def phase_diagram(psi_n, psi_p, executor=None, progress: bool | None = None, **fixed) -> Sweep:
    r"""Errors on the grid ``psi_n x psi_p`` (axis 0: ``psi_n``), and ``m`` as a third axis if it is a list.

    The crossover between the two regimes is computed by :func:`crossover` (and
    over a grid of ``psi_n`` and ``m`` by :func:`phase_boundary`), not read off this grid.

    Examples
    --------
    >>> import numpy as np
    >>> from pencils.models import dsm
    >>> grid = dsm.phase_diagram(np.array([1.0, 4.0]), np.array([0.5, 2.0, 8.0]), t=0.1, lam=1e-2)
    >>> grid["gap"].shape
    (2, 3)
    >>> dsm.phase_diagram(np.array([1.0, 4.0]), np.array([0.5, 2.0]), t=0.1, lam=1e-2, m=[2, math.inf])["gap"].shape
    (2, 2, 2)
    """
    axes = {"psi_n": psi_n, "psi_p": psi_p}
    if np.size(fixed.get("m", math.inf)) > 1:
        axes["m"] = np.asarray(fixed.pop("m"), dtype=float)
    return sweep(errors, axes, executor=executor, progress=progress, **fixed)


#: Log-spaced points of ``psi_p / psi_n`` scanned by :func:`crossover` before the root is refined.
CROSSOVER_SCAN = 25


def crossover(psi_n, t, lam, m=math.inf, activation="relu", threshold: float = 1.0,
              span: tuple[float, float] = (1e-2, 1e2)):
    r"""The crossover from generalisation to memorisation along :math:`\psi_p`.

    Definition: with the normalised generalisation gap

    .. math::  g(\psi_p) = \frac{E_{\rm test} - E_{\rm train}}{e^{-2t}},

    the gap in units of the best achievable test error :math:`e^{-2t}`, the
    crossover :math:`\psi_p^*` is the smallest :math:`\psi_p` in
    :math:`\psi_n \cdot` ``span`` where :math:`g` reaches ``threshold`` (default
    1: the gap equals the best error).  Below it the score generalises (train
    and test errors close); above it the train error keeps falling while the
    test error rises (memorisation).  For :math:`m = \infty` and small
    :math:`\lambda, t` it lies within a few percent of :math:`p = n`
    (e.g. :math:`\psi_p^*/\psi_n = 1.02` to 1.05 at :math:`t = 0.01`,
    :math:`\lambda = 10^{-3}`), the crossover of the paper's phase diagram; for
    finite :math:`m` the gap also counts the fit of the :math:`m` noise draws,
    and :math:`\psi_p^*` is lower (about :math:`0.4\psi_n` at :math:`m = 1`).

    The root is located on the continuous theory: :math:`g` is evaluated at
    :data:`CROSSOVER_SCAN` log-spaced points (one vectorised :func:`errors`
    call), and the first cell where :math:`g - ` ``threshold`` changes sign is
    refined by :func:`scipy.optimize.brentq` in :math:`\log\psi_p` to a
    relative :math:`10^{-13}`.

    Parameters
    ----------
    psi_n, t, lam, m : float or array_like
        As in :func:`errors`; broadcast together, one crossover per element.
    activation : str, callable or Activation
        See :func:`pencils.activations.get`.
    threshold : float
        The normalised gap that defines the crossover (> 0).
    span : (float, float)
        The range of :math:`\psi_p / \psi_n` searched.

    Returns
    -------
    float or numpy.ndarray
        :math:`\psi_p^*`, broadcast.

    Raises
    ------
    ConvergenceError
        If :math:`g` does not cross ``threshold`` inside the span (the message
        gives the range of :math:`g` seen): widen ``span`` or change ``threshold``.

    Examples
    --------
    >>> from pencils.models import dsm
    >>> psi_p = dsm.crossover(5.0, t=0.01, lam=1e-3)
    >>> round(psi_p / 5.0, 4)  # near p = n
    1.0231
    >>> result = dsm.errors(5.0, psi_p, 0.01, 1e-3)
    >>> round(result.gap / result.optimum, 10)
    1.0
    """
    from scipy.optimize import brentq

    if not threshold > 0:
        raise ParameterError(f"threshold must be > 0 (a normalised gap); got {threshold}.")
    if not (0 < span[0] < span[1] < math.inf):
        raise ParameterError(f"span must be two ratios 0 < low < high; got {span}.")
    check_parameters(psi_n=psi_n, t=t, lam=lam, m=m)
    arrays = np.broadcast_arrays(*(np.asarray(value, dtype=float) for value in (psi_n, t, lam, m)))
    logs = np.linspace(math.log(span[0]), math.log(span[1]), CROSSOVER_SCAN)
    roots = np.empty(arrays[0].shape)
    for index in np.ndindex(roots.shape):
        n_value, t_value, lam_value, m_value = (float(array[index]) for array in arrays)

        def excess(log_ratio, n_value=n_value, t_value=t_value, lam_value=lam_value, m_value=m_value):
            result = errors(n_value, n_value * np.exp(log_ratio), t_value, lam_value, m=m_value, activation=activation)
            return (result.test - result.train) / result.optimum - threshold

        scan = excess(logs)
        above = np.flatnonzero(scan >= 0)
        if above.size == 0 or above[0] == 0:
            raise ConvergenceError(
                f"the normalised gap does not cross threshold={threshold} for psi_p/psi_n in {span} at psi_n={n_value}, "
                f"t={t_value}, lam={lam_value}, m={m_value} (it ranges over [{scan.min() + threshold:.3g}, "
                f"{scan.max() + threshold:.3g}]); widen span or change threshold."
            )
        cell = above[0]
        roots[index] = n_value * math.exp(brentq(excess, logs[cell - 1], logs[cell], xtol=1e-13, rtol=1e-15))
    return roots.item() if roots.ndim == 0 else roots


def _crossover_fields(psi_n, m, **fixed) -> dict:
    """:func:`crossover` as fields for :func:`pencils.sweep.sweep`."""
    psi_p = np.atleast_1d(crossover(psi_n, m=m, **fixed))
    return {"psi_p": psi_p, "ratio": psi_p / psi_n}


def phase_boundary(psi_n, m=(1, 2, 4, 16, math.inf), executor=None, progress: bool | None = None, **fixed) -> Sweep:
    r"""The crossover :math:`\psi_p^*` (:func:`crossover`) on the grid ``psi_n x m``.

    ``fixed`` holds ``t`` and ``lam`` (and optionally ``activation``,
    ``threshold``, ``span``).  Fields ``"psi_p"`` and ``"ratio"``
    (:math:`\psi_p^*/\psi_n`); each grid point is one chunk, so an ``executor``
    runs the points in parallel.  Draw it with
    :func:`pencils.models.dsm.figures.draw_phase_diagram`.

    Examples
    --------
    >>> from pencils.models import dsm
    >>> boundary = dsm.phase_boundary([2.0, 8.0], m=[math.inf], t=0.01, lam=1e-3, progress=False)
    >>> boundary["ratio"].round(3)
    array([[1.018],
           [1.03 ]])
    """
    grid = {"psi_n": np.asarray(psi_n, dtype=float), "m": np.asarray(m, dtype=float)}
    return sweep(_crossover_fields, grid, chunk_size=1, executor=executor, progress=progress, **fixed)


def _apply(function, values, dps):
    """``function(context, value)`` on every element of ``values`` at ``dps +`` :data:`pencils.precision.GUARD_DIGITS` digits of this thread's
    private context (:mod:`pencils.precision`), as numbers of ``mpmath.mp``."""
    with precision.working(dps) as context:
        return np.frompyfunc(lambda value: precision.public(function(context, value)), 1, 1)(values)


def check_parameters(**values) -> tuple:
    """Check parameters of :func:`errors` given by name (any of ``psi_n``, ``psi_p``, ``t``, ``lam``
    and ``m``) and return their broadcast shape; a :class:`ParameterError` names the first bad one.

    Examples
    --------
    >>> from pencils.models import dsm
    >>> dsm.check_parameters(psi_n=2.0, m=math.inf)
    ()
    >>> dsm.check_parameters(t=-1.0)
    Traceback (most recent call last):
    ...
    pencils.errors.ParameterError: t must be > 0 and finite; got -1.0.
    """
    for name, value in values.items():
        if name not in ("psi_n", "psi_p", "t", "lam", "m"):
            raise ParameterError(f"{name} is not a parameter of dsm.errors; use psi_n, psi_p, t, lam or m.")
        if name == "m":
            check_real(value, name, minimum=1, strict=False, infinite=True, strings=True)
        else:
            check_real(value, name, strings=True)
    return check_shapes(values)
