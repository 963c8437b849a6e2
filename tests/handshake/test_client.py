"""stargate.handshake.client: the client's request and its check of every kind of answer."""

from __future__ import annotations

import base64
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stargate.errors import HandshakeError, InvalidHandshakeResponse
from stargate.extensions.permessage_deflate import (
    PerMessageDeflate,
    PerMessageDeflateClientOffer,
    PerMessageDeflateOffer,
)
from stargate.handshake.client import (
    ClientAccepted,
    ClientHandshake,
    ExtensionNegotiationFailed,
    InvalidAcceptKey,
    InvalidChallengeAnswer,
    InvalidEcho,
    InvalidUpgrade,
    MalformedResponse,
    Redirected,
    RejectedResponse,
    UnexpectedSubprotocol,
    UpgradeRefused,
)
from stargate.handshake.heads import Response, parse_request
from stargate.handshake.keys import accept_key
from stargate.handshake.server import ALL_VERSIONS, RFC_VERSIONS, Accepted, accept, reject_response
from stargate.headers import Headers
from stargate.protocol import ProtocolVersion

from .support import (
    MAX,
    RFC_ACCEPT,
    RFC_KEY,
    Params,
    RecordingExtension,
    V,
    server_response,
)

# =============================================================================================
# Client


def test_client_request_bytes_rfc6455() -> None:
    client = ClientHandshake(
        "server.example.com",
        "/chat",
        key=b"the sample nonce",
        origin="http://example.com",
        subprotocols=["chat", "superchat"],
        extensions=["permessage-deflate; client_max_window_bits"],
        extra_headers=[("Cookie", "a=b")],
    )
    assert client.key == RFC_KEY
    assert client.request_bytes() == (
        b"GET /chat HTTP/1.1\r\n"
        b"Host: server.example.com\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n"
        b"Origin: http://example.com\r\n"
        b"Sec-WebSocket-Protocol: chat, superchat\r\n"
        b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        b"Cookie: a=b\r\n"
        b"\r\n"
    )


def test_client_random_key_is_fresh() -> None:
    keys = {ClientHandshake("x").key for _ in range(5)}
    assert len(keys) == 5
    assert all(len(base64.b64decode(key)) == 16 for key in keys)


def test_client_hybi_sends_sec_websocket_origin() -> None:
    client = ClientHandshake("x", version=V.HYBI_08, origin="http://x", key=b"k" * 16)
    data = client.request_bytes()
    assert b"\r\nSec-WebSocket-Version: 8\r\n" in data
    assert b"\r\nSec-WebSocket-Origin: http://x\r\n" in data
    assert b"\r\nOrigin:" not in data


ROUND_TRIP_VERSIONS = [V.RFC6455, V.HYBI_08, V.HYBI_07, V.HIXIE_76, V.HIXIE_75]


@pytest.mark.parametrize("version", ROUND_TRIP_VERSIONS)
@pytest.mark.parametrize("chunked", [False, True])
def test_client_round_trip(version: ProtocolVersion, chunked: bool) -> None:
    client = ClientHandshake(
        "example.com:8080",
        "/room?id=7",
        version=version,
        origin="http://example.com:8080",
        subprotocols=["chat"],
        rng=random.Random(1234),
    )
    request, accepted = server_response(client.request_bytes(), subprotocols=["other", "chat"])
    assert request.path == "/room"
    assert request.query == "id=7"
    assert accepted.version is version
    assert accepted.subprotocol == "chat"
    frames = b"\x81\x02hi" if not version.is_hixie else b"\x00hi\xff"
    stream = accepted.response + frames
    if chunked:
        result = None
        for i in range(len(stream)):
            result = client.receive(stream[i : i + 1])
            if result is not None:
                break
        assert result is not None
        done, used = result
        assert used == 1
        assert i == len(accepted.response) - 1  # completes on the last handshake byte
    else:
        result = client.receive(stream)
        assert result is not None
        done, used = result
        assert stream[used:] == frames
    assert done.version is version
    assert done.subprotocol == "chat"
    assert done.extensions == []
    assert done.response.status == 101
    with pytest.raises(RuntimeError):
        client.receive(b"more")


