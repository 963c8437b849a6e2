"""Opening a client connection: URL, DNS, TCP, TLS, the opening handshake, redirects.

:func:`connect` is the asyncio entry point (``stargate.connect``).  The handshake itself is
the core's sans-I/O :class:`~stargate.handshake.ClientHandshake`; this module does the I/O
around it and turns each way of failing into its exception of :mod:`stargate.client.errors`.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import socket
import ssl as ssl_module
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import metadata
from typing import Any
from urllib.parse import quote, unquote, urljoin, urlsplit

from ..connection import Connection
from ..errors import HandshakeError, InvalidHandshakeResponse
from ..extensions.permessage_deflate import NAME as DEFLATE
from ..extensions.permessage_deflate import PerMessageDeflateClientOffer
from ..handshake import (
    ClientAccepted,
    ClientHandshake,
    accept_key,
    hixie76_answer,
    parse_response,
)
from ..headers import Headers
from ..limits import KiB, Limits
from ..protocol import ProtocolVersion, Role
from ..redact import redact_url
from .errors import (
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
from .websocket import ClientOptions, ClientWebSocket

__all__ = [
    "CREDENTIAL_HEADERS",
    "DEFAULT_COMPRESSION",
    "USER_AGENT",
    "Connect",
    "ConnectParams",
    "WebSocketURL",
    "connect",
    "open_connection",
    "parse_url",
    "same_origin",
]


def _user_agent() -> str:
    try:
        version = metadata.version("stargate")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a checkout
        version = "dev"
    return f"stargate/{version}"


#: Sent as ``User-Agent`` unless ``user_agent=`` says otherwise (``None``: no header).
USER_AGENT = _user_agent()
#: The permessage-deflate offer made unless ``compression=`` says otherwise.
DEFAULT_COMPRESSION = PerMessageDeflateClientOffer()
#: How much of a refusal's body is kept for :class:`InvalidStatus` (and how long, at most,
#: to wait for it once the response head is in).
BODY_PREFIX = 1024
BODY_GRACE = 1.0

#: Request headers that carry credentials: sent to the origin the caller opened, never to
#: another origin a redirect points to (what browsers and HTTP clients do for the same reason).
CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})

_DEFAULT_PORTS = {"ws": 80, "wss": 443}


@functools.cache
def default_ssl_context() -> ssl_module.SSLContext:
    """The context of ``wss://`` URLs without ``ssl=``: the system's trusted CAs, the
    certificate and host name verified.  Made once (loading the CA store takes time) and
    shared: a context may serve many connections at once."""
    return ssl_module.create_default_context()


# -- URLs ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WebSocketURL:
    """A parsed ``ws://`` or ``wss://`` URL (RFC 6455 section 3)."""

    secure: bool
    host: str  # without the brackets of an IPv6 literal
    port: int
    resource: str  # path and query: what goes in the request line
    username: str | None = None
    password: str | None = None

    @property
    def host_header(self) -> str:
        """The ``Host`` header: the port only when it is not the scheme's default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.port == (443 if self.secure else 80):
            return host
        return f"{host}:{self.port}"


def parse_url(url: str) -> WebSocketURL:
    """Parse a WebSocket URL; :class:`InvalidURL` (its password masked) if it cannot be opened."""
    shown = redact_url(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidURL(f"invalid URL {shown!r}: {exc}", shown) from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise InvalidURL(f"not a ws:// or wss:// URL: {shown!r}", shown)
    if not parts.hostname:
        raise InvalidURL(f"no host in {shown!r}", shown)
    if parts.fragment or url.endswith("#"):
        raise InvalidURL(f"a WebSocket URL has no fragment (RFC 6455 section 3): {shown!r}", shown)
    resource = parts.path or "/"
    if parts.query:
        resource += "?" + parts.query
    # Spaces and non-ASCII characters are sent percent-encoded (RFC 3986 section 2.1);
    # what is already encoded, and the delimiters, stay as they are.
    resource = quote(resource, safe="!#$%&'()*+,/:;=?@[]~")
    host = parts.hostname
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")  # the DNS (punycode) form
        except UnicodeError as exc:
            raise InvalidURL(f"invalid host name in {shown!r}: {exc}", shown) from None
    return WebSocketURL(
        secure=scheme == "wss",
        host=host,
        port=port if port is not None else _DEFAULT_PORTS[scheme],
        resource=resource,
        username=unquote(parts.username) if parts.username is not None else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


def same_origin(a: WebSocketURL, b: WebSocketURL) -> bool:
    """Whether two URLs are of one origin: scheme, host and port (RFC 6454 sections 4-5)."""
    return (a.secure, a.host, a.port) == (b.secure, b.host, b.port)


# -- parameters ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConnectParams:
    """Everything :func:`connect` was asked for, but the URL (shared by the async client,
    the blocking client and :mod:`stargate.testing`)."""

    subprotocols: tuple[str, ...] = ()
    # Not in the repr: it may hold an Authorization or a Cookie.
    extra_headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    origin: str | None = None
    ssl: ssl_module.SSLContext | None = None
    server_hostname: str | None = None
    version: ProtocolVersion = ProtocolVersion.RFC6455
    follow_redirects: int = 0
    user_agent: str | None = USER_AGENT
    options: ClientOptions = field(default_factory=ClientOptions)

    @classmethod
    def build(
        cls,
        *,
        subprotocols: Sequence[str] = (),
        extra_headers: Sequence[tuple[str, str]] | Mapping[str, str] = (),
        origin: str | None = None,
        compression: PerMessageDeflateClientOffer | None = DEFAULT_COMPRESSION,
        limits: Limits | None = None,
        ssl: ssl_module.SSLContext | None = None,
        server_hostname: str | None = None,
        version: ProtocolVersion = ProtocolVersion.RFC6455,
        open_timeout: float | None = 10.0,
        close_timeout: float = 10.0,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        max_queue: int = 32,
        write_high_water: int = 64 * KiB,
        follow_redirects: int = 0,
        user_agent: str | None = USER_AGENT,
    ) -> ConnectParams:
        """Check and gather the keyword arguments of :func:`connect`."""
        if isinstance(subprotocols, str):
            raise TypeError("subprotocols must be a sequence of strings, not a string")
        headers = tuple(
            extra_headers.items() if isinstance(extra_headers, Mapping) else extra_headers
        )
        if version.is_hixie:
            compression = None  # the hixie drafts have no extensions
            if len(subprotocols) > 1:
                raise ValueError("the hixie drafts offer at most one subprotocol")
        if follow_redirects < 0:
            raise ValueError("follow_redirects must be 0 or more")
        options = ClientOptions(
            limits=limits or Limits(),
            compression=compression,
            open_timeout=open_timeout,
            close_timeout=close_timeout,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            max_queue=max_queue,
            write_high_water=write_high_water,
        )
        return cls(
            subprotocols=tuple(subprotocols),
            extra_headers=headers,
            origin=origin,
            ssl=ssl,
            server_hostname=server_hostname,
            version=version,
            follow_redirects=follow_redirects,
            user_agent=user_agent,
            options=options,
        )

    def without_credentials(self) -> ConnectParams:
        """These parameters for another origin: no :data:`CREDENTIAL_HEADERS`."""
        headers = tuple(
            (n, v) for n, v in self.extra_headers if n.lower() not in CREDENTIAL_HEADERS
        )
        return replace(self, extra_headers=headers)

    def with_url_credentials(self, target: WebSocketURL) -> ConnectParams:
        """These parameters with the ``user:password@`` of ``target`` as HTTP Basic
        credentials (RFC 7617), unless an ``Authorization`` header is given already.

        Folded into the headers so that they follow the same rule as an explicit
        ``Authorization`` on redirects: kept for the same origin, dropped for another.
        """
        names = {name.lower() for name, _ in self.extra_headers}
        if target.username is None or "authorization" in names:
            return self
        credentials = f"{target.username}:{target.password or ''}".encode()
        basic = ("Authorization", "Basic " + base64.b64encode(credentials).decode())
        return replace(self, extra_headers=(*self.extra_headers, basic))

    def handshake(self, target: WebSocketURL) -> ClientHandshake:
        """The core's handshake for one attempt (a fresh key each time)."""
        headers = list(self.extra_headers)
        names = {name.lower() for name, _ in headers}
        if self.user_agent is not None and "user-agent" not in names:
            headers.append(("User-Agent", self.user_agent))
        compression = self.options.compression
        return ClientHandshake(
            target.host_header,
            target.resource,
            secure=target.secure,
            version=self.version,
            subprotocols=self.subprotocols,
            extensions=[compression.header_value()] if compression is not None else [],
            origin=self.origin,
            extra_headers=headers,
            max_header_size=self.options.limits.max_header_size,
        )


