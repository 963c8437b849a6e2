"""Fuzz targets of the server's HTTP side: the request head, and the upgrade decision.

Each input is one client connection to a real :class:`~stargate.server.channel.HttpChannel`
(over :class:`~fuzzing.driver.FakeTransport`, on :class:`~fuzzing.driver.FuzzLoop`), in front
of a small WSGI app or a ``Routes`` table.  Byte 0 picks the server's configuration, byte 1
how the client cuts its bytes (0: at once), byte 2 how the client behaves
(:class:`~fuzzing.driver.Client`: bit 0 slow reader, 1 half-close, 2 TLS, 3 slow app,
4 reset); the rest is what the client sends.

Checked for every input (:func:`check_common`):

- no exception escapes into the loop (its exception handler records every one), no task is
  left pending, nothing written after ``write_eof``;
- nothing is logged at ERROR by ``stargate`` except the documented case of the app raising
  (:class:`AppFailure`), and every log call formats;
- every response is well-formed HTTP/1.1, read by :mod:`fuzzing.wire` (status line, fields
  without CR/LF/NUL, consistent framing, nothing after ``Connection: close``);
- requests are answered in order, each once; a request that was not keep-alive gets a
  response that closes; a refused request gets a 4xx (501 for a transfer coding other than
  chunked) with its reason as the body;
- a 101 is a correct handshake for what the client sent (:func:`check_switch`: accept key,
  hixie-76 answer, Location, Origin allowed, subprotocol and extensions offered);
- the connection ends once the client falls silent (every phase has a deadline), then no
  timer runs on, and the server forgets the connection (no channel, WebSocket or handler
  left).

``http`` (:func:`fuzz_http`), byte 0: bit 0 a ``Routes`` table (else the WSGI app :func:`http_app`),
bits 1-2 a settings profile (:data:`HTTP_PROFILES`), bit 3 the app wrapped in
``wsgiref.validate``.

``upgrade`` (:func:`fuzz_upgrade`), byte 0: bit 0 a ``Routes`` table, bit 1 legacy hixie
protocols off, bit 2 an Origin allow-list that refuses a missing Origin (else same-origin),
bit 3 compression off.  The only answers: 101 with a correct handshake, or 400/403/405/426
(the handshake's refusals) and 413/414/417/431/501 (the HTTP parser's), each with its reason.

Both run a split input a second time at once: the answers must not depend on how TCP cut
the bytes.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import re
import struct
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import urlsplit
from wsgiref.validate import WSGIWarning, validator

from stargate.extensions.permessage_deflate import PerMessageDeflateOffer
from stargate.handshake import OriginPolicy
from stargate.server import ENVIRON_KEY, Routes, ServerConfig, WebSocket, WebSocketOptions
from stargate.server.channel import HttpChannel
from stargate.server.request import UNFRAMED, HttpRequest
from stargate.server.state import ServerState
from stargate.server.wsgi import StartResponse, WSGIApp

from .driver import Client, FakeTransport, FuzzLoop, LogRecorder, drive, pieces
from .wire import Malformed, Response, SentRequest, Stream, ows, read_responses, sent_requests

# Mutated methods are the fuzzer's business, not a warning per input.
warnings.filterwarnings("ignore", message="Unknown REQUEST_METHOD", category=WSGIWarning)

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
SUBPROTOCOLS = ("chat", "superchat")
ALLOWED_ORIGINS = ("http://allowed.example", "https://*.example.org")
HOST = "example.com"


class AppFailure(Exception):
    """Raised on purpose by the app at ``/raise``: its ERROR log and 500 are documented."""


#: Known bugs (reported; the ``bug`` seeds of :mod:`fuzzing.server_seeds`) pass the checks
#: while fuzzing, so that a campaign finds new ones; the corpus test turns this off, so
#: that those seeds fail until the bug is fixed.  Each tolerance names its seed (there is
#: none at present: every known bug of these targets is fixed).
TOLERATE_KNOWN_BUGS = True

#: The reasons ``dispatch`` records when it sends the app's own answer to an upgrade.
APP_REFUSALS = frozenset({"refused by the application", "the application failed"})


# -- the applications ----------------------------------------------------------------------


async def echo(ws: WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


def _plain(
    start_response: StartResponse,
    status: str,
    body: bytes,
    headers: Iterable[tuple[str, str]] = (),
) -> list[bytes]:
    start_response(
        status,
        [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(body))),
            *headers,
        ],
    )
    return [body]


def _read_body(environ: dict[str, Any]) -> bytes:
    """The whole body, which must be exactly CONTENT_LENGTH long (the parser framed it)."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    stream = environ["wsgi.input"]
    body: bytes = stream.read(length)
    assert len(body) == length, f"CONTENT_LENGTH {length}, body of {len(body)} bytes"
    assert stream.read(1) == b"", "wsgi.input holds more than CONTENT_LENGTH"
    return body


