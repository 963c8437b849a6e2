"""The Redis broker (stargate.brokers.redis) against a real redis-server that the tests start
on a free port: in process, then two Stargate processes whose group spans both, with Redis
killed and restarted under them.

redis-server comes from Debian's ``redis-server`` package.  Without it these tests are
skipped, except under CI (``CI`` set), where a missing redis-server is a failure.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from websockets.asyncio.client import ClientConnection, connect

from stargate.brokers import BrokerGap, make_broker
from stargate.brokers.testing import RedisServer

TIMEOUT = 10.0
APP_DIR = Path(__file__).parent


async def eventually(predicate: Callable[[], object], timeout: float = TIMEOUT) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


# -- the broker in process ----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_redis_broker_publishes_and_subscribes_binary_safe(
    redis_server: RedisServer,
) -> None:
    from stargate.brokers.redis import RedisBroker

    loop = asyncio.get_running_loop()
    got: list[tuple[str, bytes]] = []
    other_app: list[tuple[str, bytes]] = []
    sub = make_broker(redis_server.url)
    pub = make_broker(redis_server.url)
    foreign = RedisBroker(redis_server.url + "?prefix=other:")
    assert isinstance(sub, RedisBroker) and sub.spans_processes
    assert foreign.channel_prefix == "other:" and "prefix" not in foreign.url
    sub.start(loop, lambda ch, d: got.append((ch, d)), lambda gap: None)
    pub.start(loop, lambda ch, d: None, lambda gap: None)
    foreign.start(loop, lambda ch, d: other_app.append((ch, d)), lambda gap: None)
    try:
        sub.subscribe("g:room")
        foreign.subscribe("g:room")
        await eventually(lambda: sub.is_subscribed("g:room") and foreign.is_subscribed("g:room"))
        payloads = [bytes(range(256)), b"", b"\r\n$3\r\n*1\r\n"] + [b"%d" % i for i in range(300)]
        for data in payloads:
            pub.publish("g:room", data)
        pub.publish("g:elsewhere", b"not subscribed")
        await eventually(lambda: len(got) == len(payloads))
        assert got == [("g:room", data) for data in payloads]  # all, in order, byte for byte
        assert other_app == []  # another prefix is another app
        with pytest.raises(ValueError, match="max_message_size"):
            pub.publish("g:room", b"x" * (pub.max_message_size + 1))
        sub.unsubscribe("g:room")
        await eventually(lambda: not sub.is_subscribed("g:room"))
        pub.publish("g:room", b"after unsubscribe")
        sub.subscribe("g:marker")
        await eventually(lambda: sub.is_subscribed("g:marker"))
        pub.publish("g:marker", b"marker")
        await eventually(lambda: got[-1] == ("g:marker", b"marker"))
        assert ("g:room", b"after unsubscribe") not in got
    finally:
        for broker in (sub, pub, foreign):
            await broker.close()


@pytest.mark.asyncio
async def test_redis_broker_reconnects_and_reports_gaps(redis_server: RedisServer) -> None:
    from stargate.brokers.redis import RedisBroker

    loop = asyncio.get_running_loop()
    got: list[bytes] = []
    gaps: list[BrokerGap] = []
    sub = RedisBroker(redis_server.url, reconnect_max_delay=0.5)
    pub = RedisBroker(redis_server.url, reconnect_max_delay=0.5)
    sub.start(loop, lambda ch, d: got.append(d), gaps.append)
    pub.start(loop, lambda ch, d: None, gaps.append)
    try:
        sub.subscribe("g:x")
        await eventually(lambda: sub.is_subscribed("g:x"))
        pub.publish("g:x", b"before")
        await eventually(lambda: got == [b"before"])
        redis_server.kill()
        await eventually(lambda: not sub.subscriber_connected)
        assert not sub.is_subscribed("g:x")
        pub.publish("g:x", b"lost 1")  # fails in the publisher: dropped and counted
        await eventually(lambda: not pub.publisher_connected)
        pub.publish("g:x", b"lost 2")  # dropped at once while Redis is away
        redis_server.start()
        await eventually(lambda: sub.is_subscribed("g:x") and pub.publisher_connected)
        await eventually(lambda: len(gaps) == 2)
        reasons = {gap.reason: gap for gap in gaps}
        assert reasons["subscriber reconnected"].channels == frozenset({"g:x"})
        dropped = reasons["publish failed while redis was unreachable"]
        assert dropped.dropped == 2 and dropped.channels == frozenset({"g:x"})
        pub.publish("g:x", b"after")
        await eventually(lambda: got[-1:] == [b"after"])
        assert got == [b"before", b"after"]  # at most once: the outage's messages are gone
    finally:
        await sub.close()
        await pub.close()


@pytest.mark.asyncio
async def test_a_frozen_redis_is_noticed_by_its_silence_and_the_gap_told(
    redis_server: RedisServer,
) -> None:
    """SIGSTOP leaves Redis's sockets open and silent, as a frozen host or a cut network does:
    only the subscriber's unanswered PING can tell that nothing will come."""
    from stargate.brokers.redis import RedisBroker

    loop = asyncio.get_running_loop()
    got: list[bytes] = []
    gaps: list[BrokerGap] = []
    url = redis_server.url + "?ping_interval=0.2&ping_timeout=0.3"
    sub = RedisBroker(url, reconnect_max_delay=0.5, command_timeout=1.0)
    assert (sub.ping_interval, sub.ping_timeout) == (0.2, 0.3)
    assert "ping" not in sub.url  # ours, not passed to redis-py
    sub.start(loop, lambda ch, d: got.append(d), gaps.append)
    process = redis_server.process
    assert process is not None
    try:
        sub.subscribe("g:x")
        await eventually(lambda: sub.is_subscribed("g:x"))
        await asyncio.sleep(0.6)  # quiet, but Redis answers: the connection is kept
        assert sub.subscriber_connected and gaps == []
        process.send_signal(signal.SIGSTOP)
        await eventually(lambda: not sub.subscriber_connected)
        process.send_signal(signal.SIGCONT)
        await eventually(lambda: sub.is_subscribed("g:x") and len(gaps) == 1)
        assert gaps[0].reason == "subscriber reconnected"
        assert gaps[0].channels == frozenset({"g:x"})
        pub = RedisBroker(redis_server.url)
        pub.start(loop, lambda ch, d: None, gaps.append)
        try:
            pub.publish("g:x", b"after")
            await eventually(lambda: got == [b"after"])
        finally:
            await pub.close()
    finally:
        process.send_signal(signal.SIGCONT)
        await sub.close()


