"""Events a :class:`~stargate.connection.Connection` produces from received bytes.

Events are plain slotted dataclasses, not frozen ones: a frozen dataclass costs twice as
much to create, once per message on the hot path.  Treat them as read-only.

Messages are delivered whole (fragments reassembled, decompressed, UTF-8 checked); control
frames are delivered as they arrive, also in the middle of a fragmented message.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class TextMessage:
    """A complete text message (opcode 0x1, or a hixie ``0x00 ... 0xFF`` frame)."""

    data: str


@dataclass(slots=True)
class BinaryMessage:
    """A complete binary message (opcode 0x2)."""

    data: bytes


@dataclass(slots=True)
class Ping:
    """A ping; the connection has already queued the pong (RFC 6455 section 5.5.2)."""

    payload: bytes


@dataclass(slots=True)
class Pong:
    """A pong, solicited or not (RFC 6455 section 5.5.3)."""

    payload: bytes


@dataclass(slots=True)
class CloseReceived:
    """The peer sent a close frame (or the hixie-76 ``0xFF 0x00`` closing).

    ``code`` is 1005 when the frame carried no status code.  If we had not sent a close
    frame yet, the echo has been queued (RFC 6455 section 5.5.1).
    """

    code: int
    reason: str


@dataclass(slots=True)
class ProtocolViolation:
    """The peer broke the protocol: a close frame with ``code`` has been queued.

    The I/O layer should flush :meth:`Connection.data_to_send` and close the transport
    (RFC 6455 section 7.1.7, "Fail the WebSocket Connection").
    """

    code: int
    reason: str


@dataclass(slots=True)
class ConnectionLost:
    """The transport ended without a completed close handshake: code 1006."""

    code: int = 1006
    reason: str = ""


Message = TextMessage | BinaryMessage
Event = (
    TextMessage | BinaryMessage | Ping | Pong | CloseReceived | ProtocolViolation | ConnectionLost
)
