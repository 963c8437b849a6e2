"""The in-memory broker, and hubs that share one (stargate.brokers.memory): two hubs on one
named bus behave like two processes, so the hub's cross-process rules are checked here
without Redis: local delivery first, one publish, own messages ignored, a channel subscribed
only while the group has local members, order per publisher, gaps told to the application."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio
from websockets.asyncio.client import ClientConnection, connect

from stargate.brokers import BrokerGap, make_broker
from stargate.brokers.envelope import Kind, encode
from stargate.brokers.memory import MemoryBroker, MemoryBus
from stargate.groups import Gap, Group, Hub
from stargate.server import ENVIRON_KEY, Server, ServerConfig, WebSocket
from stargate.server.wsgi import StartResponse

TIMEOUT = 5.0
_buses = itertools.count()


async def eventually(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


# -- the broker alone ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_broker_with_a_bus_of_its_own_publishes_nothing() -> None:
    """The embedded default: its own hub drops what it published, so a group send costs no
    round trip through the loop (it cost a callback and a decode per send, for nothing);
    the size limit still holds, and a broker given its bus later still hears it."""
    loop = asyncio.get_running_loop()
    alone = MemoryBroker(max_message_size=64)
    got: list[tuple[str, bytes]] = []
    alone.start(loop, lambda channel, data: got.append((channel, data)), lambda gap: None)
    alone.subscribe("x")
    alone.publish("x", b"to nobody")
    await asyncio.sleep(0.01)
    assert got == []
    with pytest.raises(ValueError):
        alone.publish("x", bytes(65))
    other = MemoryBroker(alone.bus)
    heard: list[tuple[str, bytes]] = []
    other.start(loop, lambda channel, data: heard.append((channel, data)), lambda gap: None)
    other.subscribe("x")
    alone.publish("x", b"to the other one")
    await eventually(lambda: bool(heard))
    assert heard == [("x", b"to the other one")] and got == []
    await other.close()
    await alone.close()


@pytest.mark.asyncio
async def test_memory_broker_moves_bytes_between_brokers_of_one_bus() -> None:
    loop = asyncio.get_running_loop()
    bus = MemoryBus()
    a, b, c = MemoryBroker(bus), MemoryBroker(bus), MemoryBroker(bus)
    got: dict[str, list[tuple[str, bytes]]] = {"a": [], "b": [], "c": []}

    def collect(name: str) -> Callable[[str, bytes], None]:
        return lambda channel, data: got[name].append((channel, data))

    for name, broker in (("a", a), ("b", b), ("c", c)):
        broker.start(loop, collect(name), lambda gap: None)
    a.subscribe("x")
    b.subscribe("x")
    c.subscribe("y")
    assert a.is_subscribed("x") and not a.is_subscribed("y")
    for i in range(100):
        c.publish("x", b"%d" % i)
    c.publish("y", b"\x00\xff")
    await eventually(lambda: len(got["a"]) == 100)
    expected = [("x", b"%d" % i) for i in range(100)]
    assert got["a"] == got["b"] == expected  # every subscriber, in publish order
    assert got["c"] == []  # a publisher never hears its own: its hub would drop it
    b.unsubscribe("x")
    c.publish("x", b"after")
    await eventually(lambda: len(got["a"]) == 101)
    await asyncio.sleep(0.01)
    assert len(got["b"]) == 100 and not b.is_subscribed("x")
    for broker in (a, b, c):
        await broker.close()
    assert not a.running and not bus._subscribers


@pytest.mark.asyncio
async def test_memory_broker_bounds_message_size_and_buses_are_apart() -> None:
    loop = asyncio.get_running_loop()
    small = MemoryBroker(max_message_size=10)
    small.start(loop, lambda ch, d: None, lambda gap: None)
    small.publish("x", b"0123456789")
    with pytest.raises(ValueError, match="max_message_size"):
        small.publish("x", b"0123456789a")
    named = f"bus-{next(_buses)}"
    one, two, apart = MemoryBroker(named), MemoryBroker(named), MemoryBroker()
    assert one.bus is two.bus and apart.bus is not one.bus
    assert isinstance(make_broker(f"memory://{named}"), MemoryBroker)
    assert make_broker(f"memory://{named}").bus is one.bus  # type: ignore[attr-defined]
    assert isinstance(make_broker(None), MemoryBroker)
    assert not make_broker("memory://").spans_processes
    with pytest.raises(ValueError, match="unknown scheme"):
        make_broker("amqp://localhost/")
    with pytest.raises(ValueError, match="scheme://"):
        make_broker("localhost:6379")


@pytest.mark.asyncio
async def test_memory_broker_delivers_on_the_subscriber_loop() -> None:
    """Hubs on two loops (two threads) share a bus: delivery happens on the receiver's."""
    bus = MemoryBus()
    receiver = MemoryBroker(bus)
    got: list[tuple[bytes, bool]] = []
    loop = asyncio.get_running_loop()

    def on_message(channel: str, data: bytes) -> None:
        got.append((data, asyncio.get_running_loop() is loop))

    receiver.start(loop, on_message, lambda gap: None)
    receiver.subscribe("x")

    def other_thread() -> None:
        async def publish() -> None:
            sender = MemoryBroker(bus)
            sender.start(asyncio.get_running_loop(), lambda ch, d: None, lambda gap: None)
            sender.publish("x", b"from afar")

        asyncio.run(publish())

    await asyncio.to_thread(other_thread)
    await eventually(lambda: bool(got))
    assert got == [(b"from afar", True)]


