"""stargate.handshake.server: version detection, accept (RFC 6455, hybi, hixie-76, hixie-75)
and reject_response."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stargate.errors import HandshakeError
from stargate.handshake.heads import parse_request, parse_response
from stargate.handshake.keys import hixie76_answer
from stargate.handshake.origin import OriginPolicy
from stargate.handshake.server import (
    RFC_VERSIONS,
    Accepted,
    accept,
    detect_version,
    key3_length,
    reject_response,
)
from stargate.protocol import ProtocolVersion

from .support import (
    HIXIE75_BASE,
    HIXIE76_ANSWER,
    HIXIE76_BASE,
    HIXIE76_KEY1,
    HIXIE76_KEY2,
    HIXIE76_KEY3,
    HIXIE76_REQUEST,
    HIXIE76_RESPONSE,
    MAX,
    RFC_BASE,
    RFC_KEY,
    RecordingExtension,
    V,
    changed,
    make_request,
    refusal,
)

# =============================================================================================
# detect_version and key3_length


@pytest.mark.parametrize(
    ("headers", "version"),
    [
        (RFC_BASE, V.RFC6455),
        (changed(RFC_BASE, Sec_WebSocket_Version="8"), V.HYBI_08),
        (changed(RFC_BASE, Sec_WebSocket_Version="7"), V.HYBI_07),
        (changed(RFC_BASE, Sec_WebSocket_Version=" 13 "), V.RFC6455),
        (HIXIE76_BASE, V.HIXIE_76),
        (changed(HIXIE76_BASE, Sec_WebSocket_Key2=None), V.HIXIE_76),
        (HIXIE75_BASE, V.HIXIE_75),
        ([("upgrade", "websocket")], V.HIXIE_75),
    ],
)
def test_detect_version(headers: list[tuple[str, str]], version: ProtocolVersion) -> None:
    assert detect_version(make_request(headers)) is version


@pytest.mark.parametrize(
    "value", ["14", "6", "0", "", "13, 8", "abc", "\xa013", "13\x85", "\u200913"]
)
def test_detect_version_unsupported(value: str) -> None:
    with pytest.raises(HandshakeError) as info:
        detect_version(make_request(changed(RFC_BASE, Sec_WebSocket_Version=value)))
    assert info.value.status == 426
    assert "unsupported Sec-WebSocket-Version" in info.value.reason
    assert info.value.headers == [("Sec-WebSocket-Version", "13, 8, 7")]


def test_detect_version_key_without_version() -> None:
    with pytest.raises(HandshakeError) as info:
        detect_version(make_request(changed(RFC_BASE, Sec_WebSocket_Version=None)))
    assert info.value.status == 426
    assert "without Sec-WebSocket-Version" in info.value.reason
    assert info.value.headers == [("Sec-WebSocket-Version", "13, 8, 7")]


def test_detect_version_not_an_upgrade() -> None:
    with pytest.raises(HandshakeError) as info:
        detect_version(make_request([("Host", "example.com")]))
    assert info.value.status == 426
    assert "not a WebSocket upgrade request" in info.value.reason


def test_detect_version_duplicate_version_header() -> None:
    with pytest.raises(HandshakeError) as info:
        detect_version(make_request([*RFC_BASE, ("Sec-WebSocket-Version", "13")]))
    assert info.value.status == 400
    assert "more than once" in info.value.reason


@pytest.mark.parametrize(
    ("headers", "length"),
    [
        (HIXIE76_BASE, 8),
        (changed(HIXIE76_BASE, Sec_WebSocket_Key1=None), 0),  # refused now, not after 8 bytes
        (RFC_BASE, 0),
        (HIXIE75_BASE, 0),
        ([], 0),
        ([*RFC_BASE, ("Sec-WebSocket-Key1", "x")], 0),
        (changed(RFC_BASE, Sec_WebSocket_Version="99"), 0),
    ],
)
def test_key3_length(headers: list[tuple[str, str]], length: int) -> None:
    assert key3_length(make_request(headers)) == length


# =============================================================================================
# accept: RFC 6455 and hybi


def test_accept_rfc6455_vector_exact_bytes() -> None:
    data = (
        b"GET /chat HTTP/1.1\r\n"
        b"Host: server.example.com\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Origin: http://example.com\r\n"
        b"Sec-WebSocket-Protocol: chat, superchat\r\n"
        b"Sec-WebSocket-Version: 13\r\n"
        b"\r\n"
    )
    parsed = parse_request(data, max_header_size=MAX)
    assert parsed is not None
    request, consumed = parsed
    assert consumed == len(data)
    assert key3_length(request) == 0
    accepted = accept(
        request,
        subprotocols=["chat"],
        origin_policy=OriginPolicy(allowed=("http://example.com",)),
    )
    assert accepted == Accepted(
        V.RFC6455,
        "chat",
        [],
        b"HTTP/1.1 101 Switching Protocols\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
        b"Sec-WebSocket-Protocol: chat\r\n"
        b"\r\n",
    )


def test_accept_rfc6455_minimal_and_extra_headers() -> None:
    accepted = accept(make_request(RFC_BASE), extra_headers=[("Set-Cookie", "a=b"), ("X-Y", "")])
    assert accepted.version is V.RFC6455
    assert accepted.subprotocol is None
    assert accepted.extensions == []
    assert accepted.response == (
        b"HTTP/1.1 101 Switching Protocols\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
        b"Set-Cookie: a=b\r\n"
        b"X-Y: \r\n"
        b"\r\n"
    )


@pytest.mark.parametrize(
    "extra", [("X-Bad", "a\r\nInjected: yes"), ("Bad Name", "x"), ("X", "caf\u20ac")]
)
def test_accept_refuses_extra_headers_that_would_break_the_head(extra: tuple[str, str]) -> None:
    with pytest.raises(ValueError):
        accept(make_request(RFC_BASE), extra_headers=[extra])


@pytest.mark.parametrize("version", ["7", "8"])
def test_accept_hybi_uses_sec_websocket_origin(version: str) -> None:
    headers = changed(
        RFC_BASE, Sec_WebSocket_Version=version, Sec_WebSocket_Origin="http://evil.example"
    )
    error = refusal(make_request(headers))
    assert error.status == 403
    assert "http://evil.example" in error.reason
    accepted = accept(
        make_request(changed(headers, Sec_WebSocket_Origin="http://server.example.com"))
    )
    assert accepted.version is V(version)
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in accepted.response


def test_accept_hybi_falls_back_to_origin_header() -> None:
    headers = changed(RFC_BASE, Sec_WebSocket_Version="8", Origin="http://evil.example")
    assert refusal(make_request(headers)).status == 403


@pytest.mark.parametrize(
    "changes",
    [
        {"Connection": "keep-alive, Upgrade"},  # Firefox
        {"Connection": "upgrade"},
        {"Connection": "Upgrade, keep-alive"},
        {"Upgrade": "WebSocket"},
        {"Upgrade": "WEBSOCKET"},
        {"Upgrade": "h2c, websocket"},
        {"Connection": ", ,Upgrade,"},
    ],
)
def test_accept_tokens_case_insensitive(changes: dict[str, str]) -> None:
    assert accept(make_request(changed(RFC_BASE, **changes))).version is V.RFC6455


def test_accept_lower_case_header_names() -> None:
    headers = [(name.lower(), value) for name, value in RFC_BASE]
    headers = changed(headers, upgrade="WebSocket")
    assert accept(make_request(headers)).version is V.RFC6455


def test_accept_connection_split_over_two_fields() -> None:
    headers = [*changed(RFC_BASE, Connection="keep-alive"), ("Connection", "Upgrade")]
    assert accept(make_request(headers)).version is V.RFC6455


def test_accept_absolute_form_target() -> None:
    request = make_request(RFC_BASE, target="http://server.example.com/chat?x=1")
    assert accept(request).version is V.RFC6455


# --- subprotocols -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offered", "ours", "selected"),
    [
        (["chat, superchat"], ["superchat", "chat"], "superchat"),  # server preference
        (["chat, superchat"], ["chat", "superchat"], "chat"),
        (["a", "b"], ["b"], "b"),  # two fields form one list
        (["chat"], ["other"], None),  # none match: accepted without the header
        ([], ["chat"], None),
        (["chat"], [], None),
        (["Chat"], ["chat"], None),  # case-sensitive (RFC 7936)
    ],
)
def test_accept_subprotocol_selection(
    offered: list[str], ours: list[str], selected: str | None
) -> None:
    headers = RFC_BASE + [("Sec-WebSocket-Protocol", value) for value in offered]
    accepted = accept(make_request(headers), subprotocols=ours)
    assert accepted.subprotocol == selected
    if selected is None:
        assert b"Sec-WebSocket-Protocol" not in accepted.response
    else:
        assert f"\r\nSec-WebSocket-Protocol: {selected}\r\n".encode() in accepted.response


def test_accept_extension_hook_receives_parsed_offers_in_client_order() -> None:
    deflate = RecordingExtension("permessage-deflate", accept_if=[("client_max_window_bits", None)])
    other = RecordingExtension("x-other")
    headers = [
        *RFC_BASE,
        (
            "Sec-WebSocket-Extensions",
            'permessage-deflate; server_max_window_bits="10", x-other; a=1',
        ),
        ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits, x-other"),
    ]
    accepted = accept(make_request(headers), extensions=[deflate, other])
    # The first offer of permessage-deflate is declined, the second accepted; x-other accepts
    # its first offer and is not asked again.
    assert deflate.calls == [[("server_max_window_bits", "10")], [("client_max_window_bits", None)]]
    assert other.calls == [[("a", "1")]]
    assert accepted.extensions == [
        ("x-other", [("a", "1")]),
        ("permessage-deflate", [("client_max_window_bits", None)]),
    ]
    expected = b"x-other; a=1, permessage-deflate; client_max_window_bits"
    assert b"\r\nSec-WebSocket-Extensions: " + expected + b"\r\n" in accepted.response


def test_accept_extension_not_offered_is_not_called() -> None:
    ext = RecordingExtension("permessage-deflate")
    accepted = accept(make_request(RFC_BASE), extensions=[ext])
    assert ext.calls == []
    assert accepted.extensions == []
    assert b"Sec-WebSocket-Extensions" not in accepted.response


def test_accept_extension_all_declined() -> None:
    ext = RecordingExtension("foo", accept_if=[("never", None)])
    headers = [*RFC_BASE, ("Sec-WebSocket-Extensions", "foo, foo; a")]
    accepted = accept(make_request(headers), extensions=[ext])
    assert ext.calls == [[], [("a", None)]]
    assert accepted.extensions == []
    assert b"Sec-WebSocket-Extensions" not in accepted.response


def test_accept_extension_hook_may_refuse() -> None:
    ext = RecordingExtension("foo", raise_on="bad")
    headers = [*RFC_BASE, ("Sec-WebSocket-Extensions", "foo; bad")]
    error = refusal(make_request(headers), extensions=[ext])
    assert (error.status, error.reason) == (400, "bad parameter bad")


@pytest.mark.parametrize("configured", [True, False])
def test_accept_malformed_extension_header(configured: bool) -> None:
    headers = [*RFC_BASE, ("Sec-WebSocket-Extensions", "foo; a=b c")]
    extensions = [RecordingExtension("foo")] if configured else []
    error = refusal(make_request(headers), extensions=extensions)
    assert error.status == 400
    assert "Sec-WebSocket-Extensions" in error.reason


# --- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "status", "reason"),
    [
        ({"Sec_WebSocket_Key": None}, 400, "missing Sec-WebSocket-Key"),
        ({"Sec_WebSocket_Key": "dGhlIHNhbXBsZSBub25j"}, 400, "exactly 16 bytes"),  # 15 bytes
        ({"Sec_WebSocket_Key": "c2hvcnQ="}, 400, "exactly 16 bytes"),  # 5 bytes
        ({"Sec_WebSocket_Key": "dGhlIHNhbXBsZSBub25jZSE="}, 400, "exactly 16 bytes"),  # 17
        ({"Sec_WebSocket_Key": "dGhlIHNhbXBsZSBub25jZQ"}, 400, "not base64"),  # no padding
        ({"Sec_WebSocket_Key": "dGhlIHNhbXBsZSBub25jZQ=!"}, 400, "not base64"),
        ({"Sec_WebSocket_Key": "dGhlIHNhbX BsZSBub25jZQ=="}, 400, "not base64"),
        ({"Sec_WebSocket_Key": "dGhlIHNhbXBsZSBub25jZR=="}, 400, "exactly 16 bytes"),  # bits
        ({"Sec_WebSocket_Key": "dGhlIHNhbXBsZSBub25jZ\xe9=="}, 400, "not base64"),
        ({"Sec_WebSocket_Key": ""}, 400, "exactly 16 bytes"),
        ({"Upgrade": None}, 400, "Upgrade header does not contain 'websocket'"),
        ({"Upgrade": "h2c"}, 400, "Upgrade header does not contain 'websocket'"),
        ({"Upgrade": "websockets"}, 400, "Upgrade header does not contain 'websocket'"),
        ({"Connection": None}, 400, "Connection header does not contain 'upgrade'"),
        ({"Connection": "keep-alive"}, 400, "Connection header does not contain 'upgrade'"),
        ({"Host": None}, 400, "missing Host header"),
        ({"Host": "exa mple.com"}, 400, "invalid Host header"),
        ({"Host": "example.com:99999"}, 400, "invalid Host header"),
        ({"Host": "a/b"}, 400, "invalid Host header"),
        ({"Sec_WebSocket_Version": "9"}, 426, "unsupported Sec-WebSocket-Version '9'"),
        ({"Origin": "http://evil.example"}, 403, "origin 'http://evil.example' is not allowed"),
        ({"Origin": "null"}, 403, "origin 'null' is not allowed"),
    ],
)
def test_accept_refusals(changes: dict[str, str | None], status: int, reason: str) -> None:
    error = refusal(make_request(changed(RFC_BASE, **changes)))
    assert error.status == status
    assert reason in error.reason


def test_accept_bad_version_carries_supported_versions() -> None:
    error = refusal(make_request(changed(RFC_BASE, Sec_WebSocket_Version="14")))
    assert error.status == 426
    assert error.headers == [("Sec-WebSocket-Version", "13, 8, 7")]


def test_accept_non_upgrade_request() -> None:
    error = refusal(make_request([("Host", "example.com")]))
    assert error.status == 426
    assert error.reason == "not a WebSocket upgrade request"


@pytest.mark.parametrize("method", ["POST", "HEAD", "get", "CONNECT"])
def test_accept_non_get(method: str) -> None:
    error = refusal(make_request(RFC_BASE, method=method))
    assert error.status == 405
    assert f"method {method!r} not allowed" in error.reason
    assert error.headers == [("Allow", "GET")]


@pytest.mark.parametrize("http_version", ["1.0", "0.9"])
def test_accept_http_1_0(http_version: str) -> None:
    error = refusal(make_request(RFC_BASE, http_version=http_version))
    assert error.status == 400
    assert f"HTTP/{http_version} cannot upgrade" in error.reason


def test_accept_http_2_0_is_at_least_1_1() -> None:
    assert accept(make_request(RFC_BASE, http_version="2.0")).version is V.RFC6455


def test_accept_invalid_http_version() -> None:
    error = refusal(make_request(RFC_BASE, http_version="x.y"))
    assert (error.status, error.reason) == (400, "invalid HTTP version 'x.y'")


@pytest.mark.parametrize("name", ["Host", "Sec-WebSocket-Key", "Origin"])
def test_accept_duplicate_single_fields(name: str) -> None:
    headers = [*RFC_BASE, ("Origin", "http://server.example.com")]
    value = dict(headers)[name]
    error = refusal(make_request([*headers, (name, value)]))
    assert error.status == 400
    assert error.reason == f"{name} header sent more than once"


def test_accept_invalid_target() -> None:
    error = refusal(make_request(RFC_BASE, target="*"))
    assert (error.status, error.reason) == (400, "invalid request target '*'")


def test_accept_origin_with_control_character() -> None:
    error = refusal(make_request([*RFC_BASE, ("Origin", "http://a\r\nX: y")]))
    assert (error.status, error.reason) == (400, "control character in the Origin header")


@pytest.mark.parametrize(
    ("versions", "header"),
    [
        (frozenset({V.HYBI_07}), "7"),
        (frozenset({V.RFC6455}), "13"),
        (frozenset({V.RFC6455, V.HYBI_07, V.HIXIE_75}), "13, 7"),
    ],
)
def test_accept_version_disabled(versions: frozenset[ProtocolVersion], header: str) -> None:
    error = refusal(make_request(changed(RFC_BASE, Sec_WebSocket_Version="8")), versions=versions)
    assert error.status == 426
    assert error.reason == "WebSocket protocol 8 is disabled on this server"
    assert error.headers == [("Sec-WebSocket-Version", header)]


# =============================================================================================
# accept: hixie-76


def test_hixie76_vector_exact_bytes() -> None:
    parsed = parse_request(HIXIE76_REQUEST, max_header_size=MAX)
    assert parsed is not None
    request, consumed = parsed
    assert detect_version(request) is V.HIXIE_76
    assert key3_length(request) == 8
    key3 = HIXIE76_REQUEST[consumed : consumed + key3_length(request)]
    assert key3 == HIXIE76_KEY3
    accepted = accept(request, key3=key3, subprotocols=["sample"])
    assert accepted == Accepted(V.HIXIE_76, "sample", [], HIXIE76_RESPONSE)


def test_hixie76_seed_collapsed_key1_refused() -> None:
    """The seed's copy of the vector lost a space: 4146546015 / 4 is not an integer."""
    collapsed = "4 @1 46546xW%0l 1 5"
    assert collapsed.count(" ") == 4
    request = make_request(changed(HIXIE76_BASE, Sec_WebSocket_Key1=collapsed), target="/demo")
    error = refusal(request, key3=HIXIE76_KEY3)
    assert error.status == 400
    assert "Sec-WebSocket-Key1 number 4146546015 is not a multiple of its 4 spaces" in error.reason


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"Sec_WebSocket_Key1": "4146546015"}, "Sec-WebSocket-Key1 contains no spaces"),
        ({"Sec_WebSocket_Key2": "1 2 3"}, "Sec-WebSocket-Key2 number 123 is not a multiple"),
        ({"Sec_WebSocket_Key1": "42949 67296"}, "larger than 2**32-1"),  # 2**32, 1 space
        ({"Sec_WebSocket_Key1": "9" * 5000 + " "}, "larger than 2**32-1"),
        ({"Sec_WebSocket_Key1": "abc def"}, "Sec-WebSocket-Key1 contains no digits"),
        ({"Sec_WebSocket_Key1": None}, "missing Sec-WebSocket-Key1"),
        ({"Sec_WebSocket_Key2": None}, "missing Sec-WebSocket-Key2"),
        ({"Sec_WebSocket_Key1": "\xb9\xb2 \xb3"}, "contains no digits"),  # latin-1 superscripts
    ],
)
def test_hixie76_bad_keys(changes: dict[str, str | None], reason: str) -> None:
    error = refusal(make_request(changed(HIXIE76_BASE, **changes)), key3=HIXIE76_KEY3)
    assert error.status == 400
    assert reason in error.reason


