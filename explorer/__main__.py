"""``python -m explorer --store STORE [--port 8050] [--host 127.0.0.1] [--user NAME] [--labels FILE]``."""

import sys

from common import cli
from explorer.server import main

sys.exit(cli.run(main))
