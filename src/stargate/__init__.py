"""Stargate: WebSockets on the same port and process as your WSGI web app.

The public API is re-exported here; everything else may move between releases.
"""

from .client import connect, sync_connect
from .connection import Connection, ConnectionState
from .errors import (
    ConnectionClosed,
    HandshakeError,
    InvalidHandshakeResponse,
    InvalidPayload,
    MessageTooBig,
    ProtocolError,
    StargateError,
)
from .events import (
    BinaryMessage,
    CloseReceived,
    ConnectionLost,
    Event,
    Ping,
    Pong,
    ProtocolViolation,
    TextMessage,
)
from .limits import Limits
from .protocol import CloseCode, Opcode, ProtocolVersion, Role

__version__ = "0.1.0"

__all__ = [
    "BinaryMessage",
    "CloseCode",
    "CloseReceived",
    "Connection",
    "ConnectionClosed",
    "ConnectionLost",
    "ConnectionState",
    "Event",
    "HandshakeError",
    "InvalidHandshakeResponse",
    "InvalidPayload",
    "Limits",
    "MessageTooBig",
    "Opcode",
    "Ping",
    "Pong",
    "ProtocolError",
    "ProtocolVersion",
    "ProtocolViolation",
    "Role",
    "StargateError",
    "TextMessage",
    "connect",
    "sync_connect",
]