@pytest.mark.parametrize(
    ("key1", "reason"),
    [
        # 5,000 significant digits: refused on the digit count, before int() could raise.
        ("9" * 5000 + " ", "Sec-WebSocket-Key1 number has 5000 digits: larger than 2**32-1"),
        # 5,000 digits whose leading zeros hid them from the old length check (a ValueError).
        (" " + "0" * 4999 + "1" * 11, "Sec-WebSocket-Key1 number has 11 digits"),
        ("0" * 5000 + "4294967296 ", "number 4294967296 is larger than 2**32-1"),
        # 11 digits, over 2**32: refused whatever the spaces would divide it into.
        ("42949672960 " + " " * 9, "number has 11 digits: larger than 2**32-1"),
        ("1 0000000000", "number has 11 digits"),
        # 10 digits, over 2**32-1, although the quotient by its 2 spaces would fit 32 bits.
        ("4294967296  ", "number 4294967296 is larger than 2**32-1"),
        ("9999999999 x ", "number 9999999999 is larger than 2**32-1"),
    ],
    ids=[
        "5000-nines",
        "5000-digits-leading-zeros",
        "zeros-then-2**32",
        "11-digits-10-spaces",
        "11-digits-1-space",
        "2**32-2-spaces",
        "10-nines",
    ],
)
def test_hixie76_key_numbers_over_32_bits_refused(key1: str, reason: str) -> None:
    request = make_request(changed(HIXIE76_BASE, Sec_WebSocket_Key1=key1))
    error = refusal(request, key3=HIXIE76_KEY3)
    assert error.status == 400
    assert reason in error.reason
    assert "draft-hixie-76 section 4.1" in error.reason
    response = reject_response(error)
    assert response.startswith(b"HTTP/1.1 400 Bad Request\r\n")


