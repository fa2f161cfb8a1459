"""Source ids and names: unique in an archive, stable, and the same whatever the order of discovery.

eSASS names its products ``emNN_TTTTTT_DDD_LightCurve_NNNNN_cVVV...``: survey and merge (``em01``:
eRASS1 merged), sky tile (``080156``), data set, the source's running number *within its tile*
(``00002``, which is also the file's OBJECT keyword and repeats in every tile) and the processing
version. The tile and the number together are unique in the survey, as the DR1 catalogue's DETUID
is, so for such names the source id is ``emNN_TTTTTT_NNNNN`` (:func:`source_id_of`), whatever
folder the file sits in or when it is found. Other names keep the earlier rule: the OBJECT
keyword, else the file name's stem. (When two files of an archive still end up with one id, the
ingest keeps the first *by file name* under it and the other under ``id@stem``:
:mod:`etl.ingestor`.)

Positions get the IAU-style name the eRASS1 catalogue gives its sources (:func:`iau_name`):
``1eRASS Jhhmmss.s+ddmmss``, the coordinates truncated, not rounded (Merloni et al. 2024, A&A
682, A34, Sect. 6), so users can cross-reference the published catalogue.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

#: eSASS product names: survey/merge, tile, data set, "LightCurve", number, processing version.
ESASS_NAME = re.compile(r"^(?P<survey>e[a-z]\d\d)_(?P<tile>\d{6})_(?P<dataset>\d{3})_LightCurve_(?P<number>\d{5})_c\d{3}",
                        re.IGNORECASE)
ID_SCHEMES = ("name", "object")
#: How a store made its ids: "name" (tile + number for eSASS names; new stores), "object" (the OBJECT
#: keyword or file stem for every file; stores written before schema version 3 keep it).
DEFAULT_ID_SCHEME = "name"
SUFFIXES = (".gz", ".fits", ".fit", ".fts", ".lc")


def stem(path: str | os.PathLike) -> str:
    """The file name without ``.fits``/``.fits.gz`` and similar endings."""
    name = Path(path).name
    for suffix in SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name


def source_id_of(path: str | os.PathLike, object_name: str = "", scheme: str = DEFAULT_ID_SCHEME) -> str:
    """The id a file's source gets: ``emNN_TTTTTT_NNNNN`` for eSASS names (scheme ``name``), else
    the OBJECT keyword, else the file name's stem."""
    if scheme == "name":
        m = ESASS_NAME.match(Path(path).name)
        if m:
            return f"{m['survey'].lower()}_{m['tile']}_{m['number']}"
    return object_name or stem(path)


def iau_name(ra: np.ndarray | float, dec: np.ndarray | float, prefix: str = "1eRASS") -> np.ndarray | str:
    """``1eRASS Jhhmmss.s+ddmmss`` of positions (deg), truncated as the eRASS1 catalogue truncates.

    Vectorised; a NaN position gives an empty string.
    """
    scalar = np.isscalar(ra)
    ra, dec = np.atleast_1d(np.asarray(ra, "f8")), np.atleast_1d(np.asarray(dec, "f8"))
    out = np.full(ra.shape, "", dtype=object)
    good = np.isfinite(ra) & np.isfinite(dec)
    # whole tenths of a second of RA and whole arcseconds of Dec, truncated (a tiny epsilon keeps
    # a value that is exact in decimal, like 12.3 s, from falling to 12.2 through binary rounding)
    tenths = np.floor((ra[good] % 360.0) / 15.0 * 36000.0 + 1e-6).astype(np.int64)
    arcsec = np.floor(np.abs(dec[good]) * 3600.0 + 1e-6).astype(np.int64)
    sign = np.where(dec[good] < 0, "-", "+")
    for i, t, a, s in zip(np.flatnonzero(good), tenths, arcsec, sign):
        out[i] = f"{prefix} J{t // 36000:02d}{t // 600 % 60:02d}{t % 600 // 10:02d}.{t % 10}{s}{a // 3600:02d}{a // 60 % 60:02d}{a % 60:02d}"
    return out[0] if scalar else out
