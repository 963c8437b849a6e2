"""Tests of stargate.headers: the multi-dict, list splitting and the extension grammar."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stargate.errors import HandshakeError
from stargate.headers import (
    Headers,
    has_token,
    is_token,
    parse_extensions,
    serialize_extension,
    split_tokens,
)

# --- Headers -------------------------------------------------------------------------------


def test_headers_case_insensitive_lookup_keeps_original_case() -> None:
    headers = Headers([("Sec-WebSocket-Key", "abc"), ("host", "example.com")])
    assert headers.get("sec-websocket-key") == "abc"
    assert headers.get("HOST") == "example.com"
    assert headers.items() == [("Sec-WebSocket-Key", "abc"), ("host", "example.com")]
    assert list(headers) == ["Sec-WebSocket-Key", "host"]


def test_headers_multiple_values_in_order() -> None:
    headers = Headers()
    headers.add("Connection", "keep-alive")
    headers.add("X-Other", "1")
    headers.add("connection", "Upgrade")
    assert headers.get("Connection") == "keep-alive"
    assert headers.get_all("CONNECTION") == ["keep-alive", "Upgrade"]
    assert len(headers) == 3
    assert list(headers) == ["Connection", "X-Other", "connection"]


def test_headers_field_added_after_a_look_up_is_found() -> None:
    """Fields may be added once some were looked up (a proxy layer adding one to a parsed
    request): every later look-up sees them, in order (RFC 9110 section 5.3)."""
    headers = Headers([("Connection", "keep-alive")])
    assert headers.get("X-Forwarded-For") is None
    assert "x-forwarded-for" not in headers
    headers.add("X-Forwarded-For", "192.0.2.1")
    headers.add("connection", "Upgrade")
    assert headers.get("x-forwarded-for") == "192.0.2.1"
    assert "X-FORWARDED-FOR" in headers
    assert headers.get_all("Connection") == ["keep-alive", "Upgrade"]


def _held_by(make: Callable[[], object]) -> int:
    """Bytes still allocated after ``make()`` returned (what the object it made holds)."""
    tracemalloc.start()
    try:
        kept = make()
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del kept
    return held


def test_headers_compact_keeps_a_fraction_and_answers_the_same() -> None:
    """compact() keeps the fields of headers a connection holds after its handshake read
    them as one string: a fraction of a tuple and two strings per field, and no index (about
    a kilobyte for a browser's request); every question gets the same answer after."""
    fields = [("Host", "example.com"), ("Upgrade", "websocket"), ("Connection", "Upgrade")]
    fields += [(f"X-Field-{i}", "v" * 20) for i in range(12)]

    def looked_up(compact: bool) -> Headers:
        headers = Headers(
            [(name.encode().decode(), value.encode().decode()) for name, value in fields]
        )
        headers.get("host")  # the handshake's look-ups build the index
        if compact:
            headers.compact()
        return headers

    full, packed = _held_by(lambda: looked_up(False)), _held_by(lambda: looked_up(True))
    assert packed * 2 < full, (packed, full)

    headers = looked_up(True)
    twin = Headers(fields)
    assert headers.get("host") == "example.com" and headers.get("absent") is None
    assert headers.get_all("x-field-3") == ["v" * 20] and "UPGRADE" in headers
    assert headers.items() == fields and list(headers) == [name for name, _ in fields]
    assert len(headers) == len(fields) and headers == twin and twin == headers
    assert repr(headers) == repr(twin)
    headers.compact()  # again: nothing changes
    assert headers.items() == fields
    headers.add("connection", "keep-alive")  # unpacks, then appends
    assert headers.get_all("Connection") == ["Upgrade", "keep-alive"]
    assert headers.items() == [*fields, ("connection", "keep-alive")]
    assert len(headers) == len(fields) + 1
    empty = Headers()
    empty.compact()
    assert empty.items() == [] and len(empty) == 0 and "host" not in empty


def test_headers_missing() -> None:
    headers = Headers()
    assert headers.get("Origin") is None
    assert headers.get("Origin", "default") == "default"
    assert headers.get_all("Origin") == []
    assert "Origin" not in headers
    assert 42 not in headers
    assert len(headers) == 0


def test_headers_contains() -> None:
    headers = Headers([("Upgrade", "websocket")])
    assert "upgrade" in headers
    assert "UPGRADE" in headers


def test_headers_get_all_returns_a_copy() -> None:
    headers = Headers([("A", "1")])
    headers.get_all("a").append("2")
    headers.items().append(("B", "2"))
    assert headers.get_all("a") == ["1"]
    assert len(headers) == 1


def test_headers_equality_ignores_name_case() -> None:
    assert Headers([("Host", "x")]) == Headers([("host", "x")])
    assert Headers([("Host", "x")]) != Headers([("Host", "X")])
    assert Headers([("A", "1"), ("B", "2")]) != Headers([("B", "2"), ("A", "1")])
    assert Headers() != object()
    assert "Host" in repr(Headers([("Host", "x")]))


# --- split_tokens / has_token ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["keep-alive, Upgrade"], ["keep-alive", "Upgrade"]),
        (["Upgrade"], ["Upgrade"]),
        ([""], []),
        ([" , ,, "], []),
        (["a,b", "c"], ["a", "b", "c"]),
        (["\ta ,\tb\t"], ["a", "b"]),
        (["chat, superchat"], ["chat", "superchat"]),
        ([",x,"], ["x"]),
    ],
)
def test_split_tokens(values: list[str], expected: list[str]) -> None:
    assert split_tokens(values) == expected


