"""One options type for both roles (stargate.options): the shared fields are declared once,
with one set of defaults and checks; each role keeps only its own extras."""

from __future__ import annotations

import dataclasses

import pytest

from stargate.client import ClientOptions
from stargate.endpoint import EndpointOptions as EndpointOptionsFromEndpoint
from stargate.extensions.permessage_deflate import (
    PerMessageDeflateClientOffer,
    PerMessageDeflateOffer,
)
from stargate.limits import Limits
from stargate.options import EndpointOptions
from stargate.server import WebSocketOptions

SHARED = [
    "limits",
    "compression",
    "ping_interval",
    "ping_timeout",
    "close_timeout",
    "max_queue",
    "write_high_water",
]


def names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def test_both_roles_are_the_shared_type() -> None:
    assert issubclass(WebSocketOptions, EndpointOptions)
    assert issubclass(ClientOptions, EndpointOptions)
    assert EndpointOptionsFromEndpoint is EndpointOptions  # the name it had is kept
    assert names(EndpointOptions) == SHARED


def test_each_role_adds_only_its_own_fields() -> None:
    # The server's order is the one it always had (positional construction still works).
    assert names(WebSocketOptions) == [*SHARED, "max_send_buffer"]
    assert names(ClientOptions) == [*SHARED, "open_timeout"]
    with pytest.raises(TypeError, match="open_timeout"):
        WebSocketOptions(open_timeout=1.0)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="max_send_buffer"):
        ClientOptions(max_send_buffer=1)  # type: ignore[call-arg]


def test_the_shared_defaults_are_the_same_for_both_roles() -> None:
    server, client = WebSocketOptions(), ClientOptions()
    base: EndpointOptions[object] = EndpointOptions()
    for name in SHARED:
        if name != "compression":
            assert getattr(server, name) == getattr(client, name) == getattr(base, name), name
    assert server.limits == Limits()
    assert (server.ping_interval, server.ping_timeout, server.close_timeout) == (20.0, 20.0, 10.0)
    assert (server.max_queue, server.write_high_water) == (32, 64 * 1024)


def test_each_role_offers_compression_as_its_side_of_the_handshake() -> None:
    assert WebSocketOptions().compression == PerMessageDeflateOffer()
    assert ClientOptions().compression == PerMessageDeflateClientOffer()
    assert EndpointOptions().compression is None
    assert WebSocketOptions(compression=None).compression is None


@pytest.mark.parametrize("role", [WebSocketOptions, ClientOptions])
def test_the_checks_are_the_same_for_both_roles(role: type[EndpointOptions[object]]) -> None:
    with pytest.raises(ValueError, match="max_queue must be at least 1"):
        role(max_queue=0)
    with pytest.raises(ValueError, match="close_timeout must be positive"):
        role(close_timeout=0)
    assert role(max_queue=1, close_timeout=0.5).max_queue == 1


def test_frozen_and_compared_by_value() -> None:
    assert WebSocketOptions(max_queue=3) == WebSocketOptions(max_queue=3)
    assert WebSocketOptions(max_queue=3) != WebSocketOptions(max_queue=4)
    # Same shared values, different roles: not equal (a server's options are no client's).
    server: object = WebSocketOptions(compression=None)
    assert server != ClientOptions(compression=None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        WebSocketOptions().max_queue = 1  # type: ignore[misc]
    assert dataclasses.replace(ClientOptions(), open_timeout=None).open_timeout is None
