"""Opening a client connection: URL, DNS, TCP, TLS, the opening handshake's I/O, redirects.

:func:`connect` is the asyncio entry point (``stargate.connect``); its keywords are the fields
of :class:`ConnectParams`.  The handshake itself is the core's sans-I/O
:class:`~stargate.handshake.ClientHandshake`, which checks the response and negotiates the
extensions; this module moves bytes between it and the network, follows redirects, bounds
the whole with ``open_timeout``, and maps each way of failing (the core's typed failures, the
network's errors) to its exception of :mod:`stargate.client.errors`.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import ssl as ssl_module
from collections.abc import Generator
from typing import Any

from ..connection import Connection
from ..errors import InvalidHandshakeResponse
from ..handshake import (
    BODY_PREFIX,
    ClientAccepted,
    ClientHandshake,
    InvalidAcceptKey,
    InvalidChallengeAnswer,
    Redirected,
    RejectedResponse,
    UpgradeRefused,
)
from ..protocol import Role
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
from .params import ConnectParams, keywords_of
from .urls import WebSocketURL, parse_url, redirect_target, same_origin
from .websocket import ClientOptions, ClientWebSocket

__all__ = ["Connect", "connect", "default_ssl_context", "open_connection"]

#: How long, at most, to wait for the first bytes (:data:`BODY_PREFIX`) of a refusal's body
#: once its head is in, to show them in :class:`InvalidStatus`.
BODY_GRACE = 1.0


@functools.cache
def default_ssl_context() -> ssl_module.SSLContext:
    """The context of ``wss://`` URLs without ``ssl=``: the system's trusted CAs, the
    certificate and host name verified.  Made once (loading the CA store takes time) and
    shared: a context may serve many connections at once."""
    return ssl_module.create_default_context()


# -- the handshake's I/O ---------------------------------------------------------------------


def _client_error(failure: InvalidHandshakeResponse, url: str) -> InvalidResponse:
    """The client's exception for a failure of the core's handshake (which is its cause)."""
    error: InvalidResponse
    if not isinstance(failure, RejectedResponse):  # malformed: no response head to show
        error = InvalidResponse(failure.reason, url, status=failure.status)
    else:
        response = failure.response
        status, headers = response.status, response.headers
        if isinstance(failure, Redirected):
            location = failure.location
            error = RedirectError(
                f"redirect {status} {response.reason} to {redact_url(location)!r}".rstrip(),
                url,
                status=status,
                headers=headers,
                body=failure.body,
                location=location,
            )
        elif isinstance(failure, UpgradeRefused):
            error = InvalidStatus(
                failure.reason, url, status=status, headers=headers, body=failure.body
            )
        elif isinstance(failure, InvalidAcceptKey | InvalidChallengeAnswer):
            error = InvalidAccept(failure.reason, url, status=status, headers=headers)
        else:
            error = InvalidResponse(failure.reason, url, status=status, headers=headers)
    error.__cause__ = failure
    return error


class _ClientProtocol(asyncio.Protocol):
    """The asyncio protocol of a client connection: hands the server's bytes to the core's
    handshake until it completes, then forwards everything to its :class:`ClientWebSocket`."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        url: str,
        handshake: ClientHandshake,
        options: ClientOptions,
    ) -> None:
        self.loop = loop
        self.url = url
        self.handshake = handshake
        self.options = options
        self.opened: asyncio.Future[ClientWebSocket] = loop.create_future()
        self.transport: asyncio.Transport | None = None
        self.ws: ClientWebSocket | None = None
        # A refusal waiting for the first bytes of its body.
        self._refusal: InvalidStatus | None = None
        self._body = bytearray()
        self._body_wanted = 0
        self._body_timer: asyncio.TimerHandle | None = None
        #: Some of the server's response came (the open timeout's message says so).
        self.answered = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.handshake.request_bytes())

    def data_received(self, data: bytes) -> None:
        if self._refusal is not None:
            self._body += data[: BODY_PREFIX - len(self._body)]
            self._refusal_progress()
            return
        if self.opened.done():
            return
        self.answered = True
        try:
            result = self.handshake.receive(data)
        except InvalidHandshakeResponse as failure:
            error = _client_error(failure, self.url)
            if isinstance(error, InvalidStatus) and not isinstance(error, RedirectError):
                self._await_body(error)
            else:
                self._fail(error)
            return
        if result is None:
            return
        accepted, used = result
        transport = self.transport
        assert transport is not None
        self.ws = ws = self._open(accepted)
        # From now on bytes go straight to the WebSocket: one call on the hot path
        # (feed_data would add a call per read).
        self.data_received = ws.data_receiver()  # type: ignore[method-assign,assignment]
        ws.attach(transport)
        self.opened.set_result(ws)
        if used < len(data):
            ws.feed_data(data[used:])  # frames that came with the handshake

    def _open(self, accepted: ClientAccepted) -> ClientWebSocket:
        """The connection the server agreed to, with what the core negotiated."""
        connection = Connection(
            Role.CLIENT,
            accepted.version,
            limits=self.options.limits,
            extensions=accepted.negotiated,
        )
        # The header as the server wrote it, when it accepted an extension: a header of
        # empty list elements only (``,``; RFC 9110 section 5.6.1) accepts none.
        offered = accepted.response.headers.get_all("Sec-WebSocket-Extensions")
        return ClientWebSocket(
            connection,
            accepted.response,
            url=self.url,
            loop=self.loop,
            options=self.options,
            subprotocol=accepted.subprotocol,
            extensions=", ".join(offered) if accepted.extensions else None,
        )

    def _await_body(self, refusal: InvalidStatus) -> None:
        """Report a refusal with the first bytes of its body: wait (briefly) for them."""
        self._refusal = refusal
        self._body = bytearray(refusal.body)
        length = refusal.headers.get("Content-Length")
        wanted = BODY_PREFIX
        if length is not None and length.strip().isdigit():
            wanted = min(int(length), BODY_PREFIX)
        self._body_wanted = wanted
        self._body_timer = self.loop.call_later(BODY_GRACE, self._refusal_done)
        # The future is not done yet: an open timeout still applies.
        self._refusal_progress()

    def _refusal_progress(self) -> None:
        if len(self._body) >= self._body_wanted or self._body.endswith(b"0\r\n\r\n"):
            self._refusal_done()

    def take_refusal(self) -> InvalidStatus | None:
        """The refusal still waiting for its body, with the body received so far."""
        refusal, self._refusal = self._refusal, None
        if refusal is not None:
            if self._body_timer is not None:
                self._body_timer.cancel()
            refusal.body = bytes(self._body)
        return refusal

    def failure(self) -> BaseException | None:
        """What failed the opening, if it has: a refusal whose body wait ended in the
        same loop pass as the open deadline is news the timeout must not hide."""
        opened = self.opened
        if opened.done() and not opened.cancelled():
            return opened.exception()
        return None

    def _refusal_done(self) -> None:
        if self.opened.done():
            return  # the open deadline came first: ``run`` takes the refusal
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
            self.ws.connection_lost()
            return
        if self._refusal is not None:
            self._refusal_done()
            return
        if self.opened.done():
            return
        if exc is not None:
            error: BaseException = ConnectionFailed(
                f"{self.url}: connection lost during the opening handshake: {exc}", self.url
            )
            error.__cause__ = exc
        else:
            error = InvalidResponse(
                "the server closed the connection before completing the handshake", self.url
            )
        self.opened.set_exception(error)

    def pause_writing(self) -> None:
        if self.ws is not None:
            self.ws.pause_writing()

    def resume_writing(self) -> None:
        if self.ws is not None:
            self.ws.resume_writing()

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
            protocol = self.protocol
            failure: BaseException | None = None
            if protocol is not None:
                failure = protocol.take_refusal() or protocol.failure()
            self._cleanup()
            if failure is not None:
                # The refusal was in, only its body was late (or it was complete and the
                # deadline came in the same loop pass): the refusal is the news.
                raise failure from None
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
        if self.phase == "handshake":
            protocol = self.protocol
            if protocol is not None and protocol.answered:
                return "the WebSocket handshake: the server's response was not complete"
            return "the WebSocket handshake: the server accepted TCP but did not answer"
        return {
            "dns": "name resolution",
            "connect": "the TCP connection",
            "tls": "the TLS handshake",
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
        protocol = self.protocol = _ClientProtocol(self.loop, self.url, handshake, params.options)
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


async def open_connection(url: str, params: ConnectParams) -> ClientWebSocket:
    """Open ``url`` with ``params`` on the running loop (what ``await connect(...)`` does).

    A redirect to another origin drops the credentials
    (:data:`~stargate.client.params.CREDENTIAL_HEADERS`, those of the URL included) for the
    rest of the way: they were given for the origin first opened.
    """
    loop = asyncio.get_running_loop()
    timeout = params.open_timeout
    deadline = None if timeout is None else loop.time() + timeout
    redirects = 0
    while True:
        current = parse_url(url)
        params = params.with_url_credentials(current)
        try:
            return await _Attempt(current, url, params, loop).run(deadline)
        except RedirectError as exc:
            try:
                target = redirect_target(url, exc.location)
            except ValueError as why:
                exc.reason = (
                    f"the server redirects to {redact_url(exc.location)!r} ({exc.status}), "
                    f"which cannot be followed: {why}"
                )
            else:
                if redirects < params.follow_redirects:
                    redirects += 1
                    if not same_origin(current, parse_url(target)):
                        params = params.for_another_origin()
                    url = target
                    continue
                exc.reason = (
                    f"the server redirects to {redact_url(exc.location)!r} ({exc.status}); "
                    + (
                        f"redirects are followed at most {params.follow_redirects} times"
                        if params.follow_redirects
                        else "redirects are refused unless follow_redirects=N is given"
                    )
                )
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


@keywords_of(ConnectParams)
def connect(url: str, params: ConnectParams) -> Connect:
    """Open a WebSocket connection to ``url`` (``ws://`` or ``wss://``)::

        async with stargate.connect("wss://example.com/chat") as ws:
            await ws.send("hello")
            async for message in ws:     # str for text, bytes for binary
                ...

        ws = await stargate.connect(url)  # then await ws.close()

    The keywords are the fields of :class:`ConnectParams`, which says what each one does
    (subprotocols, extra headers, compression, limits, TLS, legacy versions, timeouts,
    keepalive, flow control, redirects).  Errors, ``ws.url`` and reprs show the URL with its
    password masked.

    Failing to open raises a :class:`~stargate.client.errors.ConnectError` subclass:
    ``InvalidURL``, ``DNSError``, ``ConnectionRefused``, ``ConnectionFailed``, ``TLSError``,
    ``OpenTimeout``, ``InvalidStatus`` (with ``status`` and the first bytes of ``body``),
    ``RedirectError``, ``InvalidAccept`` or ``InvalidResponse``.
    """
    return Connect(url, params)
