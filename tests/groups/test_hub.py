"""The per-process hub (stargate.groups.hub): its broker's lifetime, gaps told to the
application, membership across loops and threads, sends to one connection, and what a
forked child inherits.  Connections are real ones, through a server on a real socket."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from websockets.asyncio.client import connect

from stargate.brokers import BrokerGap
from stargate.brokers.memory import MemoryBroker
from stargate.groups import Gap, Group, Hub
from stargate.server import ENVIRON_KEY, Server, SyncWebSocket, WebSocket
from stargate.server.wsgi import StartResponse
from stargate.testing import run_app

TIMEOUT = 5.0
StartServer = Callable[..., Awaitable[Server]]


async def eventually(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def upgrade_app(handler: Any) -> Any:
    """Every upgrade goes to ``handler``."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        upgrade = environ.get(ENVIRON_KEY)
        assert upgrade is not None
        upgrade.accept(handler)
        return []

    return app


class GapBroker(MemoryBroker):
    """An in-process broker that can be told to report a gap, as a Redis broker does after
    a reconnect."""

    def report(self, gap: BrokerGap) -> None:
        assert self._on_gap is not None, "not started"
        self._on_gap(gap)


# -- the broker's lifetime -------------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_broker_is_replaced_only_while_it_is_stopped() -> None:
    """``use_broker`` on a running hub would orphan the old broker's subscriptions: refused
    until ``close``; after it, the new broker serves the next ``start``."""
    hub = Hub()
    await hub.start()
    assert hub.broker_connected and hub.broker.loop is asyncio.get_running_loop()
    with pytest.raises(RuntimeError, match="close\\(\\) the hub first"):
        hub.use_broker("memory://")
    await hub.close()
    assert not hub.broker_connected
    replacement = MemoryBroker()
    hub.use_broker(replacement)
    await hub.start()
    assert hub.broker is replacement and replacement.running
    await hub.close()


def test_a_running_broker_is_not_restarted_on_another_loop() -> None:
    """A broker serves the loop it was started on: ``start`` from another loop while it
    runs is refused (its callbacks would run on the wrong thread)."""
    hub = Hub()
    with run_app(upgrade_app(None)) as server:  # a loop running in another thread
        asyncio.run_coroutine_threadsafe(hub.start(), server.loop).result(TIMEOUT)
        assert hub.broker.loop is server.loop

        async def elsewhere() -> None:
            with pytest.raises(RuntimeError, match="runs on another event loop"):
                await hub.start()

        asyncio.run(elsewhere())
        asyncio.run_coroutine_threadsafe(hub.close(), server.loop).result(TIMEOUT)