def _stream() -> Iterator[bytes]:
    yield b"first\n"
    yield b""
    yield b"x" * 3000 + b"\n"


def http_app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """A few paths that exercise every way a response is framed, and the upgrade choices."""
    path = environ["PATH_INFO"]
    upgrade = environ.get(ENVIRON_KEY)
    body = _read_body(environ)
    if upgrade is not None and path.startswith("/ws"):
        upgrade.accept(echo, subprotocols=SUBPROTOCOLS)
        return []
    if path == "/raise":
        raise AppFailure("raised on purpose")
    if path == "/forbidden":
        return _plain(start_response, "403 Forbidden", b"not for you\n")
    if path == "/ws":
        return _plain(start_response, "426 Upgrade Required", b"ws\n", [("Upgrade", "websocket")])
    if path == "/echo":
        return _plain(start_response, "200 OK", body)
    if path == "/empty":
        start_response("204 No Content", [])
        return []
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _stream()
    return _plain(start_response, "200 OK", b"hello\n")


def upgrade_app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """Accepts every upgrade (the handshake decides); anything else is told to upgrade."""
    _read_body(environ)
    upgrade = environ.get(ENVIRON_KEY)
    if upgrade is None:
        return _plain(
            start_response,
            "426 Upgrade Required",
            b"this URL serves WebSocket connections only\n",
            [("Upgrade", "websocket")],
        )
    upgrade.accept(echo, subprotocols=SUBPROTOCOLS)
    return []


# -- the server, with what the checks need to know -----------------------------------------


@dataclass(frozen=True)
class Refusal:
    status: int
    reason: str
    websocket: bool


@dataclass(frozen=True)
class Parsed:
    """A request as the server's parser completed it."""

    method: str
    http_version: str
    keep_alive: bool
    upgrade: bool


class RecordingState(ServerState):
    """A server state that also remembers the refusals of the current input."""

    def __init__(self, app: WSGIApp | Routes, config: ServerConfig) -> None:
        super().__init__(app, config)
        self.refusals: list[Refusal] = []

    def record_refusal(
        self,
        remote: tuple[str, int] | None,
        method: str,
        target: str,
        status: int,
        reason: str,
        *,
        websocket: bool,
    ) -> None:
        self.refusals.append(Refusal(status, reason, websocket))
        super().record_refusal(remote, method, target, status, reason, websocket=websocket)

    def run_in_thread(
        self, call: Callable[[], object], done: Callable[[BaseException | None], object]
    ) -> None:
        """The server's own hop, with the work known to the fuzz loop (``settle`` waits for
        its answer) and held at the loop's gate (an app slow to answer)."""
        loop = fuzz_loop()
        marker: asyncio.Future[None] = loop.create_future()
        loop.in_flight.add(marker)

        def gated() -> object:
            loop.pass_gate()
            return call()

        def answered(error: BaseException | None) -> None:
            loop.in_flight.discard(marker)
            done(error)

        super().run_in_thread(gated, answered)


class RecordingChannel(HttpChannel):
    """The server's channel, telling which requests its parser completed, in order."""

    def __init__(self, state: ServerState) -> None:
        super().__init__(state)
        self.parsed: list[Parsed] = []

    def request_read(self, request: HttpRequest) -> None:
        super().request_read(request)
        self.parsed.append(
            Parsed(request.method, request.http_version, request.keep_alive, request.upgrade)
        )