@pytest.mark.parametrize("version", ROUND_TRIP_VERSIONS)
@pytest.mark.parametrize("chunked", [False, True])
def test_client_skips_interim_responses(version: ProtocolVersion, chunked: bool) -> None:
    """RFC 9110 section 15.2: a client must parse the 1xx responses before the final one
    and may ignore them; the bytes after the 101 are still counted from this read."""
    client = ClientHandshake("example.com", version=version, rng=random.Random(7))
    _, accepted = server_response(client.request_bytes())
    interim = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
        b"HTTP/1.1 199 Whatever\r\n\r\n"
    )
    frames = b"\x81\x02hi" if not version.is_hixie else b"\x00hi\xff"
    stream = interim + accepted.response + frames
    if chunked:  # the interim heads end in earlier reads than the 101's
        result = None
        for i in range(0, len(stream), 7):
            result = client.receive(stream[i : i + 7])
            if result is not None:
                break
        assert result is not None
        end = len(interim) + len(accepted.response)
        assert stream[i + result[1] :] == stream[end:]
    else:
        result = client.receive(stream)
        assert result is not None
        assert stream[result[1] :] == frames
    assert result[0].response.status == 101


def test_client_interim_responses_are_checked_like_any_head() -> None:
    client = ClientHandshake("example.com", max_header_size=64)
    with pytest.raises(MalformedResponse, match=r"431|larger"):
        client.receive(b"HTTP/1.1 103 Early Hints\r\nLink: " + b"x" * 100)
    client = ClientHandshake("example.com")
    with pytest.raises(MalformedResponse):
        client.receive(b"HTTP/1.1 100 Continue\r\n\r\nnot a status line\r\n\r\n")


def test_client_round_trip_hixie76_secure_and_split_answer() -> None:
    client = ClientHandshake("example.com", "/demo", version=V.HIXIE_76, secure=True)
    _, accepted = server_response(client.request_bytes(), secure=True)
    head, answer = accepted.response[:-16], accepted.response[-16:]
    assert client.receive(head) is None  # the answer is still missing
    assert client.receive(answer[:10]) is None
    result = client.receive(answer[10:] + b"\x00")
    assert result is not None
    assert result[1] == 6
    assert result[0].subprotocol is None


def test_client_round_trip_with_extension() -> None:
    client = ClientHandshake(
        "server.example.com",
        extensions=["permessage-deflate; client_max_window_bits", "x-unused"],
    )
    ext = RecordingExtension("permessage-deflate")
    _, accepted = server_response(client.request_bytes(), extensions=[ext])
    assert ext.calls == [[("client_max_window_bits", None)]]
    result = client.receive(accepted.response)
    assert result is not None
    assert result[0].extensions == [("permessage-deflate", [("client_max_window_bits", None)])]


def test_client_receives_refusal_with_body() -> None:
    client = ClientHandshake("server.example.com", origin="http://evil.example")
    request = parse_request(client.request_bytes(), max_header_size=MAX)
    assert request is not None
    with pytest.raises(HandshakeError) as refused:
        accept(request[0])
    with pytest.raises(InvalidHandshakeResponse) as info:
        client.receive(reject_response(refused.value))
    assert info.value.status == 403
    assert info.value.reason == "the server refused the upgrade: 403 Forbidden"
    assert info.value.body == b"origin 'http://evil.example' is not allowed\n"
    with pytest.raises(RuntimeError):
        client.receive(b"")


def test_client_refusal_body_is_bounded() -> None:
    client = ClientHandshake("x")
    with pytest.raises(InvalidHandshakeResponse) as info:
        client.receive(b"HTTP/1.1 500 Oops\r\n\r\n" + b"e" * 5000)
    assert info.value.status == 500
    assert info.value.body == b"e" * 1024


