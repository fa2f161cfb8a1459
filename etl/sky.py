"""The catalog's sky index: HEALPix order 29 (the HATS convention) and exact cone searches.

* ``_healpix_29``: the nested HEALPix pixel of order 29 of each source's (RA, Dec), as HATS and
  LSDB name and compute it (cdshealpix, the library hats itself uses); null where the
  position is missing or out of range. Order-29 pixels are ~0.4 mas wide, so the index orders
  the catalog along a space-filling curve without losing any position information needed for
  pruning.
* Cone search: the cone is covered by a multi-order coverage of HEALPix cells (cdshealpix's
  ``cone_search``, which never misses a cell the cone touches), each cell becomes a range of
  order-29 indices, the ranges select candidate rows of the index sorted once (binary search),
  and the exact angular separation (Vincenty's formula, as astropy's ``angular_separation``,
  stable at the poles and for antipodes) decides. RA wraps at 0/360 by construction: positions
  live on the sphere, not in an RA interval.

Shape legend: N = sources, R = index ranges.
"""

from __future__ import annotations

import numpy as np

from etl.errors import OptionError

#: HATS's spatial-index order and column name.
HEALPIX_ORDER = 29
HEALPIX_COLUMN = "_healpix_29"
#: The coarsest cells used to cover a cone: small cones get cells of about their own size.
_MAX_COVER_DEPTH = 20


