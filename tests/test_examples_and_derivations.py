"""The derivation notebooks execute, and the example scripts draw their figures (quick mode).

The DSM ones, the spectral-density example (a DSM spectrum) and the random-features notebook take
20-60 s each (the DSM finite-m Dyson system alone takes several seconds to derive and ~0.5 s per point
to solve) and are marked ``slow``; deselect them with ``-m 'not slow'``.  The Marchenko-Pastur notebook and the random-features example take a few seconds.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SLOW = pytest.mark.slow
NOTEBOOKS = ["marchenko_pastur", "linear_regression", pytest.param("random_features", marks=SLOW),
             pytest.param("dsm", marks=SLOW)]
EXAMPLES = {
    "random_features_double_descent": ["random_features_double_descent.png"],
    "dsm_learning_curves": [
        "dsm_minf_vs_t.png", "dsm_minf_vs_psin.png", "dsm_m1_vs_t.png", "dsm_m1_vs_psin.png",
        "dsm_vs_m.png", "dsm_minf_sin_simulation.png",
    ],
    "dsm_phase_diagram": ["dsm_phase_diagram.png"],
    "memorization": ["memorization_fractions.png", "memorization_images.png"],
    "spectral_density": ["spectral_density.png"],
    "dsm_gradient_flow": ["dsm_gradient_flow.png"],
    "structured_learning_curves": ["structured_two_levels.png", "structured_power_law.png"],
}


def _environment() -> dict:
    """The current environment with the repository importable (also when it is not pip-installed)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["MPLBACKEND"] = "Agg"
    return env


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_executes(name, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    path = ROOT / "derivations" / f"{name}.ipynb"
    notebook = nbformat.read(path, as_version=4)
    # committed without outputs
    assert all(cell.get("outputs", []) == [] and cell.get("execution_count") is None
               for cell in notebook.cells if cell.cell_type == "code"), f"{path.name} has outputs; strip them"
    for key, value in _environment().items():
        monkeypatch.setenv(key, value)  # the kernel inherits it
    start = time.time()
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    print(f"{path.name}: {time.time() - start:.1f} s")
    errors = [output for cell in notebook.cells if cell.cell_type == "code"
              for output in cell.get("outputs", []) if output.get("output_type") == "error"]
    assert not errors


@pytest.mark.parametrize("name", [
    pytest.param(name, marks=SLOW) if name.startswith("dsm") or name == "spectral_density" else name
    for name in sorted(EXAMPLES)
])
def test_example_draws_its_figures(name, tmp_path):
    pytest.importorskip("matplotlib")
    start = time.time()
    completed = subprocess.run(
        [sys.executable, str(ROOT / "examples" / f"{name}.py"), "--quick", "--out", str(tmp_path)],
        cwd=tmp_path, env=_environment(), capture_output=True, text=True, timeout=900,
    )
    print(f"{name}.py --quick: {time.time() - start:.1f} s\n{completed.stdout}")
    assert completed.returncode == 0, completed.stderr[-4000:]
    for figure in EXAMPLES[name]:
        png = tmp_path / figure
        assert png.is_file(), f"{figure} not written; stdout:\n{completed.stdout}"
        assert png.stat().st_size > 1000
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(tmp_path.resolve()) in completed.stdout  # says where it saved
