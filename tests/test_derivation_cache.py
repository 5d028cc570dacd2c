"""The on-disk cache of derivations: reused across processes, never stale, rebuilt when damaged.

The storage itself (atomic writes, checksums, locations) is tested in
``test_cache.py``; here the cache is used by :func:`pencils.limit` and
:func:`pencils.trace_limit`, in this process (with the in-memory caches
cleared) and in fresh ones.
"""

import functools
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import sympy

from pencils import Gaussian, cache, derive, limit, quantities, trace_limit
from pencils.derivations import DerivationStore, store
from pencils.dyson import DysonSystem
from pencils.errors import CacheWarning
from pencils.serialization import decode

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
    monkeypatch.setattr(cache, "_reported", set())  # as in a fresh process: no problem reported yet
    store.clear()
    yield tmp_path
    store.clear()


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
    original = quantities.limit_payload
    monkeypatch.setattr(quantities, "limit_payload", lambda *a: calls.append(a) or original(*a))
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
    coefficients = [decode(tree) for tree in records[0]["coefficients"]]  # data, not code
    assert all(isinstance(c, sympy.Expr) for c in coefficients) and sympy.Symbol("lambda") in coefficients


def test_hit_skips_the_derivation(empty_cache, monkeypatch):
    expression, dims, lam = quantity()
    value = limit(expression, dims, {lam: 0.5})
    store.compiled_limit.cache_clear()
    calls = count_derivations(monkeypatch)
    assert limit(expression, dims, {lam: 0.5}) == value
    assert calls == []


def test_another_expression_or_version_is_another_entry(empty_cache, monkeypatch):
    expression, dims, lam = quantity()
    limit(expression, dims, {lam: 0.5})
    store.compiled_limit.cache_clear()
    calls = count_derivations(monkeypatch)
    changed = limit(2 * expression, dims, {lam: 0.5})
    assert abs(changed - 2 * closed_form()) < 1e-12
    assert len(calls) == 1
    monkeypatch.setattr(store, "fingerprint", functools.lru_cache(maxsize=1)(lambda: "a different engine"))
    store.compiled_limit.cache_clear()
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
        document["payload"]["records"][0]["coefficients"][0] = 7
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
    store.solver.cache_clear()
    monkeypatch.setattr(DysonSystem, "record", None)  # a hit never derives
    assert trace_limit(resolvent, {n: 2 * d}, {z: -1.0}) == value


def test_disabled_cache_still_computes(monkeypatch, tmp_path):
    monkeypatch.setenv("PENCILS_CACHE_DIR", "off")
    store.compiled_limit.cache_clear()
    expression, dims, lam = quantity()
    assert limit(expression, dims, {lam: 0.5}) == pytest.approx(closed_form(), rel=1e-12)
    assert cache.directory() is None
    store.compiled_limit.cache_clear()


# Forged and unsafe entries: rejected, rebuilt and reported once; nothing in them is run.


def resign(path, edit) -> dict:
    """Apply ``edit`` to the payload of the entry at ``path`` and give it a valid checksum again,
    as someone able to write the cache directory could; returns the original payload."""
    document = json.loads(path.read_text())
    original = json.loads(json.dumps(document["payload"]))
    edit(document["payload"])
    document["checksum"] = cache._checksum(document["payload"])
    path.write_text(json.dumps(document))
    return original


def marker_code(marker) -> str:
    return f"__import__('pathlib').Path({str(marker)!r}).touch()"


def forgeries(marker) -> dict:
    """Edits of a limit payload, each keeping valid JSON under a valid checksum."""
    code = marker_code(marker)

    def record(payload):
        return payload["records"][0]

    return {
        # The attack the srepr format allowed: Python text where an expression is expected.
        "srepr text": lambda p: record(p)["coefficients"].__setitem__(0, code),
        "srepr text in a formula": lambda p: p["formulas"].__setitem__(0, f"{code} or Integer(1)"),
        # A symbol whose name is code: harmless only because no name reaches generated code.
        "code as a symbol name": lambda p: record(p)["coefficients"].__setitem__(
            0, ["Add", ["Symbol", f"{code} or 0", {}], record(p)["coefficients"][0]]),
        "code as a formula symbol": lambda p: p["formulas"].__setitem__(0, ["Symbol", f"{code} or 1", {}]),
        "code as a parameter name": lambda p: record(p)["parameters"].__setitem__(0, ["Symbol", code, {}]),
        "unknown node type": lambda p: record(p)["coefficients"].__setitem__(0, ["eval", code]),
        "function by name": lambda p: record(p)["coefficients"].__setitem__(0, ["Function", code]),
        # Malformed content that used to raise KeyError, IndexError or SyntaxError.
        "missing field": lambda p: record(p).pop("size"),
        "coupling out of range": lambda p: record(p)["couplings"][0].__setitem__(2, 99),
        "unknown out of range": lambda p: record(p)["unknowns"][0].__setitem__(0, 40),
        "truncated text": lambda p: record(p)["coefficients"].__setitem__(0, "Integer("),
        "a coefficient missing": lambda p: record(p)["coefficients"].pop(),
        "not a list": lambda p: record(p).__setitem__("couplings", "[[0, 1, 0]]"),
        "output of no record": lambda p: p["outputs"][0].__setitem__(0, 5),
        "no records": lambda p: p.__setitem__("records", []),
        "empty payload": lambda p: p.clear(),
        "forged power": lambda p: p["formulas"].__setitem__(0, ["Pow", 10, 10**100]),
    }