@pytest.mark.asyncio
async def test_a_publish_from_a_plain_thread_reaches_the_subscriber() -> None:
    """A WSGI view runs in a thread without an event loop: its publish is handed to the
    subscriber's loop, thread-safely."""
    bus = MemoryBus()
    receiver, sender = MemoryBroker(bus), MemoryBroker(bus)
    got: list[bytes] = []
    receiver.start(asyncio.get_running_loop(), lambda ch, data: got.append(data), print)
    receiver.subscribe("x")
    await asyncio.to_thread(sender.publish, "x", b"from a view")
    await eventually(lambda: got == [b"from a view"])


@pytest.mark.asyncio
async def test_a_subscriber_whose_loop_ended_costs_the_publisher_nothing() -> None:
    """A subscriber left on a bus after its loop ended (a test's server gone, never
    closed) and one not started yet get nothing, and the publisher does not fail;
    unsubscribing twice is harmless."""
    bus = MemoryBus()
    publisher, stale, unstarted = MemoryBroker(bus), MemoryBroker(bus), MemoryBroker(bus)
    got: list[bytes] = []

    async def subscribe_then_end() -> None:
        stale.start(asyncio.get_running_loop(), lambda ch, data: got.append(data), print)
        stale.subscribe("x")

    await asyncio.to_thread(asyncio.run, subscribe_then_end())
    assert stale.loop is not None and stale.loop.is_closed()
    unstarted.subscribe("x")
    publisher.publish("x", b"to nobody alive")
    await asyncio.to_thread(publisher.publish, "x", b"from a thread")
    await asyncio.sleep(0.05)
    assert got == []
    unstarted.unsubscribe("x")
    unstarted.unsubscribe("x")
    assert not unstarted.is_subscribed("x")


# -- hubs on one bus: two "processes" ------------------------------------------------------------


