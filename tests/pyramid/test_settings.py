"""``stargate.*`` settings: parsing, defaults, errors that name the key."""

from __future__ import annotations

from typing import Any

import pytest
from pyramid.registry import Registry

from stargate.extensions.permessage_deflate import PerMessageDeflateOffer
from stargate.handshake import OriginPolicy
from stargate.limits import Limits
from stargate.pyramid.settings import (
    REGISTRY_KEY,
    SettingsError,
    WebSocketSettings,
    as_bool,
    as_list,
    as_seconds,
    as_size,
    get_websocket_settings,
    parse_settings,
)
from stargate.server import WebSocketOptions


def test_nothing_set_leaves_the_server_in_charge() -> None:
    assert parse_settings({}) == WebSocketSettings((), None, None)
    assert parse_settings(None) == WebSocketSettings()
    assert parse_settings({"other.key": "1"}) == WebSocketSettings()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://a.example", ("https://a.example",)),
        ("https://a.example *.b.example", ("https://a.example", "*.b.example")),
        ("\nhttps://a.example\n  c.example\n", ("https://a.example", "c.example")),
        ("a.example, b.example", ("a.example", "b.example")),
        ("a.example * b.example", ("*",)),
        ("", ()),
    ],
)
def test_allowed_origins(value: str, expected: tuple[str, ...]) -> None:
    policy = parse_settings({"stargate.allowed_origins": value}).origin_policy
    assert policy == OriginPolicy(allowed=expected)


def test_origin_switches() -> None:
    policy = parse_settings(
        {"stargate.same_origin": "false", "stargate.allow_missing_origin": "no"}
    ).origin_policy
    assert policy == OriginPolicy(allowed=(), same_origin=False, allow_missing=False)
    assert policy is not None and not policy.check(None, "h")


def test_options() -> None:
    options = parse_settings(
        {
            "stargate.max_message_size": "2MiB",
            "stargate.max_frame_size": "64k",
            "stargate.ping_interval": "5",
            "stargate.ping_timeout": "2.5",
            "stargate.close_timeout": "3",
            "stargate.max_queue": "8",
            "stargate.write_high_water": "32KiB",
            "stargate.max_send_buffer": "16MiB",
        }
    ).options
    assert options == WebSocketOptions(
        limits=Limits(max_message_size=2 * 1024**2, max_frame_size=64 * 1024),
        ping_interval=5.0,
        ping_timeout=2.5,
        close_timeout=3.0,
        max_queue=8,
        write_high_water=32 * 1024,
        max_send_buffer=16 * 1024**2,
    )


def test_one_option_keeps_the_other_defaults() -> None:
    options = parse_settings({"stargate.ping_interval": "0"}).options
    assert options == WebSocketOptions(ping_interval=None)


def test_message_size_sets_the_frame_size_and_the_send_buffer() -> None:
    options = parse_settings({"stargate.max_message_size": "8MiB"}).options
    assert options is not None
    assert options.limits.max_frame_size == 8 * 1024**2
    assert options.max_send_buffer == 16 * 1024**2  # one whole message on top


@pytest.mark.parametrize(("value", "on"), [("true", True), ("off", False)])
def test_compression(value: str, on: bool) -> None:
    options = parse_settings({"stargate.compression": value}).options
    assert options is not None
    assert options.compression == (PerMessageDeflateOffer() if on else None)
    assert parse_settings({"stargate.ping_interval": "5"}).options == WebSocketOptions(
        ping_interval=5.0
    )  # compression keeps its default (on)


def test_subprotocols() -> None:
    assert parse_settings({"stargate.subprotocols": "b.v2 a.v1"}).subprotocols == ("b.v2", "a.v1")


def test_another_prefix() -> None:
    parsed = parse_settings({"ping_interval": "off", "allowed_origins": "*"}, prefix="")
    assert parsed.options == WebSocketOptions(ping_interval=None, ping_timeout=20.0)
    assert parsed.origin_policy == OriginPolicy.any()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("max_message_size", "big"),
        ("max_message_size", "0"),
        ("max_message_size", "-5"),
        ("max_frame_size", "1.5MiB"),
        ("ping_interval", "soon"),
        ("ping_timeout", "-1"),
        ("close_timeout", "0"),
        ("close_timeout", "off"),
        ("max_queue", "0"),
        ("max_queue", "many"),
        ("max_send_buffer", "nan"),
        ("same_origin", "perhaps"),
        ("compression", "gzip"),
    ],
)
def test_bad_values_name_their_key(key: str, value: str) -> None:
    with pytest.raises(SettingsError, match=rf"stargate\.{key}"):
        parse_settings({f"stargate.{key}": value})


SIZES: list[tuple[Any, int]] = [
    ("1", 1),
    ("65536", 65536),
    ("64KiB", 65536),
    ("64k", 65536),
    ("64 KB", 65536),
]
SIZES += [("1MiB", 1024**2), ("1m", 1024**2), ("2G", 2 * 1024**3), (4096, 4096)]


@pytest.mark.parametrize(("text", "size"), SIZES)
def test_as_size(text: Any, size: int) -> None:
    assert as_size(text) == size


@pytest.mark.parametrize(
    ("text", "value"),
    [("true", True), ("Yes", True), ("on", True), ("false", False), ("0", False), (False, False)],
)
def test_as_bool(text: Any, value: bool) -> None:
    assert as_bool(text) is value


def test_as_seconds() -> None:
    assert as_seconds("1.5") == 1.5
    assert as_seconds("off", allow_off=True) is None
    assert as_seconds("0", allow_off=True) is None
    with pytest.raises(SettingsError):
        as_seconds("0")


def test_as_list() -> None:
    assert as_list(["a b", "c"]) == ("a", "b", "c")
    assert as_list("a,,b ,\n c") == ("a", "b", "c")


def test_registry_settings_are_parsed_once_on_first_use() -> None:
    registry = Registry()
    registry.settings = {"stargate.subprotocols": "x"}
    parsed = get_websocket_settings(registry)
    assert parsed.subprotocols == ("x",)
    assert registry[REGISTRY_KEY] is parsed
    registry.settings = {"stargate.subprotocols": "y"}
    assert get_websocket_settings(registry) is parsed


def test_settings_parsed_on_first_use_leave_an_unknown_key_aside() -> None:
    """Refused there, a typo would fail every upgrade of an app that did not include
    stargate.pyramid (which refuses it at startup) instead of its startup."""
    registry = Registry()
    registry.settings = {"stargate.subprotocols": "x", "stargate.max_mesage_size": "1"}
    assert get_websocket_settings(registry).subprotocols == ("x",)
    with pytest.raises(SettingsError, match=r"unknown setting stargate\.max_mesage_size"):
        parse_settings(registry.settings)


def test_registry_without_settings() -> None:
    assert get_websocket_settings(Registry()) == WebSocketSettings()