def _rfc_client() -> ClientHandshake:
    return ClientHandshake(
        "server.example.com",
        key=b"the sample nonce",
        subprotocols=["chat"],
        extensions=["permessage-deflate"],
    )


def _rfc_response(*fields: tuple[str, str], status: bytes = b"101 Switching Protocols") -> bytes:
    lines = b"".join(f"{name}: {value}\r\n".encode() for name, value in fields)
    return b"HTTP/1.1 " + status + b"\r\n" + lines + b"\r\n"


_UP = ("Upgrade", "websocket")
_CONN = ("Connection", "Upgrade")
_ACC = ("Sec-WebSocket-Accept", RFC_ACCEPT)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ((_CONN, _ACC), "Upgrade header is None, not 'websocket'"),
        ((("Upgrade", "h2c"), _CONN, _ACC), "Upgrade header is 'h2c', not 'websocket'"),
        ((("Upgrade", "websocket, h2c"), _CONN, _ACC), "not 'websocket'"),
        ((_UP, _ACC), "Connection header None lacks the 'upgrade' token"),
        ((_UP, ("Connection", "close"), _ACC), "lacks the 'upgrade' token"),
        ((_UP, _CONN), "missing Sec-WebSocket-Accept header"),
        (
            (_UP, _CONN, ("Sec-WebSocket-Accept", "wrong=")),
            f"incorrect Sec-WebSocket-Accept 'wrong=', expected {RFC_ACCEPT!r}",
        ),
        ((_UP, _CONN, _ACC, _ACC), "Sec-WebSocket-Accept sent 2 times"),
        (
            (_UP, _CONN, _ACC, ("Sec-WebSocket-Protocol", "superchat")),
            "the server selected subprotocol 'superchat', not offered",
        ),
        (
            (_UP, _CONN, _ACC, ("Sec-WebSocket-Protocol", "chat, chat")),
            "the server selected several subprotocols",
        ),
        (
            (_UP, _CONN, _ACC, ("Sec-WebSocket-Protocol", "")),
            "the server sent an empty Sec-WebSocket-Protocol",
        ),
        (
            (_UP, _CONN, _ACC, ("Sec-WebSocket-Protocol", " , ")),
            "the server sent an empty Sec-WebSocket-Protocol",
        ),
        (
            (_UP, _CONN, _ACC, ("Sec-WebSocket-Extensions", "x-webkit-deflate-frame")),
            "the server accepted extension 'x-webkit-deflate-frame', which was not offered",
        ),
        (
            (_UP, _CONN, _ACC, ("Sec-WebSocket-Extensions", "permessage-deflate;")),
            "invalid Sec-WebSocket-Extensions header",
        ),
    ],
)
def test_client_rfc_failures(fields: tuple[tuple[str, str], ...], reason: str) -> None:
    client = _rfc_client()
    with pytest.raises(InvalidHandshakeResponse) as info:
        client.receive(_rfc_response(*fields))
    assert reason in info.value.reason
    assert info.value.status == 101


@pytest.mark.parametrize("version", [b"1.0", b"0.9", b"2.0"])
def test_client_refuses_a_101_outside_http_1_1(version: bytes) -> None:
    """HTTP/1.0 has no 101 (RFC 9110 section 15.2), nor has HTTP/2 (RFC 9113 section 8.6):
    such a response switched nothing, however right its fields."""
    response = _rfc_response(_UP, _CONN, _ACC).replace(b"HTTP/1.1", b"HTTP/" + version, 1)
    with pytest.raises(InvalidUpgrade) as info:
        _rfc_client().receive(response)
    assert info.value.reason == (
        f"a 101 response in HTTP/{version.decode()}: only HTTP/1.1 switches protocols "
        "(RFC 9110 section 15.2)"
    )
    assert info.value.response.http_version == version.decode()


