"""Seeds of the server targets, each with the statuses it must get.

A seed is byte 0 (the configuration), byte 1 (how the client cuts its bytes) and what the
client sends; see :mod:`fuzzing.server_targets` for the bits.  ``expected`` is the list of
final statuses in order (101 last when the connection switches), which
``tests/test_fuzz_corpus.py`` checks besides the target's own properties: the seeds are
also a table of how the server answers valid requests of every kind, pipelining, the
request-target forms, ``Expect``, chunked bodies, and the request smuggling classics.
"""

from __future__ import annotations

from dataclasses import dataclass

# Byte 0 of an ``http`` seed: the server.
WSGI = 0x00
ROUTES = 0x01
SMALL = 0x02  # profile 1: small limits
OPS = 0x04  # profile 2: metrics, readiness, trusted proxies, access log
JSON = 0x06  # profile 3: JSON access log, no compression, no legacy protocols
VALIDATED = 0x08
# Byte 0 of an ``upgrade`` seed (WSGI and ROUTES as above).
NO_LEGACY = 0x02
ALLOW_LIST = 0x04
NO_COMPRESSION = 0x08
# Byte 1: 0 sends everything at once; anything else cuts into pieces of 1 to 64 bytes.
WHOLE = 0x00
PIECES = 0x5A
BYTES = 0x01
AFTER_GET = 20  # a first piece of 37 bytes: exactly ``get()``
# Byte 2: the client (``fuzzing.driver.Client``).
SLOW = 0x01
EOF = 0x02
TLS = 0x04
SLOW_APP = 0x08
RESET = 0x10


@dataclass(frozen=True)
class Seed:
    data: bytes
    #: The final statuses in order (101 last if the connection switched); None: not pinned.
    expected: tuple[int, ...] | None
    #: Set when the server is known to answer this seed wrongly (a finding, reported):
    #: the corpus test expects the failure until it is fixed.
    bug: str | None = None


#: A request no server can read (a NUL where a method begins): 400 (a token there that
#: llhttp does not know as a method would be 501).
BAD = b"\x00BAD\r\n\r\n"


def seed(
    config: int,
    stream: bytes,
    *expected: int,
    split: int = WHOLE,
    client: int = 0,
    bug: str | None = None,
    pinned: bool = True,
) -> Seed:
    return Seed(bytes((config, split, client)) + stream, expected if pinned else None, bug)


HOST = b"Host: example.com\r\n"


def get(target: bytes = b"/", *fields: bytes, version: bytes = b"1.1") -> bytes:
    return b"GET " + target + b" HTTP/" + version + b"\r\n" + HOST + b"".join(fields) + b"\r\n"


def post(target: bytes, body: bytes, *fields: bytes) -> bytes:
    length = b"Content-Length: %d\r\n" % len(body)
    return b"POST " + target + b" HTTP/1.1\r\n" + HOST + length + b"".join(fields) + b"\r\n" + body


def chunked(target: bytes, *chunks: bytes, trailer: bytes = b"") -> bytes:
    body = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n" + trailer
    return (
        b"POST "
        + target
        + b" HTTP/1.1\r\n"
        + HOST
        + b"Transfer-Encoding: chunked\r\n\r\n"
        + body
        + b"\r\n"
    )


def chunked_raw(body: bytes) -> bytes:
    """A chunked POST to /echo whose body (chunk lines, data, trailers) is ``body``."""
    return b"POST /echo HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n" + body


def _masked_text(text: bytes) -> bytes:
    key = bytes.fromhex("37fa213d")
    return bytes((0x81, 0x80 | len(text))) + key + bytes(b ^ key[i % 4] for i, b in enumerate(text))


RFC_KEY = b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"


def rfc6455(
    target: bytes = b"/chat", *fields: bytes, version: bytes = b"13", key: bytes = RFC_KEY
) -> bytes:
    """The RFC 6455 section 1.3 request, plus ``fields``."""
    return (
        b"GET " + target + b" HTTP/1.1\r\n" + HOST + b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        + key
        + b"Sec-WebSocket-Version: "
        + version
        + b"\r\n"
        + b"".join(fields)
        + b"\r\n"
    )


