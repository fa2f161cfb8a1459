"""The explorer: a Dash web page to rank, inspect and label the sources of a store (no Prefect).

Needs the ``[explorer]`` extra (dash, coniferest); torch only for the VAE overlay, when installed.
"""

from common.extras import require

require("the explorer", "dash")
