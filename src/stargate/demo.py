"""The demo: a chat page and its WebSocket served by one WSGI app on one port.

Every tab that opens the page joins one room; what a tab sends, every tab sees.  It uses the
embedded defaults only (in-process group, no external service).

What travels on ``/chat`` (JSON text messages from the server):

* to the tab that joined: ``{"type": "welcome", "name", "limit"}`` (``limit``: the most
  characters a message may have), then the room's recent messages (up to
  :data:`HISTORY`, kept while anyone is in the room), so a tab that reconnects catches up
  on what was said while it was away;
* to everyone: ``join`` and ``leave`` (``name``, ``count``), and ``message`` (``name``,
  ``text``, ``id``);
* to the sender only: ``{"type": "refused", "reason", "id"?}`` for a message that is not
  relayed (over the limit, or binary).  A message is refused whole, never cut.

From a client, a text message is what it says, except a JSON object
``{"type": "say", "id": "...", "text": "..."}`` (what the page sends): its ``id`` is the
relayed message's (others get one from the server), so a page that re-sends a message after
a reconnect (not knowing whether it arrived before the connection dropped), or hears it
again in the recent messages, shows it once.
"""

from __future__ import annotations

import functools
import json
import secrets
from collections import deque
from importlib import resources
from typing import Any

from .groups import Group
from .server import ENVIRON_KEY, WebSocket
from .server.wsgi import StartResponse

__all__ = ["HISTORY", "MAX_CHARS", "app", "chat"]

room = Group("demo")

#: The most characters (code points) a chat message may have; a longer one is refused.
MAX_CHARS = 2000
#: The most characters of a message id (the page's are 16).
MAX_ID = 64
#: How many recent messages a tab that joins is sent.
HISTORY = 50
#: The room's recent messages (JSON, as relayed); served by one event loop at a time, like
#: the room, and forgotten when the room empties.
_recent: deque[str] = deque(maxlen=HISTORY)


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
    # Joined first, then the recent messages copied, with no await in between: a message
    # relayed from now on reaches this connection, every earlier one is in the copy.
    room.add(ws)
    recent = list(_recent)
    await ws.send(json.dumps({"type": "welcome", "name": name, "limit": MAX_CHARS}))
    for said in recent:
        await ws.send(said)
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
        said = json.dumps(
            {"type": "message", "name": name, "text": text, "id": ident or secrets.token_hex(8)}
        )
        _recent.append(said)
        room.send(said)
    # By the time iteration ends the connection is closed and has already left the room.
    others = len(room) - (ws in room)
    if not others:
        _recent.clear()
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
