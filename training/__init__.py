"""GRU-VAE training on light curves streamed from the Zarr store (no Prefect here)."""