_loop: FuzzLoop | None = None
_states: dict[tuple[object, ...], RecordingState] = {}
_recorder = LogRecorder()


def fuzz_loop() -> FuzzLoop:
    """The process's loop, made once (its selector and self-pipe are kept)."""
    global _loop
    if _loop is None:
        _loop = FuzzLoop()
    return _loop


def server_state(key: tuple[object, ...], make: Callable[[], RecordingState]) -> RecordingState:
    """One started server state per configuration, for the process's life (as a server's)."""
    state = _states.get(key)
    if state is None:
        state = _states[key] = make()
        state.start(fuzz_loop())
    return state


#: Settings profiles of the ``http`` target (byte 0, bits 1-2).
HTTP_PROFILES = (
    ServerConfig(port=8000),
    # Small limits: 431, 413, spooled bodies and output, pipelining paused.
    ServerConfig(
        port=8000,
        max_header_size=512,
        max_headers=8,
        max_body_size=64,
        body_spool_size=16,
        max_pipelined=2,
        output_buffer_memory=256,
    ),
    # What operations add: metrics, readiness, trusted proxies, a text access log.
    ServerConfig(
        port=8000,
        metrics_path="/-/metrics",
        health_path="/-/ready",
        trusted_proxies=("127.0.0.1",),
        access_log=True,
    ),
    # A JSON access log, no compression, no legacy protocols.
    ServerConfig(
        port=8000,
        access_log=True,
        access_log_format="json",
        legacy_protocols=False,
        websocket=WebSocketOptions(compression=None),
    ),
)


@dataclass
class Outcome:
    """What one connection did: the responses as a client read them, and the server's view."""

    stream: Stream
    parsed: list[Parsed]
    refusals: list[Refusal]
    transport: FakeTransport
    client: Client
    sent: bytes
    errors: list[logging.LogRecord] = field(default_factory=list)

    @property
    def statuses(self) -> list[int]:
        """Final statuses in order, then 101 if the connection switched."""
        final = [response.status for response in self.stream.final]
        return [*final, 101] if self.stream.switched is not None else final


def exchange(state: RecordingState, data: bytes, split_seed: int, client: Client) -> Outcome:
    """Run one connection carrying ``data``; the outcome, checked by :func:`check_common`."""
    loop = fuzz_loop()
    state.refusals = []
    loop.errors.clear()
    channel = RecordingChannel(state)
    high_water = 200 if client.slow_reader else None
    transport = FakeTransport(loop, channel, secure=client.tls, high_water=high_water)
    try:
        with _recorder.recording():
            channel.connection_made(transport)
            drive(loop, transport, pieces(data, split_seed), client)
            records = list(_recorder.records)
            broken = list(_recorder.broken)
    except BaseException:
        _forget(state, transport)
        raise
    outcome = Outcome(
        stream=Stream(),
        parsed=channel.parsed,
        refusals=list(state.refusals),
        transport=transport,
        client=client,
        sent=data,
    )
    check_common(state, outcome, records, broken)
    return outcome


def _forget(state: ServerState, transport: FakeTransport) -> None:
    """After a failed input: end its connection so that the next input starts clean."""
    loop = fuzz_loop()
    try:
        loop.gate.set()
        transport.abort()
        loop.settle()
        for _ in range(50):
            if not loop.jump():
                break
    finally:
        state.channels.clear()
        state.websockets.clear()
        state.handlers.clear()
        loop.errors.clear()


