"""Time the memorisation experiment and print its fractions (Markdown rows; nothing asserted).

    python benchmarks/memorization.py [--m 1,4] [--p 60,600,6000] [--n 300] [--downsample 2] [--bias 0] [--threads 1]
                                      [--times 25] [--sampler sde]

Each row: data, n, d, p, m, bias, copy fraction (binomial standard error), generalisation
proxy, wall and CPU seconds of one ``memorization`` call with its defaults (``lam = 1e-6``,
200 samples, the final denoising step) and ``--times`` log-spaced times from ``1e-3`` to 3
(default 25) with ``--sampler`` (default ``sde``; the command line's defaults are
``--downsample 4 --bias 1 --times 12 --sampler ode``).  ``p`` must be at
least ``d`` (16 for the default 4 x 4 digits, 64 for ``--downsample 1``).  On a shared machine the wall time is
inflated by the load; the CPU time is the better measure of the cost.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from threadpoolctl import threadpool_limits

from pencils.datasets import digits
from pencils.simulation.diffusion import memorization


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
    args = parser.parse_args(argv)
    data = digits(n=args.n, downsample=args.downsample)
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
