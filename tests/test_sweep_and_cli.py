"""Sweeps (grids, chunks, executors) and the ``pencils dsm`` command line."""

import csv
import io
import math
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest

from pencils.cli import main
from pencils.errors import ParameterError
from pencils.models import dsm, random_features
from pencils.sweep import sweep


def test_grid_matches_direct_calls():
    psi_p, lam = np.array([0.5, 2.0, 4.0]), np.array([1e-2, 1e-1])
    result = sweep(random_features.errors, {"psi_p": psi_p, "lam": lam}, psi_n=2.0, chunk_size=4, progress=False)
    assert result["test"].shape == (3, 2)
    direct = random_features.errors(2.0, psi_p[:, None], lam[None, :])
    # Batches of different points take different Newton iterations; each value is accurate to the
    # solver's relative residual (<= 1e-12) times the conditioning of the error formula.
    np.testing.assert_allclose(result["test"], direct.test, rtol=1e-11)
    np.testing.assert_allclose(result["gap"], direct.test - direct.train, rtol=1e-11)


def test_process_pool_gives_the_same_values():
    grid = {"psi_p": np.geomspace(0.5, 5.0, 6)}
    local = sweep(dsm.errors, grid, psi_n=2.0, t=0.5, lam=1e-2, chunk_size=2, progress=False)
    with ProcessPoolExecutor(max_workers=2) as executor:
        pooled = sweep(dsm.errors, grid, psi_n=2.0, t=0.5, lam=1e-2, chunk_size=2, executor=executor)
    np.testing.assert_allclose(pooled["test"], local["test"], rtol=1e-13)


def test_csv_rows():
    result = sweep(random_features.errors, {"psi_p": np.array([1.0, 3.0])}, psi_n=2.0, lam=0.1, progress=False)
    rows = list(csv.DictReader(io.StringIO(result.to_csv())))
    assert [float(row["psi_p"]) for row in rows] == [1.0, 3.0]
    assert float(rows[1]["test"]) == pytest.approx(float(result["test"][1]), rel=1e-15)


def test_empty_grid():
    with pytest.raises(ParameterError, match="grid"):
        sweep(random_features.errors, {}, psi_n=2.0, psi_p=1.0, lam=0.1)


def test_command_line_prints_csv_and_plots(tmp_path, capsys):
    figure = tmp_path / "curve.png"
    code = main(["dsm", "--psi-n", "2", "--psi-p", "0.5:4:5", "--t", "0.1,1", "--lam", "1e-2", "--plot", str(figure)])
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 10
    assert {"psi_p", "t", "test", "train", "optimum", "gap"} <= set(rows[0])
    assert all(float(row["test"]) >= float(row["optimum"]) for row in rows)
    assert figure.stat().st_size > 10_000


def test_command_line_infinite_and_finite_m(capsys):
    assert main(["dsm", "--psi-n", "2", "--psi-p", "1,3", "--t", "0.5", "--lam", "0.01", "--m", "1,inf"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert sorted({float(row["m"]) for row in rows}) == [1.0, math.inf]


def test_command_line_bad_input(capsys):
    assert main(["dsm", "--t", "-1"]) == 2
    assert "t must be > 0" in capsys.readouterr().err
