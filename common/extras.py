"""Optional dependency groups: which extra provides what, and a clear message when one is missing.

The core (``etl``, ``features``) installs with ``pip install erosita-lcvae`` and imports without
torch, Prefect, Dash, wandb or scikit-learn; the layers above need their extra
(``[train]``, ``[flows]``, ``[explorer]``, ``[hats]``, ``[s3]``; ``[dev]`` is all of them).
"""

from __future__ import annotations

import importlib

from common.errors import MissingExtraError

#: module -> the extra that installs it
EXTRAS = {
    "torch": "train", "wandb": "train", "h5py": "train", "matplotlib": "train", "sklearn": "train",
    "prefect": "flows", "prefect_dask": "flows",
    "dash": "explorer", "plotly": "explorer", "coniferest": "explorer",
    "lsdb": "hats", "hats": "hats", "nested_pandas": "hats",
    "s3fs": "s3",
}


def require(what: str, *modules: str) -> None:
    """Import each of ``modules`` or raise :class:`MissingExtraError` naming the extra that installs it.

    Parameters
    ----------
    what : str
        What needs them, for the message (``"python -m training.fit"``, ``"the explorer"``).
    """
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:
            raise MissingExtraError(what, module, EXTRAS.get(module, "dev")) from None