def test_client_accepts_a_101_of_a_later_http_1_minor_version() -> None:
    """RFC 9112 section 2.3: a recipient treats a later minor version as 1.1."""
    response = _rfc_response(_UP, _CONN, _ACC).replace(b"HTTP/1.1", b"HTTP/1.2", 1)
    result = _rfc_client().receive(response)
    assert result is not None
    assert result[0].response.http_version == "1.2"


def test_client_refuses_no_other_status_for_its_version() -> None:
    """A refusal in HTTP/1.0 is still a refusal, with its status and reason."""
    response = b"HTTP/1.0 403 Forbidden\r\nContent-Length: 0\r\n\r\n"
    with pytest.raises(UpgradeRefused) as info:
        _rfc_client().receive(response)
    assert info.value.status == 403


def test_client_accepts_case_variants() -> None:
    client = _rfc_client()
    response = _rfc_response(
        ("upgrade", "WebSocket"),
        ("connection", "keep-alive, upgrade"),
        ("sec-websocket-accept", RFC_ACCEPT),
        ("Sec-WebSocket-Protocol", "chat"),
        ("Sec-WebSocket-Extensions", "permessage-deflate; server_no_context_takeover"),
    )
    result = client.receive(response)
    assert result is not None
    assert result[0].subprotocol == "chat"
    assert result[0].extensions == [("permessage-deflate", [("server_no_context_takeover", None)])]


def test_client_subprotocol_when_none_offered() -> None:
    client = ClientHandshake("x", key=b"the sample nonce")
    with pytest.raises(InvalidHandshakeResponse) as info:
        client.receive(_rfc_response(_UP, _CONN, _ACC, ("Sec-WebSocket-Protocol", "chat")))
    assert "subprotocol 'chat', not offered" in info.value.reason


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"HTTP/1.1 abc\r\n\r\n", "malformed response: invalid status line"),
        (b"HTTP/1.1 101 OK\r\nBad Header\r\n\r\n", "malformed response: header line"),
        (b"SSH-2.0-OpenSSH\r\n\r\n", "malformed response"),
    ],
)
def test_client_malformed_response(data: bytes, reason: str) -> None:
    with pytest.raises(InvalidHandshakeResponse) as info:
        ClientHandshake("x").receive(data)
    assert reason in info.value.reason
    assert info.value.status == 0


def test_client_response_too_large() -> None:
    client = ClientHandshake("x", max_header_size=100)
    assert client.receive(b"HTTP/1.1 101 OK\r\n") is None
    with pytest.raises(InvalidHandshakeResponse) as info:
        client.receive(b"X: " + b"y" * 100)
    assert info.value.reason == "malformed response: header block larger than 100 bytes"


def test_client_long_response_fed_byte_by_byte() -> None:
    client = ClientHandshake("x", key=b"the sample nonce")
    response = _rfc_response(_UP, _CONN, _ACC, *[("X-Filler", "z" * 50)] * 150)
    for byte in response[:-1]:
        assert client.receive(bytes([byte])) is None
    result = client.receive(response[-1:])
    assert result is not None
    assert result[1] == 1


def _hixie76_client(**kwargs: object) -> tuple[ClientHandshake, Accepted]:
    client = ClientHandshake(
        "example.com",
        "/demo",
        version=V.HIXIE_76,
        origin="http://example.com",
        subprotocols=["sample"],
        rng=random.Random(7),
        **kwargs,  # type: ignore[arg-type]
    )
    _, accepted = server_response(client.request_bytes(), subprotocols=["sample"])
    return client, accepted


def test_client_hixie76_wrong_answer() -> None:
    client, accepted = _hixie76_client()
    bad = accepted.response[:-1] + bytes([accepted.response[-1] ^ 1])
    with pytest.raises(InvalidHandshakeResponse) as info:
        client.receive(bad)
    assert info.value.reason == "incorrect hixie-76 challenge answer"