def test_hixie76_leading_zeros_do_not_count() -> None:
    """5,000 digits that are a small number: the draft reads digits as a number, so it passes."""
    key1 = " " + "0" * 5000 + "5"  # 5 / 1 space
    request = make_request(changed(HIXIE76_BASE, Sec_WebSocket_Key1=key1))
    accepted = accept(request, key3=HIXIE76_KEY3)
    assert accepted.response.endswith(hixie76_answer(5, 259970620, HIXIE76_KEY3))


def test_hixie76_section_1_3_vector_through_parse_and_accept() -> None:
    """draft-76 section 1.3 (two spaces after ``@1``, two before ``.P00``) still passes."""
    assert HIXIE76_KEY1 == "4 @1  46546xW%0l 1 5" and HIXIE76_KEY1.count(" ") == 5
    assert HIXIE76_KEY2 == "12998 5 Y3 1  .P00" and HIXIE76_KEY2.count(" ") == 5
    accepted = accept(make_request(HIXIE76_BASE, target="/demo"), key3=b"^n:ds[4U")
    assert accepted.response.endswith(b"\r\n\r\n8jKS'y:G*Co,Wxa-")


def test_hixie76_largest_numbers_accepted() -> None:
    # 4294967295 with one space is the largest key number the draft allows.
    request = make_request(
        changed(HIXIE76_BASE, Sec_WebSocket_Key1="4294967295 x", Sec_WebSocket_Key2="0000 0")
    )
    accepted = accept(request, key3=HIXIE76_KEY3)
    assert accepted.response.endswith(hixie76_answer(4294967295, 0, HIXIE76_KEY3))