@pytest.mark.parametrize("forgery", list(forgeries("m")))
def test_a_forged_entry_with_a_valid_checksum_is_rejected_not_run(empty_cache, tmp_path_factory, forgery):
    marker = tmp_path_factory.mktemp("marker") / "ran"
    expression, dims, lam = quantity()
    expected = limit(expression, dims, {lam: 0.5})
    (path,) = entries(empty_cache)
    original = resign(path, forgeries(marker)[forgery])
    store.compiled_limit.cache_clear()
    store.solver.cache_clear()
    with pytest.warns(CacheWarning, match="malformed limit payload") as caught:
        value = limit(expression, dims, {lam: 0.5})
        store.compiled_limit.cache_clear()
        assert limit(expression, dims, {lam: 0.5}) == value  # the rebuilt entry: no second warning
    assert len([w for w in caught if issubclass(w.category, CacheWarning)]) == 1
    assert not marker.exists()
    assert value == expected and abs(value - closed_form()) < 1e-12
    (rebuilt,) = entries(empty_cache)
    assert json.loads(rebuilt.read_text())["payload"] == original


def test_a_forged_entry_is_rejected_in_a_fresh_process_and_warned_about(empty_cache, tmp_path_factory):
    marker = tmp_path_factory.mktemp("marker") / "ran"
    run(empty_cache)
    (path,) = entries(empty_cache)
    resign(path, lambda payload: payload["records"][0]["coefficients"].__setitem__(0, marker_code(marker)))
    environment = dict(os.environ, PENCILS_CACHE_DIR=str(empty_cache))
    output = subprocess.run([sys.executable, "-c", SCRIPT], env=environment, capture_output=True, text=True, check=True)
    assert abs(float(output.stdout) - closed_form()) < 1e-12
    assert output.stderr.count("CacheWarning") == 1 and "malformed limit payload" in output.stderr
    assert not marker.exists()
    assert abs(run(empty_cache) - closed_form()) < 1e-12  # the rebuilt entry is used


def test_a_planted_entry_outside_the_cache_is_not_followed(empty_cache, tmp_path_factory, monkeypatch):
    """A link from the cache to a valid entry (right key and checksum) of another problem elsewhere."""
    n, d, z = sympy.symbols("n d z")
    X = Gaussian("X", n, d)
    resolvent = (X.T * X / n - z * sympy.Identity(d)).I
    assert trace_limit(resolvent, {n: 2 * d}, {z: -1.0}) == pytest.approx((17**0.5 - 3) / 2, rel=1e-14)
    (path,) = entries(empty_cache)
    outside = tmp_path_factory.mktemp("outside")
    digest = path.name[len("trace-") : -len(".json")]
    with monkeypatch.context() as patch:
        patch.setenv("PENCILS_CACHE_DIR", str(outside))
        cache.store("trace", digest, {"record": derive(resolvent, {n: 4 * d}).record()})  # another problem
        store.solver.cache_clear()
        planted_value = trace_limit(resolvent, {n: 2 * d}, {z: -1.0})  # what following the link would give
    assert abs(planted_value - (17**0.5 - 3) / 2) > 0.01
    path.unlink()
    path.symlink_to(outside / path.name)
    store.solver.cache_clear()
    with pytest.warns(CacheWarning, match="symbolic link"):
        value = trace_limit(resolvent, {n: 2 * d}, {z: -1.0})
    assert value == pytest.approx((17**0.5 - 3) / 2, rel=1e-14)
    assert not path.is_symlink() and path.is_file()  # replaced by a rebuilt entry
    assert (outside / path.name).is_file()  # the target is left alone


def test_the_key_covers_every_engine_module_but_the_command_line(tmp_path):
    """No hand-kept list: a change to any module of the package (a new one, and one of a subpackage such
    as the solver, included) changes the fingerprint in every cache key; the command line does not."""
    import shutil

    package = tmp_path / "pencils"
    shutil.copytree(store.root, package, ignore=shutil.ignore_patterns("__pycache__"))
    copy = DerivationStore(package)

    def fingerprint():
        copy.clear()
        return copy.fingerprint()

    fingerprints = [fingerprint()]
    assert fingerprints[0] == store.fingerprint()  # the same source, the same key
    for name in ["serialization.py", "arguments.py", "expression.py", "new_module.py", "solve/dyson_map.py",
                 "solve/new_module.py"]:
        with open(package / name, "a") as file:
            file.write("\n# changed\n")
        fingerprints.append(fingerprint())
    assert len(set(fingerprints)) == len(fingerprints)
    with open(package / "cli.py", "a") as file:
        file.write("\n# changed\n")
    assert fingerprint() == fingerprints[-1]