# draft-hixie-76 section 1.3 (its answer is "8jKS'y:G*Co,Wxa-").
HIXIE76_KEY1 = b"Sec-WebSocket-Key1: 4 @1  46546xW%0l 1 5\r\n"
HIXIE76_KEY2 = b"Sec-WebSocket-Key2: 12998 5 Y3 1  .P00\r\n"
HIXIE76_KEY3 = b"^n:ds[4U"


def hixie76(*fields: bytes, key1: bytes = HIXIE76_KEY1, key3: bytes = HIXIE76_KEY3) -> bytes:
    return (
        b"GET /demo HTTP/1.1\r\n"
        + HOST
        + b"Connection: Upgrade\r\n"
        + HIXIE76_KEY2
        + b"Sec-WebSocket-Protocol: sample\r\nUpgrade: WebSocket\r\n"
        + key1
        + b"Origin: http://example.com\r\n"
        + b"".join(fields)
        + b"\r\n"
        + key3
    )


def hixie75(*fields: bytes) -> bytes:
    """draft-hixie-75 section 1.2's request."""
    return (
        b"GET /demo HTTP/1.1\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n"
        + HOST
        + b"Origin: http://example.com\r\nWebSocket-Protocol: sample\r\n"
        + b"".join(fields)
        + b"\r\n"
    )


