"""Time the memorisation experiment and print its fractions (Markdown rows; nothing asserted).

    python benchmarks/memorization.py [--m 1,4] [--p 60,600,6000] [--n 300] [--downsample 2] [--bias 0] [--threads 1]
                                      [--times 25] [--sampler sde]
    python benchmarks/memorization.py --diagnose [--p 6000] [--m 4] [--downsample 1] [--bias 1] [--times 12] [--sampler ode]

Each row: data, n, d, p, m, bias, copy fraction (binomial standard error), generalisation
proxy, wall and CPU seconds of one ``memorization`` call with its defaults (``lam = 1e-6``,
200 samples, the final denoising step) and ``--times`` log-spaced times from ``1e-3`` to 3
(default 25) with ``--sampler`` (default ``sde``; the command line's defaults are
``--downsample 4 --bias 1 --times 12 --sampler ode``).  ``p`` must be at
least ``d`` (16 for the default 4 x 4 digits, 64 for ``--downsample 1``).  On a shared machine the wall time is
inflated by the load; the CPU time is the better measure of the cost.

``--diagnose`` asks where a trained score falls short of memorising, for each ``(p, m)``:

* at each time, the DSM train error (per coordinate; 1 for a zero score) and the relative
  squared error ``E|s - s*|^2 / E|s*|^2`` on fresh noisy training
  points ``a x_i + sqrt(h) z`` of the trained score ``s`` against the exact score ``s*`` of the
  training set (``EmpiricalScore``), beside the same error of the score of the Gaussian with the
  data's mean and covariance (what a generalising linear score can do);
* the copy fraction when the trained score is replaced by ``s*`` at the times ``t >= tau``
  (trained below): from which time on the trained score loses the copies.  (The converse,
  ``s*`` below ``tau``, copies every time: at small ``t``, ``s*`` pulls any point onto its
  nearest training point.)
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from threadpoolctl import threadpool_limits

from pencils.datasets import digits
from pencils.simulation.diffusion import (
    COPY_THRESHOLD, EmpiricalScore, memorization, nearest_distances, reverse_process, scores,
)

#: The switching times of the diagnosis.
SWITCHES = (0.01, 0.05, 0.2, 0.7)


def _gaussian_score(train, t):
    """Score of N(a mu, a^2 Sigma + h I), with mu and Sigma the mean and covariance of ``train``."""
    a, h = np.exp(-t), -np.expm1(-2 * t)
    mean, covariance = train.mean(axis=0), np.cov(train.T, bias=True)
    precision = np.linalg.inv(a * a * covariance + h * np.eye(train.shape[1]))
    return lambda x: -(x - a * mean) @ precision


def _copies(pairs, data, sampler):
    rng = np.random.default_rng(1)
    samples = reverse_process(pairs, rng.standard_normal((200, data.shape[1])), sampler, rng, denoise=True)
    distances, _ = nearest_distances(samples, data, 2)
    return float(np.mean(distances[:, 0] / distances[:, 1] < COPY_THRESHOLD))


def diagnose(data, p, m, bias, times, sampler):
    """Print the per-time score errors and the copy fractions with the exact score switched in."""
    train = data.train
    trained = list(scores(train, p, times, m, 1e-6, "relu", 0, bias))  # decreasing times
    exact = {score.t: EmpiricalScore(score.t, train) for score in trained}
    rng = np.random.default_rng(5)
    print(f"\n{data.n} digits {data.shape[0]}x{data.shape[1]}, p = {p}, m = {m}, bias = {bias:g}")
    print("| t | DSM train error | trained score against s* | Gaussian score against s* |")
    print("|---|---|---|---|")
    for score in trained[::-1]:
        a, h = np.exp(-score.t), -np.expm1(-2 * score.t)
        points = a * train[rng.integers(0, data.n, 400)] + np.sqrt(h) * rng.standard_normal((400, data.d))
        target = exact[score.t](points)
        norm = np.sum(target**2)
        errors = [np.sum((candidate(points) - target) ** 2) / norm for candidate in (score, _gaussian_score(train, score.t))]
        print(f"| {score.t:.3g} | {score.train:.2g} | {errors[0]:.3f} | {errors[1]:.3f} |")
    print("| tau | copies, exact score at t >= tau and trained below |")
    print("|---|---|")
    for tau in SWITCHES:
        pairs = [(score.t, exact[score.t] if score.t >= tau else score) for score in trained]
        print(f"| {tau:g} | {_copies(pairs, train, sampler):.3f} |", flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--p", default="60,600,6000")
    parser.add_argument("--m", default="1")
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--downsample", type=int, default=2)
    parser.add_argument("--bias", type=float, default=0.0, help="feature offsets' standard deviation (default 0)")
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (default 1)")
    parser.add_argument("--times", type=int, default=25, help="number of log-spaced times from 1e-3 to 3 (default 25)")
    parser.add_argument("--sampler", choices=("sde", "ode"), default="sde", help="reverse sampler (default sde)")
    parser.add_argument("--diagnose", action="store_true", help="score errors per time and copies with the exact score")
    args = parser.parse_args(argv)
    data = digits(n=args.n, downsample=args.downsample)
    if args.diagnose:
        with threadpool_limits(limits=args.threads, user_api="blas"):
            for p in (int(v) for v in args.p.split(",")):
                for m in (int(v) for v in args.m.split(",")):
                    diagnose(data, p, m, args.bias, np.geomspace(1e-3, 3.0, args.times), args.sampler)
        return
    print("| data | n | d | p | m | bias | times | sampler | fraction | generalisation | wall (s) | CPU (s) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    with threadpool_limits(limits=args.threads, user_api="blas"):
        for p in (int(v) for v in args.p.split(",")):
            for m in (int(v) for v in args.m.split(",")):
                wall, cpu = time.perf_counter(), time.process_time()
                result = memorization(data, p, m=m, bias=args.bias, times=np.geomspace(1e-3, 3.0, args.times),
                                      sampler=args.sampler)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                print(f"| digits {data.shape[0]}x{data.shape[1]} | {data.n} | {data.d} | {p} | {m} | {args.bias:g} | {args.times} | "
                      f"{args.sampler} | {result.fraction:.3f} ({result.stderr:.3f}) | {result.generalisation:.3f} | {wall:.1f} | {cpu:.1f} |",
                      flush=True)


if __name__ == "__main__":
    main()
