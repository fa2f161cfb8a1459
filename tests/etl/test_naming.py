"""Source ids from eSASS file names, and the IAU-style names the eRASS1 catalogue gives positions."""

from __future__ import annotations

import numpy as np

from etl.naming import iau_name, source_id_of, stem


def test_ids_of_esass_names_are_tile_and_number():
    assert source_id_of("/a/em01_080156_020_LightCurve_00002_c010.fits", "00002") == "em01_080156_00002"
    assert source_id_of("b/em01_150092_020_LightCurve_00002_c010.fits.gz", "00002") == "em01_150092_00002"
    assert source_id_of("EM01_080156_020_LightCurve_00002_c010_rebinned.fits", "x") == "em01_080156_00002"
    # other names: OBJECT, else the stem; the object scheme (old stores) always so
    assert source_id_of("srctool_red_020_LightCurve_00022.fits.gz", "00022") == "00022"
    assert source_id_of("mine.fits", "") == "mine"
    assert source_id_of("em01_080156_020_LightCurve_00002_c010.fits", "00002", scheme="object") == "00002"
    assert stem("x/em01_1_020.fits.gz") == "em01_1_020"


def test_iau_names_truncate_as_the_catalogue():
    # AB Dor, the DR1 fixture: RA 82.1849458, Dec -65.44802001 -> 05h28m44.39s, -65d26m52.9s
    assert iau_name(82.1849458, -65.44802001) == "1eRASS J052844.3-652652"
    assert iau_name(359.9999999, 0.00001) == "1eRASS J235959.9+000000"  # never rounded up to 24h
    assert iau_name(15.0 * (12 + 30 / 60 + 12.3 / 3600), 10.0) == "1eRASS J123012.3+100000"
    assert iau_name(1.0, -0.0001) == "1eRASS J000400.0-000000"
    names = iau_name(np.array([82.1849458, np.nan]), np.array([-65.44802001, 1.0]))
    assert list(names) == ["1eRASS J052844.3-652652", ""]
