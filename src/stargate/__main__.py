"""``python -m stargate``: the command line (see :mod:`stargate.cli`)."""

import sys

from .cli import main

sys.exit(main())
