"""Exceptions raised by Stargate.  Each carries what the peer must be told.

A protocol violation carries the close code to send (RFC 6455 section 7.4.1); a refused
handshake carries the HTTP status and a human-readable reason.
"""

from __future__ import annotations

from .protocol import CloseCode


class StargateError(Exception):
    """Base class of every exception Stargate raises on purpose."""


class ProtocolError(StargateError):
    """The peer broke the protocol; the connection must be failed with ``code``."""

    def __init__(self, reason: str, code: int = CloseCode.PROTOCOL_ERROR) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = int(code)


class InvalidPayload(ProtocolError):
    """Text that is not UTF-8 (RFC 6455 section 8.1): close code 1007."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, CloseCode.INVALID_FRAME_PAYLOAD_DATA)


class MessageTooBig(ProtocolError):
    """A frame or message over the configured limit: close code 1009."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, CloseCode.MESSAGE_TOO_BIG)


class HandshakeError(StargateError):
    """An opening handshake that must be refused with an HTTP ``status`` and a ``reason``.

    ``headers`` are extra response headers (for example ``Sec-WebSocket-Version`` on 426).
    """

    def __init__(
        self, status: int, reason: str, headers: list[tuple[str, str]] | None = None
    ) -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason
        self.headers: list[tuple[str, str]] = headers or []


class ConnectionClosed(StargateError):
    """An operation on a connection that is closing or closed."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"connection closed: {code} {reason}".rstrip())
        self.code = code
        self.reason = reason


class InvalidHandshakeResponse(StargateError):
    """A client-side handshake failure: the server's response is not a valid acceptance.

    ``status`` is the HTTP status the server answered with (0 when the response could not be
    parsed) and ``body`` the first bytes of its body, to show the user what the server said.
    """

    def __init__(self, reason: str, status: int = 0, body: bytes = b"") -> None:
        super().__init__(f"{reason} (status {status})" if status else reason)
        self.reason = reason
        self.status = status
        self.body = body
