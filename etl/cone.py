"""Cone search on a store's catalog from the command line.

    python -m etl.cone STORE RA DEC RADIUS_ARCSEC [--columns source_id,ra,dec] [--out rows.parquet]

Prints the ok sources within the radius, nearest first, with their separation in arcsec
(:meth:`etl.store.LightCurveStore.cone`). Exit codes: 0 (also when nothing is found), 2 for a
bad store or a position/radius that is not on the sphere.
"""

from __future__ import annotations

import argparse
import sys

import polars as pl

from common import cli
from etl.store import open_store


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m etl.cone", description="Ok sources within a radius of a position.")
    p.add_argument("store", help="store path or URL")
    p.add_argument("ra", help="deg (any real value; wrapped into [0, 360))")
    p.add_argument("dec", help="deg, -90..90")
    p.add_argument("radius", help="arcsec, > 0")
    p.add_argument("--columns", default="source_id,ra,dec,n_points,mean_rate_b1",
                   help="catalog columns to show, comma-separated (separation_arcsec is always shown)")
    p.add_argument("--out", help="also write every column of the matches to this Parquet file")
    args = p.parse_args(argv)
    found = open_store(args.store).cone(args.ra, args.dec, args.radius).collect()
    shown = [c for c in args.columns.split(",") if c in found.columns and c != "separation_arcsec"]
    with pl.Config(tbl_rows=50, tbl_cols=-1):
        print(found.select(*shown, "separation_arcsec"))
    print(f"{found.height} source(s) within {float(args.radius):g} arcsec")
    if args.out:
        found.write_parquet(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
