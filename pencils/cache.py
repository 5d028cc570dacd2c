"""A small plain-text on-disk cache for derived results.

Deriving a Dyson system with SymPy can take seconds; this module lets a fresh
Python process reuse a result derived earlier.  Entries are plain JSON (never
pickle), so they are safe to read and easy to inspect, and they hold only
strings, numbers, booleans, ``None``, lists and dictionaries.

Typical use::

    digest = cache.key(sympy.srepr(expression), str(sorted(dims.items())))
    payload = cache.load("dyson", digest)
    if payload is None:
        payload = expensive_derivation(expression, dims)
        cache.store("dyson", digest, payload)

Location
--------
The directory is given by :func:`directory`: the environment variable
``PENCILS_CACHE_DIR`` if set (an empty value, ``0``, ``off`` or ``none``
disables the cache), else the platform's convention:

* Linux and other POSIX systems: ``$XDG_CACHE_HOME/pencils``, or
  ``~/.cache/pencils`` when ``XDG_CACHE_HOME`` is unset or not absolute;
* macOS: ``~/Library/Caches/pencils``;
* Windows: ``%LOCALAPPDATA%\\pencils\\Cache``.

Layout
------
Each entry is one file, ``<kind>-<digest>.json``, where ``kind`` names what is
stored (lower-case letters, digits and underscores) and ``digest`` is the
hexadecimal SHA-256 returned by :func:`key`.  The file holds one JSON object::

    {
     "format": 1,
     "version": "0.1.0",
     "kind": "dyson",
     "key": "<digest>",
     "checksum": "<SHA-256 of the canonical JSON of the payload>",
     "payload": {...}
    }

The canonical JSON of the payload is
``json.dumps(payload, sort_keys=True, separators=(",", ":"))``.

Guarantees
----------
* Keys include the package version and :data:`FORMAT`, so a new release or a
  new file format never reuses an old entry.
* Writes are atomic: an entry is written to a temporary file
  ``.<kind>-<digest>.json.<random>.tmp`` in the same directory, synced to disk,
  then renamed onto its final name.  Readers see either the old entry, the new
  one, or none, never a partial file, even with many concurrent writers.
* An entry that cannot be parsed, or whose format, version, kind, key or
  checksum does not match, is removed and reported as missing, so that the
  caller rebuilds it.
* The cache never raises on an unusable directory (read-only, full disk): it
  logs at debug level and behaves as if empty.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sys
import tempfile
from functools import lru_cache
from importlib import metadata
from pathlib import Path

__all__ = ["FORMAT", "directory", "key", "load", "store", "clear"]

FORMAT = 1
"""Version of the file format; changing it invalidates every existing entry."""

_ENVIRONMENT_VARIABLE = "PENCILS_CACHE_DIR"
_DISABLING_VALUES = frozenset({"", "0", "off", "none"})
_KIND_PATTERN = re.compile(r"[a-z0-9_]+")
_DIGEST_PATTERN = re.compile(r"[0-9a-f]{64}")
_ENTRY_PATTERN = re.compile(r"[a-z0-9_]+-[0-9a-f]{64}\.json")
_TEMPORARY_PATTERN = re.compile(r"\.[a-z0-9_]+-[0-9a-f]{64}\.json\..*\.tmp", re.DOTALL)

_logger = logging.getLogger(__name__)


def directory() -> Path | None:
    """Return the cache directory, or ``None`` when the cache is disabled.

    The environment is read on every call, so that changes made at run time
    take effect.  The directory is not created here; :func:`store` creates it.

    Returns
    -------
    pathlib.Path or None
        ``$PENCILS_CACHE_DIR`` if that variable is set to anything other than
        an empty string, ``0``, ``off`` or ``none`` (any case), which disable
        the cache.  Otherwise the platform's cache directory:
        ``$XDG_CACHE_HOME/pencils`` (if ``XDG_CACHE_HOME`` is an absolute path)
        or ``~/.cache/pencils`` on Linux and other POSIX systems,
        ``~/Library/Caches/pencils`` on macOS and
        ``%LOCALAPPDATA%\\pencils\\Cache`` on Windows.

    Examples
    --------
    >>> import os
    >>> from pathlib import Path
    >>> from unittest import mock
    >>> with mock.patch.dict(os.environ, {"PENCILS_CACHE_DIR": "/tmp/pencils-example"}):
    ...     directory() == Path("/tmp/pencils-example")
    True
    >>> with mock.patch.dict(os.environ, {"PENCILS_CACHE_DIR": "off"}):
    ...     print(directory())
    None
    """
    override = os.environ.get(_ENVIRONMENT_VARIABLE)
    if override is not None:
        if override.strip().lower() in _DISABLING_VALUES:
            return None
        return Path(override).expanduser()
    return _platform_directory()


def _platform_directory() -> Path:
    """The conventional per-user cache directory of the running platform."""
    if sys.platform == "win32":
        local_application_data = os.environ.get("LOCALAPPDATA")
        if local_application_data:
            base = Path(local_application_data)
        else:
            base = Path.home() / "AppData" / "Local"
        return base / "pencils" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "pencils"
    xdg_cache_home = os.environ.get("XDG_CACHE_HOME", "")
    if os.path.isabs(xdg_cache_home):
        return Path(xdg_cache_home) / "pencils"
    return Path.home() / ".cache" / "pencils"


@lru_cache(maxsize=None)
def _package_version() -> str:
    """The installed version of :mod:`pencils`, or ``"unknown"`` if it is not installed."""
    try:
        return metadata.version("pencils")
    except metadata.PackageNotFoundError:
        return "unknown"


def key(*parts: str) -> str:
    """Return the cache key of some strings, for this package version and file format.

    Parameters
    ----------
    *parts : str
        Everything the cached result depends on, e.g. ``sympy.srepr`` of an
        expression and a description of its dimensions.  The parts are
        length-prefixed before hashing, so ``key("ab", "c")`` and
        ``key("a", "bc")`` differ.

    Returns
    -------
    str
        The hexadecimal SHA-256 (64 characters) of the parts together with
        the package version and :data:`FORMAT`; a new release or file format
        therefore gives new keys.

    Raises
    ------
    TypeError
        If a part is not a string.

    Examples
    --------
    >>> digest = key("x**2", "n/d = 2")
    >>> len(digest)
    64
    >>> digest == key("x**2", "n/d = 2")
    True
    >>> key("x**2") != key("x**3")
    True
    >>> key("ab", "c") != key("a", "bc")
    True
    """
    hasher = hashlib.sha256()
    for part in (f"format {FORMAT}", f"pencils {_package_version()}", *parts):
        if not isinstance(part, str):
            raise TypeError(f"cache key parts must be strings, got {type(part).__name__}: {part!r}")
        encoded = part.encode("utf-8")
        hasher.update(f"{len(encoded)}:".encode("ascii"))
        hasher.update(encoded)
    return hasher.hexdigest()


def load(kind: str, digest: str) -> dict | None:
    """Return the payload stored under ``kind`` and ``digest``, or ``None``.

    An entry that cannot be parsed, or whose format, package version, kind,
    key or checksum does not match, is removed (quietly: a debug message is
    logged) and ``None`` is returned, so that the caller rebuilds it.  An entry
    that cannot be read (permissions, a file locked by another process) is
    reported as missing but left in place.

    Parameters
    ----------
    kind : str
        What is stored, e.g. ``"dyson"``: lower-case letters, digits and
        underscores.
    digest : str
        The key returned by :func:`key`.

    Returns
    -------
    dict or None
        The payload given to :func:`store` (after a JSON round trip: tuples
        come back as lists and dictionary keys as strings), or ``None`` if the
        cache is disabled or holds no valid entry.

    Raises
    ------
    ValueError
        If ``kind`` or ``digest`` is malformed.

    Examples
    --------
    >>> import os, tempfile
    >>> from unittest import mock
    >>> with tempfile.TemporaryDirectory() as folder, \\
    ...         mock.patch.dict(os.environ, {"PENCILS_CACHE_DIR": folder}):
    ...     print(load("example", key("never stored")))
    ...     store("example", key("x**2"), {"roots": ["-1", "1"]})
    ...     load("example", key("x**2"))
    None
    {'roots': ['-1', '1']}
    """
    path = _entry_path(kind, digest)
    if path is None:
        return None
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        # Not evidence of corruption (permissions, a file locked by another process on
        # Windows): report a miss and leave the entry for store() to replace.
        _logger.debug("pencils cache: cannot read %s (%s)", path, error)
        return None
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as error:
        _discard(path, f"is not valid JSON ({error})")
        return None
    problem = _validation_problem(document, kind, digest)
    if problem is not None:
        _discard(path, problem)
        return None
    return document["payload"]


def store(kind: str, digest: str, payload: dict) -> None:
    """Store ``payload`` under ``kind`` and ``digest``, atomically.

    The entry is written to a temporary file in the cache directory, synced to
    disk and renamed onto its final name, so concurrent readers and writers
    never see a partial entry.  Nothing is written when the cache is disabled,
    and a directory that cannot be created or written (read-only, full disk)
    is logged at debug level and otherwise ignored.

    Parameters
    ----------
    kind : str
        What is stored, e.g. ``"dyson"``: lower-case letters, digits and
        underscores.
    digest : str
        The key returned by :func:`key`.
    payload : dict
        A JSON-serialisable dictionary: strings, integers, floats (finite),
        booleans, ``None``, lists and dictionaries.

    Raises
    ------
    ValueError
        If ``kind`` or ``digest`` is malformed, or ``payload`` holds a
        non-finite float.
    TypeError
        If ``payload`` is not a dictionary or is not JSON-serialisable.

    Examples
    --------
    >>> import os, tempfile
    >>> from unittest import mock
    >>> with tempfile.TemporaryDirectory() as folder, \\
    ...         mock.patch.dict(os.environ, {"PENCILS_CACHE_DIR": folder}):
    ...     store("example", key("x**2"), {"roots": ["-1", "1"], "degree": 2})
    ...     sorted(os.listdir(folder)) == [f"example-{key('x**2')}.json"]
    True
    """
    path = _entry_path(kind, digest)
    if not isinstance(payload, dict):
        raise TypeError(f"the cache payload must be a dict, got {type(payload).__name__}")
    document = {
        "format": FORMAT,
        "version": _package_version(),
        "kind": kind,
        "key": digest,
        "checksum": _checksum(payload),
        "payload": payload,
    }
    text = json.dumps(document, indent=1, allow_nan=False).encode("utf-8") + b"\n"
    if path is None:
        return
    try:
        _write_atomically(path, text)
    except OSError as error:
        _logger.debug("pencils cache: could not write %s (%s)", path, error)


def clear() -> int:
    """Remove every entry of the cache, and any temporary file left by an interrupted write.

    Only files named like cache entries are removed, so pointing
    ``PENCILS_CACHE_DIR`` at a shared directory does not endanger other files.

    Returns
    -------
    int
        The number of entries removed (temporary files are not counted);
        ``0`` if the cache is disabled or its directory does not exist.

    Examples
    --------
    >>> import os, tempfile
    >>> from unittest import mock
    >>> with tempfile.TemporaryDirectory() as folder, \\
    ...         mock.patch.dict(os.environ, {"PENCILS_CACHE_DIR": folder}):
    ...     store("example", key("x**2"), {"degree": 2})
    ...     store("example", key("x**3"), {"degree": 3})
    ...     clear()
    ...     print(load("example", key("x**2")))
    2
    None
    """
    folder = directory()
    if folder is None:
        return 0
    try:
        names = os.listdir(folder)
    except OSError:
        return 0
    removed = 0
    for name in names:
        is_entry = _ENTRY_PATTERN.fullmatch(name) is not None
        if not (is_entry or _TEMPORARY_PATTERN.fullmatch(name)):
            continue
        try:
            os.remove(folder / name)
        except OSError as error:
            _logger.debug("pencils cache: could not remove %s (%s)", folder / name, error)
            continue
        removed += is_entry
    return removed


def _entry_path(kind: str, digest: str) -> Path | None:
    """The file of an entry, or ``None`` if the cache is disabled; validates the arguments."""
    if not isinstance(kind, str) or _KIND_PATTERN.fullmatch(kind) is None:
        raise ValueError(
            f"cache kind must be lower-case letters, digits and underscores, got {kind!r}"
        )
    if not isinstance(digest, str) or _DIGEST_PATTERN.fullmatch(digest) is None:
        raise ValueError(
            f"cache digest must be a hexadecimal SHA-256 as returned by key(), got {digest!r}"
        )
    folder = directory()
    if folder is None:
        return None
    return folder / f"{kind}-{digest}.json"


def _checksum(payload: dict) -> str:
    """The SHA-256 of the canonical JSON of ``payload``."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _validation_problem(document: object, kind: str, digest: str) -> str | None:
    """Why ``document`` is not a valid entry for ``kind`` and ``digest``, or ``None`` if it is."""
    if not isinstance(document, dict):
        return "is not a JSON object"
    expected = {"format": FORMAT, "version": _package_version(), "kind": kind, "key": digest}
    for field, value in expected.items():
        if document.get(field) != value:
            return f"has {field} {document.get(field)!r} instead of {value!r}"
    payload = document.get("payload")
    if not isinstance(payload, dict):
        return "has no payload object"
    try:
        checksum = _checksum(payload)
    except ValueError:
        return "has a payload that is not strict JSON"
    if document.get("checksum") != checksum:
        return "has a wrong checksum"
    return None


def _discard(path: Path, reason: str) -> None:
    """Remove a corrupted or stale entry, ignoring failures (another process may replace it)."""
    _logger.debug("pencils cache: removing %s, which %s", path, reason)
    _remove_quietly(path)


def _write_atomically(path: Path, text: bytes) -> None:
    """Write ``text`` to ``path`` through a synced temporary file and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
    ) as temporary:
        temporary_path = temporary.name
        try:
            temporary.write(text)
            temporary.flush()
            os.fsync(temporary.fileno())
        except BaseException:
            temporary.close()
            _remove_quietly(temporary_path)
            raise
    try:
        os.replace(temporary_path, path)
    except BaseException:
        _remove_quietly(temporary_path)
        raise


def _remove_quietly(path: str | Path) -> None:
    """Remove a file if it still exists, ignoring every error."""
    try:
        os.remove(path)
    except OSError:
        pass
