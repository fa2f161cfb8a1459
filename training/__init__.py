"""GRU-VAE training on light curves streamed from the Zarr store (no Prefect here).

Needs the ``[train]`` extra (torch, h5py, matplotlib, wandb, scikit-learn): importing this package
without it says so.
"""

from common.extras import require

require("the training layer (training/)", "torch", "h5py")