@pytest.mark.parametrize(
    ("old", "new", "reason"),
    [
        (b"ws://example.com/demo", b"ws://example.com/other", "Sec-WebSocket-Location is"),
        (b"ws://example.com/demo", b"wss://example.com/demo", "Sec-WebSocket-Location is"),
        (b"Origin: http://example.com", b"Origin: http://evil.com", "Sec-WebSocket-Origin is"),
        (b"Protocol: sample", b"Protocol: other", "subprotocol 'other', not offered"),
        (b"Upgrade: WebSocket", b"Upgrade: nope", "Upgrade header is 'nope'"),
        (b"Connection: Upgrade", b"Connection: close", "lacks the 'upgrade' token"),
    ],
)
def test_client_hixie76_failures(old: bytes, new: bytes, reason: str) -> None:
    client, accepted = _hixie76_client()
    assert old in accepted.response
    with pytest.raises(InvalidHandshakeResponse) as info:
        client.receive(accepted.response.replace(old, new))
    assert reason in info.value.reason


def test_client_hixie76_refusal_does_not_wait_for_answer() -> None:
    client, _ = _hixie76_client()
    with pytest.raises(InvalidHandshakeResponse) as info:
        client.receive(b"HTTP/1.1 404 Not Found\r\n\r\n")
    assert info.value.status == 404
    assert info.value.body == b""


def test_client_hixie75_wrong_location() -> None:
    client = ClientHandshake("example.com", version=V.HIXIE_75)
    _, accepted = server_response(client.request_bytes(), secure=True)
    with pytest.raises(InvalidHandshakeResponse) as info:
        client.receive(accepted.response)
    assert "WebSocket-Location is 'wss://example.com/'" in info.value.reason


