"""A small plain-text on-disk cache for derived results.

Deriving a Dyson system with SymPy can take seconds; this module lets a fresh
Python process reuse a result derived earlier.  Entries are plain JSON (never
pickle), they hold only strings, numbers, booleans, ``None``, lists and
dictionaries, and nothing read from them is ever executed: expressions are
stored as data (:mod:`pencils.serialization`) and rebuilt node by node.
(Why one module of some 560 lines: it has one job, a safe file store; a
sixth of it is this description, and the rest the platform and safety cases
listed under Guarantees, which share the entry format and its checks.)

Typical use::

    digest = cache.key(sympy.srepr(expression), str(sorted(dims.items())))
    payload = cache.load("dyson", digest)
    if payload is None:
        payload = expensive_derivation(expression, dims)
        cache.store("dyson", digest, payload)

Location
--------
The directory is given by :func:`directory`: the environment variable
``PENCILS_CACHE_DIR`` if set, else the platform's convention:

* Linux and other POSIX systems: ``$XDG_CACHE_HOME/pencils``, or
  ``~/.cache/pencils`` when ``XDG_CACHE_HOME`` is unset or not absolute;
* macOS: ``~/Library/Caches/pencils``;
* Windows: ``%LOCALAPPDATA%\\pencils\\Cache``.

``PENCILS_CACHE_DIR`` set to ``off``, ``false``, ``0``, ``no``, ``none``,
``disable``, ``disabled`` or the empty string (in any case, surrounding spaces
ignored) disables the cache.  Any other value must be an absolute path, or
start with ``~`` (the home directory); a relative path is refused (its meaning
would change with the working directory, and ``PENCILS_CACHE_DIR=flase``
would create a folder ``./flase``): the cache is then disabled, with a
:class:`pencils.errors.CacheWarning`.

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
  one, or none, never a partial file, even with many concurrent writers.  A
  write that fails (a full disk, an interrupt) removes its temporary file.
* Only a regular file is read, opened without following a symbolic link and
  without blocking (a FIFO cannot hang the reader), and only up to
  :data:`MAX_ENTRY_BYTES`.  A symbolic link, FIFO, device or larger file in
  place of an entry is never read: it is removed and the entry rebuilt.
* An entry that cannot be parsed, or whose format, version, kind, key or
  checksum does not match, is removed and reported as missing, so that the
  caller rebuilds it; so is an entry whose caller finds its payload unusable
  (:func:`discard`).  The checksum guards against damage, not against a
  hostile file: what makes a forged entry harmless is that no part of it is
  executed, and that its content is checked by the code that reads it.
* Each kind of problem (an entry that is not a regular file, too large,
  damaged, malformed; a relative ``PENCILS_CACHE_DIR``) is reported once per
  process by a :class:`pencils.errors.CacheWarning`, and at debug level on the
  ``pencils.cache`` logger every time.
* The cache never raises on an unusable directory (read-only, full disk): it
  logs at debug level and behaves as if empty.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import stat
import sys
import tempfile
import threading
import warnings
from functools import lru_cache
from pathlib import Path

from .errors import CacheWarning
from .version import package_version

__all__ = ["FORMAT", "MAX_ENTRY_BYTES", "directory", "key", "load", "store", "discard", "clear"]

FORMAT = 1
"""Version of the file format; changing it invalidates every existing entry."""

MAX_ENTRY_BYTES = 64 * 2**20
"""The largest entry read or written: 64 MiB (a finite-width DSM derivation takes 0.3 MiB)."""

_ENVIRONMENT_VARIABLE = "PENCILS_CACHE_DIR"
_DISABLING_VALUES = frozenset({"", "0", "off", "false", "no", "none", "disable", "disabled"})
_KIND_PATTERN = re.compile(r"[a-z0-9_]+")
_DIGEST_PATTERN = re.compile(r"[0-9a-f]{64}")
_ENTRY_PATTERN = re.compile(r"[a-z0-9_]+-[0-9a-f]{64}\.json")
_TEMPORARY_PATTERN = re.compile(r"\.[a-z0-9_]+-[0-9a-f]{64}\.json\..*\.tmp", re.DOTALL)

_logger = logging.getLogger(__name__)
_reported: set = set()  # the kinds of problem already reported by a CacheWarning in this process
_reported_lock = threading.Lock()


class _UnsafeEntry(Exception):
    """An entry that is not read (not a regular file, too large); the message says why."""


def directory() -> Path | None:
    """Return the cache directory, or ``None`` when the cache is disabled.

    The environment is read on every call, so that changes made at run time
    take effect.  The directory is not created here; :func:`store` creates it.

    Returns
    -------
    pathlib.Path or None
        ``$PENCILS_CACHE_DIR`` if that variable is set, with ``~`` expanded;
        ``None`` if it is ``off``, ``false``, ``0``, ``no``, ``none``,
        ``disable``, ``disabled`` or empty (any case), or a relative path
        (refused with a :class:`pencils.errors.CacheWarning`, once).
        Otherwise the platform's cache directory:
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
    >>> with mock.patch.dict(os.environ, {"PENCILS_CACHE_DIR": "False"}):
    ...     print(directory())
    None
    """
    override = os.environ.get(_ENVIRONMENT_VARIABLE)
    if override is None:
        return _platform_directory()
    if override.strip().lower() in _DISABLING_VALUES:
        return None
    folder = Path(os.path.expanduser(override))  # "~unknown-user" stays as it is (and is relative)
    if not folder.is_absolute():
        _warn_once(
            f"relative {_ENVIRONMENT_VARIABLE} {override!r}",
            f"{_ENVIRONMENT_VARIABLE}={override!r} is a relative path, so the pencils cache is disabled; set it to "
            f"an absolute path (or ~/...), or to off, false, 0, no, none or disabled.",
        )
        return None
    return folder


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
    """The version of :mod:`pencils` (:func:`pencils.version.package_version`)."""
    return package_version()


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

    An entry that is not a regular file (a symbolic link, a FIFO, a device),
    is larger than :data:`MAX_ENTRY_BYTES`, cannot be parsed, or whose format,
    package version, kind, key or checksum does not match, is not used: it is
    removed, ``None`` is returned so that the caller rebuilds it, and a
    :class:`pencils.errors.CacheWarning` says so (once per process for each
    kind of problem).  An entry that cannot be read (permissions, a file locked
    by another process) is reported as missing but left in place.

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
        text = _read_entry(path)
    except FileNotFoundError:
        return None
    except _UnsafeEntry as problem:
        _reject(path, "an entry that is not a regular file of bounded size", str(problem))
        return None
    except OSError as error:
        # Not evidence of corruption (permissions, a file locked by another process on
        # Windows): report a miss and leave the entry for store() to replace.
        _logger.debug("pencils cache: cannot read %s (%s)", path, error)
        return None
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as error:
        _reject(path, "a damaged entry", f"is not valid JSON ({error})")
        return None
    problem = _validation_problem(document, kind, digest)
    if problem is not None:
        _reject(path, "a damaged entry", problem)
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
    if len(text) > MAX_ENTRY_BYTES:
        _logger.debug("pencils cache: not writing %s, of %d bytes (more than %d)", path, len(text), MAX_ENTRY_BYTES)
        return
    try:
        _write_atomically(path, text)
    except OSError as error:
        _logger.debug("pencils cache: could not write %s (%s)", path, error)


def discard(kind: str, digest: str, reason: str) -> None:
    """Remove an entry that :func:`load` returned but its caller cannot use, and say so once.

    For a payload whose checksum is valid but whose content the caller refuses
    (a malformed expression tree, an index out of range): the entry is
    removed, so that the caller rebuilds and stores it, and a
    :class:`pencils.errors.CacheWarning` is issued (once per process).

    Parameters
    ----------
    kind, digest : str
        As given to :func:`load`.
    reason : str
        What is wrong, completing "the entry ...", e.g. ``"holds an unknown node type"``.

    Examples
    --------
    >>> import os, tempfile, warnings
    >>> from unittest import mock
    >>> with tempfile.TemporaryDirectory() as folder, \\
    ...         mock.patch.dict(os.environ, {"PENCILS_CACHE_DIR": folder}), warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     store("example", key("x**2"), {"roots": "not a list"})
    ...     discard("example", key("x**2"), "holds roots that are not a list")
    ...     print(load("example", key("x**2")))
    None
    """
    path = _entry_path(kind, digest)
    if path is not None:
        _reject(path, "an entry with a malformed payload", reason)


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


def _read_entry(path: Path) -> bytes:
    """The bytes of the regular file ``path``, never following a symbolic link nor blocking.

    Raises :class:`_UnsafeEntry` if ``path`` is a symbolic link, is not a
    regular file (checked on the opened descriptor, so that nothing can be
    swapped in between) or holds more than :data:`MAX_ENTRY_BYTES`.
    """
    no_follow = getattr(os, "O_NOFOLLOW", 0)
    if not no_follow and path.is_symlink():  # Windows: no O_NOFOLLOW (and links need privileges)
        raise _UnsafeEntry("is a symbolic link")
    flags = os.O_RDONLY | no_follow | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        descriptor = os.open(path, flags)
    except OSError:
        if path.is_symlink():  # ELOOP on Linux, EMLINK on FreeBSD, EFTYPE on NetBSD
            raise _UnsafeEntry("is a symbolic link") from None
        raise
    with open(descriptor, "rb", buffering=0) as file:
        mode = os.fstat(descriptor).st_mode
        if not stat.S_ISREG(mode):
            raise _UnsafeEntry(f"is not a regular file (mode {stat.filemode(mode)})")
        text = file.read(MAX_ENTRY_BYTES + 1)
    if len(text) > MAX_ENTRY_BYTES:
        raise _UnsafeEntry(f"is larger than {MAX_ENTRY_BYTES} bytes")
    return text


def _reject(path: Path, problem: str, detail: str) -> None:
    """Remove an entry that is not used (``problem``: its kind of problem; ``detail``: what is wrong
    with this one), and report it: at debug level each time, by a warning once per ``problem``."""
    _logger.debug("pencils cache: removing %s, which %s", path, detail)
    _remove_quietly(path)
    _warn_once(
        problem,
        f"the pencils cache found {problem}: {path} {detail}. It was removed and is rebuilt, so results are "
        f"unaffected; other entries with this kind of problem are handled the same way without a warning.",
    )


def _warn_once(problem: str, message: str) -> None:
    """Issue ``message`` as a :class:`CacheWarning` unless one was issued for ``problem`` in this process."""
    with _reported_lock:
        if problem in _reported:
            return
        _reported.add(problem)
    warnings.warn(message, CacheWarning, stacklevel=3)


def _write_atomically(path: Path, text: bytes) -> None:
    """Write ``text`` to ``path`` through a synced temporary file and an atomic rename.

    The temporary file is removed if anything fails (a full disk at any write,
    the sync, the close or the rename; an interrupt).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        try:
            remaining = memoryview(text)
            while remaining:
                remaining = remaining[os.write(descriptor, remaining) :]
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.replace(temporary, path)
    except BaseException:
        _remove_quietly(temporary)
        raise


def _remove_quietly(path: str | Path) -> None:
    """Remove a file if it still exists, ignoring every error."""
    try:
        os.remove(path)
    except OSError:
        pass