# -- gaps --------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_gaps_reach_every_callback_even_past_a_failing_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A broker's gap is counted, logged, kept as ``last_gap`` and told to every callback
    as groups (not channels); a callback that raises is logged and does not stop the
    others; a removed callback hears nothing more (removing an unknown one is harmless)."""
    broker = GapBroker()
    hub = Hub(broker)
    heard: list[Gap] = []

    def failing(gap: Gap) -> None:
        raise RuntimeError("the app's callback is broken")

    hub.on_gap(failing)
    hub.on_gap(heard.append)
    await hub.start()
    with caplog.at_level(logging.WARNING, logger="stargate.groups"):
        broker.report(BrokerGap("subscriber reconnected", frozenset({"g:room", "p:x"}), 2))
    expected = Gap("subscriber reconnected", frozenset({"room"}), 2, direct=True)
    assert heard == [expected] and hub.last_gap == expected and hub.gaps == 1
    messages = [record.getMessage() for record in caplog.records]
    assert any("may have been lost" in message for message in messages)
    assert any("gap callback failed" in message for message in messages)

    hub.remove_gap_callback(heard.append)
    hub.remove_gap_callback(heard.append)  # not there any more: nothing happens
    broker.report(BrokerGap("backlog dropped", None))
    assert len(heard) == 1 and hub.gaps == 2
    assert hub.last_gap == Gap("backlog dropped", None, 0, direct=True)
    await hub.close()


@pytest.mark.asyncio
async def test_a_thread_that_registers_then_sends_to_itself_reaches_itself(
    start_server: StartServer,
) -> None:
    """A ``def`` handler registers its connection (or joins a group), then sends to its
    id and to everyone: its registration waits in the loop's mailbox, and the sends used
    to look it up in the thread, missing it: both messages were lost."""
    hub = Hub()

    def handler(ws: SyncWebSocket) -> None:
        cid = hub.register(ws)
        hub.send_to(cid, "to me")
        hub.send_all("to all")
        Group("j", hub=hub).add(ws)
        hub.send_to(hub.connection_id(ws), "after a join")
        ws.receive()  # until the client closes

    await hub.start()
    server = await start_server(upgrade_app(handler))
    try:
        async with connect(f"ws://127.0.0.1:{server.port}/") as client:
            got = [await asyncio.wait_for(client.recv(), TIMEOUT) for _ in range(3)]
        assert got == ["to me", "to all", "after a join"]
    finally:
        await hub.close()


# -- membership --------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_adding_a_member_twice_keeps_one_membership(start_server: StartServer) -> None:
    """``add`` twice (a handler and a view both adding) is one member: one copy of each
    message; registering a member again changes nothing either."""
    hub = Hub()
    group = hub.group("twice")

    async def member(ws: WebSocket) -> None:
        group.add(ws)
        group.add(ws)
        hub.register(ws)
        await ws.send("joined")

    server = await start_server(upgrade_app(member))
    async with connect(f"ws://127.0.0.1:{server.port}/", open_timeout=TIMEOUT) as client:
        assert await asyncio.wait_for(client.recv(), TIMEOUT) == "joined"
        await eventually(lambda: len(group) == 1 and hub.connections == 1)
        group.send("once")
        group.send("twice?")
        assert await asyncio.wait_for(client.recv(), TIMEOUT) == "once"
        assert await asyncio.wait_for(client.recv(), TIMEOUT) == "twice?"
        assert (len(group), hub.connections) == (1, 1)
    await eventually(lambda: len(group) == 0 and hub.connections == 0)


@pytest.mark.asyncio
async def test_a_named_group_serves_one_event_loop(start_server: StartServer) -> None:
    """Connections of a second server on another loop cannot join a group that has members
    on the first: the add raises ValueError in that handler, the group keeps its own."""
    hub = Hub()
    group = hub.group("one-loop")
    refused: list[str] = []

    async def member(ws: WebSocket) -> None:
        group.add(ws)

    async def outsider(ws: WebSocket) -> None:
        try:
            group.add(ws)
        except ValueError as exc:
            refused.append(str(exc))
        await ws.send("tried")

    server = await start_server(upgrade_app(member))
    async with connect(f"ws://127.0.0.1:{server.port}/", open_timeout=TIMEOUT) as client:
        await eventually(lambda: len(group) == 1)
        with run_app(upgrade_app(outsider)) as other:
            async with connect(other.url("/"), open_timeout=TIMEOUT) as stranger:
                assert await asyncio.wait_for(stranger.recv(), TIMEOUT) == "tried"
        assert refused == ["a group serves the connections of one event loop"]
        assert len(group) == 1
        group.send("members only")
        assert await asyncio.wait_for(client.recv(), TIMEOUT) == "members only"


@pytest.mark.asyncio
async def test_a_group_outlives_the_loop_of_a_stopped_server(start_server: StartServer) -> None:
    """A module-level group whose members' loop is gone (a stopped server) serves the next
    server's connections: a join posted to that loop and never run, or a ``def`` handler
    that joins after its server stopped, used to leave the group bound to the dead loop
    (``ValueError`` for every member of the next server)."""
    import threading

    class Stranded:  # a connection of a loop that closes before the join runs there
        loop = asyncio.new_event_loop()

    hub = Hub()
    group = hub.group("restarted")
    hub.join(hub.lookup("restarted") or "restarted", Stranded())  # type: ignore[arg-type]
    Stranded.loop.close()
    go, joined = threading.Event(), threading.Event()

    def late(ws: SyncWebSocket) -> None:
        go.wait(TIMEOUT)  # the server stops meanwhile
        group.add(ws)
        joined.set()

    with run_app(upgrade_app(late), shutdown_timeout=0.2) as first:
        async with connect(first.url("/"), open_timeout=TIMEOUT):
            await asyncio.sleep(0.1)
    go.set()
    assert await asyncio.to_thread(joined.wait, TIMEOUT)

    async def member(ws: WebSocket) -> None:
        group.add(ws)
        await ws.send("joined")
        await ws.wait_closed()

    server = await start_server(upgrade_app(member))
    async with connect(f"ws://127.0.0.1:{server.port}/", open_timeout=TIMEOUT) as client:
        assert await asyncio.wait_for(client.recv(), TIMEOUT) == "joined"
        await eventually(lambda: len(group) == 1)
        group.send("to the new server's members")
        assert await asyncio.wait_for(client.recv(), TIMEOUT) == "to the new server's members"


@pytest.mark.asyncio
async def test_subscription_follows_the_first_and_last_member(start_server: StartServer) -> None:
    """The hub subscribes to a group's channel with its first local member and drops it
    with the last; waiting for a group nobody here belongs to times out with False; an
    anonymous group is local, so always "subscribed"."""
    hub = Hub()
    group = hub.group("followed")
    assert not await group.wait_subscribed(timeout=0.05)

    async def member(ws: WebSocket) -> None:
        group.add(ws)

    server = await start_server(upgrade_app(member))
    async with connect(f"ws://127.0.0.1:{server.port}/", open_timeout=TIMEOUT):
        assert await group.wait_subscribed(timeout=TIMEOUT)
        assert group.is_subscribed() and hub.is_subscribed("followed")
    await eventually(lambda: not hub.is_subscribed("followed"))
    anonymous = Group(hub=hub)
    assert anonymous.is_subscribed() and await anonymous.wait_subscribed(timeout=0)


@pytest.mark.asyncio
async def test_members_leave_quietly_once_the_broker_is_closed(start_server: StartServer) -> None:
    """After ``hub.close()`` (a worker stopping) members may still leave: local groups keep
    working and nothing is (un)subscribed on the stopped broker."""
    hub = Hub()
    group = hub.group("closing")

    async def member(ws: WebSocket) -> None:
        group.add(ws)

    server = await start_server(upgrade_app(member))
    async with connect(f"ws://127.0.0.1:{server.port}/", open_timeout=TIMEOUT) as client:
        await eventually(lambda: len(group) == 1)
        await hub.close()
        group.send("still local")
        assert await asyncio.wait_for(client.recv(), TIMEOUT) == "still local"
    await eventually(lambda: len(group) == 0 and hub.connections == 0)
    assert not hub.is_subscribed("closing")


# -- sending to one connection -----------------------------------------------------------------


@pytest.mark.asyncio
async def test_send_to_ignores_ids_that_name_no_connection(start_server: StartServer) -> None:
    """``send_to`` with an id of this hub that names nobody (a number never given, or not a
    number at all) reaches nobody and raises nothing: ids come from clients and queues."""
    hub = Hub()
    ids: list[str] = []

    async def handler(ws: WebSocket) -> None:
        ids.append(hub.register(ws))
        async for message in ws:
            await ws.send(message)

    server = await start_server(upgrade_app(handler))
    async with connect(f"ws://127.0.0.1:{server.port}/", open_timeout=TIMEOUT) as client:
        await eventually(lambda: bool(ids))
        for nobody in (f"{hub.id}.not-a-number", f"{hub.id}.987654", 987654):
            hub.send_to(nobody, "lost")
        hub.send_to(ids[0], "found")
        assert await asyncio.wait_for(client.recv(), TIMEOUT) == "found"
        await client.send("echo")
        assert await asyncio.wait_for(client.recv(), TIMEOUT) == "echo"  # nothing else came


class RecordingBroker(MemoryBroker):
    """The in-process broker, keeping what the hub publishes."""

    def __init__(self) -> None:
        super().__init__()
        self.published: list[str] = []

    def publish(self, channel: str, data: bytes) -> None:
        self.published.append(channel)
        super().publish(channel, data)


@pytest.mark.asyncio
async def test_a_burst_to_an_anonymous_group_stays_in_the_process(
    start_server: StartServer,
) -> None:
    """Sends from a thread to an anonymous (process-local) group arrive in order, and none
    goes to the running broker (a send to everyone does)."""
    broker = RecordingBroker()
    hub = Hub(broker)
    group = Group(hub=hub)

    async def member(ws: WebSocket) -> None:
        group.add(ws)
        hub.register(ws)  # starts the broker: send_all has somewhere to go

    server = await start_server(upgrade_app(member))
    async with connect(f"ws://127.0.0.1:{server.port}/", open_timeout=TIMEOUT) as client:
        await eventually(lambda: len(group) == 1 and broker.running)

        def burst() -> None:
            for i in range(50):
                group.send(f"m{i}")

        await asyncio.to_thread(burst)
        for i in range(50):
            assert await asyncio.wait_for(client.recv(), TIMEOUT) == f"m{i}"
        assert broker.published == []
        hub.send_all("to everyone")
        assert await asyncio.wait_for(client.recv(), TIMEOUT) == "to everyone"
        assert broker.published == ["all"]  # the channel of messages to everyone


# -- fork --------------------------------------------------------------------------------------

FORK_SCRIPT = """
import asyncio, json, logging, os, time
from websockets.sync.client import connect
from stargate.brokers.memory import MemoryBroker
from stargate.groups import Group, Hub
from stargate.testing import run_app

