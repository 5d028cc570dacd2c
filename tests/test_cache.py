"""The on-disk cache: round trips, keys, stale, corrupted and unsafe entries, locations, concurrency."""

import errno
import hashlib
import json
import multiprocessing
import os
import re
import sys
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from pencils import cache
from pencils.errors import CacheWarning

PAYLOAD = {
    "equations": ["g_1*(z - g_2) - 1", "g_2 - psi*g_1/(1 + g_1)"],
    "unknowns": ["g_1", "g_2"],
    "sizes": [3, 5, 0, -7, 2**70],
    "blocks": {"X": {"rows": 2, "columns": 3}, "I_d": {}},
    "flags": [True, False, None],
    "note": "ψ = p/d, λ ≥ 0",
}


@pytest.fixture(autouse=True)
def unreported(monkeypatch):
    """Every test starts as a fresh process would: no kind of problem reported yet."""
    monkeypatch.setattr(cache, "_reported", set())


@pytest.fixture
def cache_directory(tmp_path, monkeypatch):
    """A fresh cache directory (not created yet: store() must create it)."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("PENCILS_CACHE_DIR", str(folder))
    return folder


def entry_file(folder: Path, kind: str, digest: str) -> Path:
    return folder / f"{kind}-{digest}.json"


def temporary_files(folder: Path) -> list:
    return sorted(folder.glob(".*.tmp"))


# Round trip and format


def test_round_trip_gives_an_equal_payload(cache_directory):
    digest = cache.key("expression", "dimensions")
    cache.store("dyson", digest, PAYLOAD)
    assert cache.load("dyson", digest) == PAYLOAD


def test_entry_is_readable_json_text_with_its_metadata(cache_directory):
    digest = cache.key("expression")
    cache.store("dyson", digest, PAYLOAD)
    raw = entry_file(cache_directory, "dyson", digest).read_bytes()
    assert raw.startswith(b"{")
    assert raw.isascii() and raw.count(b"\n") > 10
    document = json.loads(raw)
    assert document["format"] == cache.FORMAT
    assert document["version"] == cache._package_version()
    assert (document["kind"], document["key"]) == ("dyson", digest)
    assert document["payload"] == PAYLOAD
    assert temporary_files(cache_directory) == []


def test_missing_entry_loads_as_none(cache_directory):
    assert cache.load("dyson", cache.key("never stored")) is None
    assert not cache_directory.exists()


def test_store_replaces_an_existing_entry(cache_directory):
    digest = cache.key("expression")
    cache.store("dyson", digest, {"generation": 1})
    cache.store("dyson", digest, {"generation": 2})
    assert cache.load("dyson", digest) == {"generation": 2}
    assert len(list(cache_directory.iterdir())) == 1


def test_kinds_are_separate(cache_directory):
    digest = cache.key("expression")
    cache.store("dyson", digest, {"kind": "dyson"})
    cache.store("formula", digest, {"kind": "formula"})
    assert cache.load("dyson", digest) == {"kind": "dyson"}
    assert cache.load("formula", digest) == {"kind": "formula"}


MALFORMED_KINDS = ["", "Dyson", "dyson-system", "../dyson", "dyson\n", "dyson system"]
MALFORMED_DIGESTS = ["", "abc", "../" + "0" * 61, "A" * 64, "0" * 64 + "\n", "0" * 65]


@pytest.mark.parametrize("kind", MALFORMED_KINDS)
def test_malformed_kind_is_rejected(cache_directory, kind):
    digest = cache.key("expression")
    with pytest.raises(ValueError, match="kind"):
        cache.store(kind, digest, PAYLOAD)
    with pytest.raises(ValueError, match="kind"):
        cache.load(kind, digest)


@pytest.mark.parametrize("digest", MALFORMED_DIGESTS)
def test_malformed_digest_is_rejected(cache_directory, digest):
    with pytest.raises(ValueError, match="digest"):
        cache.store("dyson", digest, PAYLOAD)
    with pytest.raises(ValueError, match="digest"):
        cache.load("dyson", digest)


@pytest.mark.parametrize("payload", [{"value": object()}, {"value": {1, 2}}, ["not", "a", "dict"]])
def test_payload_that_is_not_a_json_object_raises_type_error(cache_directory, payload):
    with pytest.raises(TypeError):
        cache.store("dyson", cache.key("expression"), payload)
    assert not cache_directory.exists() or list(cache_directory.iterdir()) == []


# Keys


@pytest.mark.parametrize(
    "parts, other_parts",
    [
        (("x",), ("y",)),
        (("x", "y"), ("y", "x")),
        (("ab", "c"), ("a", "bc")),
        (("ab",), ("a", "b")),
        (("x",), ("x", "")),
        ((), ("",)),
        (("1:x",), ("x",)),
    ],
)
def test_key_changes_with_any_part(parts, other_parts):
    assert cache.key(*parts) != cache.key(*other_parts)


def test_key_is_a_deterministic_sha256():
    digest = cache.key("x**2", "n/d = 2")
    assert digest == cache.key("x**2", "n/d = 2")
    assert re.fullmatch("[0-9a-f]{64}", digest)  # the hexadecimal SHA-256


def test_key_changes_with_the_package_version(monkeypatch):
    before = cache.key("expression")
    monkeypatch.setattr(cache, "_package_version", lambda: "999.0.0")
    assert cache.key("expression") != before


def test_key_changes_with_the_format(monkeypatch):
    before = cache.key("expression")
    monkeypatch.setattr(cache, "FORMAT", cache.FORMAT + 1)
    assert cache.key("expression") != before


def test_key_parts_must_be_strings():
    with pytest.raises(TypeError, match="strings"):
        cache.key("x", 2)


# Stale and corrupted entries


def rewrite_document(path: Path, edit) -> None:
    """Apply ``edit`` to the parsed entry at ``path`` and write it back, recomputing nothing."""
    document = json.loads(path.read_text(encoding="utf-8"))
    edit(document)
    path.write_text(json.dumps(document), encoding="utf-8")


@pytest.mark.parametrize(
    "field, value", [("version", "0.0.1"), ("format", cache.FORMAT + 1), ("format", None)]
)
def test_entry_of_another_version_or_format_is_stale(cache_directory, field, value):
    digest = cache.key("expression")
    cache.store("dyson", digest, PAYLOAD)
    path = entry_file(cache_directory, "dyson", digest)
    rewrite_document(path, lambda document: document.update({field: value}))
    with pytest.warns(CacheWarning, match=field):
        assert cache.load("dyson", digest) is None
    assert not path.exists()


def truncate(path: Path) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])


def fill_with_garbage(path: Path) -> None:
    path.write_bytes(b"\x80\xff\x00\xfe garbage \x9c" * 50)


def empty(path: Path) -> None:
    path.write_bytes(b"")


def replace_with_a_list(path: Path) -> None:
    path.write_text("[1, 2, 3]", encoding="utf-8")


def edit_the_payload(path: Path) -> None:
    rewrite_document(path, lambda document: document["payload"]["equations"].append("0"))


def drop_the_checksum(path: Path) -> None:
    rewrite_document(path, lambda document: document.pop("checksum"))


def change_the_key_field(path: Path) -> None:
    rewrite_document(path, lambda document: document.update(key=cache.key("another expression")))


def change_the_kind_field(path: Path) -> None:
    rewrite_document(path, lambda document: document.update(kind="formula"))


def replace_the_payload_with_a_list(path: Path) -> None:
    def edit(document):
        document["payload"] = ["not", "an", "object"]
        canonical = json.dumps(document["payload"], sort_keys=True, separators=(",", ":"))
        document["checksum"] = hashlib.sha256(canonical.encode()).hexdigest()

    rewrite_document(path, edit)


@pytest.mark.parametrize(
    "corrupt",
    [
        truncate,
        fill_with_garbage,
        empty,
        replace_with_a_list,
        edit_the_payload,
        drop_the_checksum,
        change_the_key_field,
        change_the_kind_field,
        replace_the_payload_with_a_list,
    ],
)
def test_corrupted_entry_is_removed_and_rebuilt(cache_directory, corrupt):
    digest = cache.key("expression")
    cache.store("dyson", digest, PAYLOAD)
    path = entry_file(cache_directory, "dyson", digest)
    corrupt(path)
    with pytest.warns(CacheWarning, match="damaged entry.*rebuilt"):
        assert cache.load("dyson", digest) is None
    assert not path.exists()
    cache.store("dyson", digest, PAYLOAD)
    assert cache.load("dyson", digest) == PAYLOAD


def test_each_kind_of_problem_is_reported_once_per_process(cache_directory, capsys):
    digests = [cache.key(str(number)) for number in range(3)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # so that Python's own filter does not hide repeats
        for digest in digests:
            cache.store("dyson", digest, PAYLOAD)
            truncate(entry_file(cache_directory, "dyson", digest))
            assert cache.load("dyson", digest) is None
        cache.store("dyson", digests[0], PAYLOAD)
        cache.discard("dyson", digests[0], "holds a payload its reader refuses")
        cache.store("dyson", digests[1], PAYLOAD)
        cache.discard("dyson", digests[1], "holds a payload its reader refuses")
    messages = [str(w.message) for w in caught if issubclass(w.category, CacheWarning)]
    assert len(messages) == 2 and len(caught) == 2
    assert "damaged" in messages[0] and "malformed payload" in messages[1]
    assert list(cache_directory.iterdir()) == []
    assert capsys.readouterr() == ("", "")


# Location


@pytest.mark.parametrize(
    "value", ["", "0", "off", "OFF", "None", " off ", "false", "False", "no", "NO", "disable", "Disabled", " none\n"]
)
def test_cache_can_be_disabled(tmp_path, monkeypatch, value, recwarn):
    # Were the value taken for a path, or the platform directory used, files would appear here.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("PENCILS_CACHE_DIR", value)
    assert cache.directory() is None
    digest = cache.key("expression")
    cache.store("dyson", digest, PAYLOAD)
    assert list(tmp_path.iterdir()) == []
    assert cache.load("dyson", digest) is None
    assert cache.clear() == 0
    assert len(recwarn) == 0


@pytest.mark.parametrize("value", ["flase", "cache", "./cache", "a/b", "1", "true", "on", "~user-that-does-not-exist/x"])
def test_relative_directory_is_refused_with_one_warning(tmp_path, monkeypatch, value):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PENCILS_CACHE_DIR", value)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            assert cache.directory() is None
            cache.store("dyson", cache.key("expression"), PAYLOAD)
            assert cache.load("dyson", cache.key("expression")) is None
    assert [w.category for w in caught] == [CacheWarning]
    assert "relative path" in str(caught[0].message) and repr(value) in str(caught[0].message)
    assert list(tmp_path.iterdir()) == []


def test_override_is_used_as_given_with_home_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("USERPROFILE", str(tmp_path))
    monkeypatch.setenv("PENCILS_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert cache.directory() == tmp_path / "elsewhere"
    monkeypatch.setenv("PENCILS_CACHE_DIR", os.path.join("~", "mine"))
    assert cache.directory() == tmp_path / "mine"


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A home directory, with none of the variables that choose the cache directory set."""
    for variable in ["PENCILS_CACHE_DIR", "XDG_CACHE_HOME", "LOCALAPPDATA"]:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("USERPROFILE", str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("platform", ["linux", "freebsd14"])
def test_posix_directory_follows_xdg(home, monkeypatch, platform):
    monkeypatch.setattr(sys, "platform", platform)
    assert cache.directory() == home / ".cache" / "pencils"
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "xdg"))
    assert cache.directory() == home / "xdg" / "pencils"
    # The XDG specification says relative paths are invalid and must be ignored.
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")
    assert cache.directory() == home / ".cache" / "pencils"
    monkeypatch.setenv("XDG_CACHE_HOME", "")
    assert cache.directory() == home / ".cache" / "pencils"


