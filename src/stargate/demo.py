"""The demo: a chat page and its WebSocket served by one WSGI app on one port.

Every tab that opens the page joins one room; what a tab sends, every tab sees.  It uses the
embedded defaults only (in-process group, no external service).

What travels on ``/chat`` (JSON text messages from the server):

* to the tab that joined: ``{"type": "welcome", "name", "limit"}`` (``limit``: the most
  characters a message may have);
* to everyone: ``join`` and ``leave`` (``name``, ``count``), and ``message`` (``name``,
  ``text``, and the sender's ``id`` when it gave one);
* to the sender only: ``{"type": "refused", "reason", "id"?}`` for a message that is not
  relayed (over the limit, or binary).  A message is refused whole, never cut.

From a client, a text message is what it says, except a JSON object
``{"type": "say", "id": "...", "text": "..."}`` (what the page sends): its ``id`` comes
back in the relayed message, so a page that re-sends a message after a reconnect (not knowing
whether it arrived before the connection dropped) can show it once.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

from .groups import Group
from .server import ENVIRON_KEY, WebSocket
from .server.wsgi import StartResponse

__all__ = ["MAX_CHARS", "app", "chat"]

room = Group("demo")

#: The most characters (code points) a chat message may have; a longer one is refused.
MAX_CHARS = 2000
#: The most characters of a message id (the page's are about 12).
MAX_ID = 64


def _parse(message: str) -> tuple[str, str | None]:
    """The text of a client's message and its id (``None`` when it gave none)."""
    if message.startswith("{"):
        try:
            envelope = json.loads(message)
        except ValueError:
            return message, None
        if isinstance(envelope, dict) and envelope.get("type") == "say":
            text = envelope.get("text")
            ident = envelope.get("id")
            if isinstance(text, str):
                valid = isinstance(ident, str) and 0 < len(ident) <= MAX_ID
                return text, ident if valid else None
    return message, None


def _refusal(reason: str, ident: str | None) -> str:
    refused: dict[str, Any] = {"type": "refused", "reason": reason}
    if ident is not None:
        refused["id"] = ident
    return json.dumps(refused)


async def chat(ws: WebSocket) -> None:
    """Join the room, relay each message to everyone, announce the departure."""
    name = f"guest-{ws.id}"
    await ws.send(json.dumps({"type": "welcome", "name": name, "limit": MAX_CHARS}))
    room.add(ws)
    room.send(json.dumps({"type": "join", "name": name, "count": len(room)}))
    async for message in ws:
        if not isinstance(message, str):
            await ws.send(_refusal("binary messages are not relayed: send text", None))
            continue
        text, ident = _parse(message)
        if not text.strip():
            continue
        if len(text) > MAX_CHARS:
            reason = f"{len(text)} characters: over the limit of {MAX_CHARS}, not sent"
            await ws.send(_refusal(reason, ident))
            continue
        said: dict[str, Any] = {"type": "message", "name": name, "text": text}
        if ident is not None:
            said["id"] = ident
        room.send(json.dumps(said))
    # By the time iteration ends the connection is closed and has already left the room.
    others = len(room) - (ws in room)
    room.send(json.dumps({"type": "leave", "name": name, "count": others}))


@functools.cache
def _page() -> bytes:
    """The page, with the message limit it shows and checks before sending."""
    page = resources.files("stargate").joinpath("static/demo.html").read_bytes()
    return page.replace(b"__MAX_CHARS__", str(MAX_CHARS).encode("ascii"))


def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    """WSGI: ``/`` is the page, ``/chat`` the WebSocket; anything else 404."""
    path = environ["PATH_INFO"]
    upgrade = environ.get(ENVIRON_KEY)
    if path == "/chat" and upgrade is not None:
        upgrade.accept(chat)
        return []
    if path == "/":
        start_response(
            "200 OK",
            [("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-cache")],
        )
        return [_page()]
    start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
    return [b"not found\n"]
