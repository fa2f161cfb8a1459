"""The explorer: a Dash web page to rank, inspect and label the sources of a store (no Prefect).

Needs the ``[explorer]`` extra (dash, coniferest); torch only for the VAE overlay, when installed.
"""

from common.extras import require, started_with_m

require("the explorer (python -m explorer)", "dash", exit_now=started_with_m())