# -- the handshake protocol ------------------------------------------------------------------


def _hixie76_number(key: str) -> int:
    """The number a Sec-WebSocket-KeyN encodes (draft-hixie-76 section 5.2 step 5)."""
    digits = int("".join(c for c in key if "0" <= c <= "9"))
    return digits // key.count(" ")


class _ClientProtocol(asyncio.Protocol):
    """The asyncio protocol of a client connection: runs the opening handshake, then
    forwards everything to its :class:`ClientWebSocket`."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        url: str,
        handshake: ClientHandshake,
        params: ConnectParams,
    ) -> None:
        self.loop = loop
        self.url = url
        self.handshake = handshake
        self.params = params
        self.opened: asyncio.Future[ClientWebSocket] = loop.create_future()
        self.transport: asyncio.Transport | None = None
        self.ws: ClientWebSocket | None = None
        # What the server sent so far (bounded), to describe a failed handshake.
        self._received = bytearray()
        self._limit = params.options.limits.max_header_size + 16 + BODY_PREFIX
        # A refusal waiting for the first bytes of its body.
        self._refusal: InvalidStatus | None = None
        self._body_start = 0
        self._body_wanted = 0
        self._body_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.handshake.request_bytes())

    def data_received(self, data: bytes) -> None:
        if self._refusal is not None:
            self._received += data[: self._limit - len(self._received)]
            self._refusal_progress()
            return
        if self.opened.done():
            return
        if len(self._received) < self._limit:
            self._received += data[: self._limit - len(self._received)]
        try:
            result = self.handshake.receive(data)
        except InvalidHandshakeResponse as exc:
            self._handshake_failed(exc)
            return
        if result is None:
            return
        accepted, used = result
        try:
            ws = self._open(accepted)
        except InvalidResponse as exc:
            self._fail(exc)
            return
        transport = self.transport
        assert transport is not None
        self.ws = ws
        self._received = bytearray()
        # From now on bytes go straight to the WebSocket: one call on the hot path.
        self.data_received = ws._data_received  # type: ignore[method-assign]
        ws._attach(transport)
        self.opened.set_result(ws)
        if used < len(data):
            ws._data_received(data[used:])  # frames that came with the handshake

    def _open(self, accepted: ClientAccepted) -> ClientWebSocket:
        """The connection the server agreed to; InvalidResponse if we cannot agree."""
        offer = self.params.options.compression
        headers = accepted.response.headers
        session = None
        for name, ext_params in accepted.extensions:
            if name != DEFLATE or offer is None or session is not None:
                raise self._invalid(f"the server accepted extension {name!r} twice or unasked")
            try:
                session = offer.accept_response(ext_params)
            except ValueError as exc:
                raise self._invalid(f"invalid permessage-deflate response: {exc}") from None
        connection = Connection(
            Role.CLIENT,
            accepted.version,
            limits=self.params.options.limits,
            extensions=[session] if session is not None else [],
        )
        return ClientWebSocket(
            connection,
            accepted.response,
            url=self.url,
            loop=self.loop,
            options=self.params.options,
            subprotocol=accepted.subprotocol,
            extensions=", ".join(headers.get_all("Sec-WebSocket-Extensions")) or None,
        )

    def _invalid(self, reason: str) -> InvalidResponse:
        response = parse_response(self._received, max_header_size=self._limit)
        headers = response[0].headers if response is not None else None
        return InvalidResponse(reason, self.url, status=101, headers=headers)

    def _handshake_failed(self, exc: InvalidHandshakeResponse) -> None:
        """Tell why the server's response does not open the connection."""
        try:
            parsed = parse_response(self._received, max_header_size=self._limit)
        except HandshakeError:
            parsed = None
        if parsed is None:  # malformed or too large
            self._fail(InvalidResponse(exc.reason, self.url, status=exc.status))
            return
        response, head_end = parsed
        status, headers = response.status, response.headers
        body = bytes(self._received[head_end : head_end + BODY_PREFIX])
        if 300 <= status < 400:
            location = headers.get("Location") or ""
            self._fail(
                RedirectError(
                    f"redirect {status} {response.reason} to {redact_url(location)!r}".rstrip(),
                    self.url,
                    status=status,
                    headers=headers,
                    body=body,
                    location=location,
                )
            )
        elif status != 101:
            refusal = InvalidStatus(
                f"the server refused the upgrade: {status} {response.reason}".rstrip(),
                self.url,
                status=status,
                headers=headers,
                body=body,
            )
            self._await_body(refusal, head_end, headers)
        else:
            self._fail(self._classify_101(exc, response.headers, head_end))

    def _classify_101(
        self, exc: InvalidHandshakeResponse, headers: Headers, head_end: int
    ) -> InvalidResponse:
        """A 101 that does not complete the handshake: a wrong accept value or challenge
        answer is :class:`InvalidAccept`, anything else :class:`InvalidResponse`."""
        handshake = self.handshake
        version = handshake.version
        if not version.is_hixie:
            values = headers.get_all("Sec-WebSocket-Accept")
            expected = accept_key(handshake.key)
            if not values:
                return InvalidAccept("missing Sec-WebSocket-Accept header", self.url, status=101)
            if values != [expected]:
                return InvalidAccept(
                    f"incorrect Sec-WebSocket-Accept {values[0]!r} (expected {expected!r})",
                    self.url,
                    status=101,
                    headers=headers,
                )
        elif version is ProtocolVersion.HIXIE_76:
            answer = bytes(self._received[head_end : head_end + 16])
            expected_answer = hixie76_answer(
                _hixie76_number(handshake.key1), _hixie76_number(handshake.key2), handshake.key3
            )
            if answer != expected_answer:
                return InvalidAccept(
                    "incorrect hixie-76 challenge answer", self.url, status=101, headers=headers
                )
        return InvalidResponse(exc.reason, self.url, status=101, headers=headers)

    def _await_body(self, refusal: InvalidStatus, head_end: int, headers: Headers) -> None:
        """Report a refusal with the first bytes of its body: wait (briefly) for them."""
        self._refusal = refusal
        self._body_start = head_end
        length = headers.get("Content-Length")
        wanted = BODY_PREFIX
        if length is not None and length.strip().isdigit():
            wanted = min(int(length), BODY_PREFIX)
        self._body_wanted = wanted
        self._body_timer = self.loop.call_later(BODY_GRACE, self._refusal_done)
        # The future is not done yet: an open timeout still applies.
        self._refusal_progress()

    def _refusal_progress(self) -> None:
        body = self._received[self._body_start :]
        if len(body) >= self._body_wanted or body.endswith(b"0\r\n\r\n"):
            self._refusal_done()

    def take_refusal(self) -> InvalidStatus | None:
        """The refusal still waiting for its body, with the body received so far."""
        refusal, self._refusal = self._refusal, None
        if refusal is not None:
            if self._body_timer is not None:
                self._body_timer.cancel()
            refusal.body = bytes(self._received[self._body_start :][:BODY_PREFIX])
        return refusal

    def _refusal_done(self) -> None:
        refusal = self.take_refusal()
        if refusal is not None:
            self._fail(refusal)

    def _fail(self, exc: BaseException) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc)
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.ws is not None:
            self.ws._connection_lost()
            return
        if self._refusal is not None:
            self._refusal_done()
            return
        if self.opened.done():
            return
        if exc is not None:
            error: BaseException = ConnectionFailed(
                f"connection lost during the opening handshake: {exc}", self.url
            )
            error.__cause__ = exc
        else:
            error = InvalidResponse(
                "the server closed the connection before completing the handshake", self.url
            )
        self.opened.set_exception(error)

    def pause_writing(self) -> None:
        if self.ws is not None:
            self.ws._pause_writing()

    def resume_writing(self) -> None:
        if self.ws is not None:
            self.ws._resume_writing()

    def eof_received(self) -> bool | None:
        return None  # the transport closes itself


