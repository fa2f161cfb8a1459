"""eROSITA light-curve ETL: FITS archive -> validated light curves -> sharded Zarr store + Polars catalog.

No Prefect and no torch here: flows/ orchestrates, training/ consumes.
"""

__version__ = "0.1.0"