def check_common(
    state: ServerState, outcome: Outcome, records: list[logging.LogRecord], broken: list[str]
) -> None:
    loop = fuzz_loop()
    transport = outcome.transport
    reset = outcome.client.reset
    assert not loop.errors, f"exception into the loop: {_describe(loop.errors[0])}"
    assert not broken, f"a log call that cannot be formatted: {broken[0]}"
    for record in records:
        if record.levelno >= logging.ERROR:
            failure = record.exc_info[1] if record.exc_info else None
            assert isinstance(failure, AppFailure), (
                f"ERROR logged by {record.name}: {record.getMessage()}"
                + (f" ({failure!r})" if failure is not None else "")
            )
    outcome.errors = [r for r in records if r.levelno >= logging.ERROR]
    assert transport.lost, "the connection never ended"
    assert not transport.writes_after_lost, "writes after the connection was lost"
    assert not state.channels, "the server still counts the HTTP channel"
    assert not state.websockets, "the server still counts the WebSocket"
    assert not state.handlers, "a WebSocket handler is still running"
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    assert not tasks, f"tasks left pending: {tasks}"

    written = bytes(transport.written)
    switched_at = transport.switched_at
    http = written if switched_at is None else written[:switched_at]
    parsed = outcome.parsed
    refusals = outcome.refusals
    stream = read_responses(
        http,
        head_request=lambda i: i < len(parsed) and parsed[i].method == "HEAD",
        refused=bool(refusals),
        complete=not reset,  # a client that went away may have cut the last one short
    )
    outcome.stream = stream
    final = stream.final
    if stream.switched is not None:
        assert switched_at is not None, "a 101 was written but the WebSocket never took over"
        assert not refusals, f"101 written after a refusal: {refusals}"
    else:
        assert switched_at is None, "the WebSocket took over without a 101"
    assert len(final) <= len(parsed) + len(refusals), (
        f"{len(final)} responses to {len(parsed)} requests and {len(refusals)} refusals"
    )
    for i, response in enumerate(final[: len(parsed)]):
        if not parsed[i].keep_alive and not (refusals and i == len(final) - 1):
            assert response.closes, f"response {i} to a request that was not keep-alive stays open"
    assert len(refusals) <= 1, f"refused more than once: {refusals}"
    for refusal in refusals:
        assert refusal.reason, f"refusal {refusal.status} without a reason"
        # A meter of the channel and llhttp disagreed on where a request part ends.
        assert (refusal.status, refusal.reason) != UNFRAMED, "meter and parser disagree"
        app_failed = refusal.status == 500 and refusal.reason in APP_REFUSALS
        # RFC 9112 section 6.1 and RFC 9110 section 15.6.2: a transfer coding or a method
        # the server does not implement is a 501; section 15.6.6: an HTTP version, a 505.
        not_implemented = refusal.status == 501 and refusal.reason.endswith("not implemented")
        no_such_version = refusal.status == 505 and refusal.reason.startswith("HTTP/")
        assert 400 <= refusal.status < 500 or app_failed or not_implemented or no_such_version, (
            f"refusal status: {refusal}"
        )
        if reset and (not final or final[-1].status != refusal.status):
            continue  # the client was gone before the refusal could be written
        assert final, f"refused ({refusal}) but nothing was written"
        last = final[-1]
        assert last.status == refusal.status, f"refused with {refusal}, wrote {last.status}"
        # The server closes after every refusal, the app's own answer too: RFC 9112 9.6.
        assert last.closes, f"the refusal {refusal} does not say Connection: close"
        if refusal.reason in APP_REFUSALS:
            continue  # the app's own response: its body is the app's
        if last.body:
            assert last.body == (refusal.reason + "\n").encode(), (
                f"refusal body {last.body[:100]!r}, reason {refusal.reason!r}"
            )
    if (
        not reset
        and not refusals
        and stream.switched is None
        and not (final and final[-1].closes)
        and not (len(final) < len(parsed) and parsed[len(final)].upgrade)
    ):
        # Every request is answered, unless the connection closes after a response, or
        # the next one is an upgrade that timed out (hixie-76 key3 never came).
        assert len(final) == len(parsed), (
            f"{len(parsed)} requests parsed, {len(final)} answered, and the connection "
            "ended without saying so"
        )
    if stream.switched is not None:
        requests = sent_requests(outcome.sent)
        index = len(final)
        assert index < len(requests), "101 to a request the client did not send"
        check_switch(
            stream.switched, requests[index], stream.after_switch, state, secure=transport.secure
        )


