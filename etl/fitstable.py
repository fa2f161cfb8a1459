"""Zero-copy reader of a fixed-width FITS binary table from bytes already in memory.

Ingest reads every file's bytes to hash them; handing the same bytes to cfitsio means a second
open, a second gzip decompression and cfitsio's per-card header objects (0.3 ms of the 0.9 ms
fitsio needs per small file). A light-curve table is the simplest FITS layout there is, so
this module walks the HDUs, parses the 80-byte cards it needs and views the rows with
``np.frombuffer``. Anything outside that simple layout (scaled columns, variable-length
arrays, bit or complex columns, random groups) raises :class:`Unsupported` and the caller
falls back to fitsio; ``tests/etl/test_fitstable.py`` checks both agree.
"""

from __future__ import annotations

import re

import numpy as np

BLOCK = 2880
CARD = 80

_TFORM = re.compile(r"^\s*(\d*)\s*([A-Z])")
_DTYPES = {"B": "u1", "I": ">i2", "J": ">i4", "K": ">i8", "E": ">f4", "D": ">f8", "L": "S1", "A": "S"}


class Unsupported(Exception):
    """The table uses a FITS feature this reader leaves to cfitsio."""


class Truncated(Exception):
    """The bytes end before the header or data they announce."""


class Header(dict):
    """Header keywords -> parsed values (str, bool, int, float); the first occurrence wins."""


def _parse_value(text: str):
    text = text.strip()
    if text.startswith("'"):
        out, i = [], 1
        while i < len(text):
            if text[i] == "'":
                if i + 1 < len(text) and text[i + 1] == "'":
                    out.append("'")
                    i += 2
                    continue
                break
            out.append(text[i])
            i += 1
        return "".join(out).rstrip()
    value = text.split("/", 1)[0].strip()
    if value == "T":
        return True
    if value == "F":
        return False
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value.replace("D", "E"))
    except ValueError:
        return value


def parse_header(raw: bytes | memoryview, start: int) -> tuple[Header, int]:
    """Parse the header starting at byte ``start``.

    Returns
    -------
    header : Header
    data_start : int
        Byte offset of the data following the header (block aligned).

    Raises
    ------
    Truncated
        When no END card appears before the bytes end.
    """
    header = Header()
    pos = start
    n = len(raw)
    while True:
        if pos + CARD > n:
            raise Truncated(f"header at byte {start} has no END card")
        card = bytes(raw[pos : pos + CARD]).decode("ascii", errors="replace")
        pos += CARD
        key = card[:8].rstrip()
        if key == "END":
            break
        if card[8:10] == "= " and key not in header:
            header[key] = _parse_value(card[10:])
    return header, start + -(-(pos - start) // BLOCK) * BLOCK


def _data_size(header: Header) -> int:
    naxis = int(header.get("NAXIS", 0))
    if naxis == 0:
        return 0
    size = 1
    for i in range(1, naxis + 1):
        size *= int(header.get(f"NAXIS{i}", 0))
    if header.get("SIMPLE") is True and header.get("GROUPS") is True:
        raise Unsupported("random groups")
    bitpix = abs(int(header.get("BITPIX", 8)))
    return bitpix // 8 * int(header.get("GCOUNT", 1)) * (int(header.get("PCOUNT", 0)) + size)


def find_extension(raw: bytes | memoryview, extname: str) -> tuple[Header, Header, int] | None:
    """Locate the extension named ``extname``.

    Returns
    -------
    (primary header, extension header, data offset), or None when no HDU has that EXTNAME.
    """
    primary, pos = parse_header(raw, 0)
    pos += -(-_data_size(primary) // BLOCK) * BLOCK
    while pos + CARD <= len(raw):
        header, data = parse_header(raw, pos)
        if str(header.get("EXTNAME", "")).strip().upper() == extname.upper():
            return primary, header, data
        pos = data + -(-_data_size(header) // BLOCK) * BLOCK
    return None


def table_dtype(header: Header) -> np.dtype:
    """Record dtype of a BINTABLE's rows (big-endian, packed as NAXIS1 says)."""
    if header.get("XTENSION") != "BINTABLE":
        raise Unsupported(f"XTENSION {header.get('XTENSION')!r}")
    if int(header.get("PCOUNT", 0)) != 0:
        raise Unsupported("heap (variable-length arrays)")
    names, formats, offsets, pos = [], [], [], 0
    for i in range(1, int(header["TFIELDS"]) + 1):
        form = str(header.get(f"TFORM{i}", ""))
        match = _TFORM.match(form)
        if not match:
            raise Unsupported(f"TFORM{i} = {form!r}")
        repeat = int(match.group(1) or 1)
        letter = match.group(2)
        if letter not in _DTYPES:
            raise Unsupported(f"TFORM{i} = {form!r}")
        if f"TSCAL{i}" in header or f"TZERO{i}" in header:
            raise Unsupported(f"scaled column {i}")
        if letter == "A":
            fmt, width = f"S{repeat}", repeat
        else:
            base = np.dtype(_DTYPES[letter])
            fmt = (base, (repeat,)) if repeat > 1 else base
            width = base.itemsize * repeat
        if repeat:
            names.append(str(header.get(f"TTYPE{i}", f"COL{i}")).strip().upper())
            formats.append(fmt)
            offsets.append(pos)
        pos += width
    if pos != int(header["NAXIS1"]):
        raise Unsupported(f"TFORMs add up to {pos} bytes, NAXIS1 is {header['NAXIS1']}")
    return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": pos})


def read_rows(raw: bytes | memoryview, header: Header, data_start: int) -> np.ndarray:
    """View the table's rows; column ``c`` is ``rows[c]`` with shape (N,) or (N, repeat).

    Raises
    ------
    Truncated
        When the bytes end inside the table.
    """
    dtype = table_dtype(header)
    n_rows = int(header["NAXIS2"])
    need = n_rows * dtype.itemsize
    if data_start + need > len(raw):
        raise Truncated(f"table needs {need} bytes from byte {data_start}, file has {len(raw) - data_start}")
    return np.frombuffer(raw, dtype=dtype, count=n_rows, offset=data_start)