def test_macos_directory(home, monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "xdg"))
    assert cache.directory() == home / "Library" / "Caches" / "pencils"


def test_windows_directory(home, monkeypatch):
    monkeypatch.setattr(sys, "platform", "win32")
    assert cache.directory() == home / "AppData" / "Local" / "pencils" / "Cache"
    monkeypatch.setenv("LOCALAPPDATA", str(home / "Local"))
    assert cache.directory() == home / "Local" / "pencils" / "Cache"


def test_override_wins_over_the_platform_directory(home, monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "xdg"))
    monkeypatch.setenv("PENCILS_CACHE_DIR", str(home / "override"))
    assert cache.directory() == home / "override"


# Unusable directories


def test_unwritable_directory_is_ignored(tmp_path, monkeypatch):
    blocker = tmp_path / "a file"
    blocker.write_text("not a directory", encoding="utf-8")
    monkeypatch.setenv("PENCILS_CACHE_DIR", str(blocker / "cache"))
    digest = cache.key("expression")
    cache.store("dyson", digest, PAYLOAD)
    assert cache.load("dyson", digest) is None
    assert cache.clear() == 0
    assert list(tmp_path.iterdir()) == [blocker]


@pytest.mark.parametrize("failing_call", ["write", "fsync", "close", "replace"])
def test_failed_write_leaves_no_temporary_file(cache_directory, monkeypatch, failing_call):
    """A full disk (ENOSPC) at any step of a write: nothing is left behind, nothing raised."""
    original = getattr(os, failing_call)

    def fail(*arguments):
        if failing_call == "close":
            original(*arguments)  # the descriptor is closed even when close reports an error
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, failing_call, fail)
    digest = cache.key("expression")
    cache.store("dyson", digest, PAYLOAD)
    monkeypatch.undo()
    assert cache_directory.is_dir()
    assert list(cache_directory.iterdir()) == []