def _describe(context: dict[str, Any]) -> str:
    exception = context.get("exception")
    return f"{context.get('message')}: {exception!r}" if exception else str(context.get("message"))


# -- the handshake, checked against what the client sent -----------------------------------

#: RFC 3986 section 3.2.2 reg-name: unreserved, sub-delims and percent-encoded octets.
_REG_NAME = r"[A-Za-z0-9\-._~!$&'()*+,;=%]+"
_ORIGIN = re.compile(
    rf"(https?)://({_REG_NAME}|\[[0-9A-Fa-f:.]+\])(?::([0-9]{{1,5}}))?/?\Z", re.IGNORECASE
)
_HOST = re.compile(rf"({_REG_NAME}|\[[0-9A-Fa-f:.]+\])(?::([0-9]{{1,5}}))?\Z")
_DEFAULT_PORT = {"http": 80, "https": 443}


def _origin_tuple(origin: str) -> tuple[str, str, int] | None:
    match = _ORIGIN.match(origin)
    if match is None:
        return None
    scheme = match.group(1).lower()
    port = int(match.group(3)) if match.group(3) else _DEFAULT_PORT[scheme]
    return scheme, match.group(2).lower(), port


def origin_allowed(origin: str | None, host: str, *, secure: bool, allow_list: bool) -> bool:
    """Whether the server's Origin rule lets this origin in (RFC 6454: scheme, host, port).

    An independent reading of the two policies the upgrade target runs: same origin (missing
    Origin allowed), or :data:`ALLOWED_ORIGINS` besides same origin, missing Origin refused.
    """
    if origin is None:
        return not allow_list
    parsed = _origin_tuple(origin)
    if parsed is None:
        return False
    host_match = _HOST.match(host)
    scheme = "https" if secure else "http"
    if host_match is not None:
        port = int(host_match.group(2)) if host_match.group(2) else _DEFAULT_PORT[scheme]
        if parsed == (scheme, host_match.group(1).lower(), port):
            return True
    if not allow_list:
        return False
    o_scheme, o_host, o_port = parsed
    if (o_scheme, o_host, o_port) == ("http", "allowed.example", 80):
        return True
    return o_scheme == "https" and o_port == 443 and o_host.endswith(".example.org")


def _single(request: SentRequest, name: str) -> str:
    values = request.get_all(name)
    assert len(values) == 1, f"101 to a request with {len(values)} {name} fields"
    return values[0]


def _tokens(values: Iterable[str]) -> list[str]:
    return [t.strip() for value in values for t in value.split(",") if t.strip()]


def _resource(target: str) -> str:
    target = target.partition("#")[0]
    if not target.startswith("/"):
        parts = urlsplit(target)
        return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return target


def _hixie76_number(value: str) -> int:
    digits = "".join(c for c in value if c in "0123456789")
    spaces = value.count(" ")
    assert digits and spaces, f"101 to a hixie-76 key without digits or spaces: {value!r}"
    number = int(digits)
    assert number <= 0xFFFFFFFF and number % spaces == 0, f"101 to a bad hixie-76 key {value!r}"
    return number // spaces