@pytest.mark.parametrize("key3", [b"", b"1234567", b"123456789"])
def test_hixie76_key3_wrong_length(key3: bytes) -> None:
    error = refusal(make_request(HIXIE76_BASE), key3=key3)
    assert error.status == 400
    assert f"key3 must be 8 bytes, got {len(key3)}" in error.reason


def test_hixie76_duplicate_key_refused() -> None:
    error = refusal(make_request([*HIXIE76_BASE, ("Sec-WebSocket-Key1", HIXIE76_KEY1)]))
    assert (error.status, error.reason) == (400, "Sec-WebSocket-Key1 header sent more than once")


@pytest.mark.parametrize(
    "versions", [RFC_VERSIONS, frozenset({V.RFC6455}), frozenset({V.HIXIE_75, V.RFC6455})]
)
def test_hixie76_disabled(versions: frozenset[ProtocolVersion]) -> None:
    error = refusal(make_request(HIXIE76_BASE), key3=HIXIE76_KEY3, versions=versions)
    assert error.status == 426
    assert error.reason == "WebSocket protocol hixie-76 is disabled on this server"
    assert error.headers[0][0] == "Sec-WebSocket-Version"


def test_hixie76_secure_location_query_and_no_origin() -> None:
    request = make_request(
        changed(HIXIE76_BASE, Origin=None, Host="example.com:8443"), target="/demo?a=1&b=2"
    )
    accepted = accept(request, key3=HIXIE76_KEY3, secure=True, subprotocols=["other"])
    assert accepted.subprotocol is None
    assert accepted.response == (
        b"HTTP/1.1 101 WebSocket Protocol Handshake\r\n"
        b"Upgrade: WebSocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Location: wss://example.com:8443/demo?a=1&b=2\r\n"
        b"\r\n" + HIXIE76_ANSWER
    )


