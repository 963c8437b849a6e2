"""Server settings.  Every resource a client can make the server spend is bounded here."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field

from ..extensions.permessage_deflate import PerMessageDeflateOffer
from ..handshake import OriginPolicy
from ..limits import KiB, MiB
from ..options import EndpointOptions
from ..redact import redact_url
from .access import FORMATS
from .proxy import PROXY_HEADERS


@dataclass(frozen=True, slots=True)
class WebSocketOptions(EndpointOptions[PerMessageDeflateOffer]):
    """Per-connection WebSocket behaviour of the server; an application may override it per
    upgrade.

    The fields both roles share, and their defaults, are those of
    :class:`~stargate.options.EndpointOptions` (the client's
    :class:`~stargate.client.ClientOptions` has the same ones); the server adds
    ``max_send_buffer``.
    """

    #: permessage-deflate settings offered to clients that ask for it; ``None`` turns
    #: compression off.  The default costs about 45 KiB per compressing connection.
    compression: PerMessageDeflateOffer | None = field(default_factory=PerMessageDeflateOffer)
    #: Bytes waiting in the transport above which a send that cannot wait (a broadcast, a
    #: send from another thread) closes the connection with 1008: a slow consumer never
    #: makes memory grow without bound nor delays anyone else.
    max_send_buffer: int = 4 * MiB


# The fields by kind: what ServerConfig checks when made, and what stargate.settings parses
# (a count, a size with units, seconds) from the command line, .ini files and variables.
#: Fields that count something: at least 1.
COUNT_FIELDS = ("threads", "websocket_threads", "max_connections", "max_pipelined", "max_headers")
#: Fields in bytes: at least 1.
SIZE_FIELDS = (
    "max_header_size",
    "max_body_size",
    "body_spool_size",
    "output_buffer_memory",
    "output_buffer_max",
)
#: Durations in seconds.
SECONDS_FIELDS = (
    "header_timeout",
    "body_timeout",
    "write_timeout",
    "linger_timeout",
    "shutdown_timeout",
)
#: Durations where 0 turns the thing off (no keep-alive).
SECONDS_OR_OFF_FIELDS = ("keepalive_timeout",)


@dataclass(frozen=True, slots=True, repr=False)
class ServerConfig:
    """Settings of one server process."""

    #: The address to listen on (``""``: every interface); ignored when the server is
    #: given listening sockets (``stargate serve --listen``, gunicorn, the workers).
    host: str = "127.0.0.1"
    #: The port to listen on; 0 picks a free one (:attr:`Server.port
    #: <stargate.server.Server.port>` tells which, once started).
    port: int = 8000
    #: Worker threads for WSGI requests (and the app's decision on an upgrade).
    threads: int = 32
    #: Threads of synchronous (``def``) WebSocket handlers, a pool apart from ``threads``:
    #: each handler holds one for its connection's lifetime, so sharing one pool let a few
    #: open connections starve every HTTP request.  Past this many, a new ``def`` handler
    #: waits for a thread (its messages queue up to ``max_queue``).
    websocket_threads: int = 128
    #: TLS: serve https and wss (``None``: plain http and ws).
    ssl_context: ssl.SSLContext | None = None
    #: The WebSocket options of every connection whose acceptance gives none.
    websocket: WebSocketOptions = field(default_factory=WebSocketOptions)
    #: Request head (request line + headers) size; larger heads get 431 (414 when the
    #: request line alone is larger).  Also the bound of a chunked body's bytes that are
    #: not data (size lines, extensions, the CRLF after each chunk) between two bytes of
    #: data: past it, 413 (431 in the trailer section).
    max_header_size: int = 16 * KiB
    #: Header fields in one request head (gunicorn's default); more get 431.
    max_headers: int = 100
    #: Request body size; larger bodies get 413 (before they are read, when the
    #: Content-Length says so).
    max_body_size: int = 16 * MiB
    #: Request bodies larger than this are spooled to a temporary file instead of memory,
    #: so concurrent uploads cost disk, not RAM (waitress's ``inbuf_overflow``).
    body_spool_size: int = 512 * KiB
    #: Time to receive a complete request head, from its first byte or from connection.
    header_timeout: float = 10.0
    #: Time without a byte of a request body that is still due; past it the connection is
    #: dropped (a stalled upload cannot hold a connection forever).
    body_timeout: float = 30.0
    #: Time an HTTP response may wait on a client that takes none of it.  While the
    #: transport's buffer is above its high-water mark, every ``write_timeout`` seconds
    #: the bytes still on their way to the client are counted, the transport's buffer and
    #: the kernel's send queue (Linux ``SIOCOUTQ``) together: if they did not shrink, the
    #: connection is aborted; if they did, the client reads, however slowly, and the
    #: watch starts over.  So a steady slow download is never cut, and a client that
    #: stops reading is aborted one to two ``write_timeout`` after it stopped.  Also
    #: bounds a worker thread that waits for room in a full output buffer
    #: (``output_buffer_max``), and, added to ``linger_timeout``, a connection closing
    #: after an error response while output is still unsent.  A WebSocket is bounded by
    #: ``max_send_buffer`` and ``close_timeout`` instead.
    write_timeout: float = 60.0
    #: Response bytes kept in memory per connection before the rest goes to a temporary
    #: file (waitress's ``outbuf_overflow``): a worker thread hands its output over and is
    #: free again, whatever the client's speed.
    output_buffer_memory: int = 1 * MiB
    #: Response bytes buffered per connection (memory and file) before a worker thread
    #: waits for the client to take some (waitress's ``outbuf_high_watermark``).
    output_buffer_max: int = 16 * MiB
    #: Time an idle keep-alive HTTP connection is kept open, counted once the last
    #: response is all handed to the transport (while it is still being written, the
    #: connection is not idle: ``write_timeout`` bounds it); 0: no keep-alive (every
    #: response says ``Connection: close``).
    keepalive_timeout: float = 5.0
    #: After an error response (400, 413, 431, a refused upgrade ...), how long the server
    #: keeps discarding what the client still sends before closing, so that the client
    #: reads the response instead of a connection reset.  Also how long a closing
    #: connection may take to flush what it still owes before it is aborted.
    linger_timeout: float = 2.0
    #: Pipelined requests parsed ahead of the one being answered before reading pauses.
    max_pipelined: int = 16
    #: Open connections (HTTP and WebSocket); further ones are closed at once.
    max_connections: int = 10_000
    #: How long shutdown waits for handlers and in-flight requests before giving up.
    shutdown_timeout: float = 10.0
    #: Serve the legacy hixie-75 and hixie-76 drafts (on by default, as the seed promised).
    legacy_protocols: bool = True
    #: Which browser origins may open WebSockets (same-origin by default: docs/security.md,
    #: "Who may open a WebSocket").
    origin_policy: OriginPolicy = field(default_factory=OriginPolicy)
    #: Run the WSGI app's decision about an upgrade request on the event loop instead of a
    #: worker thread: saves the thread hop (a third of a handshake's cost through a WSGI
    #: framework), and is safe only if nothing the app does for an upgrade request blocks
    #: (no database query, no file, no remote call in routing, authentication or the view).
    #: Plain requests always run in the thread pool.
    upgrade_on_loop: bool = False
    #: Peers whose forwarding headers (see ``proxy_headers``) are believed: IP addresses
    #: or CIDR networks (``127.0.0.1``, ``10.0.0.0/8``), or ``"*"`` for every peer.  Empty
    #: (the default): those headers are ignored, since any client can send them.  See
    #: :mod:`stargate.server.proxy`.
    trusted_proxies: tuple[str, ...] = ()
    #: The forwarding headers those proxies set: ``"x-forwarded"`` (``X-Forwarded-For``,
    #: ``-Proto``, ``-Host``: nginx, HAProxy, cloud load balancers) or
    #: ``"forwarded"`` (RFC 7239).  The other family is never read: a proxy passes it on as
    #: the client wrote it.
    proxy_headers: str = "x-forwarded"
    #: One line per HTTP request and per WebSocket opened, closed or refused, to the
    #: ``stargate.access`` logger (see :mod:`stargate.server.access`).  Off for the library,
    #: on in ``stargate serve`` (``--no-access-log``).
    access_log: bool = False
    #: ``"text"`` (a web server's line) or ``"json"`` (one object per line).
    access_log_format: str = "text"
    #: A path (``/-/metrics``) served by the server itself, before the application, with
    #: the Prometheus exposition of its metrics (needs ``prometheus_client``, the
    #: ``prometheus`` extra).  ``None`` (the default): not served.  Restrict it at the proxy.
    metrics_path: str | None = None
    #: A path (``/-/ready``) answered 200 while the server takes work, 503 while its group
    #: broker is disconnected; for load balancers and orchestrators.  Once a shutdown
    #: begins the server stops listening, so a probe fails to connect (one on a
    #: connection taken before gets 503).
    health_path: str | None = None
    #: The broker that carries group messages between processes (``stargate.brokers``):
    #: ``None`` or ``memory://`` for one process, ``redis://host:6379/0`` for several.
    #: Read by :func:`stargate.workers.run_workers` (``stargate serve --broker``).
    broker_url: str | None = None  # may hold a password: __repr__ masks it

    def __post_init__(self) -> None:
        """Refuse what no server could run with when the config is made, as
        :class:`~stargate.options.WebSocketOptions` does, not when ``serve()`` starts."""
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0 to 65535, not {self.port!r}")
        for name in (*COUNT_FIELDS, *SIZE_FIELDS):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number above 0, not {value!r}")
        for name in (*SECONDS_FIELDS, *SECONDS_OR_OFF_FIELDS):
            value = getattr(self, name)
            if not 0 <= value < float("inf"):  # NaN fails too
                raise ValueError(f"{name} must be a finite number of seconds >= 0, not {value!r}")
        for name, choices in (("access_log_format", FORMATS), ("proxy_headers", PROXY_HEADERS)):
            value = getattr(self, name)
            if value not in choices:
                raise ValueError(f"{name} must be one of {', '.join(choices)}, not {value!r}")

    def __repr__(self) -> str:
        """The dataclass repr, with the broker URL's password masked."""
        fields = ", ".join(
            f"{name}={getattr(self, name)!r}"
            for name in self.__dataclass_fields__
            if name != "broker_url"
        )
        return f"ServerConfig({fields}, broker_url={redact_url(self.broker_url)!r})"