def check_switch(
    response: Response, request: SentRequest, after: bytes, state: ServerState, *, secure: bool
) -> None:
    """A 101 must be the handshake this request asked for, and one the server may make."""
    # RFC 9112 section 3: a recipient may split the request line on runs of white space.
    method, target, version = [*request.request_line.split(), "", ""][:3]
    assert method == "GET", f"101 to {method!r}"
    # RFC 6455 section 4.1: "the HTTP version MUST be at least 1.1".
    assert re.fullmatch(r"HTTP/[0-9]\.[0-9]", version) and version >= "HTTP/1.1", (
        f"101 to {version!r}"
    )
    host = ows(_single(request, "Host"))
    assert "websocket" in [t.lower() for t in _tokens(request.get_all("Upgrade"))]
    assert "upgrade" in [t.lower() for t in _tokens(request.get_all("Connection"))]
    origins = request.get_all("Origin") or request.get_all("Sec-WebSocket-Origin")
    assert len(origins) <= 1, f"101 to a request with {len(origins)} origins"
    origin = ows(origins[0]) if origins else None
    policy = state.origin_policy
    allow_list = bool(policy.allowed)
    assert origin_allowed(origin, host, secure=secure, allow_list=allow_list), (
        f"101 to origin {origin!r} at host {host!r} (allow-list: {allow_list})"
    )
    versions = request.get_all("Sec-WebSocket-Version")
    if versions:
        assert ows(_single(request, "Sec-WebSocket-Version")) in ("13", "8", "7")
        key = ows(_single(request, "Sec-WebSocket-Key"))
        expected = base64.b64encode(hashlib.sha1((key + GUID).encode("latin-1")).digest())
        assert response.get("Sec-WebSocket-Accept") == expected.decode(), (
            f"Sec-WebSocket-Accept {response.get('Sec-WebSocket-Accept')!r} for key {key!r}"
        )
        assert "websocket" in response.tokens("Upgrade")
        assert "upgrade" in response.tokens("Connection")
        protocol = response.get("Sec-WebSocket-Protocol")
        if protocol is not None:
            assert protocol in SUBPROTOCOLS
            assert protocol in _tokens(request.get_all("Sec-WebSocket-Protocol"))
        offered = {
            t.partition(";")[0].strip()
            for t in _tokens(request.get_all("Sec-WebSocket-Extensions"))
        }
        for extension in _tokens(response.get_all("Sec-WebSocket-Extensions")):
            name = extension.partition(";")[0].strip()
            assert name in offered, f"extension {name!r} was not offered"
            assert state.config.websocket.compression is not None
        return
    assert state.config.legacy_protocols, "a hixie handshake with legacy protocols off"
    keyed = request.get_all("Sec-WebSocket-Key1") or request.get_all("Sec-WebSocket-Key2")
    prefix = "Sec-WebSocket-" if keyed else "WebSocket-"
    scheme = "wss" if secure else "ws"
    location = response.get(f"{prefix}Location")
    wanted = f"{scheme}://{host}{_resource(target)}"
    assert location == wanted, f"{prefix}Location {location!r}, expected {wanted!r}"
    if origin is not None:
        assert response.get(f"{prefix}Origin") == origin
    if keyed:
        assert response.reason == "WebSocket Protocol Handshake"
        # Without the OWS around them (RFC 9110 section 5.5), as for any field; the draft
        # counted a trailing space, but its clients never put one there (section 4.1).
        number1 = _hixie76_number(ows(_single(request, "Sec-WebSocket-Key1")))
        number2 = _hixie76_number(ows(_single(request, "Sec-WebSocket-Key2")))
        key3 = request.rest[:8]
        assert len(key3) == 8, "101 before key3 was sent"
        answer = hashlib.md5(struct.pack(">II", number1, number2) + key3).digest()
        assert after[:16] == answer, f"hixie-76 answer {after[:16]!r}, expected {answer!r}"
    else:
        assert response.reason == "Web Socket Protocol Handshake"


# -- the targets ---------------------------------------------------------------------------


def http_state(config_byte: int) -> RecordingState:
    routes = bool(config_byte & 1)
    profile = (config_byte >> 1) & 3
    validated = bool(config_byte & 8) and not routes

    def make() -> RecordingState:
        config = HTTP_PROFILES[profile]
        if routes:
            return RecordingState(Routes({"/ws": echo}, subprotocols=SUBPROTOCOLS), config)
        # wsgiref's StartResponse protocol and the server's alias differ only in typing.
        app: WSGIApp = validator(cast(Any, http_app)) if validated else http_app
        return RecordingState(app, config)

    return server_state(("http", routes, profile, validated), make)


def _server_input(data: bytes) -> tuple[int, int, Client, bytes] | None:
    """Byte 0 the server's configuration, byte 1 the split, byte 2 the client; the rest is
    what the client sends."""
    if len(data) < 3:
        return None
    return data[0], data[1], Client.from_byte(data[2]), data[3:]


