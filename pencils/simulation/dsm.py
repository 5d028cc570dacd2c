r"""Finite-d ground truth for denoising score matching (DSM) with a random-features score.

(Why one module of some 830 lines: the trainers of both forms, the exact test moments of each
activation family and their Monte Carlo fallback share the conventions below and one random
stream, so that the checks built on them stay comparable.)

This module *really trains* the random-features score on the DSM loss at a finite
dimension ``d`` (exact linear algebra, no Gaussian-equivalent surrogate), and
measures its train and test errors.  It is the ground truth against which the
large-dimension limits of :mod:`pencils` are checked.  Every convention is the one
of ``docs/dsm.md``:

* data ``x_i ~ N(0, I_d)``, ``i = 1..n``; time ``t > 0``, ``a = exp(-t)``,
  ``h = 1 - exp(-2t)``; noisy inputs ``x_ij = a x_i + sqrt(h) z_ij``, ``j = 1..m``;
* random features ``rho(W x / sqrt(d))``, ``W`` (``p x d``) with ``N(0, 1)`` entries;
* the minimiser of the DSM loss is ``sqrt(h) s_A*(x) = -B rho(W x / sqrt(d))`` with

  .. math::

     B = \frac{Z F^T}{nm}\Big(\frac{F F^T}{nm} + \lambda I_p\Big)^{-1}
       \quad (m < \infty), \qquad
     B = V (U + \lambda I_p)^{-1} \quad (m = \infty),

  ``F`` (``p x nm``) the features of the noisy inputs, ``Z`` (``d x nm``) the noises,
  ``U = (1/n) sum_i E_z[rho rho^T]`` and ``V = (1/n) sum_i E_z[z rho^T]``;
* errors, all divided by ``d``: train ``= (1/(nm)) sum_ij ||z_ij - B rho_ij||^2 / d``
  (for ``m = inf``: ``(1/n) sum_i E_z ||z - B rho||^2 / d``), test
  ``= E_{x_0, z} ||z - B rho(W (a x_0 + sqrt(h) z)/sqrt(d))||^2 / d``.  The test
  error is at least the Bayes value ``a^2 = exp(-2t)`` (true score ``-x_t``).

Only :func:`simulate` and :class:`SimulationResult` are needed by users; the moment
helpers :func:`training_moments` and :func:`fresh_moments` expose the closed forms
(useful for checks).
"""

from __future__ import annotations

import functools
import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from pencils import activations, quadrature
from pencils.errors import ParameterError
from pencils.validation import check_number, check_positive_int
from pencils.simulation.covariance import as_profile, profile_values

__all__ = ["SimulationResult", "simulate", "fit_finite_m", "training_moments", "fresh_moments"]

# Largest number of entries of one (features x columns) block held in memory at once.
_BLOCK_ENTRIES = 1 << 22
# Largest number of dual-form features (p x nm) kept between the Gram matrix and the readout
# (256 MB); above, they are computed twice.
_STORED_ENTRIES = 1 << 25
# One-dimensional Gaussian integrals of a generic activation: Gauss-Legendre on
# [-_QUAD_CUTOFF, 0] and [0, _QUAD_CUTOFF] (exponentially convergent for activations
# smooth except possibly at 0; the Gaussian mass beyond the cutoff is < 1e-38).
_QUAD_NODES = 200
_QUAD_CUTOFF = 13.0
# Hermite (Mehler) series of the test moments of a generic activation: largest degree,
# and the largest allowed rigorous bound on its truncation error in the test error.
_SERIES_MAX_DEGREE = 80
_SERIES_TOLERANCE = 1e-10
# Hermite degree of the exactly-integrated control variate of the Monte Carlo fallback
# (higher degrees give polynomial tails and an erratic variance).
_CONTROL_DEGREE = 2
# Named activations of pencils.activations whose moments have closed forms here.
_CLOSED_FORM_TEST = ("sin", "cos", "relu", "erf")
_CLOSED_FORM_TRAIN_INF = ("sin", "cos")


# --------------------------------------------------------------------------- result


@dataclass(frozen=True)
class SimulationResult:
    """Train and test errors of one DSM training run at finite ``d``.

    Attributes
    ----------
    test, train : float
        Test and train errors, both divided by ``d`` (see the module docstring).
    d, n, p : int
        Dimension, number of data points ``round(psi_n d)``, number of features
        ``round(psi_p d)``.
    m : float
        Noise draws per data point as requested (``math.inf`` allowed).
    seed : Any
        The seed used (the generated entropy if ``seed=None`` was passed), so that the
        run can be repeated.
    t, lam : float
        Diffusion time and ridge.
    activation : str
        Name of the activation.
    centred : bool
        Whether ``mu0 = E rho(g)`` was subtracted from the features.
    m_used : float
        The ``m`` actually simulated: ``m`` itself, or ``large_m`` when ``m = inf`` was
        requested for an activation without closed form.
    exact_m_infinity : bool
        ``True`` when ``m = inf`` was done exactly (closed-form Gaussian expectations);
        ``False`` for finite ``m`` and for the ``large_m`` stand-in.
    test_exact : bool
        ``True`` when the test error is the exact expectation over fresh data and noise
        (to rounding and quadrature accuracy); ``False`` when it contains a Monte Carlo
        part.
    test_method : str
        How the test expectation was computed: ``"closed form"`` (sin, cos, relu, erf),
        ``"hermite series"`` (other activations: Mehler series with a rigorous truncation
        bound ``<= 1e-10``) or ``"monte carlo"`` (other activations at small ``d``, where
        the series would need too many terms).
    test_stderr : float
        Standard error of the Monte Carlo part (``0.0`` when ``test_exact``).  It is the
        error of ``test`` *for this draw of the training set*; the draw-to-draw
        (finite-``d``) fluctuation is separate and usually much larger.
    n_test : int
        Fresh samples used by the Monte Carlo part (``0`` when ``test_exact``).
    """

    test: float
    train: float
    d: int
    n: int
    p: int
    m: float
    seed: Any
    t: float
    lam: float
    activation: str
    centred: bool
    m_used: float
    exact_m_infinity: bool
    test_exact: bool
    test_method: str
    test_stderr: float
    n_test: int

    @property
    def gap(self) -> float:
        """Generalisation gap ``test - train`` (large and positive under memorisation)."""
        return self.test - self.train

    @property
    def bayes_optimum(self) -> float:
        """Best possible test error ``a^2 = exp(-2t)`` (true score ``-x_t``)."""
        return math.exp(-2.0 * self.t)

    @property
    def excess_test(self) -> float:
        """Test error above the Bayes optimum, ``test - exp(-2t)`` (``>= 0`` up to MC error)."""
        return self.test - self.bayes_optimum

    @property
    def psi_n(self) -> float:
        """Realised ratio ``n / d``."""
        return self.n / self.d

    @property
    def psi_p(self) -> float:
        """Realised ratio ``p / d``."""
        return self.p / self.d


