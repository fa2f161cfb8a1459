"""Zero-copy reader of a fixed-width FITS binary table from bytes already in memory.

Ingest reads every file's bytes to hash them; handing the same bytes to cfitsio means a second
open, a second gzip decompression and cfitsio's per-card header objects (0.3 ms of the 0.9 ms
fitsio needs per small file). A light-curve table is the simplest FITS layout there is, so
this module walks the HDUs, parses the 80-byte cards it needs and views the rows with
``np.frombuffer``. Anything outside that simple layout (scaled columns, variable-length
arrays, bit or complex columns, random groups) raises :class:`Unsupported` and the caller
falls back to fitsio; ``tests/etl/test_fitstable.py`` checks both agree. Scaled columns
(``TSCALn`` / ``TZEROn``) are read here too: :func:`column` applies ``value = TZERO + TSCAL *
stored`` per column, by name, as the FITS standard (4.0, section 7.3.2) defines it, so a
scaled column never takes the general path (where cfitsio's typed reads once returned columns
shuffled and rescaled).

Every size a header announces is checked against the bytes before anything is allocated, so
a small damaged file claiming 10^9 rows costs nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np

BLOCK = 2880
CARD = 80

_TFORM = re.compile(r"^\s*(\d*)\s*([A-Z])")
_DTYPES = {"B": "u1", "I": ">i2", "J": ">i4", "K": ">i8", "E": ">f4", "D": ">f8", "L": "S1", "A": "S"}


class Unsupported(Exception):
    """The table uses a FITS feature this reader leaves to cfitsio."""


class Truncated(Exception):
    """The bytes end before the header or data they announce."""


class NotATable(Exception):
    """The HDU named RATE is not a binary table (an IMAGE, an ASCII TABLE...)."""


class Header(Mapping):
    """Header keywords -> values (str, bool, int, float); the first occurrence wins.

    Values are parsed when first asked for: a light-curve header has ~60 cards and the reader
    needs ~25 of them, and parsing every card was the largest single cost of ingest. A read-only
    :class:`~collections.abc.Mapping`: ``keys``, ``values``, ``items``, ``get`` and ``in`` all
    see every card, parsed or not.
    """

    def __init__(self, raw: dict[str, str] | None = None):
        self._raw = raw or {}
        self._parsed: dict[str, object] = {}

    def __getitem__(self, key):
        try:
            return self._parsed[key]
        except KeyError:
            value = _parse_value(self._raw[key])
            self._parsed[key] = value
            return value

    def __contains__(self, key) -> bool:
        return key in self._raw

    def __iter__(self):
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def __repr__(self) -> str:
        return f"Header({dict(self.items())!r})"


def header_int(header: Header, key: str, default: int | None = None) -> int:
    """An integer keyword (``default`` when absent); :class:`BadHeader` when it is not an integer."""
    value = header.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadHeader(f"{key} = {value!r} is not an integer")
    return value


class BadHeader(ValueError):
    """A structural keyword (NAXISn, TFIELDS, TFORMn...) is missing or not of its type."""


_STRING = re.compile(r"'((?:[^']|'')*)'")


def _parse_value(text: str):
    text = text.strip()
    if text.startswith("'"):
        match = _STRING.match(text)
        body = match.group(1) if match else text[1:]  # an unterminated string keeps what it has
        return body.replace("''", "'").rstrip()
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
    # Find the END card on card boundaries, then split the whole header in one decode.
    n = len(raw)
    pos = start
    while True:
        end = raw.find(b"END     ", pos) if isinstance(raw, bytes) else bytes(raw).find(b"END     ", pos)
        if end < 0 or end + CARD > n:
            raise Truncated(f"header at byte {start} has no END card")
        if (end - start) % CARD == 0:
            break
        pos = end + 1
    text = bytes(raw[start:end]).decode("latin-1")
    raw_values: dict[str, str] = {}
    for i in range(len(text) - CARD, -CARD, -CARD):  # backwards: the first occurrence of a key wins
        if text[i + 8 : i + 10] == "= ":
            raw_values[text[i : i + 8].rstrip()] = text[i + 10 : i + CARD]
    header = Header(dict(reversed(raw_values.items())))
    pos = end + CARD
    return header, start + -(-(pos - start) // BLOCK) * BLOCK


def _data_size(header: Header) -> int:
    naxis = header_int(header, "NAXIS", 0)
    if naxis == 0:
        return 0
    if not 0 < naxis <= 999:
        raise BadHeader(f"NAXIS = {naxis}")
    size = 1
    for i in range(1, naxis + 1):
        n = header_int(header, f"NAXIS{i}", 0)
        if n < 0:
            raise BadHeader(f"NAXIS{i} = {n}")
        size *= n
    if header.get("SIMPLE") is True and header.get("GROUPS") is True:
        raise Unsupported("random groups")
    bitpix = abs(header_int(header, "BITPIX", 8))
    pcount, gcount = header_int(header, "PCOUNT", 0), header_int(header, "GCOUNT", 1)
    if pcount < 0 or gcount < 0:
        raise BadHeader(f"PCOUNT = {pcount}, GCOUNT = {gcount}")
    return bitpix // 8 * gcount * (pcount + size)


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


_LAYOUT_KEYS = ("TTYPE", "TFORM", "TSCAL", "TZERO", "TFIEL", "NAXIS", "PCOUN", "XTENS")
_LAYOUTS: dict[tuple, tuple[np.dtype, dict]] = {}


def _layout(header: Header) -> tuple[np.dtype, dict[str, tuple[float, float]]]:
    """(row dtype, column scaling) of a table header, cached by the raw text of its layout keywords.

    An archive's files share a handful of table layouts, so parsing ~30 layout keywords per
    file (a fifth of ingest's cost) is done once per layout.
    """
    key = getattr(header, "_layout_key", None)
    if key is None:
        key = tuple(item for item in header._raw.items() if item[0][:5] in _LAYOUT_KEYS and item[0] != "NAXIS2")
        header._layout_key = key
    layout = _LAYOUTS.get(key)
    if layout is None:
        layout = (_table_dtype(header), _column_scaling(header))
        if len(_LAYOUTS) > 256:
            _LAYOUTS.clear()
        _LAYOUTS[key] = layout
    return layout


def table_dtype(header: Header) -> np.dtype:
    """Record dtype of a BINTABLE's rows (big-endian, packed as NAXIS1 says)."""
    return _layout(header)[0]


def _table_dtype(header: Header) -> np.dtype:
    if header.get("XTENSION") != "BINTABLE":
        raise NotATable(f"XTENSION = {header.get('XTENSION')!r}, not BINTABLE")
    if header_int(header, "PCOUNT", 0) != 0:
        raise Unsupported("heap (variable-length arrays)")
    n_fields = header_int(header, "TFIELDS")
    if not 0 <= n_fields <= 999:
        raise BadHeader(f"TFIELDS = {n_fields}")
    names, formats, offsets, pos = [], [], [], 0
    for i in range(1, n_fields + 1):
        form = str(header.get(f"TFORM{i}", ""))
        match = _TFORM.match(form)
        if not match:
            raise Unsupported(f"TFORM{i} = {form!r}")
        repeat = int(match.group(1) or 1)
        letter = match.group(2)
        if letter not in _DTYPES:
            raise Unsupported(f"TFORM{i} = {form!r}")
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
    if pos != header_int(header, "NAXIS1"):
        raise Unsupported(f"TFORMs add up to {pos} bytes, NAXIS1 is {header['NAXIS1']}")
    if len(set(names)) != len(names):
        raise BadHeader(f"duplicate column names {sorted(n for n in set(names) if names.count(n) > 1)}")
    return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": pos})


def column_scaling(header: Header) -> dict[str, tuple[float, float]]:
    """``{column name: (TSCAL, TZERO)}`` of the scaled columns (others are absent)."""
    return _layout(header)[1]


def _column_scaling(header: Header) -> dict[str, tuple[float, float]]:
    out = {}
    for i in range(1, header_int(header, "TFIELDS") + 1):
        if f"TSCAL{i}" in header or f"TZERO{i}" in header:
            scale, zero = header.get(f"TSCAL{i}", 1.0), header.get(f"TZERO{i}", 0.0)
            if isinstance(scale, bool) or not isinstance(scale, (int, float)) or isinstance(zero, bool) or not isinstance(zero, (int, float)):
                raise BadHeader(f"TSCAL{i} = {scale!r} / TZERO{i} = {zero!r} are not numbers")
            name = str(header.get(f"TTYPE{i}", f"COL{i}")).strip().upper()
            out[name] = (float(scale), float(zero))
    return out


def column(rows: np.ndarray, name: str, scaling: dict[str, tuple[float, float]]) -> np.ndarray:
    """Column ``name`` of ``rows`` with its scaling applied (``TZERO + TSCAL * stored``).

    Unscaled columns come back as stored (a view). Scaled ones are computed in float64, which
    is exact for every 8-, 16- and 32-bit integer with the unsigned-integer convention
    (``TZERO = 2**15``, ``2**31``) and for float columns.
    """
    values = rows[name]
    if name not in scaling:
        return values
    scale, zero = scaling[name]
    return values.astype("f8") * scale + zero


def read_rows(raw: bytes | memoryview, header: Header, data_start: int) -> np.ndarray:
    """View the table's rows; column ``c`` is ``rows[c]`` with shape (N,) or (N, repeat).

    Raises
    ------
    Truncated
        When the bytes end inside the table.
    """
    dtype = table_dtype(header)
    n_rows = header_int(header, "NAXIS2")
    if n_rows < 0:
        raise BadHeader(f"NAXIS2 = {n_rows}")
    need = n_rows * dtype.itemsize
    if data_start + need > len(raw):
        raise Truncated(f"table needs {need} bytes from byte {data_start}, file has {len(raw) - data_start}")
    return np.frombuffer(raw, dtype=dtype, count=n_rows, offset=data_start)
