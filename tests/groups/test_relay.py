"""Traffic between processes (stargate.groups.relay): envelopes in, events out.

The relay is fed envelope bytes as a broker would deliver them; what it hands the hub (a
group message, a message for one connection, one for everyone) is recorded.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from stargate.brokers import BrokerGap
from stargate.brokers.envelope import HEADER_SIZE, MAX_TARGET_SIZE, Kind, decode, encode
from stargate.brokers.memory import MemoryBroker
from stargate.groups.relay import MAX_ORIGINS, Gap, Relay, gap_event

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


def test_a_target_too_long_for_an_envelope_is_refused_in_the_caller() -> None:
    """A group name (or connection id) longer than an envelope can name is refused where
    ``send`` is called, as an oversized message is (bug: it passed, the envelope failed on
    the broker's loop with a logged traceback, and the message silently never left the
    process)."""
    relay = Recorded().relay()
    relay.check_size("g" * MAX_TARGET_SIZE, "fits")
    for target in ("g" * (MAX_TARGET_SIZE + 1), "\u20ac" * 342):  # 1026 bytes of UTF-8
        with pytest.raises(ValueError, match=f"exceeds the {MAX_TARGET_SIZE} bytes"):
            relay.check_size(target, "short")


def test_publish_numbers_envelopes_only_while_the_broker_runs() -> None:
    """Before the broker runs (or after it stopped) nothing is published or numbered: the
    sequence numbers receivers see have no holes for what never left."""
    broker = MemoryBroker("relay-publish")
    listener = MemoryBroker("relay-publish")
    got: list[bytes] = []
    relay = Recorded().relay(broker)
    relay.publish(Kind.GROUP, "room", "too early")
    assert relay.sequence == 0

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        listener.start(loop, lambda channel, data: got.append(data), print)
        listener.subscribe("g:room")
        broker.start(loop, print, print)
        relay.publish(Kind.GROUP, "room", "now")
        await asyncio.sleep(0.01)

    asyncio.run(scenario())
    assert relay.sequence == 1 and [decode(data).message for data in got] == ["now"]


def test_a_flood_of_bad_envelopes_is_logged_sparingly(caplog: pytest.LogCaptureFixture) -> None:
    """Every refused envelope is counted, but only the first ten are logged and then one
    in a thousand: a peer that floods the channel cannot flood the log."""
    relay = Recorded().relay()
    with caplog.at_level(logging.WARNING, logger="stargate.groups"):
        for _ in range(2000):
            relay.received("g:r", b"garbage")
    assert relay.rejected == 2000
    assert len([r for r in caplog.records if "refused" in r.getMessage()]) == 12


def test_the_publishers_remembered_are_bounded() -> None:
    """Order is kept per publisher by remembering its last sequence number, for at most
    MAX_ORIGINS publishers: the longest silent one is forgotten first (then its next
    message is taken as new), the others are still held to their order."""
    seen = Recorded()
    relay = seen.relay()
    origins = [index.to_bytes(8, "big") for index in range(1, MAX_ORIGINS + 2)]
    for origin in origins:
        relay.received("g:r", envelope(origin, 5, Kind.GROUP, "r", "x"))
    assert len(seen.events) == MAX_ORIGINS + 1
    relay.received("g:r", envelope(origins[0], 1, Kind.GROUP, "r", "forgotten: new again"))
    relay.received("g:r", envelope(origins[-1], 1, Kind.GROUP, "r", "older: dropped"))
    assert [event[2] for event in seen.events[-1:]] == ["forgotten: new again"]


def test_check_size_counts_a_names_bytes_not_a_worst_case() -> None:
    """An envelope with a 30-byte name and a 70-byte message fits a 100-byte budget (it
    used to count four bytes per character of the name and refuse it)."""
    relay = Recorded().relay(MemoryBroker(max_message_size=HEADER_SIZE + 100))
    relay.check_size("g" * 30, "x" * 70)
    with pytest.raises(ValueError, match="exceeds what the broker carries"):
        relay.check_size("g" * 30, "x" * 71)
    relay.check_size("\u20ac" * 10, "x" * 70)  # 30 bytes of UTF-8 too
    with pytest.raises(ValueError, match="exceeds what the broker carries"):
        relay.check_size("\u20ac" * 10, "x" * 71)


def test_a_target_that_is_not_utf8_is_refused_in_the_caller() -> None:
    """A group name names a broker channel: a lone surrogate (what ``json.loads`` makes of
    a client's ``"\\ud800"``) killed the Redis subscriber for good."""
    relay = Recorded().relay()
    with pytest.raises(ValueError, match="a group name or connection id is not valid Unicode"):
        relay.check_size("room\ud800", "hi")
