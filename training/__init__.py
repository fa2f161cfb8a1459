"""GRU-VAE training on light curves streamed from the Zarr store (no Prefect here).

Needs the ``[train]`` extra (torch, h5py, matplotlib, wandb): importing this package without it
says so (``python -m training.fit`` and the other commands: one line and exit status 2).
"""

from common.extras import check_installed, started_with_m

# Checked, not imported: the modules that need torch import it; the lineage of model sets
# (training.lineage) is read without it.
check_installed("the training layer (python -m training...)", "torch", "h5py", exit_now=started_with_m())
