"""``python -m stargate``: the command line (see :mod:`stargate.cli`)."""

from .cli import run

run()