@pytest.mark.parametrize(
    ("values", "token", "expected"),
    [
        (["keep-alive, Upgrade"], "upgrade", True),
        (["UPGRADE"], "upgrade", True),
        (["WebSocket"], "websocket", True),
        (["keep-alive"], "upgrade", False),
        (["upgrades"], "upgrade", False),
        ([], "upgrade", False),
        (["close", "upgrade"], "Upgrade", True),
        (["a,,b", " "], "", False),  # empty elements are ignored, never matched
    ],
)
def test_has_token(values: list[str], token: str, expected: bool) -> None:
    assert has_token(values, token) is expected


def test_is_token() -> None:
    assert is_token("permessage-deflate")
    assert is_token("x!#$%&'*+-.^_`|~9")
    assert not is_token("")
    assert not is_token("a b")
    assert not is_token('a"')
    assert not is_token("a;b")


# --- parse_extensions ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], []),
        ([""], []),
        (["foo"], [("foo", [])]),
        (
            ["permessage-deflate; client_max_window_bits"],
            [("permessage-deflate", [("client_max_window_bits", None)])],
        ),
        (
            ["permessage-deflate; server_max_window_bits=10; client_no_context_takeover"],
            [
                (
                    "permessage-deflate",
                    [("server_max_window_bits", "10"), ("client_no_context_takeover", None)],
                )
            ],
        ),
        (
            ['permessage-deflate; client_max_window_bits="10"'],
            [("permessage-deflate", [("client_max_window_bits", "10")])],
        ),
        # RFC 7230 section 3.2.6 quoted-pair: \1 unescapes to 1.
        (['x; a="1\\0"'], [("x", [("a", "10")])]),
        (
            ["a, b; c=d", "e"],
            [("a", []), ("b", [("c", "d")]), ("e", [])],
        ),
        ([" , a ;  p = v , , b "], [("a", [("p", "v")]), ("b", [])]),
        # The same name offered twice is two offers, kept in the client's order.
        (
            ["permessage-deflate; server_max_window_bits=10, permessage-deflate"],
            [
                ("permessage-deflate", [("server_max_window_bits", "10")]),
                ("permessage-deflate", []),
            ],
        ),
    ],
)
def test_parse_extensions(
    values: list[str], expected: list[tuple[str, list[tuple[str, str | None]]]]
) -> None:
    assert parse_extensions(values) == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("; a", "expected an extension name"),
        ("foo;", "expected a parameter name of 'foo'"),
        ("foo; =1", "expected a parameter name"),
        ("foo; a=", "expected a value for 'a'"),
        ('foo; a="1', "unterminated quoted-string"),
        ('foo; a="1\\', "unterminated quoted-string"),
        ('foo; a="a b"', "is not a token"),
        ('foo; a=""', "is not a token"),
        ("foo bar", "expected ',' or ';'"),
        ("foo; a=1 2", "expected ',' or ';'"),
        ("fo@o", "expected ',' or ';'"),
        ("foo; a=@", "expected a value"),
        ('"foo"', "expected an extension name"),
    ],
)
def test_parse_extensions_malformed(value: str, reason: str) -> None:
    with pytest.raises(HandshakeError) as info:
        parse_extensions([value])
    assert info.value.status == 400
    assert reason in info.value.reason
    assert "Sec-WebSocket-Extensions" in info.value.reason


def test_serialize_extension() -> None:
    assert serialize_extension("foo") == "foo"
    assert serialize_extension("foo", []) == "foo"
    assert (
        serialize_extension(
            "permessage-deflate",
            [("server_max_window_bits", "10"), ("client_no_context_takeover", None)],
        )
        == "permessage-deflate; server_max_window_bits=10; client_no_context_takeover"
    )


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("bad name", []),
        ("x", [("bad param", None)]),
        ("x", [("p", "a b")]),
        ("x", [("p", "")]),
    ],
)
def test_serialize_extension_refuses_non_tokens(
    name: str, params: list[tuple[str, str | None]]
) -> None:
    with pytest.raises(ValueError):
        serialize_extension(name, params)


_tokens = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=12)
_extension = st.tuples(_tokens, st.lists(st.tuples(_tokens, st.none() | _tokens), max_size=4))


@given(st.lists(_extension, max_size=5))
def test_serialize_then_parse_round_trips(
    extensions: list[tuple[str, list[tuple[str, str | None]]]],
) -> None:
    header = ", ".join(serialize_extension(name, params) for name, params in extensions)
    assert parse_extensions([header]) == extensions


@given(st.text(max_size=200))
def test_parse_extensions_only_raises_handshake_error(value: str) -> None:
    try:
        parse_extensions([value])
    except HandshakeError as exc:
        assert exc.status == 400


def test_repr_masks_credentials() -> None:
    headers = Headers(
        [
            ("Authorization", "Basic YWxpY2U6czNjcmV0"),
            ("cookie", "session=s3cret"),
            ("Proxy-Authorization", "Bearer s3cret"),
            ("Set-Cookie", "id=s3cret"),
            ("X-Seen", "visible"),
        ]
    )
    shown = repr(headers)
    assert "s3cret" not in shown and "YWxpY2U6czNjcmV0" not in shown
    assert "'Authorization', '***'" in shown and "'X-Seen', 'visible'" in shown
    assert headers.get("Authorization") == "Basic YWxpY2U6czNjcmV0"  # only the repr hides it
