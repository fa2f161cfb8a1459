"""Where a store or archive lives: a local path or an fsspec URL. The one place that decides.

Local paths (and ``file://`` URLs) take the fast local paths of the project (flock, atomic
renames, ``os.stat`` before reading); anything with another protocol (``s3://``, ``gs://``,
``memory://``) goes through fsspec.
"""

from __future__ import annotations


def is_url(path: str) -> bool:
    """True for fsspec URLs (``s3://...``), False for local paths and ``file://``."""
    return "://" in str(path) and not str(path).startswith("file://")


def filesystem(url: str, storage_options: dict | None = None):
    """``(fs, path, local)``: the fsspec file system of ``url``, the path on it, and whether it is local."""
    import fsspec  # imported here: parse workers import this module and never need fsspec for local files

    fs, path = fsspec.core.url_to_fs(str(url), **(storage_options or {}))
    protocol = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
    return fs, path, "file" in protocol or "local" in protocol


def join(url: str, *parts: str) -> str:
    """``url/part/...`` for paths and URLs alike."""
    return "/".join([str(url).rstrip("/"), *parts])