def test_ping_settings_in_the_url_are_checked() -> None:
    from stargate.brokers import BrokerConfigError
    from stargate.brokers.redis import RedisBroker

    assert RedisBroker("redis://h/0").ping_interval == 5.0
    assert RedisBroker("redis://h/0", ping_timeout=2).ping_timeout == 2
    assert RedisBroker("redis://h/0?ping_interval=0").ping_interval == 0  # off
    for bad in ("ping_timeout=0", "ping_timeout=soon", "ping_interval=inf"):
        with pytest.raises(BrokerConfigError, match="number of seconds"):
            RedisBroker(f"redis://h/0?{bad}")


@pytest.mark.asyncio
async def test_a_subscriber_failing_of_something_else_is_rebuilt_and_tells_the_gap(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception that is no connection error (a bug, an unexpected reply) used to end
    the subscriber task: the process heard nothing from the others again, and no gap was
    told.  It is rebuilt like a lost connection."""
    from stargate.brokers.redis import RedisBroker

    loop = asyncio.get_running_loop()
    got: list[bytes] = []
    gaps: list[BrokerGap] = []
    sub = RedisBroker(redis_server.url, reconnect_max_delay=0.2)
    pub = RedisBroker(redis_server.url)
    sub.start(loop, lambda ch, d: got.append(d), gaps.append)
    pub.start(loop, lambda ch, d: None, gaps.append)
    handle = sub._handle
    failures = [RuntimeError("unexpected")]

    def failing_once(message: dict[str, Any]) -> None:
        if message["type"] == "message" and failures:
            raise failures.pop()
        handle(message)

    monkeypatch.setattr(sub, "_handle", failing_once)
    try:
        sub.subscribe("g:x")
        await eventually(lambda: sub.is_subscribed("g:x"))
        pub.publish("g:x", b"lost to the failure")
        await eventually(lambda: not failures and sub.is_subscribed("g:x"))
        await eventually(lambda: [g.reason for g in gaps] == ["subscriber reconnected"])
        pub.publish("g:x", b"after")
        await eventually(lambda: got == [b"after"])
    finally:
        await sub.close()
        await pub.close()


@pytest.mark.asyncio
async def test_subscriptions_follow_the_hub_before_and_after_start(
    redis_server: RedisServer,
) -> None:
    """Channels wanted before ``start`` are subscribed once it runs; asking twice, or
    dropping what was never asked, changes nothing; once the last channel is dropped the
    subscriber leaves Redis, and comes back with the next one.  Query parameters other than
    stargate's own are left for redis-py."""
    import redis.asyncio as aioredis

    from stargate.brokers.redis import RedisBroker

    loop = asyncio.get_running_loop()
    got: list[tuple[str, bytes]] = []
    sub = RedisBroker(redis_server.url + "?prefix=t:&health_check_interval=0")
    assert sub.url.endswith("?health_check_interval=0") and sub.channel_prefix == "t:"
    pub = RedisBroker(redis_server.url + "?prefix=t:")
    sub.subscribe("a")
    sub.subscribe("a")
    sub.unsubscribe("never")
    sub.start(loop, lambda ch, d: got.append((ch, d)), lambda gap: None)
    pub.start(loop, lambda ch, d: None, lambda gap: None)
    probe = aioredis.Redis.from_url(redis_server.url)
    try:
        await eventually(lambda: sub.is_subscribed("a") and sub.connected)
        pub.publish("a", b"one")
        await eventually(lambda: got == [("a", b"one")])
        sub.unsubscribe("a")
        await eventually(lambda: not sub.is_subscribed("a"))

        async def subscribers() -> int:
            ((_, count),) = await probe.pubsub_numsub("t:a")
            return int(count)

        while await subscribers():
            await asyncio.sleep(0.02)
        assert not sub.subscriber_connected and sub.connected  # idle, not disconnected
        sub.subscribe("b")
        await eventually(lambda: sub.is_subscribed("b"))
        pub.publish("b", b"two")
        await eventually(lambda: got[-1:] == [("b", b"two")])
    finally:
        await probe.aclose()
        await sub.close()
        await pub.close()


@pytest.mark.asyncio
async def test_failing_handlers_are_logged_and_delivery_goes_on(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """An ``on_message`` that raises on one message is logged and the next ones are still
    delivered; an ``on_gap`` that raises is logged too."""
    from stargate.brokers.redis import RedisBroker

    loop = asyncio.get_running_loop()
    got: list[bytes] = []

    def on_message(channel: str, data: bytes) -> None:
        if data == b"poison":
            raise RuntimeError("the hub choked")
        got.append(data)

    def on_gap(gap: BrokerGap) -> None:
        raise RuntimeError("the gap handler choked")

    sub = RedisBroker(redis_server.url, reconnect_max_delay=0.3)
    pub = RedisBroker(redis_server.url)
    sub.start(loop, on_message, on_gap)
    pub.start(loop, lambda ch, d: None, lambda gap: None)
    try:
        sub.subscribe("g:x")
        await eventually(lambda: sub.is_subscribed("g:x"))
        for data in (b"poison", b"after"):
            pub.publish("g:x", data)
        await eventually(lambda: got == [b"after"])
        redis_server.kill()
        await eventually(lambda: not sub.subscriber_connected)
        redis_server.start()
        await eventually(lambda: sub.gaps == 1 and sub.is_subscribed("g:x"))
        logged = caplog.text
        assert "message handler failed" in logged and "the hub choked" in logged
        assert "gap handler failed" in logged and "the gap handler choked" in logged
    finally:
        await sub.close()
        await pub.close()


@pytest.mark.asyncio
async def test_a_burst_lost_with_redis_is_one_gap_about_maybe_every_group(
    redis_server: RedisServer,
) -> None:
    """A burst published just after Redis died (more than one batch, to more channels than
    a gap names) is dropped whole and counted; the one gap reported once Redis is back
    says how many were lost and, the list being too long, "maybe every group"."""
    from stargate.brokers.redis import RedisBroker

    loop = asyncio.get_running_loop()
    gaps: list[BrokerGap] = []
    got: list[bytes] = []
    pub = RedisBroker(redis_server.url, reconnect_max_delay=0.3)
    sub = RedisBroker(redis_server.url, reconnect_max_delay=0.3)
    pub.start(loop, lambda ch, d: None, gaps.append)
    sub.start(loop, lambda ch, d: got.append(d), lambda gap: None)
    try:
        sub.subscribe("g:warm")
        await eventually(lambda: sub.is_subscribed("g:warm"))
        pub.publish("g:warm", b"up")  # the publisher is connected once this arrives
        await eventually(lambda: got == [b"up"])
        redis_server.kill()
        for i in range(1100):
            pub.publish(f"g:{i}", b"lost")
        await eventually(lambda: not pub.publisher_connected)
        redis_server.start()
        await eventually(lambda: bool(gaps))
        (gap,) = gaps
        assert (gap.dropped, gap.channels) == (1100, None)
    finally:
        await pub.close()
        await sub.close()


# -- two Stargate processes ---------------------------------------------------------------------


class StargateProcess:
    """``python -m stargate serve stargate_groups_app:app`` in a subprocess."""

    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process = process
        self.port = port

    @classmethod
    async def start(cls, *args: str) -> StargateProcess:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(APP_DIR), env.get("PYTHONPATH")]))
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "stargate", "serve", "stargate_groups_app:app",
            "--port", "0", "--ping-interval", "0", "--log-level", "warning", *args,
            stdout=asyncio.subprocess.PIPE,
            env=env,
        )  # fmt: skip
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 20)
        assert line.startswith(b"stargate serve: http://"), line
        port = int(line.split(b"/")[2].split(b":")[1])
        return cls(process, port)

    async def get(self, path: str) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = await asyncio.wait_for(reader.read(), TIMEOUT)
        writer.close()
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 "), head
        return body

    async def status(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(await self.get("/status"))
        return result

    async def join(self, group: str) -> tuple[ClientConnection, dict[str, Any]]:
        client = await connect(f"ws://127.0.0.1:{self.port}/join/{group}", open_timeout=TIMEOUT)
        hello: dict[str, Any] = json.loads(await asyncio.wait_for(client.recv(), TIMEOUT))
        return client, hello

    async def stop(self) -> int | None:
        """SIGTERM: a graceful stop, exit status 0 (``None``: killed after 15 s)."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.process.wait(), 15)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
            return None


@pytest_asyncio.fixture
async def processes(
    redis_server: RedisServer,
) -> AsyncIterator[tuple[StargateProcess, StargateProcess]]:
    a, b = await asyncio.gather(
        StargateProcess.start("--broker", redis_server.url),
        StargateProcess.start("--broker", redis_server.url),
    )
    try:
        yield a, b
    finally:
        codes = await asyncio.gather(a.stop(), b.stop())
        assert tuple(codes) == (0, 0)


async def recv_all(client: ClientConnection, count: int) -> list[str | bytes]:
    return [await asyncio.wait_for(client.recv(), TIMEOUT) for _ in range(count)]


async def nothing_more(*clients: ClientConnection) -> None:
    for client in clients:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(client.recv(), 0.2)


@pytest.mark.asyncio
async def test_a_group_spans_two_processes_in_order(
    processes: tuple[StargateProcess, StargateProcess],
) -> None:
    a, b = processes
    (a1, hello_a), (a2, _), (b1, hello_b) = [
        await a.join("room"),
        await a.join("room"),
        await b.join("room"),
    ]
    assert hello_a["subscribed"] and hello_b["subscribed"] and hello_a["pid"] != hello_b["pid"]
    messages = [f"m{i}" for i in range(100)]
    for message in messages:
        await a1.send(message)  # relayed by process a: its members first, then Redis
    for client in (a1, a2, b1):
        assert await recv_all(client, 100) == messages  # once each, in order
    await b1.send(b"\x00from b\xff")
    for client in (a1, a2, b1):
        assert await recv_all(client, 1) == [b"\x00from b\xff"]
    assert await b.get("/send/room?from%20a%20view") == b"sent"  # from a WSGI thread of b
    for client in (a1, a2, b1):
        assert await recv_all(client, 1) == ["from a view"]
    await nothing_more(a1, a2, b1)
    status = await a.status()
    assert status["groups"] == {"room": 2} and status["subscribed"] == {"room": True}
    assert status["gaps"] == []
    for client in (a1, a2, b1):
        await client.close()


@pytest.mark.asyncio
async def test_redis_goes_away_local_delivery_goes_on_and_comes_back(
    redis_server: RedisServer, processes: tuple[StargateProcess, StargateProcess]
) -> None:
    a, b = processes
    (a1, _), (b1, _) = await a.join("room"), await b.join("room")
    await a1.send("before")
    assert await recv_all(a1, 1) == await recv_all(b1, 1) == ["before"]

    redis_server.kill()
    statuses: list[dict[str, Any]] = []

    async def both_disconnected() -> bool:
        statuses[:] = [await a.status(), await b.status()]
        return not any(s["connected"] for s in statuses)

    deadline = asyncio.get_running_loop().time() + TIMEOUT
    while not await both_disconnected():
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)
    await a1.send("a alone")
    await b1.send("b alone")
    assert await recv_all(a1, 1) == ["a alone"]  # local delivery goes on
    assert await recv_all(b1, 1) == ["b alone"]
    assert await a.get("/send/room?a%20view") == b"sent"  # servers answer HTTP as before
    assert await recv_all(a1, 1) == ["a view"]
    await nothing_more(a1, b1)  # at most once: nothing crossed meanwhile

    redis_server.start()  # same port: both processes come back by themselves
    for process in (a, b):
        deadline = asyncio.get_running_loop().time() + TIMEOUT
        while True:
            status = await process.status()
            reasons = {gap[0] for gap in status["gaps"]}
            if (
                status["connected"]
                and status["publisher"]
                and status["subscribed"] == {"room": True}
                and "subscriber reconnected" in reasons
                and "publish failed while redis was unreachable" in reasons
            ):
                break
            assert asyncio.get_running_loop().time() < deadline, status
            await asyncio.sleep(0.05)
        assert ["subscriber reconnected", ["room"], 0] in status["gaps"]
    for i in range(20):
        await a1.send(f"after {i}")
    expected = [f"after {i}" for i in range(20)]
    assert await recv_all(a1, 20) == await recv_all(b1, 20) == expected
    await b1.send("b after")
    assert await recv_all(a1, 1) == await recv_all(b1, 1) == ["b after"]
    await nothing_more(a1, b1)
    for client in (a1, b1):
        await client.close()