def exchange_http(data: bytes) -> Outcome | None:
    """The ``http`` target's run of ``data`` (None when too short to configure one)."""
    parts = _server_input(data)
    if parts is None:
        return None
    config, split_seed, client, stream = parts
    state = http_state(config)
    outcome = same_whole_or_in_pieces(
        lambda split: exchange(state, stream, split, client), split_seed
    )
    allowed = {200, 204, 400, 403, 404, 405, 413, 414, 417, 426, 431, 501, 505}
    if outcome.errors:
        allowed.add(500)  # the app raised: documented
    for response in outcome.stream.final:
        if response.status not in allowed:
            raise Malformed(f"status {response.status} {response.reason} in the http target")
    return outcome


def _refused_either_way(one: Outcome, other: Outcome) -> bool:
    """A request wrong in two ways (an invalid character in a head that is also too
    large) is refused for whichever the parser meets first, which depends on the cut."""
    refused = all(any(not r.websocket for r in o.refusals) for o in (one, other))
    return refused and one.statuses[:-1] == other.statuses[:-1]


def same_whole_or_in_pieces(run: Callable[[int], Outcome], split_seed: int) -> Outcome:
    """Run in pieces (``split_seed``) and, if that is not whole already, whole: a client's
    requests get the same answers however TCP cut them."""
    outcome = run(split_seed)
    if split_seed and not outcome.client.reset:  # gone: it may not have sent the same
        whole = run(0)
        assert outcome.statuses == whole.statuses or _refused_either_way(outcome, whole), (
            f"the answers depend on how the bytes were cut: {outcome.statuses} in pieces, "
            f"{whole.statuses} at once"
        )
    return outcome


def upgrade_state(config_byte: int) -> RecordingState:
    routes = bool(config_byte & 1)
    legacy = not config_byte & 2
    allow_list = bool(config_byte & 4)
    compression = not config_byte & 8

    def make() -> RecordingState:
        policy = (
            OriginPolicy(allowed=ALLOWED_ORIGINS, allow_missing=False)
            if allow_list
            else OriginPolicy()
        )
        config = ServerConfig(
            port=8000,
            legacy_protocols=legacy,
            origin_policy=policy,
            websocket=WebSocketOptions(
                compression=PerMessageDeflateOffer() if compression else None
            ),
        )
        if routes:
            return RecordingState(Routes(default=echo, subprotocols=SUBPROTOCOLS), config)
        return RecordingState(upgrade_app, config)

    return server_state(("upgrade", routes, legacy, allow_list, compression), make)


#: What the upgrade decision may answer besides 101: the handshake's refusals (RFC 6455
#: section 4.2.2 and ``stargate.handshake.accept``) and the HTTP parser's (``channel``; 414
#: for a request line past max_header_size, RFC 9112 section 3; 501 for a transfer coding
#: other than chunked, RFC 9112 section 6.1).
UPGRADE_REFUSALS = frozenset({400, 403, 405, 426, 413, 414, 417, 431, 501, 505})


def exchange_upgrade(data: bytes) -> Outcome | None:
    """The ``upgrade`` target's run of ``data`` (None when too short to configure one)."""
    parts = _server_input(data)
    if parts is None:
        return None
    config, split_seed, client, stream = parts
    state = upgrade_state(config)
    outcome = same_whole_or_in_pieces(
        lambda split: exchange(state, stream, split, client), split_seed
    )
    parsed = outcome.parsed
    for i, response in enumerate(outcome.stream.final):
        if response.status not in UPGRADE_REFUSALS:
            raise Malformed(f"the upgrade decision answered {response.status} {response.reason}")
        head = i < len(parsed) and parsed[i].method == "HEAD"
        if not head:
            assert response.body.strip(), f"a {response.status} without a reason"
    return outcome


def fuzz_http(data: bytes) -> None:
    """HttpChannel over a fake transport: see the module docstring for what is checked."""
    exchange_http(data)


def fuzz_upgrade(data: bytes) -> None:
    """The upgrade decision: 101 with a correct handshake, or a documented refusal."""
    exchange_upgrade(data)
