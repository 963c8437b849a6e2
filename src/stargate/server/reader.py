"""Reading HTTP/1.1 requests off a connection: bytes in, whole requests out.

:class:`RequestReader` drives httptools (llhttp, the parser of Node.js: fast, maintained,
handles chunked bodies and pipelining, and reports where an upgrade's WebSocket bytes begin)
and checks what it reads against the server's limits; the channel
(:mod:`stargate.server.channel`) gets each request once it is complete, and decides when
to answer it.  A request that cannot be served stops the reading with
:class:`RequestRefused` (the status and reason to answer with).

Every limit is counted on the bytes as received, whatever way the client cut them into
reads: the parser is fed one part of a request at a time (the head, a body by length, a
chunked body), and the part's meter (:mod:`stargate.server.request`) says where it ends or
where it passed its limit.  llhttp reports neither where a part ends nor the bytes of chunk
extensions.
"""

from __future__ import annotations

import io
import re
import weakref
from typing import Protocol

import httptools

from ..headers import TCHAR, has_token
from .buffers import RequestBody
from .config import ServerConfig
from .request import (
    UNFRAMED,
    BadTarget,
    ChunkMeter,
    HeadMeter,
    HttpRequest,
    LengthMeter,
    parse_target,
    valid_authority,
)

#: The parser of a stopped reader: calls back nothing, and is never fed.
_STOPPED = httptools.HttpRequestParser(object())

#: A client that speaks HTTP/2 without asking first (prior knowledge, RFC 9113 3.3).
_HTTP2_PREFACE = (400, "an HTTP/2 connection preface: this server speaks HTTP/1.1")
#: A character of a token (RFC 9110 section 5.6.2), as a method begins with one.
_TCHAR = re.compile(TCHAR.encode())
#: The bytes of the empty lines llhttp skips before a request (RFC 9112 section 2.2).
_EMPTY_LINE = b"\r\n"


class RequestRefused(Exception):
    """The request cannot be served: answer ``status`` with ``reason``, then close."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class ReaderEvents(Protocol):
    """What the reader tells the channel as a request comes in."""

    def head_started(self) -> None:
        """A request's first byte arrived."""

    def body_started(self, upgrade: bool) -> None:
        """The head is complete and accepted: its body (if any) comes next, or, for an
        ``upgrade`` request, the handshake."""

    def request_read(self, request: HttpRequest) -> None:
        """``request`` is complete, its body included."""

    def upgrade_read(self, rest: bytes) -> None:
        """The last request read asks for a WebSocket; ``rest`` followed its head."""

    def body_memory_held(self) -> int:
        """Bytes of request bodies the connection already holds in memory."""