@given(st.integers(min_value=0, max_value=2**64))
@settings(max_examples=300, deadline=None)  # a loaded machine is slow, not wrong
def test_client_hixie76_keys_follow_the_draft(seed: int) -> None:
    """draft-hixie-76 section 4.1: 1-12 spaces (never first or last), 1-12 noise characters."""
    client = ClientHandshake("example.com", version=V.HIXIE_76, rng=random.Random(seed))
    for key in (client.key1, client.key2):
        spaces = key.count(" ")
        assert 1 <= spaces <= 12
        assert not key.startswith(" ")
        assert not key.endswith(" ")
        digits = "".join(c for c in key if c.isdigit())
        noise = [c for c in key if not c.isdigit() and c != " "]
        assert 1 <= len(noise) <= 12
        assert all(0x21 <= ord(c) <= 0x7E for c in noise)
        assert int(digits) % spaces == 0
        assert int(digits) // spaces <= 0xFFFFFFFF
    assert len(client.key3) == 8
    # The server computes the same answer the client expects.
    request, accepted = server_response(client.request_bytes())
    assert request.headers.get("Sec-WebSocket-Key1") == client.key1
    result = client.receive(accepted.response)
    assert result is not None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"key": b"short"}, "16 bytes"),
        ({"resource": "chat"}, "must start with '/'"),
        ({"version": V.HIXIE_76, "subprotocols": ["a", "b"]}, "at most one subprotocol"),
        ({"version": V.HIXIE_75, "extensions": ["x"]}, "no extensions"),
        ({"extensions": ["bad;"]}, "Sec-WebSocket-Extensions"),
    ],
)
def test_client_invalid_arguments(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ClientHandshake("x", **kwargs)  # type: ignore[arg-type]


def test_client_location() -> None:
    assert ClientHandshake("h:1", "/p?q").location == "ws://h:1/p?q"
    assert ClientHandshake("h", secure=True).location == "wss://h/"


def test_constants() -> None:
    assert frozenset(ProtocolVersion) == ALL_VERSIONS
    assert {V.HYBI_07, V.HYBI_08, V.RFC6455} == RFC_VERSIONS
    assert isinstance(ClientAccepted(V.RFC6455, None, [], Response(101, "", Headers())), object)


# =============================================================================================
# Typed failures: each check of the response its own exception, with the parsed response


@pytest.mark.parametrize(
    ("fields", "failure"),
    [
        ((_CONN, _ACC), InvalidUpgrade),
        ((_UP, ("Connection", "close"), _ACC), InvalidUpgrade),
        ((_UP, _CONN), InvalidAcceptKey),
        ((_UP, _CONN, ("Sec-WebSocket-Accept", "wrong=")), InvalidAcceptKey),
        ((_UP, _CONN, _ACC, ("Sec-WebSocket-Protocol", "superchat")), UnexpectedSubprotocol),
        ((_UP, _CONN, _ACC, ("Sec-WebSocket-Protocol", "chat, chat")), UnexpectedSubprotocol),
        ((_UP, _CONN, _ACC, ("Sec-WebSocket-Protocol", "")), UnexpectedSubprotocol),
        ((_UP, _CONN, _ACC, ("Sec-WebSocket-Extensions", "x-other")), ExtensionNegotiationFailed),
        (
            (_UP, _CONN, _ACC, ("Sec-WebSocket-Extensions", "permessage-deflate;")),
            ExtensionNegotiationFailed,
        ),
    ],
)
def test_client_rfc_failures_are_typed(
    fields: tuple[tuple[str, str], ...], failure: type[RejectedResponse]
) -> None:
    with pytest.raises(failure) as info:
        _rfc_client().receive(_rfc_response(*fields))
    assert isinstance(info.value, RejectedResponse)
    assert info.value.response.status == info.value.status == 101
    assert info.value.response.headers.get("Upgrade") == dict(fields).get("Upgrade")


@pytest.mark.parametrize(
    ("old", "new", "failure"),
    [
        (b"ws://example.com/demo", b"ws://example.com/other", InvalidEcho),
        (b"Origin: http://example.com", b"Origin: http://evil.com", InvalidEcho),
        (b"Protocol: sample", b"Protocol: other", UnexpectedSubprotocol),
        (b"Upgrade: WebSocket", b"Upgrade: nope", InvalidUpgrade),
    ],
)
def test_client_hixie76_failures_are_typed(
    old: bytes, new: bytes, failure: type[RejectedResponse]
) -> None:
    client, accepted = _hixie76_client()
    with pytest.raises(failure):
        client.receive(accepted.response.replace(old, new))


def test_client_hixie76_wrong_answer_is_typed() -> None:
    client, accepted = _hixie76_client()
    with pytest.raises(InvalidChallengeAnswer) as info:
        client.receive(accepted.response[:-1] + bytes([accepted.response[-1] ^ 1]))
    assert info.value.response.headers.get("Sec-WebSocket-Location") == "ws://example.com/demo"


def test_client_refusal_is_typed_with_its_response_and_body() -> None:
    with pytest.raises(UpgradeRefused) as info:
        ClientHandshake("x").receive(
            b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\n\r\nno entry"
        )
    assert not isinstance(info.value, Redirected)
    assert (info.value.status, info.value.body) == (403, b"no entry")
    assert info.value.response.headers.get("Content-Type") == "text/plain"


@pytest.mark.parametrize(
    ("status", "location"), [(301, "wss://elsewhere/chat"), (307, "/other"), (302, "")]
)
def test_client_redirect_is_typed_with_its_location(status: int, location: str) -> None:
    field = f"Location: {location}\r\n".encode() if location else b""
    with pytest.raises(Redirected) as info:
        ClientHandshake("x").receive(b"HTTP/1.1 %d Moved\r\n%s\r\n" % (status, field))
    assert (info.value.status, info.value.location) == (status, location)
    assert isinstance(info.value, UpgradeRefused)


def test_client_malformed_is_typed() -> None:
    with pytest.raises(MalformedResponse) as info:
        ClientHandshake("x").receive(b"SSH-2.0-OpenSSH\r\n\r\n")
    assert info.value.status == 0
    assert info.value.reason.startswith("malformed response: ")


# =============================================================================================
# Extensions negotiated in the core


class Offer:
    """A ClientExtension that accepts the parameters listed in ``accepts``."""

    def __init__(self, name: str, value: str, accepts: Params | None = None) -> None:
        self.name = name
        self.value = value
        self.accepts = accepts
        self.calls: list[Params] = []

    def header_value(self) -> str:
        return self.value

    def accept_response(self, params: Params) -> object:
        self.calls.append(params)
        if self.accepts is not None and params != self.accepts:
            raise ValueError(f"{params!r} does not answer {self.value!r}")
        return (self.name, tuple(params))


def _extension_response(client: ClientHandshake, extensions: str) -> bytes:
    return _rfc_response(
        _UP,
        _CONN,
        ("Sec-WebSocket-Accept", accept_key(client.key)),
        ("Sec-WebSocket-Extensions", extensions),
    )


def test_client_negotiates_permessage_deflate() -> None:
    client = ClientHandshake("x", extensions=[PerMessageDeflateClientOffer()])
    request = client.request_bytes()
    assert b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" in request
    _, accepted = server_response(request, extensions=[PerMessageDeflateOffer()])
    result = client.receive(accepted.response)
    assert result is not None
    (session,) = result[0].negotiated
    assert isinstance(session, PerMessageDeflate)
    assert result[0].extensions[0][0] == "permessage-deflate"


@pytest.mark.parametrize(
    ("response", "reason"),
    [
        ("permessage-deflate; server_max_window_bits=99", "invalid permessage-deflate response"),
        ("permessage-deflate; client_max_window_bits", "invalid permessage-deflate response"),
        ("permessage-deflate, permessage-deflate", "'permessage-deflate' twice"),
        ("x-other", "'x-other', which was not offered"),
    ],
)
def test_client_refuses_what_deflate_cannot_agree_to(response: str, reason: str) -> None:
    offer = PerMessageDeflateClientOffer(client_max_window_bits=None)
    client = ClientHandshake("x", key=b"the sample nonce", extensions=[offer])
    with pytest.raises(ExtensionNegotiationFailed, match=reason) as info:
        client.receive(_extension_response(client, response))
    assert info.value.response.headers.get("Sec-WebSocket-Extensions") == response


def test_client_extension_fallback_offers_and_order() -> None:
    strict = Offer("x-a", "x-a; strict", accepts=[("strict", None)])
    loose = Offer("x-a", "x-a", accepts=[])
    other = Offer("x-b", "x-b")
    client = ClientHandshake("x", extensions=[strict, loose, "x-raw", other])
    assert b"Sec-WebSocket-Extensions: x-a; strict, x-a, x-raw, x-b\r\n" in client.request_bytes()
    result = client.receive(_extension_response(client, "x-b; p=1, x-raw; q, x-a"))
    assert result is not None
    # In the server's order; the raw string offer is left to the caller.
    assert result[0].negotiated == [("x-b", (("p", "1"),)), ("x-a", ())]
    assert result[0].extensions[1] == ("x-raw", [("q", None)])
    assert strict.calls == [[]] and loose.calls == [[]]


def test_client_extension_offer_refusing_every_answer() -> None:
    offer = Offer("x-a", "x-a", accepts=[("p", None)])
    client = ClientHandshake("x", extensions=[offer])
    with pytest.raises(ExtensionNegotiationFailed, match="invalid x-a response: "):
        client.receive(_extension_response(client, "x-a; q"))


def test_client_hixie_has_no_extension_objects_either() -> None:
    with pytest.raises(ValueError, match="no extensions"):
        ClientHandshake("x", version=V.HIXIE_76, extensions=[PerMessageDeflateClientOffer()])