# -- opening -------------------------------------------------------------------------------


class _Attempt:
    """One attempt to open a URL, with the phase it is in (for the timeout's message)."""

    def __init__(
        self, target: WebSocketURL, url: str, params: ConnectParams, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.target = target
        self.url = redact_url(url)  # what errors and the connection show
        self.params = params
        self.loop = loop
        self.phase = "dns"
        self.sock: socket.socket | None = None
        self.protocol: _ClientProtocol | None = None

    async def run(self, deadline: float | None) -> ClientWebSocket:
        timeout = asyncio.timeout_at(deadline)
        try:
            async with timeout:
                return await self._open()
        except TimeoutError as exc:
            refusal = self.protocol.take_refusal() if self.protocol is not None else None
            self._cleanup()
            if refusal is not None:
                # The refusal was in, only its body was late: the refusal is the news.
                raise refusal from None
            if timeout.expired():
                raise OpenTimeout(
                    f"{self.url}: not open within {self.params.options.open_timeout} s "
                    f"(during {self._phase_name()})",
                    self.url,
                    self.phase,
                ) from None
            raise ConnectionFailed(f"{self.url}: {exc}", self.url) from exc
        except BaseException:
            self._cleanup()
            raise

    def _phase_name(self) -> str:
        return {
            "dns": "name resolution",
            "connect": "the TCP connection",
            "tls": "the TLS handshake",
            "handshake": "the WebSocket handshake: the server accepted TCP but did not answer",
        }[self.phase]

    def _cleanup(self) -> None:
        protocol = self.protocol
        if protocol is not None:
            if not protocol.opened.done():
                protocol.opened.cancel()
            if protocol.transport is not None:
                protocol.transport.abort()
        if self.sock is not None:
            self.sock.close()

    async def _open(self) -> ClientWebSocket:
        params, target = self.params, self.target
        context = params.ssl
        if target.secure:
            if context is None:
                context = default_ssl_context()
        elif context is not None:
            raise InvalidURL(f"an ssl context was given for a ws:// URL: {self.url!r}", self.url)
        sock = self.sock = await self._tcp_connect(target.host, target.port)
        handshake = params.handshake(target)
        protocol = self.protocol = _ClientProtocol(self.loop, self.url, handshake, params)
        self.phase = "tls" if target.secure else "handshake"
        try:
            await self.loop.create_connection(
                lambda: protocol,
                sock=sock,
                ssl=context,
                server_hostname=(params.server_hostname or target.host) if context else None,
            )
        except ssl_module.SSLError as exc:
            verify = getattr(exc, "verify_message", "") or ""
            detail = verify or exc.reason or str(exc)
            raise TLSError(
                f"TLS handshake with {self.url} failed: {detail}", self.url, verify
            ) from exc
        except ConnectionError as exc:
            raise ConnectionFailed(
                f"{self.url}: connection lost during the TLS handshake: {exc}", self.url
            ) from exc
        self.sock = None  # the transport owns it now
        self.phase = "handshake"
        return await protocol.opened

    async def _tcp_connect(self, host: str, port: int) -> socket.socket:
        """Resolve, then try each address in turn; the errors tell DNS from refusal."""
        url = self.url
        try:
            infos = await self.loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise DNSError(f"cannot resolve {host!r}: {exc.strerror} ({url})", url, host) from exc
        except UnicodeError as exc:  # not a valid IDNA host name
            raise DNSError(f"invalid host name {host!r}: {exc} ({url})", url, host) from exc
        self.phase = "connect"
        errors: list[OSError] = []
        for family, kind, proto, _, address in infos:
            sock = socket.socket(family, kind, proto)
            try:
                sock.setblocking(False)
                await self.loop.sock_connect(sock, address)
            except OSError as exc:
                sock.close()
                errors.append(exc)
                continue
            except BaseException:
                sock.close()
                raise
            return sock
        if errors and all(isinstance(e, ConnectionRefusedError) for e in errors):
            raise ConnectionRefused(
                f"connection refused by {host} port {port}: nothing listens there ({url})", url
            ) from errors[0]
        detail = "; ".join(dict.fromkeys(str(e) for e in errors)) or "no address"
        raise ConnectionFailed(
            f"cannot connect to {host} port {port}: {detail} ({url})", url
        ) from (errors[0] if errors else None)


def _redirect_target(url: str, location: str) -> str | None:
    """The WebSocket URL a redirect points to, or None if it cannot be followed."""
    if not location:
        return None
    target = urljoin(url.replace("ws://", "http://", 1).replace("wss://", "https://", 1), location)
    scheme, sep, rest = target.partition("://")
    scheme = {"http": "ws", "https": "wss"}.get(scheme.lower(), scheme.lower())
    if scheme not in _DEFAULT_PORTS:
        return None
    if url.lower().startswith("wss:") and scheme == "ws":
        return None  # never downgrade from TLS
    return f"{scheme}{sep}{rest}"


async def open_connection(url: str, params: ConnectParams) -> ClientWebSocket:
    """Open ``url`` with ``params`` on the running loop (what ``await connect(...)`` does).

    A redirect to another origin drops the credentials (:data:`CREDENTIAL_HEADERS`, those of
    the URL included) for the rest of the way: they were given for the origin first opened.
    """
    loop = asyncio.get_running_loop()
    timeout = params.options.open_timeout
    deadline = None if timeout is None else loop.time() + timeout
    redirects = 0
    while True:
        current = parse_url(url)
        params = params.with_url_credentials(current)
        try:
            return await _Attempt(current, url, params, loop).run(deadline)
        except RedirectError as exc:
            target = _redirect_target(url, exc.location)
            if target is None:
                exc.reason = (
                    f"the server redirects to {redact_url(exc.location)!r} ({exc.status}), "
                    "which is not a WebSocket URL that can be followed"
                )
            elif redirects >= params.follow_redirects:
                exc.reason = (
                    f"the server redirects to {redact_url(exc.location)!r} ({exc.status}); "
                    "redirects are "
                    + (
                        f"followed at most {params.follow_redirects} times"
                        if params.follow_redirects
                        else "refused unless follow_redirects=N is given"
                    )
                )
            else:
                redirects += 1
                if not same_origin(current, parse_url(target)):
                    params = params.without_credentials()
                url = target
                continue
            exc.args = (exc.reason,)
            raise


class Connect:
    """What :func:`connect` returns: ``await`` it for a :class:`ClientWebSocket`, or use it
    as ``async with`` to close the connection at the end of the block."""

    def __init__(self, url: str, params: ConnectParams) -> None:
        self.url = url
        self.params = params
        self._ws: ClientWebSocket | None = None

    def __await__(self) -> Generator[Any, None, ClientWebSocket]:
        return open_connection(self.url, self.params).__await__()

    async def __aenter__(self) -> ClientWebSocket:
        self._ws = await open_connection(self.url, self.params)
        return self._ws

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.__aexit__(exc_type, exc, tb)


def connect(
    url: str,
    *,
    subprotocols: Sequence[str] = (),
    extra_headers: Sequence[tuple[str, str]] | Mapping[str, str] = (),
    origin: str | None = None,
    compression: PerMessageDeflateClientOffer | None = DEFAULT_COMPRESSION,
    limits: Limits | None = None,
    ssl: ssl_module.SSLContext | None = None,
    server_hostname: str | None = None,
    version: ProtocolVersion = ProtocolVersion.RFC6455,
    open_timeout: float | None = 10.0,
    close_timeout: float = 10.0,
    ping_interval: float | None = 20.0,
    ping_timeout: float | None = 20.0,
    max_queue: int = 32,
    write_high_water: int = 64 * KiB,
    follow_redirects: int = 0,
    user_agent: str | None = USER_AGENT,
) -> Connect:
    """Open a WebSocket connection to ``url`` (``ws://`` or ``wss://``)::

        async with stargate.connect("wss://example.com/chat") as ws:
            await ws.send("hello")
            async for message in ws:     # str for text, bytes for binary
                ...

        ws = await stargate.connect(url)  # then await ws.close()

    * ``subprotocols``: offered in order; the server's choice is ``ws.subprotocol``.
    * ``extra_headers``: more request headers (pairs or a mapping), e.g. cookies or an
      ``Authorization``.  ``user:password@`` in the URL sends HTTP Basic credentials.  A
      redirect to the same origin gets them all again; a redirect to another origin (another
      scheme, host or port) gets neither ``Authorization``, ``Cookie``,
      ``Proxy-Authorization`` nor the URL's credentials.  ``origin`` sends an ``Origin``
      header.  Errors, ``ws.url`` and reprs show the URL with its password masked.
    * ``compression``: the permessage-deflate offer (RFC 7692), on by default; ``None``
      turns it off.  ``ws.compression`` tells whether the server agreed.
    * ``limits``: message, frame and response-head sizes (:class:`~stargate.limits.Limits`:
      1 MiB messages by default, larger ones close the connection with 1009).
    * ``ssl``: the TLS context for ``wss://``; by default the system's trusted certificates,
      verified, with the URL's host name (or ``server_hostname``) checked.
    * ``version``: ``ProtocolVersion.HIXIE_76`` (or ``HIXIE_75``, ``HYBI_07``, ``HYBI_08``)
      speaks a legacy draft, for testing old servers: text only, no ping, no compression.
    * ``open_timeout`` bounds DNS, TCP, TLS and the handshake together; ``close_timeout``
      the closing handshake; ``ping_interval``/``ping_timeout`` are the keepalive (a ping
      every 20 s, close with 1011 when its pong is 20 s late); ``None`` turns either off.
    * ``max_queue`` unread messages pause reading; ``send()`` waits while more than
      ``write_high_water`` bytes are waiting to be sent.
    * ``follow_redirects``: how many 3xx redirects to follow (default 0: a redirect raises
      :class:`~stargate.client.errors.RedirectError` naming its ``Location``); never from
      ``wss://`` to ``ws://``.

    Failing to open raises a :class:`~stargate.client.errors.ConnectError` subclass:
    ``InvalidURL``, ``DNSError``, ``ConnectionRefused``, ``ConnectionFailed``, ``TLSError``,
    ``OpenTimeout``, ``InvalidStatus`` (with ``status`` and the first bytes of ``body``),
    ``RedirectError``, ``InvalidAccept`` or ``InvalidResponse``.
    """
    params = ConnectParams.build(
        subprotocols=subprotocols,
        extra_headers=extra_headers,
        origin=origin,
        compression=compression,
        limits=limits,
        ssl=ssl,
        server_hostname=server_hostname,
        version=version,
        open_timeout=open_timeout,
        close_timeout=close_timeout,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        max_queue=max_queue,
        write_high_water=write_high_water,
        follow_redirects=follow_redirects,
        user_agent=user_agent,
    )
    return Connect(url, params)
