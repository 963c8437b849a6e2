"""Reading requests (stargate.server.reader): bytes in, whole requests and refusals out.

The reader is fed bytes as a connection would be, cut in every way, and tells a recording
stand-in for the channel what it read.  The channel's tests (test_channel.py) run the same
rules over real sockets.
"""

from __future__ import annotations

import gc
import weakref

import pytest

from stargate.server import ServerConfig
from stargate.server.reader import RequestReader, RequestRefused, body_memory
from stargate.server.request import HttpRequest


class Events:
    def __init__(self) -> None:
        self.log: list[str] = []
        self.requests: list[HttpRequest] = []
        self.rest: bytes | None = None

    def head_started(self) -> None:
        self.log.append("head")

    def body_started(self, upgrade: bool) -> None:
        self.log.append("upgrade" if upgrade else "body")

    def request_read(self, request: HttpRequest) -> None:
        self.log.append("request")
        self.requests.append(request)

    def upgrade_read(self, rest: bytes) -> None:
        self.rest = rest

    def body_memory_held(self) -> int:
        return body_memory(self.requests)


def read(data: bytes, *, step: int = 0, **config: object) -> tuple[Events, RequestReader]:
    events = Events()
    reader = RequestReader(ServerConfig(**config), events)  # type: ignore[arg-type]
    chunks = [data] if not step else [data[i : i + step] for i in range(0, len(data), step)]
    for chunk in chunks:
        rest = reader.feed(chunk)
        assert rest == b""
    return events, reader


#: Host values RFC 9112 section 3.2 forbids: userinfo, a space, a path, an open bracket,
#: quotes and angle brackets.
BAD_HOSTS = [b"u@evil.com", b"a b", b"evil.com/x?y", b"[::1", b'a"<script>']

TWO = (
    b"POST /up?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
    b"GET /next HTTP/1.1\r\nHost: a\r\nX-Pad:  v  \r\n\r\n"
)


@pytest.mark.parametrize("step", [0, 1, 7])
def test_pipelined_requests_come_out_whole_in_order(step: int) -> None:
    events, reader = read(TWO, step=step)
    first, second = events.requests
    assert (first.method, first.target, first.body.read()) == ("POST", "/up?x=1", b"abc")
    assert (second.parsed.path, second.headers[-1]) == ("/next", ("X-Pad", "v"))
    assert events.log == ["head", "body", "request", "head", "body", "request"]
    assert not reader.in_head and not reader.in_body


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", 400),  # no Host
        (b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
        (b"GET / HTTP/1.1\r\nHost: a\r\nExpect: magic\r\n\r\n", 417),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 999999999\r\n\r\n", 413),
        (b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X: y\r\n" * 101 + b"\r\n", 431),
        (b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\n", 414),
        (b"CONNECT a:1 HTTP/1.1\r\nHost: a\r\n\r\n", 405),
        (b"GET / HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n", 400),
        # RFC 9112 section 3.2: a Host value that is not host[:port].
        *((b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n", 400) for host in BAD_HOSTS),
        # Section 6.1: Transfer-Encoding in HTTP/1.0 is faulty framing.
        (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 400),
        # An upgrade request's body would be read as the next request (httptools skips
        # it): refused, whatever the protocol asked for.
        *(
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: "
                + protocol
                + b"\r\n"
                + framing
                + b"\r\n\r\n"
                + body,
                400,
            )
            for protocol in (b"h2c", b"websocket")
            for framing, body in (
                (b"Content-Length: 35", b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"),
                (b"Transfer-Encoding: chunked", b"3\r\nabc\r\n0\r\n\r\n"),
            )
        ),
    ],
)
def test_refusals(raw: bytes, status: int) -> None:
    with pytest.raises(RequestRefused) as refused:
        read(raw)
    assert refused.value.status == status and refused.value.reason


@pytest.mark.parametrize(
    "host", [b"", b"a", b"example.com:8443", b"[::1]:80", b"10.0.0.1", b"xn--bcher-kva.example"]
)
def test_valid_host_values(host: bytes) -> None:
    """Empty (a target without authority, RFC 9112 section 3.2), a name, an address or an
    IP literal, each with or without a port."""
    events, _ = read(b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
    (request,) = events.requests
    assert request.headers == [("Host", host.decode())]


def test_an_upgrade_hands_over_what_followed_its_head() -> None:
    events, _ = read(
        b"GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
        b"\x81\x80early"
    )
    (request,) = events.requests
    assert request.upgrade and events.rest == b"\x81\x80early"
    assert events.log == ["head", "upgrade", "request"]


def test_an_ignored_upgrade_goes_on_with_a_fresh_parser() -> None:
    events = Events()
    reader = RequestReader(ServerConfig(), events)
    rest = reader.feed(
        b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n"
        b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n"
    )
    assert rest == b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n"
    assert reader.feed(rest) == b""
    first, second = events.requests
    assert not first.upgrade and second.target == "/2"


def test_trailers_are_dropped_and_expect_continue_is_owed() -> None:
    events, reader = read(
        b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    assert reader.continue_owed and reader.in_body
    reader.feed(b"3\r\nabc\r\n0\r\nHost: evil\r\n\r\n")
    (request,) = events.requests
    assert request.body.read() == b"abc"
    assert [n for n, _ in request.headers].count("Host") == 1
    assert not reader.continue_owed


def test_what_was_read_names_a_refused_request() -> None:
    events = Events()
    reader = RequestReader(ServerConfig(), events)
    assert reader.what_was_read() == ("-", "-")
    with pytest.raises(RequestRefused):
        reader.feed(b"GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
    assert reader.what_was_read() == ("GET", "/x")
    reader.stop()
    assert not reader.in_head and not reader.in_body
    assert reader.what_was_read() == ("-", "-")


@pytest.mark.parametrize("head", [b"FOO /x HTTP/1.1\r\n", b"GETX / HTTP/1.1\r\n", b"\x16\x03\x01"])
def test_a_method_llhttp_did_not_read_is_not_named(head: bytes) -> None:
    """llhttp says DELETE of a method it does not know (or of a TLS hello), and GET of
    GETX: the log of the refusal must not name a method the client did not send."""
    reader = RequestReader(ServerConfig(), Events())
    with pytest.raises(RequestRefused):
        reader.feed(head)
    assert reader.what_was_read() == ("-", "-")


def test_a_stopped_reader_goes_by_reference_counting() -> None:
    """The parser calls the reader's methods back (a cycle until stop() drops it) and the
    reader holds its channel weakly: the cycle collector is never needed for either."""
    events, reader = read(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
    reader.stop()
    gone, channel_gone = weakref.ref(reader), weakref.ref(events)
    gc.disable()
    try:
        del reader, events
        assert gone() is None
        assert channel_gone() is None
    finally:
        gc.enable()
