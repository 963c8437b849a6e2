"""Per-connection WebSocket options: one type for what the server and the client share.

:class:`EndpointOptions` holds the settings both roles read the same way (limits,
compression, keepalive, the closing handshake's timeout, flow control both ways); the
machinery both roles run (:mod:`stargate.endpoint`) reads only these.  Each role extends it
with what only it has: the server's :class:`~stargate.server.WebSocketOptions` adds
``max_send_buffer`` (its slow-consumer policy for sends that cannot wait) and offers
compression as a server (:class:`~stargate.extensions.permessage_deflate.PerMessageDeflateOffer`);
the client's :class:`~stargate.client.ClientOptions` adds ``open_timeout`` and offers
compression as a client
(:class:`~stargate.extensions.permessage_deflate.PerMessageDeflateClientOffer`).  One class
per role rather than one with every field: a setting a role does not have cannot be given
to it and silently ignored.

The defaults follow what users expect from peers that ship them (docs/design.md,
"Defaults"): keepalive on (a ping every 20 s, closed with 1011 after 20 s without a pong),
a 10 s close timeout, bounded queues both ways.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

from .limits import KiB, Limits

__all__ = ["EndpointOptions", "OfferT"]

#: The permessage-deflate offer of a role (what its handshake sends or accepts).
OfferT = TypeVar("OfferT")


@dataclass(frozen=True, slots=True)
class EndpointOptions(Generic[OfferT]):
    """The per-connection settings both roles share; checked when made.

    Applications build a role's subclass (:class:`~stargate.server.WebSocketOptions`,
    :class:`~stargate.client.ClientOptions`), which also gives ``compression`` its default.
    """

    #: Message, frame and handshake-head sizes; larger messages close with 1009.
    limits: Limits = field(default_factory=Limits)
    #: The permessage-deflate offer (RFC 7692); ``None`` turns compression off.
    compression: OfferT | None = None
    #: Seconds between keepalive pings; ``None`` turns them off (hixie connections have
    #: no pings).
    ping_interval: float | None = 20.0
    #: Seconds a keepalive ping's pong may take before the connection is closed with 1011;
    #: ``None``: wait forever.
    ping_timeout: float | None = 20.0
    #: Seconds the closing handshake may take (and, for a client, the server's closing of
    #: TCP after it) before the transport is aborted.
    close_timeout: float = 10.0
    #: Messages received but not yet read by the application; reading from the peer pauses
    #: when this many wait (backpressure instead of unbounded memory).
    max_queue: int = 32
    #: Bytes waiting in the transport above which ``await send()`` waits for the peer, and
    #: reading pauses (so a peer that does not read cannot make us owe it more).
    write_high_water: int = 64 * KiB

    def __post_init__(self) -> None:
        if self.max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        if self.close_timeout <= 0:
            raise ValueError("close_timeout must be positive")
