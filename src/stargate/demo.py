"""The demo: a chat page and its WebSocket served by one WSGI app on one port.

Every tab that opens the page joins one room; what a tab sends, every tab sees.  It uses the
embedded defaults only (in-process group, no external service).
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from .groups import Group
from .server import ENVIRON_KEY, WebSocket
from .server.wsgi import StartResponse

room = Group("demo")


async def chat(ws: WebSocket) -> None:
    """Join the room, relay each message to everyone, announce the departure."""
    name = f"guest-{ws.id}"
    room.add(ws)
    room.send(json.dumps({"type": "join", "name": name, "count": len(room)}))
    async for message in ws:
        if isinstance(message, str) and message.strip():
            room.send(json.dumps({"type": "message", "name": name, "text": message[:2000]}))
    # By the time iteration ends the connection is closed and has already left the room.
    others = len(room) - (ws in room)
    room.send(json.dumps({"type": "leave", "name": name, "count": others}))


def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    """WSGI: ``/`` is the page, ``/chat`` the WebSocket; anything else 404."""
    path = environ["PATH_INFO"]
    upgrade = environ.get(ENVIRON_KEY)
    if path == "/chat" and upgrade is not None:
        upgrade.accept(chat)
        return []
    if path == "/":
        page = resources.files("stargate").joinpath("static/demo.html").read_bytes()
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
        return [page]
    start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
    return [b"not found\n"]
