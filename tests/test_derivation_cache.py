"""The on-disk cache of derivations: reused across processes, never stale, rebuilt when damaged.

The storage itself (atomic writes, checksums, locations) is tested in
``test_cache.py``; here the cache is used by :func:`pencils.limit` and
:func:`pencils.trace_limit`, in this process (with the in-memory caches
cleared) and in fresh ones.
"""

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import sympy

from pencils import Gaussian, cache, limit, limits, trace_limit
from pencils.dyson import DysonSystem

# A resolvent with a ridge, its value at lam = 1/2 for n = 2 d, and the same from its closed form.
SCRIPT = """
import sympy
from pencils import Gaussian, limit
n, d, lam = sympy.symbols("n d lambda")
X = Gaussian("X", n, d)
R = (X.T * X / n + lam * sympy.Identity(d)).I
print(repr(float(limit(sympy.Trace(R) / d + 2 * sympy.Trace(R * R) / d, {n: 2 * d}, {lam: 0.5}))))
"""


def closed_form(lam=0.5, gamma=0.5):
    """m(-lam) + 2 m'(-lam) for Marchenko-Pastur with ratio gamma = d/n."""
    z = sympy.Symbol("z")
    m = (1 - gamma - z - sympy.sqrt((z - 1 - gamma) ** 2 - 4 * gamma)) / (2 * gamma * z)
    return float((m + 2 * sympy.diff(m, z)).subs(z, -lam))


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PENCILS_CACHE_DIR", str(tmp_path))
    for function in (limits._compiled_limit, limits._solver, limits._derive):
        function.cache_clear()
    yield tmp_path
    for function in (limits._compiled_limit, limits._solver, limits._derive):
        function.cache_clear()


def run(directory) -> float:
    environment = dict(os.environ, PENCILS_CACHE_DIR=str(directory))
    output = subprocess.run([sys.executable, "-c", SCRIPT], env=environment, capture_output=True, text=True, check=True)
    return float(output.stdout)


def entries(directory):
    return sorted(p for p in directory.iterdir() if p.suffix == ".json")


def quantity():
    n, d, lam = sympy.symbols("n d lambda")
    X = Gaussian("X", n, d)
    R = (X.T * X / n + lam * sympy.Identity(d)).I
    return sympy.Trace(R) / d + 2 * sympy.Trace(R * R) / d, {n: 2 * d}, lam


def count_derivations(monkeypatch) -> list:
    calls = []
    original = limits._limit_payload
    monkeypatch.setattr(limits, "_limit_payload", lambda *a: calls.append(a) or original(*a))
    return calls


def test_a_fresh_process_reuses_the_entry(empty_cache):
    first = run(empty_cache)
    assert len(entries(empty_cache)) == 1
    stamp = entries(empty_cache)[0].stat().st_mtime_ns
    second = run(empty_cache)
    assert first == second
    assert abs(first - closed_form()) < 1e-12
    assert entries(empty_cache)[0].stat().st_mtime_ns == stamp  # read, not rewritten


def test_the_entry_is_plain_json_with_the_problem(empty_cache):
    run(empty_cache)
    document = json.loads(entries(empty_cache)[0].read_text())
    records = document["payload"]["records"]
    assert len(records) == 1 and records[0]["unknowns"]
    assert all(isinstance(text, str) for text in records[0]["coefficients"])


def test_hit_skips_the_derivation(empty_cache, monkeypatch):
    expression, dims, lam = quantity()
    value = limit(expression, dims, {lam: 0.5})
    limits._compiled_limit.cache_clear()
    calls = count_derivations(monkeypatch)
    assert limit(expression, dims, {lam: 0.5}) == value
    assert calls == []


def test_another_expression_or_version_is_another_entry(empty_cache, monkeypatch):
    expression, dims, lam = quantity()
    limit(expression, dims, {lam: 0.5})
    limits._compiled_limit.cache_clear()
    calls = count_derivations(monkeypatch)
    changed = limit(2 * expression, dims, {lam: 0.5})
    assert abs(changed - 2 * closed_form()) < 1e-12
    assert len(calls) == 1
    monkeypatch.setattr(limits, "_source_fingerprint", lambda: "a different engine")
    limits._compiled_limit.cache_clear()
    assert limit(expression, dims, {lam: 0.5}) == pytest.approx(closed_form(), rel=1e-12)
    assert len(calls) == 2  # a changed engine never reuses an entry
    assert len(entries(empty_cache)) == 3


@pytest.mark.parametrize("damage", ["truncate", "garbage", "edit"])
def test_a_damaged_entry_is_rebuilt(empty_cache, damage):
    run(empty_cache)
    (path,) = entries(empty_cache)
    text = path.read_text()
    if damage == "truncate":
        path.write_text(text[: len(text) // 2])
    elif damage == "garbage":
        path.write_bytes(os.urandom(500))
    else:  # valid JSON, a coefficient changed by hand: the checksum no longer matches
        document = json.loads(text)
        document["payload"]["records"][0]["coefficients"][0] = "Integer(7)"
        path.write_text(json.dumps(document))
    assert abs(run(empty_cache) - closed_form()) < 1e-12
    (rebuilt,) = entries(empty_cache)
    assert json.loads(rebuilt.read_text())["payload"] == json.loads(text)["payload"]


def test_concurrent_first_runs(empty_cache):
    """Four fresh processes derive and write the same entry at once: all agree, the entry is whole."""
    with ThreadPoolExecutor(4) as pool:
        values = list(pool.map(lambda _: run(empty_cache), range(4)))
    assert len(set(values)) == 1 and abs(values[0] - closed_form()) < 1e-12
    (path,) = entries(empty_cache)
    assert json.loads(path.read_text())["payload"]["records"]
    assert not [p for p in empty_cache.iterdir() if p.suffix == ".tmp"]


def test_trace_limit_is_cached_too(empty_cache, monkeypatch):
    n, d, z = sympy.symbols("n d z")
    X = Gaussian("X", n, d)
    resolvent = (X.T * X / n - z * sympy.Identity(d)).I
    value = trace_limit(resolvent, {n: 2 * d}, {z: -1.0})
    assert any(p.name.startswith("trace-") for p in entries(empty_cache))
    limits._solver.cache_clear()
    monkeypatch.setattr(DysonSystem, "record", None)  # a hit never derives
    assert trace_limit(resolvent, {n: 2 * d}, {z: -1.0}) == value


def test_disabled_cache_still_computes(monkeypatch, tmp_path):
    monkeypatch.setenv("PENCILS_CACHE_DIR", "off")
    limits._compiled_limit.cache_clear()
    expression, dims, lam = quantity()
    assert limit(expression, dims, {lam: 0.5}) == pytest.approx(closed_form(), rel=1e-12)
    assert cache.directory() is None
    limits._compiled_limit.cache_clear()