def test_hixie76_cross_origin_refused() -> None:
    request = make_request(changed(HIXIE76_BASE, Origin="http://evil.example"))
    error = refusal(request, key3=HIXIE76_KEY3)
    assert (error.status, error.reason) == (403, "origin 'http://evil.example' is not allowed")


@pytest.mark.parametrize(
    ("changes", "status", "reason"),
    [
        ({"Upgrade": "foo"}, 400, "Upgrade header does not contain 'websocket'"),
        ({"Connection": "close"}, 400, "Connection header does not contain 'upgrade'"),
        ({"Host": None}, 400, "missing Host header"),
    ],
)
def test_hixie76_header_checks(changes: dict[str, str | None], status: int, reason: str) -> None:
    error = refusal(make_request(changed(HIXIE76_BASE, **changes)), key3=HIXIE76_KEY3)
    assert error.status == status
    assert reason in error.reason


# =============================================================================================
# accept: hixie-75


def test_hixie75_exact_bytes() -> None:
    data = (
        b"GET /demo HTTP/1.1\r\n"
        b"Upgrade: WebSocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Host: example.com\r\n"
        b"Origin: http://example.com\r\n"
        b"WebSocket-Protocol: sample\r\n"
        b"\r\n"
    )
    parsed = parse_request(data, max_header_size=MAX)
    assert parsed is not None
    request, _ = parsed
    assert detect_version(request) is V.HIXIE_75
    assert key3_length(request) == 0
    accepted = accept(request, subprotocols=["sample"])
    assert accepted == Accepted(
        V.HIXIE_75,
        "sample",
        [],
        b"HTTP/1.1 101 Web Socket Protocol Handshake\r\n"
        b"Upgrade: WebSocket\r\n"
        b"Connection: Upgrade\r\n"
        b"WebSocket-Origin: http://example.com\r\n"
        b"WebSocket-Location: ws://example.com/demo\r\n"
        b"WebSocket-Protocol: sample\r\n"
        b"\r\n",
    )