class Node:
    """One hub with its server: stands for one process."""

    def __init__(self, bus: str) -> None:
        self.hub = Hub(MemoryBroker(bus))
        self.gaps: list[Gap] = []
        self.hub.on_gap(self.gaps.append)
        self.server = Server(self.app, ServerConfig(port=0))
        self.ws: list[WebSocket] = []

    async def member(self, ws: WebSocket) -> None:
        self.ws.append(ws)
        name = ws.path.strip("/")
        if name == "solo":
            self.hub.register(ws)
            await ws.send(self.hub.connection_id(ws))
            async for _ in ws:
                pass
            return
        group = self.hub.group(name)
        group.add(ws)
        await group.wait_subscribed(TIMEOUT)
        await ws.send("joined")
        async for message in ws:
            group.send(message)  # relay what a member says to the group

    def app(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        upgrade = environ.get(ENVIRON_KEY)
        assert upgrade is not None
        upgrade.accept(self.member)
        return []

    async def join(self, group: str) -> ClientConnection:
        client = await connect(f"ws://127.0.0.1:{self.server.port}/{group}")
        assert await asyncio.wait_for(client.recv(), TIMEOUT) in ("joined",) or group == "solo"
        return client


@pytest_asyncio.fixture
async def nodes() -> AsyncIterator[tuple[Node, Node]]:
    bus = f"test-{next(_buses)}"
    a, b = Node(bus), Node(bus)
    for node in (a, b):
        await node.server.start()
        await node.hub.start()
    yield a, b
    for node in (a, b):
        await node.server.shutdown(timeout=2.0)
        await node.hub.close()


async def recv_all(client: ClientConnection, count: int) -> list[str | bytes]:
    return [await asyncio.wait_for(client.recv(), TIMEOUT) for _ in range(count)]


@pytest.mark.asyncio
async def test_a_group_spans_hubs_in_order_and_own_messages_are_ignored(
    nodes: tuple[Node, Node],
) -> None:
    a, b = nodes
    a1, a2, b1 = await a.join("room"), await a.join("room"), await b.join("room")
    messages = [f"m{i}" for i in range(200)] + [b"\x00binary\xff"]
    for message in messages:
        a.hub.send("room", message)  # from the test: a "WSGI view" of process a
    for client in (a1, a2, b1):
        assert await recv_all(client, len(messages)) == messages
    await a1.send("from a member")  # relayed by the handler on a's loop
    for client in (a1, a2, b1):
        assert await recv_all(client, 1) == ["from a member"]
    Group("room", hub=b.hub).send("from b")
    for client in (a1, a2, b1):
        assert await recv_all(client, 1) == ["from b"]  # once: nothing came back twice
    for client in (a1, a2, b1):
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(client.recv(), 0.1)
    assert a.hub.rejected == b.hub.rejected == 0
    for client in (a1, a2, b1):
        await client.close()


@pytest.mark.asyncio
async def test_subscribed_only_while_local_members_exist(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    assert not a.hub.is_subscribed("news") and not b.hub.is_subscribed("news")
    b.hub.send("news", "nobody listens")  # published, no process subscribed
    client = await a.join("news")
    assert a.hub.is_subscribed("news") and not b.hub.is_subscribed("news")
    assert a.hub.groups() == {"news": 1} and b.hub.groups() == {}
    b.hub.send("news", "for a")
    assert await recv_all(client, 1) == ["for a"]
    second = await a.join("news")
    await client.close()
    await eventually(lambda: len(Group("news", hub=a.hub)) == 1)
    assert a.hub.is_subscribed("news")  # one member left
    await second.close()
    await eventually(lambda: not a.hub.is_subscribed("news"))
    assert a.hub.groups() == {}  # an empty group leaves no state behind
    assert "p:" + a.hub.id not in a.hub.broker._channels  # type: ignore[attr-defined]


@pytest.mark.asyncio
async def test_send_to_one_connection_and_to_everyone_across_hubs(
    nodes: tuple[Node, Node],
) -> None:
    a, b = nodes
    solo = await connect(f"ws://127.0.0.1:{b.server.port}/solo")
    solo_id = await asyncio.wait_for(solo.recv(), TIMEOUT)
    assert isinstance(solo_id, str) and solo_id.startswith(b.hub.id + ".")
    await eventually(lambda: b.hub.connections == 1)
    member = await a.join("room")
    a.hub.send_to(solo_id, "just you")  # from another process
    assert await recv_all(solo, 1) == ["just you"]
    b.hub.send_to(solo_id, b"local by id")
    b.hub.send_to(b.ws[0].id, "local by number")
    b.hub.send_to(b.ws[0], "local by object")
    assert await recv_all(solo, 3) == [b"local by id", "local by number", "local by object"]
    a.hub.send_to(f"{b.hub.id}.999999", "nobody")  # unknown ids are ignored
    a.hub.send_to("garbage", "nobody")
    a.hub.send_all("everyone")
    assert await recv_all(solo, 1) == ["everyone"]
    assert await recv_all(member, 1) == ["everyone"]
    await solo.close()
    await member.close()


@pytest.mark.asyncio
async def test_refused_and_stale_envelopes_are_not_delivered(nodes: tuple[Node, Node]) -> None:
    a, _ = nodes
    client = await a.join("room")
    bus = a.hub.broker.bus  # type: ignore[attr-defined]
    stranger = bytes(8)
    bus._publish("g:room", b"not an envelope")
    bus._publish("g:room", encode(stranger, 5, Kind.GROUP, "room", "five"))
    bus._publish("g:room", encode(stranger, 5, Kind.GROUP, "room", "five again"))
    bus._publish("g:room", encode(stranger, 4, Kind.GROUP, "room", "four, late"))
    bus._publish("g:room", encode(stranger, 6, Kind.GROUP, "other", "wrong channel"))
    bus._publish("g:room", encode(stranger, 7, Kind.GROUP, "room", "seven"))
    assert await recv_all(client, 2) == ["five", "seven"]
    assert a.hub.rejected == 1
    await client.close()


@pytest.mark.asyncio
async def test_gaps_reach_the_application(nodes: tuple[Node, Node]) -> None:
    a, _ = nodes
    a.hub._broker_gap(BrokerGap("subscriber reconnected", frozenset({"g:room", "g:job:1"})))
    a.hub._broker_gap(BrokerGap("publish failed", frozenset({"g:x", "all"}), dropped=3))
    a.hub._broker_gap(BrokerGap("publish queue full", None, dropped=10))
    assert a.gaps == [
        Gap("subscriber reconnected", frozenset({"room", "job:1"}), 0, False),
        Gap("publish failed", frozenset({"x"}), 3, True),
        Gap("publish queue full", None, 10, True),
    ]
    assert a.hub.gaps == 3 and a.hub.last_gap == a.gaps[-1]


@pytest.mark.asyncio
async def test_a_message_too_large_for_the_broker_is_refused_in_the_caller() -> None:
    hub = Hub(MemoryBroker(max_message_size=1000))
    with pytest.raises(ValueError, match="exceeds what the broker carries"):
        hub.send("room", b"x" * 1000)
    with pytest.raises(ValueError, match="exceeds what the broker carries"):
        Group("room", hub=hub).send("é" * 500)
    hub.send("room", "x" * 900)
    Group(hub=hub).send(b"x" * 10_000)  # an anonymous group never crosses the broker