logging.basicConfig(level=logging.WARNING, format="%(name)s %(message)s")


class Broken(Hub):
    def after_fork(self):
        raise RuntimeError("cannot reset")


by_url, given, broken = Hub("memory://"), Hub(MemoryBroker()), Broken()
room, anonymous = Group("room", hub=by_url), Group(hub=by_url)

async def member(ws):
    room.add(ws)
    anonymous.add(ws)
    await ws.send("joined")


def app(environ, start_response):
    environ["stargate.websocket"].accept(member)
    return []


with run_app(app) as server, connect(server.url("/")) as client:
    assert client.recv(5) == "joined"
    asyncio.run_coroutine_threadsafe(given.start(), server.loop).result(5)
    deadline = time.monotonic() + 5
    while len(room) != 1 or len(anonymous) != 1 or not by_url.broker.running:
        assert time.monotonic() < deadline, "the member never joined"
        time.sleep(0.01)
    before = {"url": by_url.id, "given": given.id, "url_broker": id(by_url.broker)}
    pid = os.fork()
    if pid == 0:
        after = {
            "url": by_url.id,
            "given": given.id,
            "url_broker_new": id(by_url.broker) != before["url_broker"],
            "url_broker_loop": by_url.broker.loop,
            "given_broker_loop_kept": given.broker.loop is not None,
            "groups": by_url.groups(),
            "members": [len(room), len(anonymous)],
        }
        print(json.dumps({"before": before, "after": after}), flush=True)
        os._exit(0)
    os.waitpid(pid, 0)
