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


# --------------------------------------------------------------------------- chunks never shift values

@pytest.mark.parametrize("chunk_size", [1, 2, 5, 7, 100])
def test_values_stay_on_their_grid_point(chunk_size):
    """Every chunking gives, at each grid point, the value of a call at that point alone."""
    psi_p, lam = np.array([0.5, 1.5, 3.0]), np.array([1e-2, 1e-1])
    result = sweep(random_features.errors, {"psi_p": psi_p, "lam": lam}, psi_n=2.0, chunk_size=chunk_size,
                   progress=False)
    for i, j in np.ndindex(3, 2):
        alone = random_features.errors(2.0, psi_p[i], lam[j])
        assert result["test"][i, j] == pytest.approx(alone.test, rel=1e-11)
        assert result["train"][i, j] == pytest.approx(alone.train, rel=1e-11)
    # neighbouring points differ by far more than the tolerance, so a shifted value would fail
    assert np.min(np.abs(np.diff(result["test"].reshape(-1)))) > 1e-4


def test_rows_are_streamed_in_grid_order():
    chunks = []
    result = sweep(random_features.errors, {"psi_p": np.array([0.5, 1.0, 2.0, 4.0, 8.0])}, psi_n=2.0, lam=0.1,
                   chunk_size=2, progress=False, on_rows=chunks.append)
    assert [len(rows) for rows in chunks] == [2, 2, 1]
    assert [row for rows in chunks for row in rows] == result.rows()


# --------------------------------------------------------------------------- the command line

def _run_cli(*arguments, **options):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    environment = dict(os.environ, PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-m", "pencils.cli", "dsm", *arguments], cwd=root, env=environment,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **options)


def test_command_line_prints_every_digit_of_dps(capsys):
    import mpmath

    assert main(["dsm", "--psi-n", "2", "--psi-p", "1.5", "--t", "0.5", "--lam", "1e-2", "--dps", "40"]) == 0
    row = next(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    finer = dsm.errors(2.0, 1.5, 0.5, 1e-2, dps=60)
    with mpmath.workdps(60):
        for field in ("test", "train", "gap"):
            printed = mpmath.mpf(row[field])
            assert len(row[field].lstrip("0.").replace(".", "")) >= 38  # not a double's 17 digits
            assert abs(printed - getattr(finer, field)) < mpmath.mpf(10) ** -38 * abs(getattr(finer, field))


@pytest.mark.parametrize("arguments, word", [
    (["--activation", "swish"], "unknown activation 'swish'"),
    (["--dps", "0"], "dps"),
    (["--plot", "/nonexistent-folder/curve.png"], "cannot write there"),
    (["--plot", "curve.unknown"], "unknown image format"),
    (["--psi-p", "1,2,-1"], "psi_p must be > 0"),
    (["--m", "0.5"], "m must be >= 1"),
])
def test_command_line_refuses_bad_input_before_computing(arguments, word, capsys):
    assert main(["dsm", *arguments]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing computed, no partial output
    assert word in captured.err and len(captured.err.strip().splitlines()) == 1


def test_command_line_ctrl_c_wrapped_by_a_c_extension_exits_130(monkeypatch, capsys):
    """Ctrl-C landing inside mpmath arithmetic on numpy object arrays surfaces as a SystemError caused by the
    KeyboardInterrupt; it must end like a plain Ctrl-C (status 130, no traceback), and any other SystemError
    must still propagate."""
    from pencils import cli

    def interrupted(arguments):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as cause:
            raise SystemError("<built-in method __new__> returned a result with an exception set") from cause

    monkeypatch.setattr(cli, "_dsm", interrupted)
    assert main(["dsm"]) == 130
    assert "interrupted" in capsys.readouterr().err

    def broken(arguments):
        raise SystemError("not an interrupt")

    monkeypatch.setattr(cli, "_dsm", broken)
    with pytest.raises(SystemError, match="not an interrupt"):
        main(["dsm"])


def test_command_line_interrupted_keeps_the_rows_done():
    import signal

    process = _run_cli("--psi-n", "2", "--psi-p", "0.5:50:400", "--t", "0.5", "--lam", "1e-2", "--dps", "20")
    lines = [process.stdout.readline() for _ in range(3)]  # the header and two rows
    process.send_signal(signal.SIGINT)
    rest, error = process.communicate(timeout=120)
    assert process.returncode == 130
    assert "Traceback" not in error and "interrupted" in error
    rows = list(csv.DictReader(io.StringIO("".join(lines) + rest)))
    assert 2 <= len(rows) < 400
    for row in rows:  # every row printed is whole
        assert float(row["optimum"]) < float(row["test"]) and float(row["gap"]) > 0


def test_command_line_stops_quietly_when_its_reader_closes_the_pipe():
    """``pencils dsm | head -2``: the reader leaves after two lines; the command stops without a traceback."""
    process = _run_cli("--psi-n", "2", "--psi-p", "0.5:50:400", "--t", "0.5", "--lam", "1e-2")
    lines = [process.stdout.readline() for _ in range(2)]
    process.stdout.close()
    error = process.stderr.read()
    process.wait(timeout=120)
    assert lines[0].startswith("psi_p,") and lines[1].count(",") == lines[0].count(",")
    assert process.returncode == 141
    assert "Traceback" not in error and "BrokenPipe" not in error