def http_seeds() -> dict[str, Seed]:
    ws_upgrade = rfc6455(b"/ws", b"Origin: http://example.com\r\n")
    h2c = (
        b"GET / HTTP/1.1\r\n" + HOST + b"Upgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
    )
    many = b"".join(b"X-Field-%d: value\r\n" % i for i in range(150))
    return {
        # Valid requests of every kind.
        "get": seed(WSGI, get(), 200),
        "get-validated": seed(VALIDATED, get(b"/?q=1&r=%20"), 200),
        "get-routes": seed(ROUTES, get(b"/ws") + get(b"/nothing"), 426, 404),
        "get-http10": seed(WSGI, get(version=b"1.0"), 200),
        "get-http10-keepalive": seed(
            WSGI, get(b"/", b"Connection: keep-alive\r\n", version=b"1.0") * 2, 200, 200
        ),
        "head": seed(VALIDATED, b"HEAD / HTTP/1.1\r\n" + HOST + b"\r\n" + get(), 200, 200),
        "head-stream": seed(WSGI, b"HEAD /stream HTTP/1.1\r\n" + HOST + b"\r\n", 200),
        "post-echo": seed(VALIDATED, post(b"/echo", b"hello"), 200),
        "post-chunked": seed(
            VALIDATED, chunked(b"/echo", b"hel", b"lo", trailer=b"X-Trailer: 1\r\n"), 200
        ),
        "post-spooled": seed(SMALL, post(b"/echo", b"x" * 60), 200),
        "stream": seed(VALIDATED, get(b"/stream"), 200),
        "stream-http10": seed(WSGI, get(b"/stream", version=b"1.0"), 200),
        "stream-slow": seed(SMALL, get(b"/stream") * 3, 200, 200, 200, client=SLOW),
        "empty": seed(WSGI, get(b"/empty"), 204),
        "forbidden": seed(WSGI, get(b"/forbidden"), 403),
        "raise": seed(WSGI, get(b"/raise") + get(), 500),
        "pieces": seed(WSGI, post(b"/echo", b"hello") + get(), 200, 200, split=PIECES),
        "bytes": seed(WSGI, get(b"/", b"Connection: close\r\n"), 200, split=BYTES),
        # Pipelining.
        "pipelined": seed(
            WSGI,
            get()
            + get(b"/stream")
            + b"HEAD / HTTP/1.1\r\n"
            + HOST
            + b"\r\n"
            + post(b"/echo", b"abc")
            + get(b"/empty"),
            200,
            200,
            200,
            200,
            204,
        ),
        "pipelined-close": seed(
            WSGI, get() + get(b"/", b"Connection: close\r\n") + get(), 200, 200
        ),
        "http10-then-more": seed(WSGI, get(version=b"1.0") + get(), 200),
        "pipelined-then-bad": seed(WSGI, get() * 3 + BAD, 200, 200, 200, 400),
        "pipelined-small": seed(SMALL, get() * 6, *[200] * 6),
        "pipelined-routes": seed(ROUTES, get(b"/x") * 20, *[404] * 20),
        "pipelined-slow": seed(WSGI, (get() + get(b"/stream")) * 3, *[200] * 6, client=SLOW),
        "pipelined-eof": seed(WSGI, get() * 3, 200, 200, 200, client=EOF),
        "pipelined-h2c": seed(WSGI, get() + h2c + get(), 200, 200, 200),
        # Request-target forms (RFC 9112 section 3.2).
        "absolute-form": seed(VALIDATED, get(b"http://example.com/echo?x=1"), 200),
        "absolute-form-no-path": seed(VALIDATED, get(b"http://example.com"), 200),
        "absolute-form-userinfo": seed(WSGI, get(b"http://user@evil.example/"), 400),
        "absolute-form-ftp": seed(WSGI, get(b"ftp://example.com/"), 400),
        "asterisk-options": seed(VALIDATED, b"OPTIONS * HTTP/1.1\r\n" + HOST + b"\r\n", 200),
        "asterisk-get": seed(WSGI, get(b"*"), 400),
        "authority-connect": seed(
            WSGI, b"CONNECT example.com:443 HTTP/1.1\r\n" + HOST + b"\r\n", 405
        ),
        "fragment": seed(VALIDATED, get(b"/echo?a=1#fragment"), 200),
        "percent-encoded": seed(VALIDATED, get(b"/%7Efoo/%zz/%00/%C3%A9"), 200),
        # Expect (RFC 9110 section 10.1.1).
        "expect-continue": seed(WSGI, post(b"/echo", b"hello", b"Expect: 100-continue\r\n"), 200),
        "expect-continue-pieces": seed(
            WSGI, post(b"/echo", b"hello", b"Expect: 100-continue\r\n"), 200, split=PIECES
        ),
        "expect-too-large": seed(
            SMALL, post(b"/echo", b"x" * 100, b"Expect: 100-continue\r\n"), 413
        ),
        "expect-unknown": seed(WSGI, post(b"/echo", b"hi", b"Expect: fancy\r\n"), 417),
        "expect-http10": seed(
            WSGI,
            b"POST /echo HTTP/1.0\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\nhi",
            200,
        ),
        # Smuggling: what a front end and this server could read differently.
        "smuggle-cl-te": seed(
            WSGI,
            b"POST /echo HTTP/1.1\r\n" + HOST + b"Content-Length: 6\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nX",
            400,
        ),
        "smuggle-te-cl": seed(
            WSGI,
            b"POST /echo HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n"
            b"Content-Length: 3\r\n\r\n1\r\nZ\r\n0\r\n\r\n",
            400,
        ),
        "smuggle-duplicate-cl": seed(
            WSGI,
            b"POST /echo HTTP/1.1\r\n" + HOST + b"Content-Length: 5\r\nContent-Length: 6\r\n"
            b"\r\nhello!",
            400,
        ),
        "smuggle-cl-list": seed(
            WSGI, b"POST /echo HTTP/1.1\r\n" + HOST + b"Content-Length: 5, 5\r\n\r\nhello", 400
        ),
        "smuggle-cl-plus": seed(
            WSGI, b"POST /echo HTTP/1.1\r\n" + HOST + b"Content-Length: +5\r\n\r\nhello", 400
        ),
        "smuggle-te-chunked-identity": seed(
            WSGI,
            b"POST /echo HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked, identity\r\n\r\n"
            b"5\r\nhello\r\n0\r\n\r\n",
            400,
        ),
        "smuggle-te-xchunked": seed(
            WSGI,
            b"POST /echo HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: xchunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\n\r\n",
            501,
        ),
        "smuggle-te-http10": seed(
            WSGI,
            b"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            pinned=False,
        ),
        "smuggle-obs-fold": seed(WSGI, get(b"/", b"X-Folded: a\r\n b\r\n"), 400),
        "smuggle-obs-fold-te": seed(
            WSGI,
            b"POST /echo HTTP/1.1\r\n" + HOST + b"Transfer-Encoding:\r\n chunked\r\n"
            b"Content-Length: 5\r\n\r\nhello",
            400,
        ),
        "smuggle-underscore-cl": seed(
            VALIDATED,
            b"POST /echo HTTP/1.1\r\n" + HOST + b"Content_Length: 100\r\nContent-Length: 5\r\n"
            b"\r\nhello",
            200,
        ),
        "smuggle-underscore-te": seed(
            WSGI,
            b"POST /echo HTTP/1.1\r\n" + HOST + b"Transfer_Encoding: chunked\r\n"
            b"Content-Length: 5\r\n\r\nhello",
            200,
        ),
        "smuggle-space-before-colon": seed(
            WSGI, b"POST /echo HTTP/1.1\r\n" + HOST + b"Content-Length : 5\r\n\r\nhello", 400
        ),
        "smuggle-bare-lf": seed(WSGI, b"GET / HTTP/1.1\n" + HOST + b"\r\n", 400),
        "smuggle-bare-cr": seed(WSGI, b"GET / HTTP/1.1\r\nX: a\rb\r\n" + HOST + b"\r\n", 400),
        "smuggle-nul": seed(WSGI, b"GET / HTTP/1.1\r\nX: a\x00b\r\n" + HOST + b"\r\n", 400),
        "smuggle-chunk-size-overflow": seed(
            WSGI,
            b"POST /echo HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n"
            b"10000000000000001\r\nA\r\n0\r\n\r\n",
            400,
        ),
        "smuggle-chunk-lf": seed(
            WSGI,
            b"POST /echo HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n"
            b"5\nhello\r\n0\r\n\r\n",
            400,
        ),
        # Limits.
        "headers-150": seed(WSGI, get(b"/", many), 431),
        "headers-9-small": seed(SMALL, get(b"/", many[:170]), 431),
        "header-line-huge": seed(WSGI, get(b"/", b"X-Big: " + b"a" * 17_000 + b"\r\n"), 431),
        "header-line-small": seed(SMALL, get(b"/", b"X-Big: " + b"a" * 600 + b"\r\n"), 431),
        # The head limit counts every byte of the head, however it is cut: in one read,
        # an incomplete head got no 431, and a 526-byte one passed a 512 limit.
        "found-head-first-read": seed(SMALL, b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 600, 431),
        "found-head-one-read": seed(SMALL, get(b"/", b"X-Big: " + b"a" * 480 + b"\r\n"), 431),
        "target-huge": seed(SMALL, get(b"/" + b"a" * 600), 414),
        "body-too-large": seed(SMALL, post(b"/echo", b"x" * 100), 413),
        "chunked-too-large": seed(SMALL, chunked(b"/echo", b"a" * 40, b"b" * 40), 413),
        # Chunk framing: at most max_header_size bytes between two bytes of data (413),
        # trailers included (431); within it, served.
        "chunk-line-zeros": seed(SMALL, chunked_raw(b"0" * 600 + b"3\r\nabc\r\n0\r\n\r\n"), 413),
        "chunk-line-extension": seed(
            SMALL, chunked_raw(b"3;x=" + b"e" * 600 + b"\r\nabc\r\n0\r\n\r\n"), 413
        ),
        "chunk-trailers-large": seed(
            SMALL, chunked_raw(b"3\r\nabc\r\n0\r\nX-T: " + b"t" * 600 + b"\r\n\r\n"), 431
        ),
        "chunk-framing-within": seed(
            SMALL,
            chunked_raw((b"0" * 200 + b"1;x=" + b"e" * 200 + b"\r\na\r\n") * 4 + b"0\r\n\r\n")
            + get(),
            200,
            200,
        ),
        "partial-head": seed(WSGI, b"GET / HTTP/1.1\r\nHost: exa"),
        "partial-body": seed(WSGI, post(b"/echo", b"hello")[:-3]),
        "keepalive-idle": seed(WSGI, get(), 200),
        # Upgrades through the HTTP side.
        "upgrade-ws": seed(WSGI, ws_upgrade + _masked_text(b"Hello"), 101),
        "upgrade-ws-routes": seed(ROUTES, ws_upgrade, 101),
        "upgrade-ws-after-gets": seed(WSGI, get() + get(b"/stream") + ws_upgrade, 200, 200, 101),
        "upgrade-ws-slow": seed(WSGI, get(b"/stream") * 2 + ws_upgrade, 200, 200, 101, client=SLOW),
        "upgrade-not-found": seed(WSGI, rfc6455(b"/nothing"), 404),
        "upgrade-routes-not-found": seed(ROUTES, rfc6455(b"/nothing"), 404),
        "upgrade-forbidden": seed(WSGI, rfc6455(b"/forbidden"), 403),
        "upgrade-raise": seed(WSGI, rfc6455(b"/raise"), 500),
        "upgrade-hixie76": seed(WSGI, hixie76().replace(b"/demo", b"/ws"), 101),
        "upgrade-hixie76-no-legacy": seed(JSON, hixie76().replace(b"/demo", b"/ws"), 426),
        "upgrade-tls-origin": seed(
            WSGI, rfc6455(b"/ws", b"Origin: https://example.com\r\n"), 101, client=TLS
        ),
        # A slow app (it answers once the client has sent all it can), a client that resets.
        "slow-app-pipelined": seed(
            WSGI, get() * 3 + post(b"/echo", b"abc"), 200, 200, 200, 200, client=SLOW_APP
        ),
        "slow-app-eof": seed(WSGI, get() + get(b"/stream"), 200, 200, client=SLOW_APP | EOF),
        "slow-app-bad-behind": seed(WSGI, get() + BAD, 200, 400, split=AFTER_GET, client=SLOW_APP),
        "slow-app-upgrade-frames": seed(
            WSGI, ws_upgrade + _masked_text(b"Hello") * 3, 101, split=PIECES, client=SLOW_APP
        ),
        "slow-app-upgrade-flood": seed(
            SMALL,
            ws_upgrade + _masked_text(b"x" * 100) * 8,
            split=PIECES,
            client=SLOW_APP,
            pinned=False,
        ),
        "slow-app-hixie76": seed(
            WSGI, hixie76().replace(b"/demo", b"/ws"), 101, split=PIECES, client=SLOW_APP
        ),
        "slow-app-slow-reader": seed(
            SMALL, get(b"/stream") * 3 + ws_upgrade, 200, 200, 200, 101, client=SLOW_APP | SLOW
        ),
        "found-eof-behind-refusal": seed(
            WSGI,
            get() + BAD,
            200,
            400,
            split=AFTER_GET,
            client=SLOW_APP | EOF,
        ),
        "found-400-after-close": seed(
            WSGI, get(version=b"1.0") + get(), 200, split=AFTER_GET, client=SLOW_APP
        ),
        "reset-pipelined": seed(WSGI, get(b"/stream") * 3, client=RESET, pinned=False),
        "reset-slow-app": seed(WSGI, get() * 2 + ws_upgrade, client=RESET | SLOW_APP, pinned=False),
        "reset-upgrade": seed(WSGI, ws_upgrade + _masked_text(b"Hello"), 101, client=RESET),
        # Operations.
        "metrics-ready": seed(OPS, get(b"/-/metrics") + get(b"/-/ready"), 200, 200),
        "forwarded": seed(
            OPS,
            get(b"/echo", b"Forwarded: for=192.0.2.1;proto=https;host=public.example\r\n")
            + get(b"/", b"X-Forwarded-For: 192.0.2.2, 127.0.0.1\r\nX-Forwarded-Proto: https\r\n"),
            200,
            200,
        ),
        "access-log-json": seed(JSON, get(b'/\xff"\\') + get(b"/x\x7f"), 400),
        # Not HTTP/1.1 at all.
        "tls-hello": seed(WSGI, bytes.fromhex("160301020001000200fc0303") + bytes(32), 400),
        "http2-preface": seed(WSGI, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400),
        "http09": seed(WSGI, b"GET /\r\n\r\n", pinned=False),
        "lowercase-method": seed(WSGI, b"get / HTTP/1.1\r\n" + HOST + b"\r\n", 501),
        "empty-lines-first": seed(WSGI, b"\r\n\r\n" + get(), pinned=False),
        "tls-refused": seed(WSGI, get(b"/", b"Content-Length: x\r\n"), 400, client=TLS),
    }


