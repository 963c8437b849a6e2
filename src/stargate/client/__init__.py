"""The WebSocket client: asyncio (:func:`connect`) and blocking (:func:`sync_connect`).

Both run on the same sans-I/O core as the server (:mod:`stargate.handshake`,
:mod:`stargate.connection`) and speak RFC 6455 with permessage-deflate (on by default), or a
legacy draft (``version=ProtocolVersion.HIXIE_76``) for testing old servers.  Both take the
keywords of :class:`~stargate.client.params.ConnectParams`.  Failing to open a connection
raises a :class:`~stargate.client.errors.ConnectError` subclass that says how it failed; see
:mod:`stargate.client.errors`.
"""

from .errors import (
    ConnectError,
    ConnectionFailed,
    ConnectionRefused,
    DNSError,
    InvalidAccept,
    InvalidResponse,
    InvalidStatus,
    InvalidURL,
    OpenTimeout,
    RedirectError,
    TLSError,
)
from .opening import Connect, connect
from .params import ConnectParams
from .sync import SyncClientWebSocket
from .sync import connect as sync_connect
from .websocket import ClientOptions, ClientWebSocket

__all__ = [
    "ClientOptions",
    "ClientWebSocket",
    "Connect",
    "ConnectError",
    "ConnectParams",
    "ConnectionFailed",
    "ConnectionRefused",
    "DNSError",
    "InvalidAccept",
    "InvalidResponse",
    "InvalidStatus",
    "InvalidURL",
    "OpenTimeout",
    "RedirectError",
    "SyncClientWebSocket",
    "TLSError",
    "connect",
    "sync_connect",
]
