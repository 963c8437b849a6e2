"""The local members of a group, and sending one message to all of them, encoded once.

Members are kept by frame family (RFC 6455 with or without a shared permessage-deflate
setting, or hixie): every member of one family gets the same encoded frame, so a broadcast
costs one encoding per family, not one per member.  A slow member is handled by its own
connection's overflow policy (``send_encoded``) and never delays the others.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..masking import BytesLike

if TYPE_CHECKING:
    from ..server.sync import SyncWebSocket
    from ..server.websocket import WebSocket

logger = logging.getLogger("stargate.groups")

#: What a group carries: ``str`` for a text message, ``bytes`` for a binary one.
Message = str | bytes


def unwrap(ws: WebSocket | SyncWebSocket) -> WebSocket:
    """The async connection behind a blocking facade (or the connection itself)."""
    inner = getattr(ws, "ws", None)
    return inner if inner is not None else ws  # type: ignore[return-value]


def normalize(message: str | BytesLike) -> Message:
    """``message`` as a group sends it; :class:`ValueError`, in the caller, for text no
    frame can carry (a lone surrogate is not UTF-8): found on the loop, later, it would
    take the messages batched with it along."""
    if isinstance(message, str):
        utf8_size(message, "a text message")
        return message
    if isinstance(message, bytes):
        return message
    return bytes(message)


def utf8_size(text: str, what: str) -> int:
    """Bytes of ``text`` in UTF-8 (what frames and the broker's channel names are);
    :class:`ValueError` if it does not encode.  ASCII, the common case, is known to at C
    speed."""
    if text.isascii():
        return len(text)
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError(f"{what} is not valid Unicode text (a lone surrogate)") from None


class GroupState:
    """The local members of one group, served by one event loop."""

    __slots__ = (
        "__weakref__",
        "channel",
        "families",
        "loop",
        "members",
        "name",
        "on_close",
        "pending",
    )

    def __init__(
        self,
        name: str,
        channel: str | None,
        on_close: Callable[[GroupState, WebSocket], None],
    ) -> None:
        self.name = name
        #: The broker channel, ``None`` for a group local to this process.
        self.channel = channel
        self.loop: asyncio.AbstractEventLoop | None = None
        self.members: dict[int, WebSocket] = {}
        #: Members by frame family: every member of one family shares one encoded frame.
        self.families: dict[str, dict[int, WebSocket]] = {}
        #: Adds scheduled on the loop but not yet done (the state must outlive them).
        self.pending = 0
        self.on_close = on_close

    def member_closed(self, ws: WebSocket) -> None:
        """A member's close callback: it leaves the group."""
        self.on_close(self, ws)

    # ``members`` and ``families`` hold the same ids: add and discard change both in one
    # step on the loop, and a connection's frame family is fixed at its handshake.

    def add(self, ws: WebSocket) -> bool:
        """Add ``ws``; False if it was a member already."""
        if ws.id in self.members:
            return False
        self.members[ws.id] = ws
        self.families.setdefault(ws.frame_family, {})[ws.id] = ws
        return True

    def discard(self, ws: WebSocket) -> bool:
        """Take ``ws`` out; False if it was not a member."""
        if self.members.pop(ws.id, None) is None:
            return False
        family = self.families[ws.frame_family]
        del family[ws.id]
        if not family:
            del self.families[ws.frame_family]
        return True

    def forget_members(self) -> None:
        """After a fork (the members and the loop were the parent's), or once the loop
        is closed (they were a stopped server's)."""
        self.loop = None
        self.members = {}
        self.families = {}
        self.pending = 0

    def deliver(self, message: Message) -> None:
        """On the group's loop: ``message`` to every member, encoded once per family."""
        for family in list(self.families.values()):
            if not family:
                continue
            first = next(iter(family.values()))
            try:
                frame = first.encode_shared(message)
            except TypeError:
                continue  # binary to hixie connections: they cannot carry it
            first.send_encoded_each(family.values(), frame, 1)

    def deliver_batch(self, messages: list[Message]) -> None:
        """On the group's loop: several messages in one write per member, in order."""
        for family in list(self.families.values()):
            if not family:
                continue
            first = next(iter(family.values()))
            encode = first.encode_shared
            frames = []
            for message in messages:
                try:
                    frames.append(encode(message))
                except TypeError:
                    continue  # binary to hixie connections: they cannot carry it
            if frames:
                first.send_encoded_each(family.values(), b"".join(frames), len(frames))


def send_one(ws: WebSocket, message: Message) -> None:
    """On ``ws``'s loop: ``message`` to one connection, if it is still open."""
    if ws.closed:
        return
    try:
        ws.send_encoded(ws.encode_shared(message))
    except Exception:
        logger.debug("send to %r skipped", ws)


def deliver_to(connections: list[WebSocket], message: Message) -> None:
    """On the loop of ``connections``: ``message`` to each, encoded once per family."""
    frames: dict[str, bytes | None] = {}
    for ws in connections:
        family = ws.frame_family
        if family in frames:
            frame = frames[family]
        else:
            try:
                frame = ws.encode_shared(message)
            except TypeError:
                frame = None
            frames[family] = frame
        if frame is None:
            continue
        try:
            ws.send_encoded(frame)
        except Exception:
            logger.debug("send to %r skipped", ws)
