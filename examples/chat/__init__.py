"""A chat with URL dispatch, rooms, names and Pyramid security.

``/`` asks for a name (kept in a signed auth_tkt cookie) and lists the rooms;
``/rooms/{room}`` is a room's page *and* its WebSocket (``websocket=True``).  Both views
need the ``chat`` permission, which the room's ACL grants to authenticated users, so an
anonymous WebSocket upgrade gets 403 from Pyramid's own security and is never upgraded.
Everyone in a room sees who joins and leaves and what each person says.

Run it (from the repository root)::

    python -m examples.chat                          # http://127.0.0.1:6543/
    pserve examples/chat/development.ini
    stargate serve examples/chat/development.ini --port 6543

The resources and the app factory are in :mod:`examples.chat.app`, the views in
:mod:`examples.chat.views`; this package loads them on first use, so that ``python -m
examples.chat`` without Pyramid says so in one line (see ``examples/_run.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import ROOM_NAME, Room, Rooms, SecurityPolicy, main

__all__ = ["ROOM_NAME", "Room", "Rooms", "SecurityPolicy", "main"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
