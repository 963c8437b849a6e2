"""The app the multi-process tests serve in subprocesses
(``python -m stargate serve stargate_groups_app:app --broker redis://...``).

* WebSocket ``/join/NAME``: joins group NAME, waits until other processes' messages to it
  arrive here, says ``{"pid", "id", "subscribed"}``, then relays every message it receives
  to the group.
* ``GET /send/NAME?TEXT``: sends TEXT to group NAME from the WSGI view (a worker thread).
* ``GET /status``: this process's pid, the gaps its hub reported and its subscriptions.
"""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import unquote

from stargate.groups import Gap, Group, default_hub
from stargate.server import ENVIRON_KEY, WebSocket
from stargate.server.wsgi import StartResponse

gaps: list[Gap] = []
default_hub().on_gap(gaps.append)


async def member(ws: WebSocket) -> None:
    group = Group(ws.path.removeprefix("/join/"))
    group.add(ws)
    subscribed = await group.wait_subscribed(10.0)
    hello = {"pid": os.getpid(), "id": default_hub().connection_id(ws), "subscribed": subscribed}
    await ws.send(json.dumps(hello))
    async for message in ws:
        group.send(message)


def status() -> dict[str, Any]:
    hub = default_hub()
    broker = hub.broker
    return {
        "pid": os.getpid(),
        "gaps": [[gap.reason, sorted(gap.groups or ()), gap.dropped] for gap in gaps],
        "groups": hub.groups(),
        "subscribed": {name: hub.is_subscribed(name) for name in hub.groups()},
        "connected": bool(getattr(broker, "subscriber_connected", True)),
        "publisher": bool(getattr(broker, "publisher_connected", True)),
    }


def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    upgrade = environ.get(ENVIRON_KEY)
    path = environ["PATH_INFO"]
    if upgrade is not None and path.startswith("/join/"):
        upgrade.accept(member)
        return []
    if path.startswith("/send/"):
        Group(path.removeprefix("/send/")).send(unquote(environ["QUERY_STRING"]))
        body = b"sent"
    elif path == "/status":
        body = json.dumps(status()).encode()
    else:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found"]
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
