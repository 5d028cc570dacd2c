"""The crossover between generalisation and memorisation (``dsm.crossover``), its grid over ``m`` and its figure.

The crossover is the smallest ``psi_p`` where the normalised gap ``(test - train) / exp(-2t)`` reaches 1.
Checks: the float root satisfies the defining equation when the errors are recomputed at 30 digits,
and brackets its sign change there; it lies near ``p = n`` for ``m = inf`` and small ridges (the
crossover of the paper's phase diagram); it moves monotonically with ``m``.
"""

import csv
import io
import math

import mpmath
import numpy as np
import pytest

from pencils.cli import main
from pencils.errors import ConvergenceError, ParameterError
from pencils.models import dsm


def _normalised_gap_minus_one(psi_n, psi_p, t, lam, m=math.inf):
    result = dsm.errors(psi_n, psi_p, t, lam, m=m, dps=30)
    return (result.test - result.train) / result.optimum - 1


@pytest.mark.parametrize("psi_n, t, lam", [(5.0, 0.01, 1e-3), (1.0, 0.1, 1e-2), (20.0, 0.001, 1e-4)])
def test_crossover_solves_its_equation_at_30_digits(psi_n, t, lam):
    """The float brentq root, recomputed at dps=30: residual ~ slope x 1e-13, and a sign change across +-1e-9."""
    root = dsm.crossover(psi_n, t, lam)
    at = lambda factor: _normalised_gap_minus_one(psi_n, mpmath.mpf(root) * factor, t, lam)  # noqa: E731
    assert abs(at(1)) < 1e-11
    assert at(mpmath.mpf(1) - mpmath.mpf("1e-9")) < 0 < at(mpmath.mpf(1) + mpmath.mpf("1e-9"))


@pytest.mark.parametrize("t", [0.01, 0.001])
@pytest.mark.parametrize("lam", [1e-4, 1e-6])
def test_crossover_at_infinite_m_lies_near_p_equal_n_for_small_ridges(t, lam):
    """Measured: psi_p*/psi_n between 0.929 and 1.017 for these points."""
    psi_n = np.array([1.0, 5.0, 20.0])
    ratio = dsm.crossover(psi_n, t, lam) / psi_n
    assert np.all(np.abs(ratio - 1) < 0.1)


def test_crossover_is_the_first_crossing_of_a_finite_m_gap():
    """At m = 1 the gap peaks near p = n and falls back; the crossover is the rising crossing below it."""
    psi_n, t, lam = 5.0, 0.01, 1e-3
    root = dsm.crossover(psi_n, t, lam, m=1)
    below = np.geomspace(0.01 * psi_n, root, 12)[:-1]
    result = dsm.errors(psi_n, below, t, lam, m=1)
    assert np.all(result.gap / result.optimum < 1)
    at_root = dsm.errors(psi_n, root * np.array([1 - 1e-7, 1 + 1e-7]), t, lam, m=1)
    assert at_root.gap[0] / at_root.optimum[0] < 1 < at_root.gap[1] / at_root.optimum[1]


def test_crossover_increases_with_m():
    """Measured at psi_n = 5, t = 0.01, lam = 1e-3: 0.387, 0.799 and 1.023 times psi_n."""
    boundary = dsm.phase_boundary([5.0], m=[1, 4, math.inf], t=0.01, lam=1e-3, progress=False)
    assert np.all(np.diff(boundary["ratio"][0]) > 0.1)


@pytest.mark.slow
def test_crossover_increases_with_m_over_the_paper_values():
    boundary = dsm.phase_boundary([2.0, 20.0], m=[1, 2, 4, 16, math.inf], t=0.01, lam=1e-3, progress=False)
    assert np.all(np.diff(boundary["ratio"], axis=1) > 0)


def test_crossover_refuses_a_span_without_a_crossing():
    with pytest.raises(ConvergenceError, match="widen span"):
        dsm.crossover(5.0, 0.01, 1e-3, span=(0.01, 0.5))
    with pytest.raises(ParameterError, match="threshold"):
        dsm.crossover(5.0, 0.01, 1e-3, threshold=0)


def test_phase_diagram_takes_several_m():
    grid = dsm.phase_diagram(np.array([2.0]), np.array([1.0, 4.0]), t=0.1, lam=1e-2, m=[2.0, math.inf], progress=False)
    assert grid["gap"].shape == (1, 2, 2)
    direct = dsm.errors(2.0, 4.0, 0.1, 1e-2, m=2.0)
    assert grid["gap"][0, 1, 0] == pytest.approx(direct.gap, rel=1e-10)


def test_command_line_phase_diagram(tmp_path, capsys):
    figure = tmp_path / "phase.png"
    assert main(["dsm", "--phase-diagram", "--psi-n", "2,8", "--m", "inf", "--plot", str(figure)]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(float(row["psi_n"]), row["m"]) for row in rows] == [(2.0, "inf"), (8.0, "inf")]
    assert float(rows[1]["psi_p"]) == pytest.approx(dsm.crossover(8.0, 0.01, 1e-3), rel=1e-12)
    assert figure.stat().st_size > 0
    assert main(["dsm", "--phase-diagram", "--t", "0.1,1"]) == 2
    capsys.readouterr()
    # a plot over a single psi_n would be empty: refused before computing, with the remedy
    assert main(["dsm", "--phase-diagram", "--psi-n", "20", "--plot", str(figure)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "--psi-n 1:100:5" in captured.err
