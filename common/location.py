"""Where a store, archive or file lives: a local path or an fsspec URL. The one place that decides.

Every entry point passes a user's location through :func:`resolve` once: a ``file://`` URL
becomes the plain local path it names (``file:///tmp/x`` -> ``/tmp/x``), so that local stores
take the fast local paths of the project (flock, atomic renames, ``os.stat`` before reading)
and no code ever turns ``file:///x`` into a relative folder ``file:/x``. Anything with another
protocol (``s3://``, ``gs://``, ``memory://``) stays a URL and goes through fsspec.
"""

from __future__ import annotations

import os
from urllib.parse import unquote, urlparse

from common.errors import LocationError


def resolve(location: str | os.PathLike) -> str:
    """The local path of a path or ``file://`` URL; any other URL unchanged.

    Raises
    ------
    LocationError
        For a ``file://`` URL naming another host (``file://server/x``): not on this machine.
    """
    text = os.fspath(location)
    if not text.lower().startswith("file://"):
        return text
    parsed = urlparse(text)
    if parsed.netloc not in ("", "localhost"):
        raise LocationError(f"{text}: a file:// URL on another host ({parsed.netloc!r}) is not on this machine")
    return unquote(parsed.path) or "/"


def is_url(path: str | os.PathLike) -> bool:
    """True for fsspec URLs of another file system (``s3://...``); False for local paths and ``file://``."""
    text = os.fspath(path)
    return "://" in text and not text.lower().startswith("file://")


def filesystem(url: str, storage_options: dict | None = None):
    """``(fs, path, local)``: the fsspec file system of ``url``, the path on it, and whether it is local."""
    import fsspec  # imported here: parse workers import this module and never need fsspec for local files

    fs, path = fsspec.core.url_to_fs(resolve(url), **(storage_options or {}))
    protocol = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
    return fs, path, "file" in protocol or "local" in protocol


def join(url: str, *parts: str) -> str:
    """``url/part/...`` for paths and URLs alike."""
    return "/".join([str(url).rstrip("/"), *parts])