def test_hixie75_secure_query_and_unknown_subprotocol() -> None:
    headers = [
        *changed(HIXIE75_BASE, Origin="https://example.com"),
        ("WebSocket-Protocol", "unknown"),
    ]
    accepted = accept(make_request(headers, target="/demo?x=1"), secure=True)
    assert accepted.subprotocol is None
    assert accepted.response == (
        b"HTTP/1.1 101 Web Socket Protocol Handshake\r\n"
        b"Upgrade: WebSocket\r\n"
        b"Connection: Upgrade\r\n"
        b"WebSocket-Origin: https://example.com\r\n"
        b"WebSocket-Location: wss://example.com/demo?x=1\r\n"
        b"\r\n"
    )


def test_hixie75_extra_headers() -> None:
    accepted = accept(make_request(HIXIE75_BASE), extra_headers=[("X-A", "1")])
    assert accepted.response.endswith(
        b"WebSocket-Location: ws://example.com/chat\r\nX-A: 1\r\n\r\n"
    )


def test_hixie75_disabled_and_refusals() -> None:
    error = refusal(make_request(HIXIE75_BASE), versions=RFC_VERSIONS)
    assert (error.status, error.headers) == (426, [("Sec-WebSocket-Version", "13, 8, 7")])
    assert "hixie-75 is disabled" in error.reason
    error = refusal(make_request(changed(HIXIE75_BASE, Connection=None)))
    assert error.status == 400
    assert "Connection" in error.reason
    error = refusal(make_request(HIXIE75_BASE, method="POST"))
    assert error.status == 405