# --------------------------------------------------------------------------- activations


def _closed_form_family(act: activations.Activation) -> str | None:
    """The name of the named activation ``act`` is (``activations.sin``, ``cos``, ``relu`` or ``erf``), or ``None``.

    Recognition is by the :class:`pencils.activations.Activation` object, not by its name: another
    activation, even one called ``"relu"`` or equal to ``sin``, takes the generic route.
    """
    named = {activations.sin: "sin", activations.cos: "cos", activations.relu: "relu", activations.erf: "erf"}
    return named.get(act)


# --------------------------------------------------------------------------- moments


def _trig_moments(kind: str, means: np.ndarray, sigma: np.ndarray, scale: float):
    r"""Exact Gaussian moments of ``sin`` or ``cos`` features.

    For ``u_i ~ N(means[:, i], scale * sigma)`` (``sigma = W W^T / d``), returns
    ``U = (1/n) sum_i E[rho(u_i) rho(u_i)^T]``, ``mean = (1/n) sum_i E rho(u_i)`` and
    ``slope = (1/n) sum_i E rho'(u_i)``.  With ``e_k = exp(-scale sigma_kk / 2)`` and
    ``c = cos(means)``, ``s = sin(means)`` (``p x n``),

    * ``sin``: ``U = e e^T * [ (c c^T/n) * sinh(scale sigma) + (s s^T/n) * cosh(scale sigma) ]``,
    * ``cos``: ``U = e e^T * [ (c c^T/n) * cosh(scale sigma) + (s s^T/n) * sinh(scale sigma) ]``

    (``*`` entrywise), from ``E sin u sin u' = (cos(m - m') e^{-Var(u-u')/2} -
    cos(m + m') e^{-Var(u+u')/2}) / 2`` and its ``cos`` analogue.
    """
    n = means.shape[1]
    e = np.exp(-0.5 * scale * np.diag(sigma))
    outer = np.outer(e, e)
    c, s = np.cos(means), np.sin(means)
    cc, ss = (c @ c.T) / n, (s @ s.T) / n
    grow = np.exp(scale * sigma)  # cosh = (grow + 1/grow)/2, sinh = (grow - 1/grow)/2
    if kind == "sin":  # cc sinh + ss cosh
        second = 0.5 * outer * ((ss + cc) * grow + (ss - cc) / grow)
        mean = e * s.mean(axis=1)
        slope = e * c.mean(axis=1)
    else:  # cc cosh + ss sinh
        second = 0.5 * outer * ((cc + ss) * grow + (cc - ss) / grow)
        mean = e * c.mean(axis=1)
        slope = -e * s.mean(axis=1)
    return second, mean, slope


def _centre(second: np.ndarray, mean: np.ndarray, mu0: float) -> np.ndarray:
    """``E[(rho - mu0)(rho - mu0)^T]`` from ``E[rho rho^T]`` and ``E rho``."""
    if mu0 == 0.0:
        return second
    return second - mu0 * (mean[:, None] + mean[None, :]) + mu0 * mu0


def _shift(act: Callable, mu0: float) -> Callable[[np.ndarray], np.ndarray]:
    if mu0 == 0.0:
        return lambda x: np.asarray(act(x), dtype=float)
    return lambda x: np.asarray(act(x), dtype=float) - mu0