def test_unreadable_entry_is_a_miss(cache_directory):
    digest = cache.key("expression")
    entry_file(cache_directory, "dyson", digest).mkdir(parents=True)
    assert cache.load("dyson", digest) is None


# Clearing


def test_clear_removes_entries_and_returns_their_number(cache_directory):
    for number in range(3):
        cache.store("dyson", cache.key(str(number)), {"number": number})
    cache.store("formula", cache.key("0"), {"number": 0})
    leftover = cache_directory / f".dyson-{cache.key('0')}.json.interrupted.tmp"
    leftover.write_text("{", encoding="utf-8")
    unrelated = [cache_directory / "notes.json", cache_directory / "README.txt"]
    for path in unrelated:
        path.write_text("{}", encoding="utf-8")
    assert cache.clear() == 4
    assert sorted(cache_directory.iterdir()) == sorted(unrelated)
    assert cache.load("dyson", cache.key("0")) is None
    assert cache.clear() == 0


def test_clear_of_a_missing_directory_removes_nothing(cache_directory):
    assert cache.clear() == 0


# Concurrent writers

WRITERS = 8
ITERATIONS = 50


def concurrent_payload(writer: int) -> dict:
    """A payload of about 300 kB that differs from one writer to the next."""
    rows = [f"writer {writer}, row {row}: " + "x" * 30 for row in range(6000)]
    return {"writer": writer, "rows": rows}


