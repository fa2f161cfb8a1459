"""The validated in-memory light curve and the per-point column schema shared by reader and store.

Shape legend: T = points (kept time bins) of one source, B = energy bands.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Per-point columns: name -> (numpy dtype, banded). Banded columns are shaped [T, B].
#: Rates and band-wise counts are float32 as eSASS writes them ('E'); time-like columns float64.
#: COUNTS ('J' in srctool files) is stored as float32, exact for any count below 2**24.
POINT_COLUMNS: dict[str, tuple[str, bool]] = {
    "time": ("f8", False),
    "timedel": ("f8", False),
    "rate": ("f4", True),
    "rate_errm": ("f4", True),
    "rate_errp": ("f4", True),
    "counts": ("f4", True),
    "back_counts": ("f4", True),
    "fracexp": ("f4", True),
    "backratio": ("f8", False),
}

#: The columns a model needs: rates and their lower/upper errors.
RATE_COLUMNS: tuple[str, ...] = ("rate", "rate_errm", "rate_errp")

FLAVOURS: tuple[str, ...] = ("rebinned", "srctool")


@dataclass
class LightCurve:
    """One source's light curve after validation.

    Attributes
    ----------
    source_id : str
        Catalog id (OBJECT keyword, or file name stem).
    file : str
        Path or URL it was read from.
    flavour : str
        ``"rebinned"`` (eRebin, asymmetric errors) or ``"srctool"`` (raw eSASS output).
    e_min, e_max : ndarray, shape (B,)
        Band edges in keV, from the ``E_MIN{i}`` / ``E_MAX{i}`` keywords.
    ra, dec : float
        Source position (deg), NaN when the header lacks RA_OBJ / DEC_OBJ.
    columns : dict of str to ndarray
        Per-point arrays named as in :data:`POINT_COLUMNS`: shape (T,) or (T, B).
    n_rows_file : int
        Rows in the file before the fractional-exposure cut.
    """

    source_id: str
    file: str
    flavour: str
    e_min: np.ndarray
    e_max: np.ndarray
    ra: float
    dec: float
    columns: dict[str, np.ndarray] = field(repr=False)
    n_rows_file: int = 0

    def __getattr__(self, name: str) -> np.ndarray:
        # Columns read as attributes (lc.rate, lc.time) without duplicating nine properties.
        columns = self.__dict__.get("columns")
        if columns is not None and name in columns:
            return columns[name]
        raise AttributeError(name)

    @property
    def n_points(self) -> int:
        """Number of kept time bins T."""
        return int(self.columns["time"].shape[0])

    @property
    def n_bands(self) -> int:
        """Number of energy bands B."""
        return int(self.e_min.shape[0])
