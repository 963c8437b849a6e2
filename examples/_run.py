"""``python -m examples.NAME [--host H] [--port P]``: serve an example without an .ini file."""

from __future__ import annotations

import argparse
import importlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

#: What to run when a dependency of the examples is missing.
INSTALL_HINT = (
    "python3 -m pip install 'stargate[pyramid]' "
    "(in a checkout of stargate: python3 -m pip install -e '.[pyramid]')"
)


def load(module: str) -> Any:
    """Import an example's app module.  A missing dependency (Pyramid, or stargate itself)
    ends the program with one line that says what to install, not an ImportError's
    traceback."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").partition(".")[0]
        if not missing or missing == "examples":
            raise
        example = module.rpartition(".")[0]
        raise SystemExit(
            f"python -m {example}: the module {missing!r} is not installed: {INSTALL_HINT}"
        ) from None


def run(description: str, make_app: Callable[[], Any], argv: Sequence[str] | None = None) -> None:
    from stargate.server import ServerConfig, serve

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument("--port", type=int, default=6543, help="port to listen on (6543)")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    def ready(server: Any) -> None:
        print(f"serving on http://{server.host}:{server.port}/", flush=True)

    serve(make_app(), ServerConfig(host=args.host, port=args.port), ready=ready)
