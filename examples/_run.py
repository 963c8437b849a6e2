"""``python -m examples.NAME [--host H] [--port P]``: serve an example without an .ini file."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Sequence
from typing import Any

from stargate.server import ServerConfig, serve


def run(description: str, make_app: Callable[[], Any], argv: Sequence[str] | None = None) -> None:
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
