"""connect's keywords in one place (stargate.client.params): ConnectParams, checked when made,
and the signature keywords_of gives the openers."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable

import pytest

import stargate
from stargate.client.params import (
    CREDENTIAL_HEADERS,
    DEFAULT_COMPRESSION,
    USER_AGENT,
    ConnectParams,
    keywords_of,
)
from stargate.client.urls import parse_url
from stargate.client.websocket import ClientOptions
from stargate.limits import Limits
from stargate.protocol import ProtocolVersion


@pytest.mark.parametrize(
    ("opener", "returns", "doc"),
    [
        (stargate.connect, "Connect", "Open a WebSocket connection"),
        (stargate.sync_connect, "SyncClientWebSocket", "Open a blocking WebSocket connection"),
    ],
)
def test_openers_take_exactly_the_fields_as_keywords(
    opener: Callable[..., object], returns: str, doc: str
) -> None:
    fields = [f.name for f in dataclasses.fields(ConnectParams) if f.init]
    parameters = list(inspect.signature(opener).parameters.values())
    assert parameters[0].name == "url"
    assert parameters[0].kind is inspect.Parameter.POSITIONAL_ONLY
    assert [p.name for p in parameters[1:]] == fields
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in parameters[1:])
    assert inspect.signature(opener).return_annotation == returns
    assert doc in (opener.__doc__ or "")


@pytest.mark.parametrize("opener", [stargate.connect, stargate.sync_connect])
def test_a_wrong_keyword_fails_at_the_call(opener: Callable[..., object]) -> None:
    """Before any connection attempt (no server listens at ws://h/)."""
    with pytest.raises(TypeError, match="subprotocol"):
        opener("ws://h/", subprotocol=["chat"])
    with pytest.raises(ValueError, match="max_queue"):
        opener("ws://h/", max_queue=0)


def test_keywords_of_any_opener() -> None:
    @keywords_of(ConnectParams)
    def opener(url: str, params: ConnectParams) -> tuple[str, ConnectParams]:
        """An opener."""
        return url, params

    url, params = opener("ws://h/", origin="http://h", follow_redirects=2)
    assert (url, params.origin, params.follow_redirects) == ("ws://h/", "http://h", 2)
    assert opener.__doc__ == "An opener."
    assert opener.__name__ == "opener"


def test_defaults_are_the_connection_options_defaults() -> None:
    params = ConnectParams()
    assert params.options == ClientOptions(compression=DEFAULT_COMPRESSION)
    assert params.options.limits == Limits()
    assert params.user_agent == USER_AGENT
    assert params.headers == ()


def test_options_carry_every_connection_setting() -> None:
    limits = Limits(max_message_size=10)
    params = ConnectParams(
        limits=limits,
        compression=None,
        open_timeout=None,
        close_timeout=1.5,
        ping_interval=None,
        ping_timeout=3.0,
        max_queue=4,
        write_high_water=5,
    )
    assert params.options == ClientOptions(
        limits=limits,
        compression=None,
        open_timeout=None,
        close_timeout=1.5,
        ping_interval=None,
        ping_timeout=3.0,
        max_queue=4,
        write_high_water=5,
    )


@pytest.mark.parametrize(
    ("keywords", "error", "match"),
    [
        ({"subprotocols": "chat"}, TypeError, "not a string"),
        ({"version": ProtocolVersion.HIXIE_76, "subprotocols": ["a", "b"]}, ValueError, "one"),
        ({"follow_redirects": -1}, ValueError, "follow_redirects"),
        ({"close_timeout": 0}, ValueError, "close_timeout"),
    ],
)
def test_checked_when_made(keywords: dict[str, object], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        ConnectParams(**keywords)  # type: ignore[arg-type]


def test_hixie_has_no_compression() -> None:
    params = ConnectParams(version=ProtocolVersion.HIXIE_76)
    assert params.compression is DEFAULT_COMPRESSION  # what was asked
    assert params.options.compression is None  # what is offered
    handshake = params.handshake(parse_url("ws://h/"))
    assert b"Extensions" not in handshake.request_bytes()


def test_headers_from_pairs_or_a_mapping() -> None:
    pairs = (("X-A", "1"), ("X-A", "2"))
    assert ConnectParams(extra_headers=pairs).headers == pairs
    assert ConnectParams(extra_headers={"X-B": "3"}).headers == (("X-B", "3"),)


def test_the_handshake_of_an_attempt() -> None:
    params = ConnectParams(extra_headers={"X-A": "1"}, subprotocols=["chat"], origin="http://o")
    request = params.handshake(parse_url("wss://h:8443/p?q")).request_bytes()
    assert request.startswith(b"GET /p?q HTTP/1.1\r\nHost: h:8443\r\n")
    for line in (
        b"X-A: 1",
        b"User-Agent: " + USER_AGENT.encode(),
        b"Sec-WebSocket-Protocol: chat",
        b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
        b"Origin: http://o",
    ):
        assert b"\r\n" + line + b"\r\n" in request
    own = ConnectParams(extra_headers={"user-agent": "mine"}, user_agent="ignored")
    assert b"ignored" not in own.handshake(parse_url("ws://h/")).request_bytes()


def test_url_credentials_become_an_authorization() -> None:
    url = parse_url("ws://alice:s%3Acret@h/")
    params = ConnectParams(extra_headers={"Cookie": "c=1"}).with_url_credentials(url)
    assert params.headers == (("Cookie", "c=1"), ("Authorization", "Basic YWxpY2U6czpjcmV0"))
    given = ConnectParams(extra_headers={"authorization": "Bearer t"})
    assert given.with_url_credentials(url) is given  # an explicit one wins
    plain = ConnectParams()
    assert plain.with_url_credentials(parse_url("ws://h/")) is plain


def test_for_another_origin() -> None:
    headers = [("Authorization", "a"), ("COOKIE", "b"), ("Proxy-Authorization", "c"), ("X", "d")]
    params = ConnectParams(
        extra_headers=headers, origin="http://o", server_hostname="first.example"
    ).for_another_origin()
    assert params.server_hostname is None
    assert params.headers == (("X", "d"),)
    assert params.origin == "http://o"  # not a secret
    assert {"authorization", "cookie", "proxy-authorization"} == CREDENTIAL_HEADERS


def test_repr_has_no_header_values() -> None:
    params = ConnectParams(extra_headers={"Authorization": "Bearer s3cret"})
    assert "s3cret" not in repr(params)
