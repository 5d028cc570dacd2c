"""Sweeps on a real dask.distributed cluster (the optional ``distributed`` extra)."""

import os
from pathlib import Path

import numpy as np
import pytest

from pencils.models import dsm
from pencils.sweep import sweep

distributed = pytest.importorskip("distributed")


def test_dask_cluster_gives_the_serial_values_bit_for_bit(monkeypatch):
    """A 30-digit grid evaluated by two worker processes equals the serial evaluation exactly:
    the arbitrary-precision arithmetic does not depend on the process or the order of the chunks."""
    root = str(Path(__file__).resolve().parent.parent)
    monkeypatch.setenv("PYTHONPATH", root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    grid = {"psi_p": np.array([0.5, 2.0, 4.0]), "lam": np.array([1e-2, 1e-1])}
    fixed = dict(psi_n=2.0, t=0.5, dps=30, chunk_size=1)
    serial = sweep(dsm.errors, grid, progress=False, **fixed)
    with distributed.LocalCluster(processes=True, n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            remote = sweep(dsm.errors, grid, executor=client.get_executor(), progress=False, **fixed)
            workers = client.run(os.getpid)
    assert len(set(workers.values())) == 2 and os.getpid() not in workers.values()
    for field in ("test", "train", "optimum", "gap"):
        assert serial[field].dtype == object and remote[field].shape == serial[field].shape
        assert all(a == b for a, b in zip(serial[field].ravel(), remote[field].ravel())), field
    # the values are the limits: above the best possible error, the train error below the test error
    assert all(o < t and r < t for o, t, r in zip(serial["optimum"].ravel(), serial["test"].ravel(),
                                                   serial["train"].ravel()))