def healpix_29(ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
    """Nested order-29 HEALPix index of positions (N,), int64; -1 where a position is unusable."""
    import astropy.units as u
    from astropy.coordinates import Latitude, Longitude
    from cdshealpix.nested import lonlat_to_healpix

    ra = np.asarray(ra_deg, "f8")
    dec = np.asarray(dec_deg, "f8")
    ok = np.isfinite(ra) & np.isfinite(dec) & (np.abs(dec) <= 90.0)
    out = np.full(ra.shape, -1, np.int64)
    if ok.any():
        pix = lonlat_to_healpix(Longitude(np.mod(ra[ok], 360.0) * u.deg), Latitude(dec[ok] * u.deg), HEALPIX_ORDER)
        out[ok] = pix.astype(np.int64)
    return out


def angular_separation(ra1, dec1, ra2, dec2) -> np.ndarray:
    """Great-circle distance in degrees (Vincenty's formula; inputs in degrees, broadcast)."""
    lon1, lat1, lon2, lat2 = (np.radians(np.asarray(a, "f8")) for a in (ra1, dec1, ra2, dec2))
    dlon = lon2 - lon1
    s1, c1, s2, c2 = np.sin(lat1), np.cos(lat1), np.sin(lat2), np.cos(lat2)
    num1 = c2 * np.sin(dlon)
    num2 = c1 * s2 - s1 * c2 * np.cos(dlon)
    return np.degrees(np.arctan2(np.hypot(num1, num2), s1 * s2 + c1 * c2 * np.cos(dlon)))


def check_cone(ra: float, dec: float, radius_arcsec: float) -> tuple[float, float, float]:
    """Validated cone: RA wrapped into [0, 360), Dec in [-90, 90], radius > 0 (:class:`~etl.errors.OptionError`, a ValueError, otherwise)."""
    values = {"ra": ra, "dec": dec, "radius_arcsec": radius_arcsec}
    for name, value in values.items():
        try:
            values[name] = float(value)
        except (TypeError, ValueError):
            raise OptionError(f"{name} must be a number, not {value!r}") from None
        if not np.isfinite(values[name]):
            raise OptionError(f"{name} must be finite, not {value!r}")
    if abs(values["dec"]) > 90.0:
        raise OptionError(f"dec must be within [-90, 90] deg, not {dec!r}")
    if values["radius_arcsec"] <= 0:
        raise OptionError(f"radius must be > 0 arcsec, not {radius_arcsec!r}")
    if values["radius_arcsec"] > 180 * 3600:
        raise OptionError(f"radius must be at most 180 deg, not {radius_arcsec!r} arcsec")
    return values["ra"] % 360.0, values["dec"], values["radius_arcsec"]


def cone_ranges(ra: float, dec: float, radius_arcsec: float) -> np.ndarray:
    """Half-open order-29 index ranges ``[lo, hi)`` that contain every position of the cone, (R, 2)."""
    import astropy.units as u
    from astropy.coordinates import Latitude, Longitude
    from cdshealpix.nested import cone_search

    # a cover depth whose cells are about the cone's size: a handful of cells, few false candidates
    cell_deg = 58.6 / 2.0 ** np.arange(30)  # HEALPix cell size by depth, roughly
    depth = int(np.clip(np.searchsorted(-cell_deg, -radius_arcsec / 3600.0), 0, _MAX_COVER_DEPTH))
    pix, depths, _ = cone_search(Longitude(ra * u.deg), Latitude(dec * u.deg), radius_arcsec * u.arcsec, depth=depth)
    shift = 2 * (HEALPIX_ORDER - depths.astype(np.int64))
    lo = pix.astype(np.int64) << shift
    hi = (pix.astype(np.int64) + 1) << shift
    order = np.argsort(lo)
    return np.column_stack([lo[order], hi[order]])


class SkyIndex:
    """Order-29 indices of catalog rows, sorted once, for cone searches.

    Parameters
    ----------
    healpix : ndarray of int64, shape (N,)
        ``_healpix_29`` per row (-1 or negative for rows without a position).
    """

    def __init__(self, healpix: np.ndarray):
        healpix = np.asarray(healpix, np.int64)
        self.order = np.argsort(healpix, kind="stable")
        self.sorted = healpix[self.order]
        self.first = int(np.searchsorted(self.sorted, 0))  # rows without a position sort first

    def candidates(self, ranges: np.ndarray) -> np.ndarray:
        """Row numbers whose index falls in any of the ranges (R, 2)."""
        lo = np.searchsorted(self.sorted, ranges[:, 0], side="left")
        hi = np.searchsorted(self.sorted, ranges[:, 1], side="left")
        lo = np.maximum(lo, self.first)
        keep = hi > lo
        if not keep.any():
            return np.empty(0, np.int64)
        return np.sort(np.concatenate([self.order[a:b] for a, b in zip(lo[keep], hi[keep])]))


#: The eRASS sky tiling: 3.6 x 3.6 deg tiles centred every 3 deg of declination, and every ~3 deg
#: of great circle in RA along each ring (the eSASS tiling of the eRASS1 data release, whose
#: 4,700 tiles overlap by ~20'; this rule gives 4,614 of the same size and spacing).
TILE_STEP_DEG = 3.0


def _tiles_in_ring(ring: np.ndarray) -> np.ndarray:
    """Tiles in ring ``ring`` (0 = the north pole, 60 = the south pole): ceil(360 sin(colatitude) / 3), at least 1."""
    colat = np.radians(TILE_STEP_DEG * ring)
    return np.maximum(1, np.ceil(np.round(360.0 * np.sin(colat) / TILE_STEP_DEG, 9))).astype(np.int64)


def sky_tile(ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
    """The eRASS sky tile of each position, as eSASS names it: ``RRRDDD`` as an int (N,).

    ``RRR`` is the RA of the tile's centre and ``DDD`` its declination counted from the north
    pole (90 - Dec), both in whole degrees, truncated (AB Dor, RA 82.2, Dec -65.4, lies in tile ``080156``).
    A position belongs to the tile whose centre is nearest along its ring.
    """
    ra = np.mod(np.asarray(ra_deg, "f8"), 360.0)
    colat = 90.0 - np.asarray(dec_deg, "f8")
    ring = np.clip(np.rint(colat / TILE_STEP_DEG), 0, round(180 / TILE_STEP_DEG)).astype(np.int64)
    n = _tiles_in_ring(ring)
    step = 360.0 / n
    j = np.mod(np.rint(ra / step).astype(np.int64), n)
    ra_centre = np.floor(j * step + 1e-9).astype(np.int64) % 360  # names truncate: 80.8 -> 080
    return ra_centre * 1000 + (ring * int(TILE_STEP_DEG))


def n_sky_tiles() -> int:
    """How many tiles :func:`sky_tile` knows (4,614)."""
    return int(_tiles_in_ring(np.arange(round(180 / TILE_STEP_DEG) + 1)).sum())