"""


def test_a_forked_child_gets_new_hub_identities_and_fresh_brokers() -> None:
    """After a fork (a pre-fork server's workers) every hub has a new id, so siblings do not
    drop each other's messages as echoes, and none of the parent's members (its
    connections are not the child's); a broker made from a URL is remade in the child; a
    broker object cannot be, which is logged with what to do; a hub whose reset fails is
    logged and does not fail the child."""
    run = subprocess.run(
        [sys.executable, "-c", FORK_SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    assert run.returncode == 0, run.stderr
    said = json.loads(run.stdout)
    before, after = said["before"], said["after"]
    assert after["url"] != before["url"] and after["given"] != before["given"]
    assert after["url_broker_new"] and after["url_broker_loop"] is None
    assert after["given_broker_loop_kept"]
    assert after["groups"] == {} and after["members"] == [0, 0]
    assert "its broker was started before this process forked" in run.stderr
    assert "give this process its own with configure()" in run.stderr
    assert "resetting after fork failed" in run.stderr and "cannot reset" in run.stderr


def test_a_group_name_too_long_for_other_processes_is_refused_at_send() -> None:
    """A name over what an envelope can carry (1024 bytes) is refused where ``send`` is
    called, like an oversized message, rather than lost on the way to other processes
    with a traceback in the log; an anonymous group's messages never leave, so any
    message to it is fine."""
    hub = Hub()
    with pytest.raises(ValueError, match="an envelope can name"):
        hub.group("n" * 1100).send("hello")
    with pytest.raises(ValueError, match="an envelope can name"):
        hub.send_to(f"{'f' * 1100}.1", "hello")
    Group(hub=hub).send("fine: it stays in this process")


def test_a_group_name_that_is_not_utf8_is_refused_where_it_is_used() -> None:
    """Joining or sending to ``"\\ud800"`` (a client's JSON can name one) raises in the
    caller; it used to reach the Redis subscriber, which died of it for good."""
    hub = Hub()
    with pytest.raises(ValueError, match="a group name is not valid Unicode"):
        hub._named("room\ud800")
    with pytest.raises(ValueError, match="not valid Unicode"):
        hub.send("room\ud800", "hi")
    assert hub.groups() == {}
