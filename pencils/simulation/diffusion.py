r"""Diffusion with a DSM-trained random-features score on real data: sampling and memorisation.

(Why one module of some 610 lines: training the scores over the time grid, the reverse
process and the copy criterion are the three steps of one experiment, with its settings and
result objects.)

Conventions are those of :mod:`pencils.simulation.dsm`: the Ornstein-Uhlenbeck
forward process ``x_t = a x_0 + sqrt(h) z`` with ``a = exp(-t)``, ``h = 1 - exp(-2t)``
(i.e. ``dx = -x dt + sqrt(2) dB``, whose stationary law is ``N(0, I_d)``), and at each
time ``t`` of a grid the score

.. math::  s_t(x) = -\frac{1}{\sqrt h} B_t\, \rho(W x / \sqrt d),

(or ``rho(W x / sqrt(d) + b)`` with random offsets ``b``, see below),
``W`` (``p x d``, ``N(0, 1)``, shared by all times) fixed and ``B_t`` the minimiser of the
DSM loss with ``m`` noises per data point and ridge ``lam`` on ``F F^T/(nm)``
(:func:`pencils.simulation.dsm.fit_finite_m`, primal or dual, whichever is cheaper).
The data are any array ``(n, d)``, one point per row, on the scale of ``N(0, I_d)``
(see :mod:`pencils.datasets`).

Sampling runs the reverse process from ``t_max`` (``x ~ N(0, I_d)``) down to ``t_min``
over the grid ``t_0 < ... < t_K``, with ``delta_k = t_k - t_{k-1}``:

* reverse SDE ``dx = [x + 2 s_t(x)] d(-t) + sqrt(2) dB``, Euler-Maruyama:
  ``x <- x + delta_k (x + 2 s_{t_k}(x)) + sqrt(2 delta_k) xi``;
* probability-flow ODE ``dx/d(-t) = x + s_t(x)``, Heun: with ``f_k(x) = x + s_{t_k}(x)``,
  ``x' = x + delta_k f_k(x)``, ``x <- x + delta_k (f_k(x) + f_{k-1}(x'))/2``.

The samples are the states at ``t_min``, in :func:`memorization` after the usual final
denoising step (Tweedie's formula ``E[x_0 | x_t] = (x_t + h s_t(x_t)) / a`` at
``t = t_min``; Song et al. 2021, "Score-based generative modeling through stochastic
differential equations", ICLR).

Memorisation (Yoon et al. 2023; Gu et al. 2023): a sample ``x`` is a *copy* of the
training set when its nearest training point is closer than a third of the distance to
the second nearest, ``||x - x_(1)|| < ||x - x_(2)|| / 3``.  The memorisation fraction is
the fraction of samples with that property.

* T. Yoon, J. Y. Choi, S. Kwon, E. K. Ryu, "Diffusion probabilistic models generalize
  when they fail to memorize", ICML 2023 Workshop on Structured Probabilistic Inference
  & Generative Modeling.
* X. Gu, C. Du, T. Pang, C. Li, M. Lin, Y. Wang, "On memorization in diffusion models",
  arXiv:2310.02664 (2023).

Generalisation proxy: for each sample, the distance to the nearest held-out point
(data not trained on, as many as training points) over the distance to the nearest
training point; the median of the first over the median of the second is about 1 for
samples that are new draws from the data distribution (300 further digits measured
against 300 training and 300 held-out digits give 0.99), and grows without bound for
copies.

What to expect on digits, and why copies are rare.  The memorising score near a training
point ``x_i`` at small ``t`` is ``-(x - a x_i)/h``: a value and a ``d x d`` Jacobian per
point.  A ReLU random-features score is piecewise linear, ``B rho(W x_i/sqrt d) + B D_i W
(x - x_i)/sqrt d`` near ``x_i`` (``D_i`` the active features), so fitting it there takes
``n (d + 1)`` linear conditions per output coordinate, where the large-``d`` theory
(Gaussian equivalence, which treats the per-point Jacobians as noise) counts ``n``; and the
Jacobians are only seen through the ``m`` noise draws per point.  Measured with
``p = 6000`` and ``n = 300`` 8 x 8 digits (``n (d + 1) = 19500 > p``): on fresh noise
around the training points at ``t = 1e-3`` the trained score's squared error relative to
the exact score of the training set is 1.85 for ``m = 1`` (the interpolant of one noise
per point is worse than a zero score) and 0.42 for ``m = 4``; no sample is a copy for
``m = 1, 4`` (0.005 for ``m = 16`` on a 13-time grid, 5 minutes per run).  Neither the
sampler (SDE, ODE, DDPM ancestral steps) nor the ``m = inf`` limit (``rho = sin``, exact
Gaussian expectations over the noise, 0 copies) changes that, nor more features at small
``m`` (``p = 60000``, ``m = 4``: 0 copies; ``p = 20000``, ``m = 16``: 0.015, 3 minutes).

Where the copies are lost (``benchmarks/memorization.py --diagnose``, 8 x 8 digits,
``p = 6000``, ``m = 4``, ``bias = 1``, 12 times, ODE): the sample's training image is chosen
at the intermediate times where the noise radius ``sqrt(h d)`` is comparable to the distance
between neighbouring digits (4.6): with the exact score :class:`EmpiricalScore` at the times
``t >= 0.05`` (``sqrt(h d) >= 2.5``) and the trained one below, 0.92 of the samples are
copies; from ``t >= 0.2`` on, 0.14; trained throughout, 0.  At those times the trained score
fits its training noises (DSM train error below ``1e-9``: the theory's memorisation,
``p > nm``) but is no closer to the exact score of the training set than the score of a
Gaussian with the data's mean and covariance (relative squared error 0.36 against 0.40 at
``t = 0.16``, 0.32 against 0.27 at ``t = 0.34``; with ``p = 60000``, 0.29 and 0.26).  Fitting
the training noises, which the large-``d`` theory measures, does not make the score learn
the empirical mixture's score, which copying needs.

ReLU features are moreover
positively homogeneous, ``s(c x) = c s(x)``: the score cannot vanish at ``a x_i`` and pull
towards it along the ray of ``x_i``, and the samples shrink towards the origin; random
offsets ``b`` (``bias``) remove that, at the price of leaving the theory's model.  Copies
appear when ``p >> n (d + 1)`` and ``m`` approaches ``d``: 4 x 4 digits
(``downsample=2``, ``d = 16``), ``n = 20``, ``p = 6000``, or the 300 digits at 2 x 2 pixels
(``downsample=4``, ``d = 4``, ``n (d + 1) = 1500``), ``p = 6000``, ``m = 4``; see
:func:`memorization` for the measured fractions, while the exact score of the empirical
distribution (the limit ``p, m -> inf``, ``lam -> 0``) copies every time.

Cost.  Training dominates: per time, the ``nm x nm`` (dual, ``p > nm``) or ``p x p``
(primal) Gram matrix, ``O(p nm min(p, nm))``, and its Cholesky factor,
``O(min(p, nm)^3)``; the sampler costs ``O(samples p d)`` per step.  The number of times
is therefore the lever, and the samplers differ there: with 300 2 x 2 digits, ``p = 6000``,
``m = 4``, ``bias = 1`` (seeds 0-2, mean +- standard error), the SDE copies 0.143 +- 0.009,
0.217 +- 0.015, 0.323 +- 0.020, 0.370 +- 0.030, 0.375 +- 0.015 of the samples on 8, 12,
25, 50, 100 log-spaced times from ``1e-3`` to 3 (Euler-Maruyama is first order), the ODE
(Heun, second order) 0.327 +- 0.018 on 12 and 0.348 +- 0.013 on 25.  On a loaded machine
a multithreaded BLAS can cost more CPU than it saves (a 4800 x 4800 Cholesky factor took
12 s on two busy threads, about 1 s on one): limit the threads
(``threadpoolctl.threadpool_limits(1)``) when the cores are shared.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from .. import activations
from ..errors import ParameterError
from ..validation import check_number, check_positive_int
from .dsm import fit_finite_m

__all__ = [
    "Score", "EmpiricalScore", "Memorization", "memorization", "MemorizationSweep", "memorization_sweep", "scores",
    "reverse_process", "nearest_distances",
    "DEFAULT_TIMES", "COPY_THRESHOLD",
]

#: Default time grid: 25 points log-spaced from 1e-3 to 3 (see :func:`memorization`).
DEFAULT_TIMES = np.geomspace(1e-3, 3.0, 25)
#: A sample is a copy when (nearest distance) / (second-nearest distance) is below this.
COPY_THRESHOLD = 1.0 / 3.0
# Samples whose distances to all data points are held at once.
_DISTANCE_ENTRIES = 1 << 22


@dataclass(frozen=True, eq=False)
class Score:
    """The DSM-trained random-features score at one time ``t``.

    Calling it on rows ``x`` (shape ``(k, d)``) returns
    ``s_t(x) = -B rho(W x / sqrt(d) + b) / sqrt(h)`` row by row (``b = 0`` without offsets).

    Attributes
    ----------
    t : float
    W : ndarray, shape (p, d)
        Random features (shared by all times).
    B : ndarray, shape (d, p)
        Trained readout: ``sqrt(h) s_t = -B rho(W x / sqrt(d))``.
    train : float
        DSM train error ``||Z - B F||^2 / (nmd)`` at this time.
    activation : Activation
    offset : ndarray, shape (p,), or None
        Feature offsets ``b`` (shared by all times); ``None``: none.
    """

    t: float
    W: np.ndarray
    B: np.ndarray
    train: float
    activation: Any
    offset: np.ndarray | None = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        d = self.W.shape[1]
        h = -math.expm1(-2.0 * self.t)
        preactivation = x @ self.W.T / math.sqrt(d)
        if self.offset is not None:
            preactivation += self.offset
        return -(self.activation(preactivation) @ self.B.T) / math.sqrt(h)


@dataclass(frozen=True, eq=False)
class EmpiricalScore:
    r"""The exact score at time ``t`` of the training set's empirical distribution: the memorising limit.

    The noised empirical distribution is the mixture ``(1/n) sum_i N(a x_i, h I_d)``, whose score is

    .. math::  s_t(x) = \frac{a \sum_i w_i(x)\, x_i - x}{h}, \qquad
               w_i(x) = \frac{e^{-|x - a x_i|^2 / (2h)}}{\sum_j e^{-|x - a x_j|^2 / (2h)}},

    the minimiser of the DSM loss over all functions when the loss averages over every noise
    (``m -> inf``).  A random-features score reaches it only in the limit ``p, m -> inf``,
    ``lam -> 0``; the reverse process driven by it ends on training points (copies), which
    makes it the reference for how far a trained score is from memorising
    (``benchmarks/memorization.py --diagnose``).

    Attributes
    ----------
    t : float
    data : ndarray, shape (n, d)
        Training points, one per row.

    Examples
    --------
    One training point: the score is ``-(x - a x_1)/h``, zero at ``a x_1``.

    >>> import math
    >>> import numpy as np
    >>> from pencils.simulation.diffusion import EmpiricalScore
    >>> score = EmpiricalScore(0.5, np.array([[1.0, 2.0]]))
    >>> bool(np.allclose(score(np.array([[math.exp(-0.5), 2 * math.exp(-0.5)]])), 0.0))
    True
    """

    t: float
    data: np.ndarray

    def __post_init__(self):
        object.__setattr__(self, "data", _rows(self.data, "data"))
        object.__setattr__(self, "t", check_number(self.t, "t", hint=" Pass a positive diffusion time."))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        from scipy.spatial.distance import cdist
        from scipy.special import softmax

        x = _rows(x, "x")
        if x.shape[1] != self.data.shape[1]:
            raise ParameterError(
                f"x has dimension {x.shape[1]}, the data {self.data.shape[1]}; pass rows of the data's dimension"
            )
        a, h = math.exp(-self.t), -math.expm1(-2.0 * self.t)
        centres = a * self.data
        result = np.empty_like(x)
        block = max(1, _DISTANCE_ENTRIES // centres.shape[0])
        for start in range(0, x.shape[0], block):
            rows = x[start : start + block]
            weights = softmax(-cdist(rows, centres, "sqeuclidean") / (2.0 * h), axis=1)
            result[start : start + block] = (weights @ centres - rows) / h
        return result


def _times(times: Any) -> np.ndarray:
    grid = np.asarray(times, dtype=float)
    if grid.ndim != 1 or grid.size < 2 or not np.all(np.isfinite(grid)) or grid[0] <= 0.0 or np.any(np.diff(grid) <= 0):
        raise ParameterError(
            f"times must be an increasing 1-D array of at least 2 positive times, got {times!r}; "
            "pass e.g. numpy.geomspace(1e-3, 3, 25)"
        )
    return grid


def _rows(data: Any, name: str) -> np.ndarray:
    array = np.asarray(data, dtype=float)
    if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] < 1:
        raise ParameterError(f"{name} must be a 2-D array (points, dimension), got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ParameterError(f"{name} contains NaN or infinite values; clean or drop those rows")
    return array


def scores(
    data: np.ndarray, p: int, times: Any = DEFAULT_TIMES, m: int = 1, lam: float = 1e-6,
    activation: Any = "relu", seed: Any = 0, bias: float = 0.0,
) -> Iterator[Score]:
    r"""Train the score at each time of ``times``; yield them from the *last* time to the first.

    The generator draws ``W`` (``p x d``) first, then the offsets ``b`` (if ``bias > 0``),
    then, time after time in decreasing
    order, the ``m`` noises per data point of that time; each score is trained only when
    asked for, so a sampler that consumes them in order holds two at a time.

    Parameters
    ----------
    data : ndarray, shape (n, d)
        Training points, one per row.
    p : int
        Number of random features.
    times : array_like
        Increasing positive times.
    m : int
        Noise draws per data point at each time.
    lam : float
        Ridge on the empirical feature covariance, ``>= 0``.
    activation : str, callable or Activation
    seed : int, sequence of int, SeedSequence or None
        Seeds :class:`numpy.random.SeedSequence`.
    bias : float
        Standard deviation of the feature offsets ``b ~ N(0, bias^2 I_p)`` (shared by all
        times): features ``rho(W x / sqrt(d) + b)``.  ``0`` (the default): no offsets, the
        model of :mod:`pencils.models.dsm`.

    Examples
    --------
    >>> import numpy as np
    >>> from pencils.simulation.diffusion import scores
    >>> data = np.random.default_rng(0).standard_normal((50, 4))
    >>> learned = list(scores(data, p=20, times=[0.1, 1.0], m=2, lam=1e-3))
    >>> [score.t for score in learned], learned[0](data[:3]).shape
    ([1.0, 0.1], (3, 4))
    """
    data = _rows(data, "data")
    grid = _times(times)
    p = check_positive_int(p, "p")
    m = check_positive_int(m, "m")
    lam = check_number(lam, "lam", strict=False, hint=" Pass e.g. lam=1e-6.")
    bias = check_number(bias, "bias", strict=False, hint=" Pass the offsets' standard deviation, e.g. bias=1 (0: none).")
    act = activations.get(activation)
    rng = np.random.default_rng(seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed))
    W = rng.standard_normal((p, data.shape[1]))
    offset = bias * rng.standard_normal(p) if bias > 0 else None
    columns = np.ascontiguousarray(data.T)
    for t in grid[::-1]:
        B, train = fit_finite_m(W, columns, float(t), m, lam, act, rng, offset)
        yield Score(float(t), W, B, float(train), act, offset)


def reverse_process(
    scores: Iterable[tuple[float, Callable[[np.ndarray], np.ndarray]]], start: np.ndarray,
    sampler: str = "sde", rng: Any = None, denoise: bool = False,
) -> np.ndarray:
    r"""Run the reverse Ornstein-Uhlenbeck process through ``(t, score)`` pairs of decreasing ``t``.

    ``start`` (shape ``(k, d)``) is the state at the first time; the result the state at
    the last.  ``sampler="sde"``: Euler-Maruyama on the reverse SDE (noise from ``rng``);
    ``sampler="ode"``: Heun on the probability-flow ODE (deterministic).  See the module
    docstring for the steps.  ``denoise=True`` returns instead the denoised state
    ``(x + h s(x)) / a`` at the last time (Tweedie's formula for ``E[x_0 | x_t]``).

    Examples
    --------
    The exact score of ``N(0, I)`` data is ``-x`` at every time; the ODE then leaves
    ``N(0, I)`` invariant, and its Heun steps are exact for this linear drift (zero):

    >>> import numpy as np
    >>> from pencils.simulation.diffusion import reverse_process
    >>> x = np.random.default_rng(1).standard_normal((3, 2))
    >>> pairs = [(t, lambda y: -y) for t in (2.0, 1.0, 0.1)]
    >>> bool(np.allclose(reverse_process(pairs, x, sampler="ode"), x))
    True
    """
    if sampler not in ("sde", "ode"):
        raise ParameterError(f"sampler must be 'sde' (Euler-Maruyama) or 'ode' (Heun), got {sampler!r}")
    rng = np.random.default_rng(rng)
    x = np.array(start, dtype=float)
    iterator = iter(scores)
    try:
        t, score = next(iterator)
    except StopIteration:
        raise ParameterError("reverse_process needs at least one (t, score) pair") from None
    drift = x + score(x)
    for t_next, score_next in iterator:
        delta = t - t_next
        if not delta > 0:
            raise ParameterError(f"times must decrease along the reverse process, got {t} then {t_next}")
        if sampler == "sde":
            x = x + delta * (2.0 * drift - x) + math.sqrt(2.0 * delta) * rng.standard_normal(x.shape)
            drift = x + score_next(x)
        else:
            predicted = x + delta * drift
            x = x + 0.5 * delta * (drift + predicted + score_next(predicted))
            drift = x + score_next(x)
        t, score = t_next, score_next
    if denoise:
        h = -math.expm1(-2.0 * t)
        x = (x + h * score(x)) / math.exp(-t)
    return x


def nearest_distances(points: np.ndarray, reference: np.ndarray, count: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean distances from each row of ``points`` to its ``count`` nearest rows of ``reference``.

    Returns ``(distances, indices)``, both ``(k, count)``, nearest first (computed in
    blocks of rows, exactly: :func:`scipy.spatial.distance.cdist`).

    Examples
    --------
    >>> import numpy as np
    >>> from pencils.simulation.diffusion import nearest_distances
    >>> distances, indices = nearest_distances(np.array([[0.0, 0.1]]), np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 1.0]]))
    >>> distances.round(3).tolist(), indices.tolist()
    ([[0.1, 0.9]], [[0, 2]])
    """
    from scipy.spatial.distance import cdist

    if reference.shape[0] < count:
        raise ParameterError(f"need at least {count} reference points, got {reference.shape[0]}")
    block = max(1, _DISTANCE_ENTRIES // reference.shape[0])
    distances = np.empty((points.shape[0], count))
    indices = np.empty((points.shape[0], count), dtype=int)
    for start in range(0, points.shape[0], block):
        rows = cdist(points[start : start + block], reference)
        nearest = np.argpartition(rows, count - 1, axis=1)[:, :count] if reference.shape[0] > count else \
            np.broadcast_to(np.arange(count), (rows.shape[0], count))
        values = np.take_along_axis(rows, nearest, axis=1)
        order = np.argsort(values, axis=1)
        distances[start : start + block] = np.take_along_axis(values, order, axis=1)
        indices[start : start + block] = np.take_along_axis(nearest, order, axis=1)
    return distances, indices


@dataclass(frozen=True, eq=False)
class Memorization:
    """Samples of the DSM-trained diffusion and how many of them copy training points.

    Attributes
    ----------
    fraction : float
        Fraction of samples that are copies: ``ratios < 1/3``.
    stderr : float
        Its binomial standard error ``sqrt(f (1 - f) / samples)`` (sampling noise only,
        for these trained scores; the spread over seeds of ``W`` and the noises is separate).
    samples : ndarray, shape (samples, d)
        Generated points (at ``t_min``; denoised unless ``denoise=False``).
    ratios : ndarray, shape (samples,)
        Distance to the nearest training point over distance to the second nearest.
    nearest : ndarray of int, shape (samples,)
        Index of the nearest training point.
    train_distance : ndarray, shape (samples,)
        Distance to the nearest training point.
    held_out_distance : ndarray or None
        Distance to the nearest held-out point (``None`` without held-out data).
    generalisation : float or None
        ``median(held_out_distance) / median(train_distance)``: about 1 for new samples,
        large for copies (``None`` without held-out data).
    train_errors : ndarray
        DSM train error at each time of ``settings["times"]`` (increasing times).
    settings : dict
        ``n``, ``d``, ``p``, ``m``, ``times``, ``lam``, ``activation``, ``samples``,
        ``sampler``, ``seed``, ``n_held_out``, ``bias``, ``denoise``.
    """

    fraction: float
    stderr: float
    samples: np.ndarray
    ratios: np.ndarray
    nearest: np.ndarray
    train_distance: np.ndarray
    held_out_distance: np.ndarray | None
    generalisation: float | None
    train_errors: np.ndarray
    settings: dict = field(default_factory=dict)


def memorization(
    data: Any, p: int, m: int = 1, times: Any = DEFAULT_TIMES, lam: float = 1e-6, activation: Any = "relu",
    samples: int = 200, seed: Any = 0, sampler: str = "sde", held_out: Any = None, bias: float = 0.0,
    denoise: bool = True,
) -> Memorization:
    r"""Train the random-features score by DSM on ``data``, sample, and measure memorisation.

    At each time of ``times`` the score is trained (:func:`scores`); ``samples`` points
    start from ``N(0, I_d)`` at ``t_max`` and follow the reverse process
    (:func:`reverse_process`) down to ``t_min``; each is compared with the training set
    (copy criterion of Yoon et al. 2023 and Gu et al. 2023: nearest training point closer
    than a third of the second nearest; see the module docstring) and, if given, with the
    held-out set.

    Defaults, and why:

    * ``times``: 25 log-spaced times from ``1e-3`` to ``3``.  At ``t = 3`` the noisy
      data are ``N(0, I)`` up to ``a^2 = e^{-6} = 2.5e-3`` of the data covariance, so
      starting there from ``N(0, I)`` is accurate; at ``t = 1e-3`` the remaining noise,
      ``sqrt(h d)``, is 0.36 for ``d = 64``, against nearest-neighbour distances of ~4.6
      between normalised 8 x 8 digits, so a copy is recognisable; each step divides the
      time by 1.40 (``log`` spacing matches the ``1/h`` growth of the score as
      ``t -> 0``).  With the exact score of the training set (the empirical mixture),
      this grid and the SDE turn 100% of the samples into copies (measured: 200 of 200).
    * ``sampler="sde"``: the stochastic sampler, which corrects part of the score's
      errors by its noise; the ODE gives the same (zero) fractions at ``n = 300``.
    * ``lam = 1e-6``: small against the feature covariance (entries ~0.1-0.5) so that
      ``p > nm`` interpolates the DSM targets, the memorisation regime of the theory;
      the dual form keeps this well conditioned.
    * ``denoise=True``: the final denoising step, which removes the noise left at
      ``t_min`` and, with the learned score, raises the fraction of copies where there
      are copies at all (see below).
    * ``bias = 0``: the features of the theory, ``rho(W x / sqrt(d))``.
    * ``m = 1``, ``samples = 200``: fast (the cost is ``O(p nm min(p, nm))`` per time).
    * ``p`` must be at least ``d``: below, the score has rank ``< d`` and the reverse
      process expands the directions it does not see by ``e^{t_max - t_min}``.

    What copies take (module docstring): ``p >> n (d + 1)`` and ``m`` near ``d``.  With
    ``n = 300`` digits (8 x 8, ``p = 6000``, ``m = 1, 4``; 4 x 4, ``p = 60, 600, 6000``,
    ``m = 1``) no sample is a copy and the generalisation proxy is 0.99-1.09; past the count,
    4 x 4, ``p = 6000 > n (d + 1) = 5100``, ``m = 16``, ``bias = 1``, seed 0: 0.125 +- 0.023
    (binomial), proxy 1.40, but 139 s of CPU.  Measured on
    ``n = 20`` 4 x 4 digits (``n (d + 1) = 340``), seeds 0-2, mean +- standard error over
    seeds (generalisation proxy in brackets):

    ======  ====  ===============================  ===============================
    p       m     ``bias = 0``                     ``bias = 1``
    ======  ====  ===============================  ===============================
    6000    1     0 (1.04)                         0 (1.08)
    6000    4     0.048 +- 0.007 (1.43)            0.090 +- 0.013 (1.72)
    6000    16    0.190 +- 0.013 (1.48)            0.507 +- 0.038 (4.77)
    600     16    0.150 +- 0.013 (1.48)            0.510 +- 0.033 (4.45)
    60      16    0.010 +- 0.003 (1.27)            0.018 +- 0.006 (1.30)
    16      16    0 (1.01)                         0 (1.01)
    ======  ====  ===============================  ===============================

    Without the final denoising step, ``p = 6000``, ``m = 16``, ``bias = 1``: 0.383 +- 0.027.

    The 300 digits at 2 x 2 pixels (``digits(downsample=4)``, ``d = 4``,
    ``n (d + 1) = 1500``), ``bias = 1``, 12 times from ``1e-3`` to 3 and
    ``sampler="ode"`` (the defaults of ``pencils memorization`` and of
    ``examples/memorization.py``), seeds 0-2, fraction (proxy), CPU seconds per run on
    one BLAS thread:

    ======  ====  ============================  ======
    p       m     fraction (proxy)              CPU
    ======  ====  ============================  ======
    60      4     0.013 +- 0.003 (1.00)         0.05
    600     4     0.087 +- 0.009 (1.35)         0.3
    6000    1     0.025 +- 0.005 (1.19)         0.4
    6000    4     0.327 +- 0.018 (2.26)         3.7
    6000    8     0.513 +- 0.015 (3.64)         12.6
    ======  ====  ============================  ======

    (300 held-out digits are "copies" of the training digits at the rate 0.017 by the same
    criterion at this resolution; without offsets, ``p = 6000``, ``m = 4``: 0.060 +- 0.009.)
    At 4 x 4 pixels the same settings with ``m = 16`` give 0.070 +- 0.018 (seed 0, 58 s of
    CPU), the SDE on 25 times 0.125 +- 0.023 (116 s).
    At the interpolation threshold ``p = nm`` the ridgeless fit is ill-conditioned and the
    copies vanish (``bias = 1``, ``m = 16``, ``p = 300``: 0.038 +- 0.003, proxy 1.00;
    ``p = 1000``: 0.527 +- 0.032).

    Parameters
    ----------
    data : ndarray (n, d) or :class:`pencils.datasets.Dataset`
        Training points (for a ``Dataset``: its ``train``, and its ``held_out`` unless
        ``held_out`` is given).  At least 2 points.
    p : int
        Number of random features.
    m : int
        Noise draws per data point at each time.
    times : array_like
        Increasing positive times of the grid.
    lam : float
        Ridge, ``>= 0``.
    activation : str, callable or Activation
    samples : int
        Number of generated points.
    seed : int, sequence of int or None
        Seeds :class:`numpy.random.SeedSequence`: one stream trains (``W`` and noises),
        one samples.
    sampler : {"sde", "ode"}
    held_out : ndarray (k, d), optional
        Points not trained on, for the generalisation proxy; only the first ``n`` are
        used (nearest-neighbour distances shrink with the size of the set, so it is
        matched to the training set).
    bias : float
        Standard deviation of random feature offsets (:func:`scores`); ``0``: none.
    denoise : bool
        Return the denoised states ``(x + h s(x)) / a`` at ``t_min`` (Tweedie), the usual
        last step of diffusion samplers, instead of the noisy states.

    Returns
    -------
    Memorization

    Examples
    --------
    >>> import numpy as np
    >>> from pencils.simulation.diffusion import memorization
    >>> rng = np.random.default_rng(0)
    >>> data, other = rng.standard_normal((40, 4)), rng.standard_normal((40, 4))
    >>> result = memorization(data, p=30, times=np.geomspace(0.01, 3, 10), samples=50, held_out=other)
    >>> result.samples.shape, result.ratios.shape, 0.0 <= result.fraction <= 1.0
    ((50, 4), (50,), True)
    """
    if held_out is None and hasattr(data, "held_out"):
        held_out = data.held_out
    train = _rows(getattr(data, "train", data), "data")
    if train.shape[0] < 2:
        raise ParameterError("data needs at least 2 points (the copy criterion compares the two nearest)")
    samples = check_positive_int(samples, "samples")
    grid = _times(times)
    p = check_positive_int(p, "p")
    if p < train.shape[1]:
        raise ParameterError(
            f"p = {p} is below the dimension d = {train.shape[1]}: the learned score has rank at most p < d, and the "
            f"reverse process expands the d - p directions it does not see by e^(t_max - t_min), so the samples end "
            "far from all data; pass p >= d (or downsample the images)"
        )
    other = None
    if held_out is not None:
        other = _rows(held_out, "held_out")[: train.shape[0]]
        if other.shape[1] != train.shape[1]:
            raise ParameterError(f"held_out has dimension {other.shape[1]}, data {train.shape[1]}; pass matching rows")
    train_stream, sample_stream = np.random.SeedSequence(seed).spawn(2)
    sample_rng = np.random.default_rng(sample_stream)
    start = sample_rng.standard_normal((samples, train.shape[1]))
    train_errors: list[float] = []  # in the order trained: decreasing times

    def pairs():
        for score in scores(train, p, grid, m, lam, activation, train_stream, bias):
            train_errors.append(score.train)
            yield score.t, score

    generated = reverse_process(pairs(), start, sampler, sample_rng, denoise)
    if not np.all(np.isfinite(generated)):
        raise ParameterError("the reverse process diverged (non-finite samples); use a finer times grid or larger lam")
    distances, indices = nearest_distances(generated, train, 2)
    ratios = distances[:, 0] / np.maximum(distances[:, 1], np.finfo(float).tiny)
    fraction = float(np.mean(ratios < COPY_THRESHOLD))
    held_out_distance = generalisation = None
    if other is not None:
        held_out_distance = nearest_distances(generated, other, 1)[0][:, 0]
        generalisation = float(np.median(held_out_distance) / np.median(distances[:, 0]))
    return Memorization(
        fraction=fraction,
        stderr=math.sqrt(fraction * (1.0 - fraction) / samples),
        samples=generated,
        ratios=ratios,
        nearest=indices[:, 0],
        train_distance=distances[:, 0],
        held_out_distance=held_out_distance,
        generalisation=generalisation,
        train_errors=np.array(train_errors[::-1]),
        settings=dict(
            n=train.shape[0], d=train.shape[1], p=p, m=m, times=grid, lam=lam,
            activation=getattr(activations.get(activation), "name", str(activation)),
            samples=samples, sampler=sampler, seed=seed, n_held_out=0 if other is None else other.shape[0],
            bias=bias, denoise=denoise,
        ),
    )


@dataclass(frozen=True, eq=False)
class MemorizationSweep:
    """Copy fractions over a grid of ``p`` and ``m`` (and seeds).

    Attributes
    ----------
    rows : list of dict
        One per ``(p, m)``, in grid order: ``p``, ``p_over_n``, ``m``, ``seeds``,
        ``fraction`` (mean over seeds), ``stderr`` (standard error of that mean: the
        spread over seeds, or the binomial error for one seed), ``generalisation``
        (mean of the proxy, ``nan`` without held-out data).
    results : dict
        ``(p, m)`` -> the :class:`Memorization` of the first seed (samples and images).
    n : int
        Number of training points.
    """

    rows: list
    results: dict
    n: int

    def to_csv(self) -> str:
        """The rows as CSV text with a header line."""
        names = ["p", "p_over_n", "m", "seeds", "fraction", "stderr", "generalisation"]
        lines = [",".join(names)]
        lines += [",".join(f"{row[name]:.6g}" if isinstance(row[name], float) else str(row[name]) for name in names)
                  for row in self.rows]
        return "\n".join(lines) + "\n"


def memorization_sweep(
    data: Any, p_values: Iterable[int], m_values: Iterable[int], seeds: int = 1, progress: bool | None = None,
    **options: Any,
) -> MemorizationSweep:
    """:func:`memorization` for every ``p`` and ``m`` and seeds ``0..seeds-1``, with a progress bar.

    ``options`` go to :func:`memorization` (``times``, ``lam``, ``samples``, ...).
    ``progress``: a ``tqdm`` bar on stderr (``None``: only when stderr is a terminal).

    Examples
    --------
    >>> import numpy as np
    >>> from pencils.simulation.diffusion import memorization_sweep
    >>> data = np.random.default_rng(0).standard_normal((30, 3))
    >>> sweep = memorization_sweep(data, [10, 60], [1, 2], samples=20, times=np.geomspace(0.01, 3, 8), progress=False)
    >>> sweep.to_csv().splitlines()[0], len(sweep.rows)
    ('p,p_over_n,m,seeds,fraction,stderr,generalisation', 4)
    """
    import sys

    from tqdm import tqdm

    seeds = check_positive_int(seeds, "seeds")
    grid = [(int(p), int(m)) for p in p_values for m in m_values]
    disable = not sys.stderr.isatty() if progress is None else not progress
    bar = tqdm(total=len(grid) * seeds, desc="memorization", unit="run", file=sys.stderr, disable=disable)
    rows, results, n = [], {}, None
    try:
        for p, m in grid:
            runs = []
            for seed in range(seeds):
                bar.set_postfix(p=p, m=m, seed=seed)
                runs.append(memorization(data, p, m=m, seed=seed, **options))
                bar.update()
            n = runs[0].settings["n"]
            fractions = np.array([run.fraction for run in runs])
            proxies = [run.generalisation for run in runs]
            stderr = float(fractions.std(ddof=1) / math.sqrt(seeds)) if seeds > 1 else runs[0].stderr
            rows.append(dict(
                p=p, p_over_n=p / n, m=m, seeds=seeds, fraction=float(fractions.mean()), stderr=stderr,
                generalisation=float(np.mean(proxies)) if None not in proxies else math.nan,
            ))
            results[(p, m)] = runs[0]
    finally:
        bar.close()
    return MemorizationSweep(rows, results, n)
