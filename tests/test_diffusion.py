"""pencils.simulation.diffusion: sampler, copy criterion and the memorisation experiment.

Independent references:

* the sampler against the exact marginal of the Ornstein-Uhlenbeck process for Gaussian
  data (exact score, covariance ``a^2 Sigma + h I`` at every time);
* the copy criterion and the sampler in the memorising limit: the exact score of the
  empirical distribution of the training set (a Gaussian mixture) turns the samples into
  copies, while held-out images are not copies;
* the DSM-trained score on Gaussian data: its test error at each time of the grid, computed
  in closed form from the trained ``B`` (``fresh_moments``), against the large-d theory
  ``dsm.errors``, extrapolated in ``1/d`` as in ``test_dsm_against_training.py``.

The memorisation measurements on digits are described in the tests; the numbers quoted
were measured with seeds 0-2 (binomial standard error of one fraction over 200 samples:
``sqrt(f (1 - f) / 200)``, at most 0.035).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest

from pencils.datasets import digits
from pencils.errors import ParameterError
from pencils.models import dsm
from pencils.simulation.diffusion import (
    COPY_THRESHOLD, DEFAULT_TIMES, EmpiricalScore, memorization, nearest_distances, reverse_process, scores,
)
from pencils.simulation.dsm import fit_finite_m, fresh_moments

from extrapolation import extrapolate


# ----------------------------------------------------------------------------- the sampler


@pytest.mark.parametrize("sampler", ["sde", "ode"])
def test_sampler_reaches_the_exact_gaussian_marginal(sampler):
    """Data N(0, Sigma), Sigma = diag(4, 1, 0.25): the score at time t is -(a^2 Sigma + h)^{-1} x.
    Started from the exact marginal at t = 3 and run on 400 log-spaced times to t = 1e-3,
    the samples' variances equal a^2 Sigma + h within 4 standard errors of a variance
    estimate (sqrt(2/N) relative, N = 40000) plus the discretisation error: Euler-Maruyama
    on log-spaced steps is first order (relative bias ~ step/t ~ 2%), Heun second order."""
    sigma = np.array([4.0, 1.0, 0.25])
    times = np.geomspace(1e-3, 3.0, 400)

    def marginal(t):
        return math.exp(-2 * t) * sigma - math.expm1(-2 * t)

    pairs = [(t, functools.partial(lambda x, v: -x / v, v=marginal(t))) for t in times[::-1]]
    rng = np.random.default_rng(11)
    count = 40000
    start = rng.standard_normal((count, 3)) * np.sqrt(marginal(times[-1]))
    x = reverse_process(pairs, start, sampler=sampler, rng=rng)
    relative = x.var(axis=0) / marginal(times[0]) - 1.0
    allowance = 4 * math.sqrt(2 / count) + (0.03 if sampler == "sde" else 0.002)
    print(sampler, relative)
    assert np.all(np.abs(relative) < allowance), relative


def test_empirical_score_is_the_gradient_of_the_mixture_log_density():
    """EmpiricalScore against central differences of log p_t(x) = logsumexp_i(-|x - a x_i|^2/(2h))
    (+ const), the log-density of the noised empirical distribution; step 1e-5 on points of
    norm ~2 gives ~1e-9 relative error, hence the 1e-6 tolerance.  Two data points close
    together relative to sqrt(h) and one far away exercise weights strictly between 0 and 1."""
    from scipy.special import logsumexp

    rng = np.random.default_rng(3)
    data = np.array([[0.0, 0.0, 1.0], [0.3, 0.1, 0.9], [-2.0, 1.0, 0.0]])
    t = 0.2
    a, h = math.exp(-t), -math.expm1(-2 * t)

    def log_density(x):
        return logsumexp(-np.sum((x - a * data) ** 2, axis=1) / (2 * h))

    points = rng.standard_normal((6, 3))
    step = 1e-5
    numeric = np.array([[(log_density(x + step * e) - log_density(x - step * e)) / (2 * step) for e in np.eye(3)]
                        for x in points])
    np.testing.assert_allclose(EmpiricalScore(t, data)(points), numeric, rtol=1e-6, atol=1e-8)
    with pytest.raises(ParameterError, match="x has dimension 2, the data 3"):
        EmpiricalScore(t, data)(points[:, :2])
    with pytest.raises(ParameterError, match="t must be > 0"):
        EmpiricalScore(0.0, data)


def test_exact_empirical_score_copies_and_held_out_images_do_not():
    """The memorising limit: the exact score of the training set's empirical distribution.
    With the default grid and the SDE, all samples are copies (measured 200 of 200), whereas
    300 held-out digits are not (0 of 300): the criterion separates the two regimes."""
    data = digits()
    train = data.train
    rng = np.random.default_rng(0)
    pairs = [(t, EmpiricalScore(t, train)) for t in DEFAULT_TIMES[::-1]]
    x = reverse_process(pairs, rng.standard_normal((200, 64)), rng=rng)
    distances, _ = nearest_distances(x, train, 2)
    assert np.mean(distances[:, 0] / distances[:, 1] < COPY_THRESHOLD) >= 0.95
    held, _ = nearest_distances(data.held_out, train, 2)
    assert np.mean(held[:, 0] / held[:, 1] < COPY_THRESHOLD) <= 0.01


def test_denoising_step_returns_the_single_training_point():
    """One training point x*: the exact score is -(x - a x*)/h at every time, so Tweedie's
    denoised state (x + h s(x))/a is x* exactly, wherever the process ends."""
    target = np.array([1.0, -2.0, 0.5])

    def exact(t):
        return functools.partial(lambda x, a, h: -(x - a * target) / h, a=math.exp(-t), h=-math.expm1(-2 * t))

    times = np.geomspace(0.05, 3.0, 12)
    rng = np.random.default_rng(4)
    x = reverse_process([(t, exact(t)) for t in times[::-1]], rng.standard_normal((5, 3)), rng=rng, denoise=True)
    np.testing.assert_allclose(x, np.broadcast_to(target, x.shape), rtol=0, atol=1e-12)


@pytest.mark.parametrize("p", [7, 40])  # primal (p <= nm = 12) and dual (p > nm)
def test_offsets_enter_the_trained_readout_as_in_a_direct_ridge_solve(p):
    """fit_finite_m with feature offsets b against the p x p ridge solution built here from
    the same noises (drawn as (m, d, n) from the same stream): features relu(W x / sqrt(d) + b)."""
    rng = np.random.default_rng(8)
    d, n, m, t, lam = 3, 4, 3, 0.3, 1e-2
    W, X, offset = rng.standard_normal((p, d)), rng.standard_normal((d, n)), rng.standard_normal(p)
    B, _ = fit_finite_m(W, X, t, m, lam, lambda u: np.maximum(u, 0.0), np.random.default_rng(1), offset)
    a, h = math.exp(-t), -math.expm1(-2 * t)
    Z = np.random.default_rng(1).standard_normal((m, d, n)).transpose(1, 0, 2).reshape(d, n * m)
    F = np.maximum(W @ (a * np.tile(X, (1, m)) + math.sqrt(h) * Z) / math.sqrt(d) + offset[:, None], 0.0)
    expected = np.linalg.solve(F @ F.T / (n * m) + lam * np.eye(p), F @ Z.T / (n * m)).T
    np.testing.assert_allclose(B, expected, rtol=1e-9, atol=1e-12)


def test_nearest_distances_match_brute_force():
    rng = np.random.default_rng(2)
    points, reference = rng.standard_normal((30, 5)), rng.standard_normal((40, 5))
    distances, indices = nearest_distances(points, reference, 3)
    full = np.linalg.norm(points[:, None] - reference[None], axis=-1)
    np.testing.assert_allclose(distances, np.sort(full, axis=1)[:, :3], rtol=1e-12)
    np.testing.assert_array_equal(indices, np.argsort(full, axis=1)[:, :3])


# ----------------------------------------------------------------------------- the experiment


def test_few_features_do_not_copy():
    """p = 60 < n = 300 (4 x 4 digits, d = 16 < p so that the score has full rank): no copies
    (0 of 200 for seeds 0-2, SDE and ODE) and the generalisation proxy is ~1 (measured
    0.98-1.05): samples are as far from the training set as from held-out digits."""
    data = digits(downsample=2)
    for seed in range(2):
        result = memorization(data, 60, seed=seed)
        assert result.fraction <= 0.01
        assert 0.9 < result.generalisation < 1.15
        assert result.settings["n"] == 300 and result.settings["n_held_out"] == 300
        assert result.train_errors.shape == DEFAULT_TIMES.shape and np.all(result.train_errors > 0)


def test_copies_need_p_above_the_per_point_count():
    """n = 20 4 x 4 digits (d = 16), m = 16, lam = 1e-6, offsets b ~ N(0, 1), seed 0, 200 samples.
    A piecewise-linear score memorises when it can match a value and a Jacobian at every
    training point, n (d + 1) = 340 conditions: p = 600 copies (measured 0.545; seeds 0-2:
    0.51 +- 0.03) with samples 4.5 times closer to training than to held-out digits, p = 60
    does not (measured 0.03; seeds 0-2: 0.018 +- 0.006, proxy 1.3).  Asserted: above 0.3 and
    below 0.08, i.e. 7 and 4 binomial standard errors (0.035 and 0.012) from the measurements."""
    data = digits(n=20, downsample=2)
    many = memorization(data, 600, m=16, bias=1.0)
    few = memorization(data, 60, m=16, bias=1.0)
    print(many.fraction, many.generalisation, few.fraction, few.generalisation)
    assert many.fraction > 0.3 and many.generalisation > 2.0
    assert few.fraction < 0.08 and few.generalisation < 1.6


def test_three_hundred_digits_copy_with_many_features_and_noises():
    """The 300 bundled digits at 2 x 2 pixels (downsample 4, d = 4, n (d + 1) = 1500), offsets
    b ~ N(0, 1), lam = 1e-6, 12 log-spaced times from 1e-3 to 3, the ODE sampler (the defaults
    of the command line and of examples/memorization.py), 200 samples, seed 0.  Measured,
    seeds 0-2 (mean +- standard error over seeds; proxy in brackets): p = 6000, m = 4:
    0.30, 0.32, 0.36 (0.327 +- 0.018; 2.26); p = 6000, m = 1: 0.035, 0.02, 0.02 (0.025 +-
    0.005; 1.19); p = 60, m = 4: 0.02, 0.01, 0.01 (0.013 +- 0.003; 1.00), where 300 held-out
    digits are copies by the same criterion at the rate 0.017.  Asserted for seed 0: many
    features and m = 4 copy (above 0.2: 3 binomial standard errors, 0.033, below the
    measurement) with samples closer to training than to held-out digits; m = 1 and p = 60
    do not (below 0.08: 3 standard errors above their measurements) and p = 60 generalises
    (proxy within 15% of 1)."""
    data = digits(downsample=4)
    options = dict(bias=1.0, times=np.geomspace(1e-3, 3.0, 12), sampler="ode")
    copies = memorization(data, 6000, m=4, **options)
    one_noise = memorization(data, 6000, m=1, **options)
    few = memorization(data, 60, m=4, **options)
    print(copies.fraction, copies.generalisation, one_noise.fraction, few.fraction, few.generalisation)
    assert copies.fraction > 0.2 and copies.generalisation > 1.6
    assert one_noise.fraction < 0.08
    assert few.fraction < 0.08 and 0.85 < few.generalisation < 1.15


@pytest.mark.slow
@pytest.mark.parametrize("n, downsample, m_values, options, margins", [
    (20, 2, (1, 4, 16), dict(bias=0.0), (0.02, 0.08)),
    (20, 2, (1, 4, 16), dict(bias=1.0), (0.04, 0.25)),
    (300, 4, (1, 4, 8), dict(bias=1.0, times=np.geomspace(1e-3, 3.0, 12), sampler="ode"), (0.2, 0.09)),
], ids=["20-digits-4x4", "20-digits-4x4-offsets", "300-digits-2x2-offsets-ode"])
def test_copies_grow_with_m(n, downsample, m_values, options, margins):
    """p = 6000 >> n (d + 1), lam = 1e-6, 200 samples, seeds 0-2 (the final denoising step on).
    Measured fractions, mean +- standard error over seeds.  n = 20 4 x 4 digits (n (d + 1) =
    340), 25 times, SDE: theory's features (bias 0): m = 1: 0, 0, 0; m = 4: 0.035, 0.06, 0.05
    (0.048 +- 0.007); m = 16: 0.215, 0.185, 0.17 (0.190 +- 0.013).  Offsets b ~ N(0, 1):
    m = 1: 0, 0, 0; m = 4: 0.095, 0.11, 0.065 (0.090 +- 0.013); m = 16: 0.55, 0.43, 0.54
    (0.507 +- 0.038).  n = 300 2 x 2 digits (n (d + 1) = 1500), offsets, 12 times, ODE:
    m = 1: 0.035, 0.02, 0.02 (0.025 +- 0.005); m = 4: 0.30, 0.32, 0.36 (0.327 +- 0.018);
    m = 8: 0.535, 0.52, 0.485 (0.513 +- 0.015).  Asserted: the mean rises between
    consecutive m by the margins, each about 4 standard errors of the difference below the
    measured rise."""
    data = digits(n=n, downsample=downsample)
    means = []
    for m in m_values:
        fractions = [memorization(data, 6000, m=m, seed=seed, **options).fraction for seed in range(3)]
        means.append(float(np.mean(fractions)))
        print(f"n = {n}, bias = {options['bias']}, sampler = {options.get('sampler', 'sde')}, m = {m}: {fractions}")
    assert means[1] - means[0] > margins[0], means
    assert means[2] - means[1] > margins[1], means


def test_bad_arguments():
    data = np.random.default_rng(0).standard_normal((10, 3))
    with pytest.raises(ParameterError, match="times must be an increasing"):
        memorization(data, 5, times=[1.0, 0.5])
    with pytest.raises(ParameterError, match="p must be a positive integer"):
        memorization(data, 0)
    with pytest.raises(ParameterError, match="p = 2 is below the dimension d = 3"):
        memorization(data, 2)
    with pytest.raises(ParameterError, match="bias must be"):
        memorization(data, 5, bias=-1.0)
    with pytest.raises(ParameterError, match="sampler must be"):
        memorization(data, 5, sampler="heun")
    with pytest.raises(ParameterError, match="at least 2 points"):
        memorization(data[:1], 5)
    with pytest.raises(ParameterError, match="NaN"):
        memorization(np.full((4, 2), np.nan), 5)
    with pytest.raises(ParameterError, match="held_out has dimension"):
        memorization(data, 5, held_out=np.zeros((3, 4)))
    with pytest.raises(ParameterError, match="lam must be"):
        list(scores(data, 5, lam=-1.0))


# ----------------------------------------------------------------------------- against the theory

SIZES = (50, 100, 200)
SEEDS = {50: 64, 100: 32, 200: 16}
TIMES = (0.1, 0.5)
POINTS = [  # (psi_n, psi_p, lam, m): p < n (primal), and p > n m (dual)
    (2.0, 1.0, 0.05, 2),
    (0.5, 2.0, 0.01, 2),
]


def _gaussian_test_errors(d, psi_n, psi_p, lam, m, seed):
    """Train the scores on N(0, I_d) data with diffusion.scores; test errors in closed form."""
    n, p = round(psi_n * d), round(psi_p * d)
    data = np.random.default_rng((seed, 1)).standard_normal((n, d))
    errors = {}
    for score in scores(data, p, TIMES, m=m, lam=lam, seed=(seed, 2)):
        U, V = fresh_moments(score.W, score.t, "relu")
        B = score.B
        errors[score.t] = 1.0 + (np.sum((B @ U) * B) - 2.0 * np.sum(B * V)) / d
    return errors


@pytest.mark.parametrize("point", POINTS, ids=lambda point: "psi_n={}-psi_p={}-lam={}-m={}".format(*point))
def test_trained_score_matches_theory_extrapolated_in_one_over_d(point):  # 7 s each on a loaded machine
    """At each time, the test error of the score trained by diffusion.scores on Gaussian data
    (means over SEEDS at d = 50, 100, 200, fitted as limit + slope/d) equals dsm.errors
    within 4 standard errors of the extrapolated limit (the seed spread propagated through
    the fit; see test_dsm_against_training.py for the rationale of 4 sigma)."""
    psi_n, psi_p, lam, m = point
    runs = {d: [_gaussian_test_errors(d, psi_n, psi_p, lam, m, seed) for seed in range(SEEDS[d])] for d in SIZES}
    for t in TIMES:
        values = [np.array([run[t] for run in runs[d]]) for d in SIZES]
        means = [float(v.mean()) for v in values]
        errors = [float(v.std(ddof=1) / math.sqrt(len(v))) for v in values]
        limit, stderr = extrapolate(SIZES, means, errors)
        theory = float(dsm.errors(psi_n, psi_p, t, lam, m=m).test)
        message = (f"t={t}: means {np.round(means, 5)} +- {np.round(errors, 5)}; extrapolated {limit:.5f} +- "
                   f"{stderr:.1e}; theory {theory:.5f} ({(limit - theory) / stderr:+.2f} sigma)")
        print(message)
        assert abs(limit - theory) < 4.0 * stderr, message


# ----------------------------------------------------------------------------- command line


def test_command_line_prints_csv_and_saves_figures(tmp_path, capsys):
    from pencils.cli import main

    plot, images = tmp_path / "fractions.png", tmp_path / "copies.png"
    code = main(["memorization", "--data", "digits", "--n", "20", "--downsample", "2", "--p", "20,60", "--m", "1,2",
                 "--samples", "20", "--times", "0.01:3:8", "--seeds", "2", "--plot", str(plot), "--images", str(images)])
    out = capsys.readouterr()
    assert code == 0, out.err
    lines = out.out.splitlines()
    assert lines[0] == "p,p_over_n,m,seeds,fraction,stderr,generalisation"
    assert [line.split(",")[:4] for line in lines[1:]] == [["20", "1", "1", "2"], ["20", "1", "2", "2"],
                                                          ["60", "3", "1", "2"], ["60", "3", "2", "2"]]
    for path in (plot, images):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("arguments, message", [
    (["--data", "cifar"], "--data must be digits"),
    (["--data", "mnist:/no/such/dir"], "never downloaded"),
    (["--p", "0.5"], "--p must be integers"),
    (["--downsample", "1", "--p", "60", "--n", "20"], "p = 60 is below the dimension d = 64"),
    (["--threads", "0"], "--threads must be at least 1"),
])
def test_command_line_refuses_bad_input(arguments, message, capsys):
    from pencils.cli import main

    assert main(["memorization", *arguments]) == 2
    assert message in capsys.readouterr().err
