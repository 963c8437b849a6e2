"""stargate.server.request: the request-target forms of RFC 9112 section 3.2 and what is
refused before a path reaches the WSGI environ or the upgrade decision; and the meters that
find where a request's head and body end in the bytes as received, checked against an
independent reading, against llhttp itself, and for every way of cutting the bytes."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import httptools
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stargate.server.request import (
    UNFRAMED,
    BadTarget,
    ChunkMeter,
    HeadMeter,
    HttpRequest,
    LengthMeter,
    Target,
    parse_target,
)


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/", Target("/", "")),
        ("/a/b", Target("/a/b", "")),
        (
            "/a%20b?x=1&y=%20",
            Target("/a%20b", "x=1&y=%20", has_query=True),
        ),  # still percent-encoded
        ("/search?", Target("/search", "", has_query=True)),  # empty, not absent
        ("/q?a=1?b=2", Target("/q", "a=1?b=2", has_query=True)),  # only the first "?" separates
        ("//double/slash", Target("//double/slash", "")),  # a path, not an authority
    ],
)
def test_origin_form(target: str, expected: Target) -> None:
    """RFC 9112 section 3.2.1: absolute-path [ "?" query ]."""
    assert parse_target("GET", target) == expected


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("http://example.com/x", Target("/x", "", "example.com")),
        ("http://example.com:8080/x?y=1", Target("/x", "y=1", "example.com:8080", True)),
        ("https://example.com", Target("/", "", "example.com")),  # empty path is "/"
        ("HTTP://Example.COM/x", Target("/x", "", "Example.COM")),  # scheme case-insensitive
        ("ws://chat.example/room", Target("/room", "", "chat.example")),
        ("wss://chat.example/room?id=3", Target("/room", "id=3", "chat.example", True)),
        ("http://example.com/x?", Target("/x", "", "example.com", True)),
        ("http://[::1]:8000/v6", Target("/v6", "", "[::1]:8000")),
    ],
)
def test_absolute_form(target: str, expected: Target) -> None:
    """RFC 9112 section 3.2.2: the path and query come from the URI and its authority
    stands for the Host header, which the server must then ignore."""
    assert parse_target("GET", target) == expected


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/x#frag", Target("/x", "")),
        ("/x?a=1#frag?b=2", Target("/x", "a=1", has_query=True)),
        ("/x#frag?b=2", Target("/x", "")),  # a "?" in the fragment is no query
        ("/#", Target("/", "")),
        ("http://example.com/x#top", Target("/x", "", "example.com")),
    ],
)
def test_fragment_is_dropped(target: str, expected: Target) -> None:
    """A fragment is not part of a request-target (RFC 9112 section 3.2): dropped, never
    part of the path or the query."""
    assert parse_target("GET", target) == expected


def test_asterisk_form_is_for_options_only() -> None:
    """RFC 9112 section 3.2.4: ``*`` is only for a server-wide OPTIONS."""
    assert parse_target("OPTIONS", "*") == Target("*", "")
    for method in ("GET", "POST", "HEAD", "DELETE"):
        with pytest.raises(BadTarget) as info:
            parse_target(method, "*")
        assert info.value.status == 400
        assert "OPTIONS" in str(info.value)


@pytest.mark.parametrize("target", ["example.com:443", "/x", "*", "http://example.com/"])
def test_connect_is_refused_with_405(target: str) -> None:
    """CONNECT (authority-form, RFC 9112 section 3.2.3) asks for a tunnel: this server is
    no proxy, whatever the target."""
    with pytest.raises(BadTarget) as info:
        parse_target("CONNECT", target)
    assert info.value.status == 405


@pytest.mark.parametrize(
    "target",
    [
        "example.com:80",  # authority-form without CONNECT
        "example.com/x",  # no scheme, no leading slash
        "",  # empty
        "ftp://example.com/file",  # not an http(s) or ws(s) URI
        "javascript:alert(1)",
        "http:///x",  # no host
        "http://user:secret@example.com/x",  # userinfo (RFC 9110 section 4.2.4)
        "http://@example.com/x",
        "http://[::1/x",  # unbalanced IPv6 literal
        "http://:80/x",  # a port and no host
        "http://example.com:abc/x",  # a port that is no number
        'http://ex"ample.com/x',  # what no host name holds, and would become HTTP_HOST
    ],
)
def test_other_targets_are_refused_with_400(target: str) -> None:
    with pytest.raises(BadTarget) as info:
        parse_target("GET", target)
    assert info.value.status == 400


def test_a_long_refused_target_is_cut_in_the_reason() -> None:
    with pytest.raises(BadTarget) as info:
        parse_target("GET", "x" * 10_000)
    assert len(str(info.value)) < 200


def test_http_request_defaults() -> None:
    request = HttpRequest("GET", "/", "1.1", [])
    assert request.body.read() == b""
    assert (request.body_size, request.keep_alive, request.upgrade) == (0, True, False)
    assert request.trailing == bytearray()
    assert request.parsed == Target("/", "")
    # Each request has its own mutable parts.
    other = HttpRequest("GET", "/", "1.1", [])
    request.trailing += b"key3"
    assert other.trailing == bytearray()
    assert other.body is not request.body


@pytest.mark.parametrize(
    ("target", "resource"),
    [
        ("/demo", "/demo"),
        ("/demo?", "/demo?"),
        ("/demo?x=1", "/demo?x=1"),
        ("/demo?#top", "/demo?"),
        ("http://example.com/demo?", "/demo?"),
        ("http://example.com", "/"),
    ],
)
def test_resource_is_the_target_as_sent(target: str, resource: str) -> None:
    """The upgrade's resource name keeps an empty query: a hixie client compares the
    Location it gets with the URL it opened."""
    assert parse_target("GET", target).resource == resource


# -- the meters ----------------------------------------------------------------------------

Meter = HeadMeter | LengthMeter | ChunkMeter


def measure(meter: Meter, data: bytes, cuts: Sequence[int] = ()) -> tuple[int, object]:
    """Scan ``data`` as the channel does, in the reads that ``cuts`` make: where the meter
    stops in the whole stream (its part's end, or the byte past a limit), and its refusal."""
    bounds = [0, *sorted({c for c in cuts if 0 < c < len(data)}), len(data)]
    for first, last in itertools.pairwise(bounds):
        read = data[first:last]
        position = 0
        while position < len(read):
            position = meter.scan(read, position)
            if meter.refusal is not None or meter.complete:
                return first + position, meter.refusal
    return len(data), meter.refusal


def expected_head(data: bytes, limit: int) -> tuple[int, object]:
    """An independent reading of where a head ends (RFC 9112 sections 2.1, 2.2, 3)."""
    skipped = len(data) - len(data.lstrip(b"\r\n"))
    head = data[skipped:]
    end = head.find(b"\r\n\r\n")
    if end != -1 and end + 4 <= limit:
        return skipped + end + 4, None
    if len(head) <= limit:
        return len(data), None
    if b"\n" in head[:limit]:
        return skipped + limit, (431, "request header block too large")
    return skipped + limit, (414, "request-target too long")


HEAD = b"GET /x HTTP/1.1\r\nHost: example.com\r\nX-Pad: abc\r\n\r\n"
N = len(HEAD)
TOO_LARGE = (431, "request header block too large")


@pytest.mark.parametrize(
    ("data", "limit", "expected"),
    [
        (HEAD, N, (N, None)),  # exactly the limit
        (HEAD, N - 1, (N - 1, TOO_LARGE)),  # one byte more
        (HEAD + b"GET / HTTP/1.1\r\n", N, (N, None)),  # stops at the end of the head
        (b"\r\n\n\r" + HEAD, N, (N + 4, None)),  # empty lines before are not the head
        (b"GET /" + b"t" * 100, 50, (50, (414, "request-target too long"))),  # incomplete
        (HEAD[:40], N, (40, None)),  # incomplete, within the limit
        (b"\r\n\r\n", 1, (4, None)),  # only empty lines: no head yet
    ],
)
def test_head_meter(data: bytes, limit: int, expected: tuple[int, object]) -> None:
    assert expected_head(data, limit) == expected
    for cut in range(len(data) + 1):
        assert measure(HeadMeter(limit), data, [cut]) == expected, cut


def test_head_meter_counts_the_head_it_measured() -> None:
    meter = HeadMeter(100)
    assert meter.scan(b"\r\n" + HEAD[:30], 0) == 32
    assert meter.scan(HEAD[30:] + b"next", 0) == len(HEAD) - 30
    assert (meter.size, meter.complete) == (len(HEAD), True)
    # The parser goes on where the head ended: no guess about where the next part starts.
    assert meter.scan(b"next", 0) == 0
    assert meter.refusal == UNFRAMED


head_bytes = st.lists(
    st.sampled_from([b"\r", b"\n", b"\r\n", b"\r\n\r\n", b"GET / HTTP/1.1", b"a", b"X: y"]),
    max_size=30,
).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(
    data=head_bytes,
    limit=st.integers(1, 60),
    cuts=st.lists(st.integers(0, 200), max_size=6),
)
def test_head_meter_is_exact_however_the_bytes_are_cut(
    data: bytes, limit: int, cuts: list[int]
) -> None:
    assert measure(HeadMeter(limit), data, cuts) == expected_head(data, limit)


def test_length_meter() -> None:
    meter = LengthMeter(5)
    assert meter.scan(b"abc", 1) == 3
    assert meter.scan(b"defGET", 0) == 3
    assert meter.left == 0
    assert meter.scan(b"GET", 0) == 0
    assert meter.refusal == UNFRAMED


CHUNKED = b"5;name=value\r\nhello\r\n000b\r\n, the world\r\n0;last\r\nX-Trailer: t\r\n\r\n"
FRAMING = (413, "chunk framing too large")


def two_chunks(zeros: int) -> bytes:
    """Between "a" and "b": CRLF, ``zeros`` leading zeros, "1", CRLF: ``zeros + 5`` bytes."""
    return b"1\r\na\r\n" + b"0" * zeros + b"1\r\nb\r\n0\r\n\r\n"


@pytest.mark.parametrize(
    ("data", "limit", "expected"),
    [
        (CHUNKED, 100, (len(CHUNKED), None)),
        (CHUNKED + b"GET / HTTP/1.1\r\n", 100, (len(CHUNKED), None)),  # stops at the end
        (b"3\r\nabc\r\n0\r\n\r\n", 100, (13, None)),
        # Framing between two bytes of data: the CRLF after data, the next size line.
        (two_chunks(95), 100, (len(two_chunks(95)), None)),  # 100 bytes: the limit
        (two_chunks(96), 100, (4 + 100, FRAMING)),  # past it, refused at its 101st byte
        (b"0" * 200 + b"3\r\nabc", 100, (100, FRAMING)),
        (b"3;x=" + b"e" * 200, 100, (100, FRAMING)),
        # The trailer section is framing too, after the last data byte.
        (b"1\r\na\r\n0\r\nX: " + b"t" * 200, 100, (4 + 100, (431, "trailer section too large"))),
    ],
)
def test_chunk_meter(data: bytes, limit: int, expected: tuple[int, object]) -> None:
    for cut in range(len(data) + 1):
        assert measure(ChunkMeter(limit), data, [cut]) == expected, cut


def test_chunk_meter_data_is_not_framing() -> None:
    """Large chunks cost no framing room: only the lines between data count."""
    body = b"".join(b"%x;ext=%s\r\n%s\r\n" % (n, b"e" * 20, b"d" * n) for n in (1000, 5000, 1))
    body += b"0\r\n\r\n"
    assert measure(ChunkMeter(40), body) == (len(body), None)


def test_chunk_meter_refuses_bytes_after_the_body() -> None:
    meter = ChunkMeter(100)
    assert meter.scan(b"0\r\n\r\nGET", 0) == 5
    assert meter.complete
    assert meter.scan(b"GET", 0) == 0
    assert meter.refusal == UNFRAMED


class _Events:
    """llhttp's callbacks: which ones fired, in order."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def on_headers_complete(self) -> None:
        self.events.append("head")

    def on_message_complete(self) -> None:
        self.events.append("message")


def llhttp_ends(data: bytes, event: str) -> int | None:
    """The byte after which llhttp reports ``event``, fed ``data`` one byte at a time
    (None: never, or llhttp refused the bytes first)."""
    events = _Events()
    parser = httptools.HttpRequestParser(events)
    try:
        for i in range(len(data)):
            parser.feed_data(data[i : i + 1])
            if event in events.events:
                return i + 1
    except httptools.HttpParserError:
        return None
    return None


chunk = st.tuples(
    st.binary(min_size=1, max_size=20),
    st.sampled_from([b"", b";a", b";a=b", b';a="q;\\""', b" ;a"]),
    st.integers(0, 3),
)


@settings(max_examples=200, deadline=None)
@given(
    chunks=st.lists(chunk, max_size=4),
    trailers=st.lists(st.sampled_from([b"X-T: 1\r\n", b"Y: \r\n", b"Z:z \r\n"]), max_size=3),
    last=st.sampled_from([b"0", b"000", b"0;e=1"]),
    after=st.sampled_from([b"", b"GET / HTTP/1.1\r\n", b"\r\n"]),
    cuts=st.lists(st.integers(0, 200), max_size=5),
)
def test_meters_end_where_llhttp_does(
    chunks: list[tuple[bytes, bytes, int]],
    trailers: list[bytes],
    last: bytes,
    after: bytes,
    cuts: list[int],
) -> None:
    """The channel feeds llhttp up to where a meter says a part ends: that must be where
    llhttp itself ends it, for every body llhttp accepts, however the body is cut."""
    body = b"".join(
        b"%s%x%s\r\n%s\r\n" % (b"0" * zeros, len(data), ext, data) for data, ext, zeros in chunks
    )
    body += last + b"\r\n" + b"".join(trailers) + b"\r\n"
    head = b"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    stream = head + body + after
    assert measure(HeadMeter(1000), stream) == (len(head), None)
    assert llhttp_ends(stream, "head") == len(head)
    llhttp_end = llhttp_ends(stream, "message")
    if llhttp_end is None:
        return  # llhttp refuses the body (a space before ";"): the channel answers 400
    assert measure(ChunkMeter(1000), body + after, cuts) == (llhttp_end - len(head), None)


chunk_bytes = st.lists(
    st.sampled_from([b"\r", b"\n", b"\r\n", b"0", b"1", b"a", b";", b"x", b"X: y"]),
    max_size=40,
).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(data=chunk_bytes, limit=st.integers(1, 12), cuts=st.lists(st.integers(0, 100), max_size=6))
def test_chunk_meter_is_exact_however_the_bytes_are_cut(
    data: bytes, limit: int, cuts: list[int]
) -> None:
    """Any bytes, valid or not: where the meter stops and why does not depend on the cuts
    (the fast path for whole chunk lines and the careful one agree)."""
    assert measure(ChunkMeter(limit), data, cuts) == measure(ChunkMeter(limit), data)