# =============================================================================================
# reject_response


def test_reject_response_exact_bytes() -> None:
    assert reject_response(HandshakeError(400, "missing Sec-WebSocket-Key header")) == (
        b"HTTP/1.1 400 Bad Request\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: 33\r\n"
        b"Connection: close\r\n"
        b"\r\n"
        b"missing Sec-WebSocket-Key header\n"
    )


def test_reject_response_426_has_upgrade() -> None:
    error = HandshakeError(426, "unsupported", [("Sec-WebSocket-Version", "13, 8, 7")])
    assert reject_response(error) == (
        b"HTTP/1.1 426 Upgrade Required\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: 12\r\n"
        b"Connection: Upgrade, close\r\n"
        b"Upgrade: websocket\r\n"
        b"Sec-WebSocket-Version: 13, 8, 7\r\n"
        b"\r\n"
        b"unsupported\n"
    )


def test_reject_response_405_allow_and_utf8_length() -> None:
    response = reject_response(HandshakeError(405, "caf\u00e9", [("Allow", "GET")]))
    assert response.startswith(b"HTTP/1.1 405 Method Not Allowed\r\n")
    assert b"\r\nContent-Length: 6\r\n" in response
    assert b"\r\nAllow: GET\r\n" in response
    assert response.endswith(b"\r\n\r\ncaf\xc3\xa9\n")


