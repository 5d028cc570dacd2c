"""The package's version: from the installed metadata, else from ``pyproject.toml`` in a source checkout."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

__all__ = ["package_version"]


def package_version() -> str:
    """The version of the installed distribution ``pencils``; in a source tree that is not installed, the
    ``version`` of its ``pyproject.toml``; ``"unknown"`` if neither is found.

    Examples
    --------
    >>> import pencils
    >>> pencils.__version__ == package_version()
    True
    """
    try:
        return metadata.version("pencils")
    except metadata.PackageNotFoundError:
        pass
    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    try:
        text = pyproject.read_text(encoding="utf-8")
    except OSError:
        return "unknown"
    project = re.search(r"^\[project\]\s*$(.*?)(?=^\[|\Z)", text, flags=re.MULTILINE | re.DOTALL)
    found = re.search(r'^version\s*=\s*"([^"]+)"', project.group(1), flags=re.MULTILINE) if project else None
    return found.group(1) if found else "unknown"