def upgrade_seeds() -> dict[str, Seed]:
    same = b"Origin: http://example.com\r\n"
    deflate = b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits, x-webkit\r\n"
    frames = _masked_text(b"Hello") + bytes.fromhex("8882a1b2c3d4a25a")
    long_key = b"Sec-WebSocket-Key1: 1 " + b"9" * 5000 + b"\r\n"
    return {
        # Every generation, valid.
        "rfc6455": seed(WSGI, rfc6455(), 101),
        "rfc6455-origin": seed(WSGI, rfc6455(b"/chat", same), 101),
        "rfc6455-subprotocol": seed(
            WSGI, rfc6455(b"/chat", b"Sec-WebSocket-Protocol: superchat, chat\r\n"), 101
        ),
        "rfc6455-deflate": seed(WSGI, rfc6455(b"/chat", deflate), 101),
        "rfc6455-deflate-off": seed(NO_COMPRESSION, rfc6455(b"/chat", deflate), 101),
        "rfc6455-frames": seed(WSGI, rfc6455(b"/chat", same) + frames, 101),
        "rfc6455-routes": seed(ROUTES, rfc6455(b"/chat", same, deflate) + frames, 101),
        "rfc6455-pieces": seed(WSGI, rfc6455(b"/chat", same) + frames, 101, split=PIECES),
        "rfc6455-slow": seed(WSGI, rfc6455(b"/chat", same) + frames, 101, client=SLOW),
        "rfc6455-eof": seed(WSGI, rfc6455(b"/chat", same) + frames, 101, client=EOF),
        "rfc6455-absolute-form": seed(WSGI, rfc6455(b"http://example.com/chat?x=1"), 101),
        "rfc6455-tls": seed(
            WSGI, rfc6455(b"/chat", b"Origin: https://example.com\r\n"), 101, client=TLS
        ),
        "rfc6455-connection-list": seed(
            WSGI, rfc6455().replace(b"Connection: Upgrade", b"Connection: keep-alive, Upgrade"), 101
        ),
        "rfc6455-key-ows": seed(
            WSGI, rfc6455(key=b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ== \r\n"), 101
        ),
        "rfc6455-host-ows": seed(WSGI, rfc6455().replace(HOST, b"Host: example.com\t\r\n"), 101),
        "hybi08": seed(
            WSGI,
            rfc6455(b"/chat", b"Sec-WebSocket-Origin: http://example.com\r\n", version=b"8"),
            101,
        ),
        "hybi07": seed(WSGI, rfc6455(b"/chat", version=b"7"), 101),
        "hixie75": seed(WSGI, hixie75() + b"\x00Hello\xff", 101),
        "hixie76": seed(WSGI, hixie76() + b"\x00Hello\xff", 101),
        "hixie76-routes": seed(ROUTES, hixie76(), 101),
        "hixie76-key3-pieces": seed(WSGI, hixie76(), 101, split=BYTES),
        # The Location keeps an empty query: it was dropped.
        "found-empty-query": seed(WSGI, hixie75().replace(b"/demo", b"/demo?"), 101),
        "target-too-long": seed(WSGI, rfc6455(b"/chat?" + b"q" * 17_000), 414),
        # Half of key3, then the client's end: refused with its reason (was a silent close).
        "hixie76-no-key3": seed(WSGI, hixie76(key3=b"^n:d"), 400),
        "rfc6455-slow-app": seed(
            WSGI, rfc6455(b"/chat", same) + frames, 101, split=PIECES, client=SLOW_APP
        ),
        "hixie76-slow-app": seed(WSGI, hixie76(), 101, split=BYTES, client=SLOW_APP | SLOW),
        "rfc6455-reset": seed(WSGI, rfc6455(b"/chat", same) + frames, client=RESET, pinned=False),
        # Refused by the handshake.
        "rfc6455-foreign-origin": seed(
            WSGI, rfc6455(b"/chat", b"Origin: http://evil.example\r\n"), 403
        ),
        "rfc6455-https-origin": seed(
            WSGI, rfc6455(b"/chat", b"Origin: https://example.com\r\n"), 403
        ),
        "rfc6455-empty-origin": seed(WSGI, rfc6455(b"/chat", b"Origin: \r\n"), 403),
        "rfc6455-two-origins": seed(WSGI, rfc6455(b"/chat", same, same), 400),
        "rfc6455-bad-key": seed(WSGI, rfc6455(key=b"Sec-WebSocket-Key: abc\r\n"), 400),
        "rfc6455-no-key": seed(WSGI, rfc6455(key=b""), 400),
        "rfc6455-two-keys": seed(WSGI, rfc6455(b"/chat", RFC_KEY), 400),
        "rfc6455-version-99": seed(WSGI, rfc6455(version=b"99"), 426),
        "rfc6455-two-versions": seed(
            WSGI, rfc6455(b"/chat", b"Sec-WebSocket-Version: 13\r\n"), 400
        ),
        "rfc6455-post": seed(WSGI, rfc6455().replace(b"GET", b"POST"), 405),
        "rfc6455-http10": seed(WSGI, rfc6455().replace(b"HTTP/1.1", b"HTTP/1.0"), 400),
        "rfc6455-no-host": seed(WSGI, rfc6455().replace(HOST, b""), 400),
        "rfc6455-two-hosts": seed(WSGI, rfc6455(b"/chat", HOST), 400),
        "rfc6455-bad-extension": seed(
            WSGI, rfc6455(b"/chat", b"Sec-WebSocket-Extensions: permessage-deflate; =\r\n"), 400
        ),
        "rfc6455-not-websocket": seed(
            WSGI, rfc6455().replace(b"Upgrade: websocket", b"Upgrade: h2c"), 426
        ),
        "rfc6455-no-connection-upgrade": seed(
            WSGI, rfc6455().replace(b"Connection: Upgrade", b"Connection: keep-alive"), 426
        ),
        "rfc6455-expect": seed(WSGI, rfc6455(b"/chat", b"Expect: 100-continue\r\n"), 101),
        "rfc6455-body": seed(
            WSGI, rfc6455(b"/chat", b"Content-Length: 5\r\n") + b"hello", pinned=False
        ),
        "rfc6455-headers-150": seed(
            WSGI, rfc6455(b"/chat", b"".join(b"X-%d: y\r\n" % i for i in range(150))), 431
        ),
        "found-version-nbsp": seed(WSGI, rfc6455(version=b"\xa013"), 426),
        "hybi08-origin-wins": seed(
            WSGI,
            rfc6455(
                b"/chat",
                b"Origin: http://evil.example\r\n",
                b"Sec-WebSocket-Origin: http://example.com\r\n",
                version=b"8",
            ),
            403,
        ),
        "hixie76-long-key": seed(WSGI, hixie76(key1=long_key), 400),
        "hixie76-key-no-spaces": seed(WSGI, hixie76(key1=b"Sec-WebSocket-Key1: 123\r\n"), 400),
        "hixie76-key-not-multiple": seed(WSGI, hixie76(key1=b"Sec-WebSocket-Key1: 1 0 1\r\n"), 400),
        "hixie76-no-legacy": seed(NO_LEGACY, hixie76(), 426),
        "hixie75-no-legacy": seed(NO_LEGACY, hixie75(), 426),
        "pipelined-then-upgrade": seed(WSGI, get(b"/") + rfc6455(b"/chat", same), 426, 101),
        # The allow-list policy.
        "allowed-origin": seed(
            ALLOW_LIST, rfc6455(b"/chat", b"Origin: http://allowed.example\r\n"), 101
        ),
        "allowed-subdomain": seed(
            ALLOW_LIST, rfc6455(b"/chat", b"Origin: https://chat.example.org\r\n"), 101
        ),
        "allowed-apex-refused": seed(
            ALLOW_LIST, rfc6455(b"/chat", b"Origin: https://example.org\r\n"), 403
        ),
        "allowed-missing-refused": seed(ALLOW_LIST, rfc6455(), 403),
        "allowed-same-origin": seed(ALLOW_LIST, rfc6455(b"/chat", same), 101),
        "allowed-hixie76": seed(
            ALLOW_LIST, hixie76().replace(same, b"Origin: http://allowed.example\r\n"), 101
        ),
    }
