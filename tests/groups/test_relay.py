"""Traffic between processes (stargate.groups.relay): envelopes in, events out.

The relay is fed envelope bytes as a broker would deliver them; what it hands the hub (a
group message, a message for one connection, one for everyone) is recorded.
"""

from __future__ import annotations

import pytest

from stargate.brokers import BrokerGap
from stargate.brokers.envelope import HEADER_SIZE, Kind, encode
from stargate.brokers.memory import MemoryBroker
from stargate.groups.relay import Gap, Relay, gap_event

US = b"\x01" * 8
THEM = b"\x02" * 8
OTHER = b"\x03" * 8


class Recorded:
    def __init__(self) -> None:
        self.events: list[tuple[str, object, object]] = []

    def relay(self, broker: MemoryBroker | None = None) -> Relay:
        return Relay(
            US,
            broker or MemoryBroker(),
            on_group=lambda name, message: self.events.append(("group", name, message)),
            on_connection=lambda local, message: self.events.append(("one", local, message)),
            on_everyone=lambda message: self.events.append(("all", None, message)),
        )


def envelope(origin: bytes, sequence: int, kind: Kind, target: str, message: str | bytes) -> bytes:
    return encode(origin, sequence, kind, target, message)


def test_a_group_message_reaches_its_group() -> None:
    seen = Recorded()
    relay = seen.relay()
    relay.received("g:room", envelope(THEM, 1, Kind.GROUP, "room", "hi"))
    relay.received("g:room", envelope(THEM, 2, Kind.GROUP, "room", b"\x00\xff"))
    assert seen.events == [("group", "room", "hi"), ("group", "room", b"\x00\xff")]


def test_our_own_messages_coming_back_are_ignored() -> None:
    seen = Recorded()
    seen.relay().received("g:room", envelope(US, 1, Kind.GROUP, "room", "echo"))
    assert seen.events == []


def test_order_per_publisher_drops_older_and_duplicates() -> None:
    seen = Recorded()
    relay = seen.relay()
    for origin, sequence in ((THEM, 5), (THEM, 5), (THEM, 4), (OTHER, 1), (THEM, 6)):
        relay.received("g:r", envelope(origin, sequence, Kind.GROUP, "r", f"{sequence}"))
    assert [event[2] for event in seen.events] == ["5", "1", "6"]


def test_a_group_message_on_another_groups_channel_is_dropped() -> None:
    seen = Recorded()
    seen.relay().received("g:public", envelope(THEM, 1, Kind.GROUP, "secret", "x"))
    assert seen.events == []


def test_one_connection_only_of_this_hub() -> None:
    seen = Recorded()
    relay = seen.relay()
    relay.received("p:x", envelope(THEM, 1, Kind.CONNECTION, f"{US.hex()}.7", "for 7"))
    relay.received("p:x", envelope(THEM, 2, Kind.CONNECTION, f"{OTHER.hex()}.7", "not ours"))
    relay.received("p:x", envelope(THEM, 3, Kind.CONNECTION, f"{US.hex()}.seven", "bad id"))
    relay.received("all", envelope(THEM, 4, Kind.EVERYONE, "", "everyone"))
    assert seen.events == [("one", 7, "for 7"), ("all", None, "everyone")]


def test_malformed_envelopes_are_counted_not_delivered() -> None:
    seen = Recorded()
    relay = seen.relay()
    relay.received("g:r", b"garbage")
    relay.received("g:r", b"SG\x09" + bytes(HEADER_SIZE))  # unknown version
    assert seen.events == [] and relay.rejected == 2


def test_renew_starts_numbering_over() -> None:
    seen = Recorded()
    relay = seen.relay()
    relay.received("g:r", envelope(THEM, 9, Kind.GROUP, "r", "a"))
    relay.renew(OTHER)
    assert relay.sequence == 0 and relay.origin == OTHER
    relay.received("g:r", envelope(THEM, 1, Kind.GROUP, "r", "b"))  # seen anew
    relay.received("g:r", envelope(US, 1, Kind.GROUP, "r", "c"))  # not ours any more
    assert [event[2] for event in seen.events] == ["a", "b", "c"]


def test_check_size_refuses_what_the_broker_cannot_carry() -> None:
    relay = Recorded().relay(MemoryBroker(max_message_size=HEADER_SIZE + 100))
    relay.check_size("g", "x" * 90)
    with pytest.raises(ValueError, match="exceeds what the broker carries"):
        relay.check_size("g", "x" * 200)
    with pytest.raises(ValueError):
        relay.check_size("g", "\u20ac" * 40)  # 120 bytes of UTF-8


def test_gap_events_name_groups_and_direct_traffic() -> None:
    assert gap_event(BrokerGap("reconnected", None)) == Gap("reconnected", None, 0, True)
    gap = gap_event(BrokerGap("dropped", frozenset({"g:a", "g:b", "all"}), dropped=3))
    assert gap == Gap("dropped", frozenset({"a", "b"}), 3, True)
    assert gap_event(BrokerGap("x", frozenset({"g:a"}))).direct is False