def write_and_read_concurrently(folder: str, writer: int) -> tuple:
    """Store this writer's payload and load the shared entry, ``ITERATIONS`` times.

    Returns the numbers of loads that gave a complete payload, gave nothing, and
    gave something other than one of the writers' complete payloads.
    """
    os.environ["PENCILS_CACHE_DIR"] = folder
    expected = [concurrent_payload(number) for number in range(WRITERS)]
    digest = cache.key("shared expression")
    complete = missing = wrong = 0
    for _ in range(ITERATIONS):
        cache.store("concurrent", digest, expected[writer])
        loaded = cache.load("concurrent", digest)
        if loaded is None:
            missing += 1
        elif loaded.get("writer") in range(WRITERS) and loaded == expected[loaded["writer"]]:
            complete += 1
        else:
            wrong += 1
    return complete, missing, wrong


def test_concurrent_writers_never_expose_a_partial_entry(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("PENCILS_CACHE_DIR", str(folder))
    # Forking is much faster than spawning (no re-import of SymPy in 8 processes) but is
    # only safe by default on Linux.
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    context = multiprocessing.get_context(method)
    with ProcessPoolExecutor(max_workers=WRITERS, mp_context=context) as executor:
        futures = [
            executor.submit(write_and_read_concurrently, str(folder), writer)
            for writer in range(WRITERS)
        ]
        results = [future.result(timeout=120) for future in futures]
    complete, missing, wrong = (sum(counts) for counts in zip(*results))
    assert wrong == 0
    # Every load follows the worker's own store and a valid entry is never removed, so with
    # atomic writes the entry is always there: a miss means a reader saw a partial file.
    assert missing == 0
    assert complete == WRITERS * ITERATIONS
    digest = cache.key("shared expression")
    final_name = f"concurrent-{digest}.json"
    final = cache.load("concurrent", digest)
    assert final is not None and final == concurrent_payload(final["writer"])
    assert temporary_files(folder) == []
    assert [path.name for path in folder.iterdir()] == [final_name]


# Unsafe entries: links, special files, huge files


def plant_outside(tmp_path: Path, monkeypatch, digest: str, payload: dict) -> Path:
    """A valid entry (right key, right checksum) written outside the cache directory."""
    outside = tmp_path / "outside"
    with monkeypatch.context() as patch:
        patch.setenv("PENCILS_CACHE_DIR", str(outside))
        cache.store("dyson", digest, payload)
    return entry_file(outside, "dyson", digest)


def test_symbolic_link_out_of_the_cache_is_never_followed(tmp_path, cache_directory, monkeypatch):
    digest = cache.key("expression")
    planted = plant_outside(tmp_path, monkeypatch, digest, {"planted": True})
    cache_directory.mkdir()
    link = entry_file(cache_directory, "dyson", digest)
    link.symlink_to(planted)
    with pytest.warns(CacheWarning, match="symbolic link"):
        assert cache.load("dyson", digest) is None
    assert not os.path.lexists(link)  # the link is removed, its target is left alone
    assert json.loads(planted.read_text())["payload"] == {"planted": True}
    cache.store("dyson", digest, PAYLOAD)
    assert cache.load("dyson", digest) == PAYLOAD and not link.is_symlink()


def test_symbolic_link_within_the_cache_is_not_followed_either(cache_directory):
    digest, other = cache.key("expression"), cache.key("other")
    cache.store("dyson", other, PAYLOAD)
    entry_file(cache_directory, "dyson", digest).symlink_to(entry_file(cache_directory, "dyson", other))
    with pytest.warns(CacheWarning, match="symbolic link"):
        assert cache.load("dyson", digest) is None
    assert cache.load("dyson", other) == PAYLOAD


@pytest.mark.timeout(60)
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_fifo_in_place_of_an_entry_does_not_hang(cache_directory):
    digest = cache.key("expression")
    cache_directory.mkdir()
    fifo = entry_file(cache_directory, "dyson", digest)
    os.mkfifo(fifo)
    with pytest.warns(CacheWarning, match="not a regular file"):
        assert cache.load("dyson", digest) is None
    assert not os.path.lexists(fifo)


@pytest.mark.timeout(60)
@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero on this platform")
def test_link_to_an_endless_device_is_not_read(cache_directory):
    digest = cache.key("expression")
    cache_directory.mkdir()
    entry_file(cache_directory, "dyson", digest).symlink_to("/dev/zero")
    with pytest.warns(CacheWarning, match="symbolic link"):
        assert cache.load("dyson", digest) is None
    assert list(cache_directory.iterdir()) == []


def test_device_opened_directly_is_not_read(cache_directory, monkeypatch):
    """Were the link followed after all (a platform without O_NOFOLLOW), the device is still refused."""
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero on this platform")
    monkeypatch.setattr(cache, "_entry_path", lambda kind, digest: Path("/dev/zero"))
    monkeypatch.setattr(cache, "_remove_quietly", lambda path: None)  # never try to remove /dev/zero
    with pytest.warns(CacheWarning, match="not a regular file"):
        assert cache.load("dyson", cache.key("expression")) is None


def test_entry_larger_than_the_bound_is_not_read(cache_directory, monkeypatch):
    digest = cache.key("expression")
    cache.store("dyson", digest, {"rows": ["x" * 100] * 100})
    path = entry_file(cache_directory, "dyson", digest)
    monkeypatch.setattr(cache, "MAX_ENTRY_BYTES", 5000)
    with pytest.warns(CacheWarning, match="larger than 5000 bytes"):
        assert cache.load("dyson", digest) is None
    assert not path.exists()
    cache.store("dyson", digest, {"rows": ["x" * 100] * 100})  # too large to write: skipped
    assert not path.exists()
    cache.store("dyson", digest, PAYLOAD)
    assert cache.load("dyson", digest) == PAYLOAD


def test_sparse_huge_file_is_refused_without_reading_it(cache_directory):
    digest = cache.key("expression")
    cache_directory.mkdir()
    with open(entry_file(cache_directory, "dyson", digest), "wb") as file:
        file.truncate(cache.MAX_ENTRY_BYTES * 16)  # 1 GiB of zeros, no disk used
    with pytest.warns(CacheWarning, match="larger than"):
        assert cache.load("dyson", digest) is None