def test_reject_response_merges_connection_and_drops_own_fields() -> None:
    error = HandshakeError(
        403,
        "no",
        [("Connection", "keep-alive, close"), ("Content-Length", "99"), ("X-A", "b")],
    )
    response = reject_response(error)
    assert b"\r\nConnection: keep-alive, close\r\n" in response
    assert response.count(b"Content-Length") == 1
    assert b"\r\nX-A: b\r\n" in response


def test_reject_response_unknown_status() -> None:
    assert reject_response(HandshakeError(599, "x")).startswith(b"HTTP/1.1 599 Error\r\n")


def test_reject_response_parses_back() -> None:
    data = reject_response(HandshakeError(431, "too big"))
    parsed = parse_response(data, max_header_size=MAX)
    assert parsed is not None
    response, consumed = parsed
    assert data[consumed:] == b"too big\n"
    assert (response.status, response.reason) == (431, "Request Header Fields Too Large")
    assert response.headers.get("Content-Length") == "8"


# =============================================================================================
# accept never raises anything but HandshakeError for a parsed request

_names = st.sampled_from(
    [
        "Host",
        "Upgrade",
        "Connection",
        "Origin",
        "Sec-WebSocket-Origin",
        "Sec-WebSocket-Key",
        "Sec-WebSocket-Version",
        "Sec-WebSocket-Key1",
        "Sec-WebSocket-Key2",
        "Sec-WebSocket-Protocol",
        "Sec-WebSocket-Extensions",
        "WebSocket-Protocol",
    ]
)
_values = st.sampled_from(
    [
        "websocket",
        "WebSocket",
        "Upgrade",
        "13",
        "8",
        "7",
        RFC_KEY,
        HIXIE76_KEY1,
        "example.com",
        "http://example.com",
        "chat",
        "foo; a=1",
        "",
    ]
) | st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=30)


@given(
    st.lists(st.tuples(_names, _values), max_size=12),
    st.sampled_from(["GET", "POST"]),
    st.sampled_from(["/", "/a?b", "*", "http://x/y"]),
    st.binary(max_size=10),
)
@settings(max_examples=500, deadline=None)  # a loaded machine is slow, not wrong
def test_accept_only_raises_handshake_error(
    headers: list[tuple[str, str]], method: str, target: str, key3: bytes
) -> None:
    request = make_request(headers, method=method, target=target)
    try:
        accepted = accept(
            request,
            key3=key3,
            subprotocols=["chat"],
            extensions=[RecordingExtension("foo")],
        )
    except HandshakeError as exc:
        assert exc.reason
        assert reject_response(exc).startswith(f"HTTP/1.1 {exc.status} ".encode())
    else:
        assert accepted.response.startswith(b"HTTP/1.1 101 ")


@pytest.mark.parametrize(
    ("changes", "kwargs", "reason"),
    [
        ({}, {"authority": "a b"}, "invalid authority 'a b' for the origin check"),
        ({}, {"origin_policy": OriginPolicy(allow_missing=False)}, "without an Origin header"),
        ({"Origin": " "}, {}, "an empty Origin header is not an origin"),
        ({"Origin": "http://evil.example"}, {}, "origin 'http://evil.example' is not allowed"),
    ],
)
def test_accept_origin_refusals_say_why(
    changes: dict[str, str], kwargs: dict[str, object], reason: str
) -> None:
    error = refusal(make_request(changed(RFC_BASE, **changes)), **kwargs)
    assert reason in error.reason
    assert error.status == (400 if "authority" in kwargs else 403)


def test_detect_version_strips_only_ows() -> None:
    request = make_request(changed(RFC_BASE, Sec_WebSocket_Version=" \t13\t "))
    assert detect_version(request) is V.RFC6455