class RequestReader:
    """Parses one connection's requests, one after another (pipelining included)."""

    def __init__(self, config: ServerConfig, events: ReaderEvents) -> None:
        self.config = config
        # The channel owns this reader: a strong reference back would be a cycle, and the
        # connection's objects garbage only the cycle collector can free (see stop()).
        self.events: ReaderEvents = weakref.proxy(events)
        self.parser = httptools.HttpRequestParser(self)
        #: Where the part of the request being received ends (see :meth:`feed`).
        self._meter: HeadMeter | LengthMeter | ChunkMeter = HeadMeter(config.max_header_size)
        self._url = bytearray()
        self._headers: list[tuple[str, str]] = []
        self._body: RequestBody | None = None
        #: A head is being received, or a body (for the channel's deadlines).
        self.in_head = False
        self.in_body = False
        #: The request being received asked ``Expect: 100-continue`` and was not answered.
        self.continue_owed = False
        self._last: HttpRequest | None = None
        #: The first byte of the request being received (what a refused method began with).
        self._lead = b""

    def feed(self, data: bytes) -> bytes:
        """Parse ``data``; return what follows an ignored upgrade request (else ``b""``).

        Raises :class:`RequestRefused` when a request cannot be served; a WebSocket
        upgrade is told to :meth:`ReaderEvents.upgrade_read` with the bytes after its head,
        which are not parsed.
        """
        assert self.parser is not _STOPPED, "a stopped reader is fed"
        view = memoryview(data)
        start = 0
        while start < len(data):
            meter = self._meter
            end = meter.scan(data, start)
            if not self.in_head and data[start] not in _EMPTY_LINE:
                self._lead = data[start : start + 1]
            try:
                self.parser.feed_data(view[start:end])
            except httptools.HttpParserUpgrade as exc:
                request = self._last
                assert request is not None
                rest = data[start + exc.args[0] :]
                protocols = [v for name, v in request.headers if name.lower() == "upgrade"]
                if has_token(protocols, "websocket"):
                    self.events.upgrade_read(rest)
                    return b""
                # Another protocol (curl --http2 sends "Upgrade: h2c"): RFC 9110 section
                # 7.8 lets a server ignore Upgrade, so it is a plain request for the app,
                # and HTTP/1.1 parsing goes on with a fresh parser (llhttp stops there).
                request.upgrade = False
                self.parser = httptools.HttpRequestParser(self)
                return rest
            except httptools.HttpParserError as exc:
                # httptools wraps what a callback raises: a RequestRefused arrives as the
                # context of an HttpParserCallbackError, and keeps its status (431, 413).
                refused = exc.__context__
                if isinstance(refused, RequestRefused):
                    raise refused from None
                if isinstance(exc, httptools.HttpParserInvalidMethodError) and _TCHAR.match(
                    self._lead
                ):
                    # A method llhttp does not know (its list is fixed) is still a method:
                    # RFC 9110 section 15.6.2 says 501, not 400 (which a TLS hello gets).
                    # llhttp stops at its first unknown byte, so the method's name may not
                    # have come yet: the answer does not depend on how the bytes were cut.
                    raise RequestRefused(501, "this request method is not implemented") from None
                raise RequestRefused(400, f"bad request: {exc}") from None
            if meter.refusal is not None:
                raise RequestRefused(*meter.refusal)
            if meter.complete and self.in_head:
                # llhttp reads on past the head's empty line only after "PRI * HTTP/2.0",
                # for the rest of HTTP/2's connection preface (RFC 9113 section 3.4).
                refusal = _HTTP2_PREFACE if self.parser.get_method() == b"PRI" else UNFRAMED
                raise RequestRefused(*refusal)
            start = end
        return b""

    def what_was_read(self) -> tuple[str, str]:
        """The method and target of the request being read, as far as they came (for the
        access log's line about a refusal)."""
        if not self._url:
            # llhttp knows a method once it reads a target after it; before that it says
            # "DELETE" (its method 0) for a method it does not know, a TLS hello or
            # nothing at all, and "GET" for "GETX".
            return "-", "-"
        try:
            method = self.parser.get_method().decode("latin-1")
        except httptools.HttpParserError:
            method = "-"
        return method, self._url[:512].decode("latin-1")

    def fields_read(self) -> list[tuple[str, str]]:
        """The header fields of the request being read, as far as they came."""
        return self._headers

    def stop(self) -> None:
        """Nothing more is read: drop a body being received (its file, if spooled), and the
        parser, whose callbacks are this reader's methods: a reference cycle that would
        leave every connection's reader to the cycle collector."""
        self.in_head = self.in_body = False
        self._url.clear()
        if self._body is not None:
            self._body.finish().close()
            self._body = None
        self.parser = _STOPPED

    # -- httptools callbacks ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.in_head = True
        self._url.clear()
        self._headers = []
        self._body = None
        self.events.head_started()

    def on_url(self, url: bytes) -> None:
        self._url += url  # at most max_header_size: the head meter feeds no more

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.in_body:
            # A trailer field of a chunked body: RFC 9110 section 6.5.1 says a recipient
            # MUST NOT merge it into the header section (a trailer "Host" or
            # "Content-Type" would smuggle past checks made on the head).  The chunk
            # meter holds the trailer section to max_header_size; the field is dropped.
            return
        if len(self._headers) >= self.config.max_headers:
            raise RequestRefused(431, f"more than {self.config.max_headers} header fields")
        # RFC 9112 section 5: a field value does not include the whitespace around it
        # (llhttp leaves the trailing one).
        self._headers.append((name.decode("latin-1"), value.decode("latin-1").strip(" \t")))

    def on_headers_complete(self) -> None:
        self.in_head = False
        config = self.config
        version = self.parser.get_http_version()
        if version not in ("1.1", "1.0"):
            if self.parser.get_method() == b"PRI":
                raise RequestRefused(*_HTTP2_PREFACE)
            # RFC 9110 section 15.6.6 (llhttp takes any single digits: 2.0, 0.9).
            raise RequestRefused(505, f"HTTP/{version} is not supported: this server speaks 1.1")
        http11 = version == "1.1"
        length: int | None = None
        expect: str | None = None
        hosts = content_types = 0
        host = ""
        codings: list[str] = []
        for name, value in self._headers:
            lower = name.lower()
            if lower == "content-length":
                length = int(value) if value.strip().isdigit() else None
            elif lower == "expect":
                expect = value.strip().lower()
            elif lower == "host":
                hosts += 1
                host = value
            elif lower == "transfer-encoding":
                codings.extend(c.strip().lower() for c in value.split(",") if c.strip())
            elif lower == "content-type":
                content_types += 1
        # RFC 9112 section 3.2: a server MUST answer 400 to an HTTP/1.1 request without a
        # Host field, and to any request with more than one.
        if hosts > 1 or (hosts == 0 and http11):
            raise RequestRefused(400, "a request needs exactly one Host header field")
        # ... and to a Host field with an invalid value (empty is valid: no authority).
        if host and not valid_authority(host):
            raise RequestRefused(400, f"Host header field {host[:80]!r} is not host[:port]")
        if content_types > 1:
            # Not a list (RFC 9110 section 8.3): a proxy that reads the first and an app
            # that reads the last would check and parse two different bodies.
            raise RequestRefused(400, "a request has at most one Content-Type header field")
        if codings and not http11:
            # RFC 9112 section 6.1: HTTP/1.0 has no chunked framing, so such a message's
            # framing is faulty (a 1.0 intermediary would end it elsewhere, a way to smuggle
            # a request past it); gunicorn refuses it too.
            raise RequestRefused(400, "Transfer-Encoding in an HTTP/1.0 request")
        if (codings or length) and self.parser.should_upgrade():
            # httptools reads no body after an upgrade request's head: what follows goes to
            # the new protocol, or, for an upgrade we ignore, to the next request.  A body
            # here would be parsed as a request of its own.  A WebSocket handshake has no
            # body; an upgrade to anything else with one (h2c, deprecated by RFC 9113
            # section 3.1) is refused rather than misread.
            raise RequestRefused(400, "an upgrade request with a body")
        # RFC 9112 section 6.1: chunked is the only coding this server decodes; a body in
        # another one must not reach the app as if it were plain.
        unknown = [c for c in codings if c != "chunked"]
        if unknown:
            raise RequestRefused(501, f"transfer coding {unknown[0][:40]!r} is not implemented")
        if length is not None and length > config.max_body_size:
            raise RequestRefused(413, "request body too large")
        # RFC 9110 section 10.1.1: only HTTP/1.1 clients expect; 100-continue is the one
        # expectation defined, anything else may be answered 417.
        if expect is not None and http11:
            if expect != "100-continue":
                raise RequestRefused(417, f"unsupported expectation {expect!r}")
            self.continue_owed = True
        # Where the body ends (llhttp accepts no other framing: RFC 9112 section 6.3).
        if codings:
            self._meter = ChunkMeter(config.max_header_size)
        elif length:
            self._meter = LengthMeter(length)
        if codings or length:
            # The spool threshold is per connection: bodies of pipelined requests waiting
            # behind a busy one already hold memory, and this one gets what is left.
            held = self.events.body_memory_held()
            self._body = RequestBody(max(0, config.body_spool_size - held))
        # Neither: no body follows (RFC 9112 section 6.3), and no buffer is made for one.
        self.in_body = True
        self.events.body_started(self.parser.should_upgrade())

    def on_body(self, body: bytes) -> None:
        assert self._body is not None, "a body without Content-Length or chunked framing"
        self._body.write(body)
        if self._body.size > self.config.max_body_size:
            raise RequestRefused(413, "request body too large")

    def on_message_complete(self) -> None:
        parser = self.parser
        self._meter = HeadMeter(self.config.max_header_size)
        self.in_body = False
        self.continue_owed = False
        body = self._body
        self._body = None
        method = parser.get_method().decode("latin-1")
        target = self._url.decode("latin-1")
        try:
            parsed = parse_target(method, target)
        except BadTarget as exc:
            if body is not None:
                body.finish().close()
            raise RequestRefused(exc.status, str(exc)) from None
        self._last = request = HttpRequest(
            method=method,
            target=target,
            http_version=parser.get_http_version(),
            headers=self._headers,
            body=io.BytesIO() if body is None else body.finish(),
            body_size=0 if body is None else body.size,
            # A keep-alive timeout of 0 (gunicorn's --keep-alive 0) turns keep-alive off:
            # the response must say so (RFC 9112 section 9.6), not be cut after it.
            keep_alive=parser.should_keep_alive() and self.config.keepalive_timeout > 0,
            upgrade=parser.should_upgrade(),
            parsed=parsed,
        )
        self.events.request_read(request)


def body_memory(requests: list[HttpRequest]) -> int:
    """Bytes of these requests' bodies held in memory (not spooled to a file)."""
    return sum(r.body_size for r in requests if isinstance(r.body, io.BytesIO))