def training_moments(
    W: np.ndarray, X: np.ndarray, t: float, activation: Any = "sin", centred: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    r"""Exact ``m = inf`` training moments ``U``, ``V`` (``rho = sin`` or ``cos`` only).

    .. math::

       U = \frac1n \sum_i E_z[\rho\rho^T], \quad V = \frac1n \sum_i E_z[z \rho^T],
       \quad \rho = \rho(W (a x_i + \sqrt h z)/\sqrt d) - \mu_0 [\text{centred}].

    ``u = W(a x_i + sqrt(h) z)/sqrt(d)`` is Gaussian with mean ``a W x_i / sqrt(d)`` and
    covariance ``h W W^T / d``; ``U`` uses the closed forms of :func:`_trig_moments`
    and ``V`` Stein's lemma, ``E[z rho(u_k)] = sqrt(h) (w_k / sqrt(d)) E rho'(u_k)``.

    Parameters
    ----------
    W : ndarray, shape (p, d)
    X : ndarray, shape (d, n)
        Training data, one point per column.
    t : float
    activation : str, callable or Activation
        Must be :data:`pencils.activations.sin` or ``cos`` (or their names).
    centred : bool

    Returns
    -------
    U : ndarray, shape (p, p)
    V : ndarray, shape (d, p)
    """
    act = activations.get(activation)
    kind = _closed_form_family(act)
    if kind not in _CLOSED_FORM_TRAIN_INF:
        raise ParameterError(
            "exact m = inf training moments need rho = sin or cos; "
            "use a finite m (or simulate(..., large_m=...)) for other activations"
        )
    p, d = W.shape
    a, h = math.exp(-t), -math.expm1(-2.0 * t)
    sigma = (W @ W.T) / d
    means = a * (W @ X) / math.sqrt(d)
    second, mean, slope = _trig_moments(kind, means, sigma, h)
    mu0 = float(act.mu0()) if centred else 0.0
    U = _centre(second, mean, mu0)
    V = (math.sqrt(h / d) * W.T) * slope[None, :]
    return U, V


@functools.lru_cache(maxsize=None)
def _split_gauss_rule() -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights (including the N(0, 1) density) for ``E f(g)``, split at 0."""
    half_nodes, half_weights = quadrature.gauss_legendre(_QUAD_NODES, 0.0, _QUAD_CUTOFF)
    half_weights = half_weights * np.exp(-0.5 * half_nodes**2) / math.sqrt(2.0 * math.pi)
    return np.concatenate([-half_nodes, half_nodes]), np.concatenate([half_weights, half_weights])


def _hermite_coefficients(rho: Callable, scales: np.ndarray, degree: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalised Hermite coefficients and second moments of ``rho(s_k g)``.

    Returns ``c[k, j] = E[rho(s_k g) he_j(g)]`` for ``j = 0..degree`` with
    ``he_j = He_j / sqrt(j!)`` (orthonormal under ``N(0, 1)``), so that
    ``rho(s_k g) = sum_j c_kj he_j(g)`` in ``L^2``, and ``E rho(s_k g)^2``.
    """
    nodes, weights = _split_gauss_rule()
    values = rho(np.outer(scales, nodes)) * weights  # (p, nodes)
    second = (values * rho(np.outer(scales, nodes))).sum(axis=1)
    coefficients = np.empty((scales.size, degree + 1))
    for j, he in enumerate(quadrature.hermite_functions(nodes, degree + 1)):
        coefficients[:, j] = values @ he
    return coefficients, second


def _mehler_matrix(coefficients: np.ndarray, corr: np.ndarray) -> np.ndarray:
    """``sum_j c_kj c_lj r_kl^j`` (Mehler's formula for ``E rho(u_k) rho(u_l)``, ``k != l``) for ``c = coefficients``."""
    products = (np.outer(column, column) for column in coefficients.T)
    return quadrature.mehler_series(products, corr)


def _correlations(W: np.ndarray, gram: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Standard deviations ``sigma_k`` and correlations ``r_kl`` of ``u = W x_t / sqrt(d)`` from its
    covariance ``gram`` (default ``W W^T / d``: ``sigma_k = |w_k| / sqrt(d)``, ``r_kl = w_k . w_l / (|w_k| |w_l|)``)."""
    d = W.shape[1]
    gram = (W @ W.T) / d if gram is None else gram
    scale = np.sqrt(np.diag(gram))
    corr = np.clip(gram / np.outer(scale, scale), -1.0, 1.0)
    return scale, corr


def _series_test_error(rho: Callable, B: np.ndarray, W: np.ndarray, h: float,
                       gram: np.ndarray | None = None) -> float | None:
    r"""Test error from the Hermite (Mehler) series of ``U_test``, or ``None``.

    With ``u_k = sigma_k g_k`` (``g_k`` standard normal, ``corr(g_k, g_l) = r_kl``) and
    ``c_kj`` from :func:`_hermite_coefficients`, Mehler's formula gives, for ``k != l``,
    ``E rho(u_k) rho(u_l) = sum_j c_kj c_lj r_kl^j``; the diagonal is ``E rho(u_k)^2``;
    and ``V_test = sqrt(h) W^T diag(c_k1 / sigma_k) / sqrt(d)`` exactly.  Truncating
    after degree ``J`` changes ``U_kl`` by at most ``sqrt(T_k T_l) |r_kl|^{J+1}`` (Cauchy-
    Schwarz; ``T_k = E rho(u_k)^2 - sum_{j <= J} c_kj^2`` the tail energy), so the test
    error by at most ``(1/d) sum_{k != l} |(B^T B)_kl| sqrt(T_k T_l) |r_kl|^{J+1}``.  The
    smallest ``J <= _SERIES_MAX_DEGREE`` making this ``<= _SERIES_TOLERANCE`` is used;
    ``None`` if there is none (small ``d``, where some ``|r_kl|`` are close to 1).
    ``gram``: the covariance of ``u = W x_t / sqrt(d)`` if not ``W W^T / d`` (anisotropic data).
    """
    p, d = W.shape
    scale, corr = _correlations(W, gram)
    coefficients, second = _hermite_coefficients(rho, scale, _SERIES_MAX_DEGREE)
    energy = np.cumsum(coefficients**2, axis=1)  # sum_{j <= J} c_kj^2
    # tail energies, with a rounding allowance so the bound stays an upper bound
    tails = np.maximum(second[:, None] - energy, 0.0) + 1e-15 * (second[:, None] + energy)
    gram_B = np.abs(B.T @ B)
    np.fill_diagonal(gram_B, 0.0)
    abs_corr = np.abs(corr)
    weighted = gram_B * abs_corr  # |(B^T B)_kl| |r_kl|^{J+1}, updated in place
    degree = None
    for J in range(_SERIES_MAX_DEGREE + 1):
        root = np.sqrt(tails[:, J])
        if float(root @ weighted @ root) / d <= _SERIES_TOLERANCE:
            degree = J
            break
        weighted *= abs_corr
    if degree is None:
        return None
    U = _mehler_matrix(coefficients[:, : degree + 1], corr)
    np.fill_diagonal(U, second)
    V = (math.sqrt(h / d) * W.T) * (coefficients[:, 1] / scale)[None, :]
    return _quadratic_error(B, U, V)


def fresh_moments(
    W: np.ndarray, t: float, activation: Any = "sin", centred: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    r"""Exact test moments ``U_test = E[rho rho^T]``, ``V_test = E[z rho^T]``.

    At test time ``x_t = a x_0 + sqrt(h) z ~ N(0, I_d)``, so ``u = W x_t / sqrt(d)`` is
    centred Gaussian with covariance ``Sigma = W W^T / d`` and ``E[z | x_t] = sqrt(h) x_t``;
    by Stein, ``V_test = sqrt(h) W^T diag(E rho'(u_k)) / sqrt(d)``.  Closed forms of
    ``U_test`` (``sigma_k^2 = Sigma_kk``, ``r_kl = Sigma_kl / (sigma_k sigma_l)``):

    * ``sin``: ``e_k e_l sinh(Sigma_kl)``, ``cos``: ``e_k e_l cosh(Sigma_kl)``,
      ``e_k = exp(-sigma_k^2/2)``;
    * ``relu``: ``sigma_k sigma_l c(r_kl)`` with ReLU's kernel
      ``c(r) = (sqrt(1 - r^2) + r (pi - arccos r)) / (2 pi)`` (:meth:`pencils.activations.Activation.kernel`),
      ``E rho(u_k) = sigma_k mu0`` and ``E rho'(u_k) = mu1``;
    * ``erf``: ``(2/pi) arcsin(2 Sigma_kl / sqrt((1 + 2 Sigma_kk)(1 + 2 Sigma_ll)))``;

    centring by ``mu0`` uses ``E rho(u_k)`` (which differs from ``mu0`` at finite ``d``
    because ``sigma_k != 1``).

    Parameters
    ----------
    W : ndarray, shape (p, d)
    t : float
    activation : str, callable or Activation
        Must be one of :data:`pencils.activations.sin`, ``cos``, ``relu``, ``erf`` (or their names).
    centred : bool

    Returns
    -------
    U_test : ndarray, shape (p, p)
    V_test : ndarray, shape (d, p)
    """
    act = activations.get(activation)
    kind = _closed_form_family(act)
    if kind not in _CLOSED_FORM_TEST:
        raise ParameterError(
            "closed-form test moments exist for sin, cos, relu and erf only; "
            "simulate() handles other activations by a Hermite series (or Monte Carlo)"
        )
    return _closed_fresh_moments(kind, act, W, t, centred)


def _closed_fresh_moments(kind: str, act: Any, W: np.ndarray, t: float, centred: bool,
                          gram: np.ndarray | None = None):
    """:func:`fresh_moments`; ``gram`` is the covariance of ``u = W x_t / sqrt(d)`` if not ``W W^T / d``."""
    p, d = W.shape
    h = -math.expm1(-2.0 * t)
    sigma = (W @ W.T) / d if gram is None else gram
    var = np.diag(sigma).copy()
    if kind in ("sin", "cos"):
        second, mean, slope = _trig_moments(kind, np.zeros((p, 1)), sigma, 1.0)
    elif kind == "relu":  # positively homogeneous: E relu(s g) relu(s' g') = s s' c(r)
        sd = np.sqrt(var)
        outer = np.outer(sd, sd)
        r = np.clip(sigma / outer, -1.0, 1.0)
        np.fill_diagonal(r, 1.0)
        second = outer * activations.relu.kernel(r)
        mean = sd * activations.relu.mu0()
        slope = np.full(p, activations.relu.mu1())
    else:  # erf
        q = 1.0 + 2.0 * var
        arg = np.clip(2.0 * sigma / np.sqrt(np.outer(q, q)), -1.0, 1.0)
        second = (2.0 / math.pi) * np.arcsin(arg)
        mean = np.zeros(p)
        slope = (2.0 / math.sqrt(math.pi)) / np.sqrt(q)
    mu0 = float(act.mu0()) if centred else 0.0
    U = _centre(second, mean, mu0)
    V = (math.sqrt(h / d) * W.T) * slope[None, :]
    return U, V


# --------------------------------------------------------------------------- linear algebra


def _ridge(C: np.ndarray, G: np.ndarray, lam: float) -> np.ndarray:
    """``B = C (G + lam I)^{-1}`` by a symmetric (Cholesky) solve; min-norm if ``lam = 0``."""
    import scipy.linalg  # imported when needed: scipy costs a fresh process 0.3 s

    A = G + lam * np.eye(G.shape[0])
    try:
        factor = scipy.linalg.cho_factor(A, lower=True, check_finite=False)
        return scipy.linalg.cho_solve(factor, C.T, check_finite=False).T
    except np.linalg.LinAlgError:
        if lam > 0.0:
            return scipy.linalg.solve(A, C.T, assume_a="sym", check_finite=False).T
        # lam = 0 with a singular feature covariance (p > nm): the ridgeless limit
        # lim_{lam -> 0} C (G + lam)^{-1} = C G^+ (rows of C lie in the range of G).
        return np.linalg.lstsq(A, C.T, rcond=None)[0].T


def _quadratic_error(B: np.ndarray, U: np.ndarray, V: np.ndarray) -> float:
    """``1 + (1/d) [tr(B U B^T) - 2 tr(B V^T)]`` (``E ||z||^2 / d = 1`` exactly)."""
    d = B.shape[0]
    return 1.0 + (float(np.sum((B @ U) * B)) - 2.0 * float(np.sum(B * V))) / d


# --------------------------------------------------------------------------- training


def fit_finite_m(
    W: np.ndarray, X: np.ndarray, t: float, m: int, lam: float, rho: Callable[[np.ndarray], np.ndarray],
    rng: np.random.Generator, offset: np.ndarray | None = None,
) -> tuple[np.ndarray, float]:
    r"""Train the random-features score on the DSM loss with ``m`` noises per data point.

    Draws the noises ``Z`` (``d x nm``) from ``rng`` as one ``(m, d, n)`` array (``[j, :, i]``
    is ``z_ij``), forms the features ``F = rho(W (a X 1^T + sqrt(h) Z) / sqrt(d))``
    (``p x nm``) and returns the minimiser ``B`` of the DSM loss (``sqrt(h) s(x) =
    -B rho(W x / sqrt(d))``) and the train error, in whichever of the two equal forms

    .. math::

       B = \frac{Z F^T}{nm}\Big(\frac{F F^T}{nm} + \lambda I_p\Big)^{-1}
         = Z \Big(\frac{F^T F}{nm} + \lambda I_{nm}\Big)^{-1}\frac{F^T}{nm}

    is cheaper: the *primal* ``p x p`` system for ``p <= nm`` (``F F^T``, ``Z F^T`` and
    ``||Z||^2`` accumulated in blocks of draws, ``train = (1/d)[||Z||^2/(nm) -
    tr(B C^T) - lam ||B||^2]`` with ``C = Z F^T/(nm)``), the *dual* ``nm x nm`` system
    for ``p > nm`` (``F^T F`` accumulated in blocks of features; the residual is
    ``Z - B F = lam Z (F^T F/(nm) + lam)^{-1}``, so ``train = lam^2 ||Z G^{-1}||^2/(nmd)``
    without cancellation).  Cost ``O(p nm min(p, nm))`` either way; ``lam = 0`` gives
    the ridgeless (min-norm) limit in both.

    Parameters
    ----------
    W : ndarray, shape (p, d)
        Random features.
    X : ndarray, shape (d, n)
        Training data, one point per column.
    t : float
        Diffusion time: ``a = exp(-t)``, ``h = 1 - exp(-2t)``.
    m : int
        Noise draws per data point.
    lam : float
        Ridge on ``F F^T / (nm)``.
    rho : callable
        Activation, applied entrywise.
    rng : numpy.random.Generator
        Source of the noises.
    offset : ndarray, shape (p,), optional
        Feature offsets ``b``: the features become ``rho(W x / sqrt(d) + b)`` (``None``:
        no offsets, the model of this module).

    Returns
    -------
    B : ndarray, shape (d, p)
    train : float
        ``||Z - B F||^2 / (nmd)``.
    """
    p, d = W.shape
    n = X.shape[1]
    a, h = math.exp(-t), -math.expm1(-2.0 * t)
    signal = a * (W @ X) / math.sqrt(d)  # (p, n): the part of W x_ij / sqrt(d) shared by all j
    if offset is not None:
        signal += np.asarray(offset, dtype=float)[:, None]
    if p > n * m:
        return _fit_dual(W, signal, h, m, lam, rho, rng)
    return _fit_primal(W, signal, h, m, lam, rho, rng)


def _features(W: np.ndarray, noise: np.ndarray, signal: np.ndarray, rho: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``rho(W noise + signal 1^T)`` for noise columns laid out as (draw, data point).

    ``noise`` is ``(d, k n)`` (column ``j n + i``: draw ``j`` of point ``i``) and ``signal``
    ``(rows, n)``; the signal is broadcast over the ``k`` draws in place (no tiled copy).
    """
    rows, n = signal.shape
    preactivation = (W @ noise).reshape(rows, -1, n)
    preactivation += signal[:, None, :]
    return rho(preactivation.reshape(rows, -1))


def _fit_primal(W, signal, h, m, lam, rho, rng):
    """``p <= nm``: accumulate ``F F^T``, ``Z F^T``, ``||Z||^2`` in blocks of draws."""
    p, d = W.shape
    n = signal.shape[1]
    sqd = math.sqrt(d)
    G = np.zeros((p, p))
    C = np.zeros((d, p))
    zz = 0.0
    per_block = max(1, _BLOCK_ENTRIES // (max(p, d) * n))
    done = 0
    while done < m:
        k = min(per_block, m - done)
        # Noise stream laid out as (draw j, coordinate, data point): the first j draws
        # are the same for every m and every block size.
        Z = rng.standard_normal((k, d, n)).transpose(1, 0, 2).reshape(d, k * n)
        F = _features(W, (math.sqrt(h) / sqd) * Z, signal, rho)
        G += F @ F.T
        C += Z @ F.T
        zz += float(np.einsum("ij,ij->", Z, Z))
        done += k
    N = n * m
    G /= N
    G = 0.5 * (G + G.T)
    C /= N
    B = _ridge(C, G, lam)
    # ||Z - B F||^2/(nm) = zz/(nm) - 2 tr(B C^T) + tr(B G B^T) and B G = C - lam B:
    train = (zz / N - float(np.sum(B * C)) - lam * float(np.sum(B * B))) / d
    return B, train


def _fit_dual(W, signal, h, m, lam, rho, rng):
    """``p > nm``: the ``nm x nm`` Gram matrix ``F^T F``, accumulated in blocks of features."""
    p, d = W.shape
    n = signal.shape[1]
    N = n * m
    Z = rng.standard_normal((m, d, n)).transpose(1, 0, 2).reshape(d, N)  # the primal's stream
    noise = (math.sqrt(h) / math.sqrt(d)) * Z
    rows = max(1, _BLOCK_ENTRIES // N)
    blocks = [slice(start, min(start + rows, p)) for start in range(0, p, rows)]
    stored = [] if p * N <= _STORED_ENTRIES else None  # the features, kept for B if small enough
    gram = np.zeros((N, N))
    for block in blocks:
        F = _features(W[block], noise, signal[block], rho)
        gram += F.T @ F
        if stored is not None:
            stored.append(F)
    gram /= N
    gram = 0.5 * (gram + gram.T)
    Y = _ridge(Z, gram, lam)  # Z (F^T F/(nm) + lam)^{-1}, shape (d, nm)
    B = np.empty((d, p))
    for index, block in enumerate(blocks):  # B = Y F^T / (nm), the features stored or computed again
        F = stored[index] if stored is not None else _features(W[block], noise, signal[block], rho)
        B[:, block] = (Y @ F.T) / N
    train = lam * lam * float(np.sum(Y * Y)) / (N * d)
    return B, train


def _test_monte_carlo(rng, rho, B, W, h, n_test):
    r"""Test error by Monte Carlo, with the low-degree Hermite part of ``rho`` done exactly.

    Writes ``rho(u_k) = L_k + N_k`` with ``L_k = sum_{j <= J} c_kj he_j(g_k)``
    (``J = _CONTROL_DEGREE``, ``g_k = u_k / sigma_k``).  By Mehler's formula
    ``E[L L^T] = sum_j (c_j c_j^T) * r^j`` (entrywise power) and, ``x`` being linear in
    the ``g``'s, ``E[x L^T] = W^T diag(c_1 / sigma) / sqrt(d)``: both exact.  Only the
    per-sample correction ``q = ||B rho||^2 - ||B L||^2 - 2 sqrt(h) x^T B (rho - L)`` is
    averaged.  Unbiased whatever the quadrature accuracy (``L`` is a control variate).
    """
    p, d = W.shape
    sqd = math.sqrt(d)
    scale, corr = _correlations(W)
    c, _ = _hermite_coefficients(rho, scale, _CONTROL_DEGREE)
    exact_second = _mehler_matrix(c, corr)
    exact_cross = (math.sqrt(h) / sqd) * W.T * (c[:, 1] / scale)[None, :]
    base = _quadratic_error(B, exact_second, exact_cross)
    block = max(1, _BLOCK_ENTRIES // (4 * max(p, d)))
    q = np.empty(n_test)
    done = 0
    while done < n_test:
        k = min(block, n_test - done)
        x = rng.standard_normal((d, k))
        u = (W @ x) / sqd
        g = u / scale[:, None]
        hermite = quadrature.hermite_functions(g, _CONTROL_DEGREE + 1)
        control = sum(c[:, j, None] * he for j, he in enumerate(hermite))
        BL = B @ control
        BN = B @ (rho(u) - control)
        q[done : done + k] = np.einsum("ij,ij->j", BN, 2.0 * BL + BN - 2.0 * math.sqrt(h) * x)
        done += k
    test = base + float(q.mean()) / d
    stderr = float(q.std(ddof=1)) / (d * math.sqrt(n_test))
    return test, stderr


# --------------------------------------------------------------------------- main entry


def simulate(
    d: int,
    psi_n: float,
    psi_p: float,
    t: float,
    lam: float,
    m: float,
    activation: Any = "relu",
    seed: Any = 0,
    n_test: int | None = None,
    centred: bool = False,
    large_m: int | None = None,
    covariance: Any = None,
) -> SimulationResult:
    r"""Train the random-features score on the DSM loss at finite ``d``; return its errors.

    With ``n = round(psi_n d)``, ``p = round(psi_p d)``, ``a = e^{-t}``,
    ``h = 1 - e^{-2t}``, data ``X`` (``d x n``) and features ``W`` (``p x d``) with
    i.i.d. ``N(0, 1)`` entries, and ``rho`` the activation (minus ``mu0 = E rho(g)`` if
    ``centred``):

    * **finite m** (:func:`fit_finite_m`): ``m`` noises per data point,
      ``F = rho(W(a X 1^T + sqrt(h) Z)/sqrt(d))`` (``p x nm``),
      ``B = (Z F^T/(nm)) (F F^T/(nm) + lam I_p)^{-1}`` and ``train = ||Z - BF||^2/(nmd)``,
      computed in the primal form for ``p <= nm`` (``F F^T`` and ``Z F^T`` accumulated in
      blocks of draws, never an ``nm x nm`` matrix; ``train = (1/d)[||Z||^2/(nm) -
      tr(B C^T) - lam ||B||^2]``, ``C = Z F^T/(nm)``) and in the equal dual form
      ``B = Z (F^T F/(nm) + lam I_{nm})^{-1} F^T/(nm)`` for ``p > nm`` (cheaper, and its
      train error ``lam^2 ||Z (F^T F/(nm) + lam)^{-1}||^2/(nmd)`` has no cancellation);
      Cholesky solves, the ridgeless min-norm solution if ``lam = 0``;
    * **m = inf** (``rho = sin`` or ``cos``): ``B = V (U + lam I)^{-1}`` with the exact
      ``U = (1/n) sum_i E_z[rho rho^T]``, ``V = (1/n) sum_i E_z[z rho^T]``
      (:func:`training_moments`), and ``train = 1 + (1/d)[tr(B U B^T) - 2 tr(B V^T)]``.
      For other activations ``m = inf`` raises unless ``large_m`` is given, in which
      case ``m = large_m`` is simulated and the result says so
      (``exact_m_infinity = False``, ``m_used = large_m``).

    The test error is ``test = 1 + (1/d)[tr(B U_test B^T) - 2 tr(B V_test^T)]`` with
    ``U_test = E[rho rho^T]``, ``V_test = E[z rho^T]`` at a fresh ``x_t ~ N(0, I)``:

    * ``"closed form"`` for ``sin``, ``cos``, ``relu``, ``erf`` (:func:`fresh_moments`);
    * ``"hermite series"`` for any other activation: with ``u_k = sigma_k g_k``
      (``sigma_k = |w_k|/sqrt(d)``, ``corr(g_k, g_l) = r_kl``) and the normalised Hermite
      coefficients ``c_kj = E[rho(sigma_k g) He_j(g)]/sqrt(j!)``, Mehler's formula gives
      ``U_kl = sum_j c_kj c_lj r_kl^j`` (``k != l``), ``U_kk = E rho(u_k)^2`` and
      ``V_test = sqrt(h) W^T diag(c_k1/sigma_k)/sqrt(d)`` (``E[z | x_t] = sqrt(h) x_t``
      and Stein).  The one-dimensional integrals use Gauss-Legendre rules on
      ``[-13, 0]`` and ``[0, 13]`` (accurate to ~1e-14 for activations smooth except
      at 0), and the series is cut at the first degree whose rigorous truncation
      bound on the test error, ``(1/d) sum_{k != l} |(B^T B)_kl| sqrt(T_k T_l)
      |r_kl|^{J+1}`` (``T_k`` the Hermite tail energy), is ``<= 1e-10``;
    * ``"monte carlo"`` when that needs more than 80 terms (small ``d`` with a
      non-smooth activation, where some ``|r_kl|`` are close to 1): an average over
      ``n_test`` fresh ``x_t`` (default ``max(20000, 20 p)``) of the correction to the
      exactly integrated Hermite part of degree ``<= 2`` (a control variate; unbiased).
      Compared with averaging the residual ``||z - B rho||^2 / d`` over fresh
      ``(x_0, z)``, this removes the fluctuations of ``||z||^2``, of the cross term
      (``V_test`` is exact) and of the low-degree part of the features, so the standard
      error (reported as ``test_stderr``) is several times smaller: ~5e-4 for ``abs``
      at ``d = 10`` against a seed-to-seed spread of order 1e-2 there.

    Parameters
    ----------
    d : int
        Dimension, ``>= 1``.
    psi_n, psi_p : float
        Ratios ``n/d`` and ``p/d`` (``> 0``, and large enough that ``n, p >= 1``).
    t : float
        Diffusion time, ``> 0``.
    lam : float
        Ridge on the empirical feature covariance, ``>= 0``.
    m : int or math.inf
        Noise draws per data point: an integer ``>= 1`` or ``math.inf``.
    activation : str, callable or Activation
        Anything :func:`pencils.activations.get` accepts (default ``"relu"``).
    seed : int, sequence of int or None
        Seeds :class:`numpy.random.SeedSequence`; ``seq.spawn(2)`` gives a training
        stream and a test stream.  The training generator draws ``W`` (shape
        ``(p, d)``), then ``X`` (``(d, n)``), then the noises as one ``(m, d, n)`` array
        (``[j, :, i]`` is ``z_ij``; drawn in blocks of ``j``, which gives the same
        numbers).  So the same seed gives the same ``W`` and ``X`` for every ``m``, and
        the first ``j`` noise draws are shared by every ``m >= j``.
    n_test : int, optional
        Fresh samples of the Monte Carlo test estimate (ignored when the test error is
        exact).  Default ``max(20000, 20 p)``.
    centred : bool
        Subtract ``mu0 = activation.mu0()`` from the features.  The large-``d`` limits
        do not depend on it; finite-``d`` values differ by finite-size fluctuations.
    large_m : int, optional
        Only for ``m = inf`` with an activation other than ``sin``/``cos``: simulate
        this finite ``m`` instead and label the result as such.  Ignored otherwise.
    covariance : optional
        Data ``x_i ~ N(0, Sigma)`` instead of ``N(0, I_d)``, ``Sigma`` diagonal with the
        eigenvalues of :func:`pencils.simulation.covariance.profile_values` for this profile
        (as in :func:`pencils.models.dsm.errors`).  The fresh ``x_t`` has covariance
        ``a^2 Sigma + h I``, so ``U_test`` uses ``u = W x_t / sqrt(d)`` of covariance
        ``W (a^2 Sigma + h I) W^T / d``; ``V_test = sqrt(h) W^T diag(E rho'(u_k)) / sqrt(d)`` is
        unchanged (``Cov(z, u) = sqrt(h) W^T / sqrt(d)``).  The Monte Carlo test path assumes
        ``Sigma = I`` and is refused.

    Returns
    -------
    SimulationResult
        ``test``, ``train``, ``gap = test - train``, ``bayes_optimum = exp(-2t)`` and
        the metadata needed to interpret and reproduce the run.

    Raises
    ------
    ValueError
        (:class:`pencils.errors.ParameterError`) on invalid inputs, or ``m = inf`` for an
        activation without closed form and no ``large_m``.

    Examples
    --------
    >>> import math
    >>> from pencils.simulation.dsm import simulate
    >>> r = simulate(d=20, psi_n=2, psi_p=2, t=0.5, lam=0.01, m=4, activation="relu")
    >>> (r.n, r.p, r.m)
    (40, 40, 4.0)
    >>> r.test >= r.bayes_optimum and r.test_exact
    True
    >>> r_inf = simulate(d=20, psi_n=2, psi_p=2, t=0.5, lam=0.01, m=math.inf, activation="sin")
    >>> r_inf.exact_m_infinity, r_inf.gap > 0
    (True, True)
    """
    # ---- validation
    d = check_positive_int(d, "d")
    psi_n = check_number(psi_n, "psi_n", hint=" Pass the ratio n/d, e.g. psi_n=2.")
    psi_p = check_number(psi_p, "psi_p", hint=" Pass the ratio p/d, e.g. psi_p=2.")
    t = check_number(t, "t", hint=" The diffusion time must be positive, e.g. t=0.5.")
    lam = check_number(lam, "lam", strict=False, hint=" The ridge must be non-negative, e.g. lam=1e-3.")
    n, p = round(psi_n * d), round(psi_p * d)
    if n < 1:
        raise ParameterError(f"psi_n * d = {psi_n * d} rounds to n = 0 data points; increase psi_n or d")
    if p < 1:
        raise ParameterError(f"psi_p * d = {psi_p * d} rounds to p = 0 features; increase psi_p or d")
    if isinstance(m, bool) or not isinstance(m, numbers.Real) or math.isnan(float(m)):
        raise ParameterError(f"m must be an integer >= 1 or math.inf, got {m!r}")
    if math.isinf(float(m)):
        if float(m) < 0:
            raise ParameterError("m must be an integer >= 1 or math.inf (+inf), got -inf")
        m_requested = math.inf
    else:
        m_requested = float(check_positive_int(m, "m"))
    if n_test is not None:
        n_test = check_positive_int(n_test, "n_test")
        if n_test < 2:
            raise ParameterError("n_test must be >= 2 to estimate a standard error; pass e.g. n_test=20000")
    if large_m is not None:
        large_m = check_positive_int(large_m, "large_m")
    centred = bool(centred)

    act = activations.get(activation)
    kind = _closed_form_family(act)
    name = act.name

    if math.isinf(m_requested) and kind not in _CLOSED_FORM_TRAIN_INF:
        if large_m is None:
            raise ParameterError(
                f"exact m = inf needs rho = sin or cos (got {name!r}); pass a finite m, "
                "or large_m=<int> to simulate that finite m as a labelled stand-in for m = inf"
            )
        m_used = float(large_m)
    else:
        m_used = m_requested

    # ---- draws
    seed_sequence = np.random.SeedSequence(seed)
    train_stream, test_stream = seed_sequence.spawn(2)
    rng = np.random.default_rng(train_stream)
    W = rng.standard_normal((p, d))
    X = rng.standard_normal((d, n))
    h = -math.expm1(-2.0 * t)
    gram = None
    if covariance is not None:
        variances = profile_values(d, *as_profile(covariance, "covariance"))
        X *= np.sqrt(variances)[:, None]
        gram = (W * (math.exp(-2.0 * t) * variances + h)) @ W.T / d  # covariance of W x_t / sqrt(d)
    mu0 = float(act.mu0()) if centred else 0.0
    rho = _shift(act, mu0)

    # ---- training
    if math.isinf(m_used):
        U, V = training_moments(W, X, t, act, centred)
        B = _ridge(V, U, lam)
        train = _quadratic_error(B, U, V)
    else:
        B, train = fit_finite_m(W, X, t, int(m_used), lam, rho, rng)

    # ---- test
    stderr, used_test = 0.0, 0
    if kind in _CLOSED_FORM_TEST:
        U_test, V_test = _closed_fresh_moments(kind, act, W, t, centred, gram)
        test, method = _quadratic_error(B, U_test, V_test), "closed form"
    else:
        test, method = _series_test_error(rho, B, W, h, gram), "hermite series"
        if test is None and covariance is not None:
            raise ParameterError(f"the test error of {name!r} at d={d} needs Monte Carlo, which assumes "
                                 "isotropic data; use a larger d or relu, erf, sin or cos with a covariance")
        if test is None:
            used_test = n_test if n_test is not None else max(20000, 20 * p)
            test, stderr = _test_monte_carlo(np.random.default_rng(test_stream), rho, B, W, h, used_test)
            method = "monte carlo"

    return SimulationResult(
        test=float(test),
        train=float(train),
        d=d,
        n=n,
        p=p,
        m=m_requested,
        seed=seed if seed is not None else seed_sequence.entropy,
        t=t,
        lam=lam,
        activation=name,
        centred=centred,
        m_used=m_used,
        exact_m_infinity=math.isinf(m_used),
        test_exact=method != "monte carlo",
        test_method=method,
        test_stderr=stderr,
        n_test=used_test,
    )
