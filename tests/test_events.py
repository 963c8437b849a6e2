"""Tests of stargate.events: what a Connection reports, and the shape the hot path relies on."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from stargate.events import (
    BinaryMessage,
    CloseReceived,
    ConnectionLost,
    Event,
    Message,
    Ping,
    Pong,
    ProtocolViolation,
    TextMessage,
)
from stargate.protocol import CloseCode

EVENT_TYPES = (
    TextMessage,
    BinaryMessage,
    Ping,
    Pong,
    CloseReceived,
    ProtocolViolation,
    ConnectionLost,
)


def describe(event: Event) -> str:
    """What an I/O layer does with each event, written as a user's ``match`` statement."""
    match event:
        case TextMessage(text):
            return f"text {text!r}"
        case BinaryMessage(data):
            return f"binary {data!r}"
        case Ping(payload):
            return f"ping {payload!r}"
        case Pong(payload):
            return f"pong {payload!r}"
        case CloseReceived(code, reason):
            return f"close {code} {reason!r}"
        case ProtocolViolation(code, reason):
            return f"violation {code} {reason!r}"
        case ConnectionLost(code, reason):
            return f"lost {code} {reason!r}"
    raise AssertionError(event)


EXAMPLES: list[tuple[Event, str]] = [
    (TextMessage("\u20ac"), "text '\u20ac'"),
    (BinaryMessage(b"\x00\xff"), "binary b'\\x00\\xff'"),
    (Ping(b"p"), "ping b'p'"),
    (Pong(b"p"), "pong b'p'"),
    (CloseReceived(1000, "bye"), "close 1000 'bye'"),
    (ProtocolViolation(1002, "reserved opcode 0x3"), "violation 1002 'reserved opcode 0x3'"),
    (ConnectionLost(), "lost 1006 ''"),
]
IDS = [type(event).__name__ for event, _ in EXAMPLES]


@pytest.mark.parametrize(("event", "description"), EXAMPLES, ids=IDS)
def test_events_match_positionally(event: Event, description: str) -> None:
    """Fields in the order events are built with and matched by (``CloseReceived(code,
    reason)``): the order is part of the public API."""
    assert describe(event) == description


def test_connection_lost_is_1006() -> None:
    """RFC 6455 section 7.1.5: a connection closed without a close frame received has the
    close code 1006, which is never sent on the wire."""
    lost = ConnectionLost()
    assert (lost.code, lost.reason) == (CloseCode.ABNORMAL_CLOSURE, "")


def test_events_compare_by_type_and_value() -> None:
    """A ping and a pong with one payload are different events, as are a text and a binary
    message of the same bytes: tests and I/O layers tell them apart by type."""
    pairs: list[tuple[Event, Event]] = [
        (Ping(b"x"), Pong(b"x")),
        (TextMessage("x"), BinaryMessage(b"x")),
        (CloseReceived(1000, ""), ProtocolViolation(1000, "")),
    ]
    for one, other in pairs:
        assert one != other
    assert Ping(b"x") == Ping(b"x")
    assert ConnectionLost() == ConnectionLost(1006, "")


def test_event_union_covers_every_event_type() -> None:
    """``Event`` names every type a Connection returns, ``Message`` the two that carry data:
    a ``match`` over them is exhaustive for mypy."""
    assert typing.get_args(Event) == EVENT_TYPES
    assert tuple(type(event) for event, _ in EXAMPLES) == EVENT_TYPES
    assert typing.get_args(Message) == (TextMessage, BinaryMessage)
    for cls in EVENT_TYPES:
        assert dataclasses.is_dataclass(cls)


@pytest.mark.parametrize("event", [event for event, _ in EXAMPLES], ids=IDS)
def test_events_are_slotted(event: Event) -> None:
    """One event per message on the hot path: slots, no per-instance ``__dict__`` (and a
    misspelt attribute is an error rather than a silent new field)."""
    assert not hasattr(event, "__dict__")
    with pytest.raises(AttributeError):
        event.misspelt = 1  # type: ignore[union-attr]


@pytest.mark.parametrize("cls", [TextMessage, BinaryMessage])
def test_message_events_can_be_made_without_their_init(cls: type[Message]) -> None:
    """stargate._speedups makes message events without calling the class (a third of a
    small message's cost): it allocates an instance and sets its slot ``data``.  It checks
    at import that the class has that slot and no ``__post_init__``, but a second field
    would be left unset: the class must keep exactly one field, made by ``__init__`` alone."""
    assert [f.name for f in dataclasses.fields(cls)] == ["data"]
    assert cls.__slots__ == ("data",)
    assert not hasattr(cls, "__post_init__")
    value: str | bytes = "x" if cls is TextMessage else b"x"
    event = object.__new__(cls)
    vars(cls)["data"].__set__(event, value)  # the slot's descriptor, as the C code does
    assert event == cls(value)  # type: ignore[arg-type]
    assert repr(event) == repr(cls(value))  # type: ignore[arg-type]
