"""Broker URLs keep their password out of reprs, logs and errors; a broker that cannot be
served fails with one line; a Redis that cannot be reached is told at start.

The Redis tests need ``redis-server`` (the ``redis_server`` fixture of tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
from collections.abc import Callable

import pytest

from stargate.brokers import BrokerConfigError, BrokerGap, make_broker
from stargate.brokers.testing import RedisServer, free_port
from tests.machine import require_module

SECRET = "s3cret-Pa55"
LOGGER = "stargate.brokers.redis"
TIMEOUT = 10.0


async def eventually(predicate: Callable[[], object], timeout: float = TIMEOUT) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def require_password(server: RedisServer, password: str) -> None:
    """Make the test's redis-server ask for ``password`` (until it is restarted)."""
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(f"CONFIG SET requirepass {password}\r\n".encode())
        assert sock.recv(64).startswith(b"+OK")


def with_password(url: str, userinfo: str = f":{SECRET}") -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{userinfo}@{rest}"


def logged(caplog: pytest.LogCaptureFixture) -> str:
    """Everything the broker logged, as a handler would write it (tracebacks too)."""
    formatter = logging.Formatter()
    return "\n".join(formatter.format(record) for record in caplog.records if record.name == LOGGER)


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == LOGGER and record.levelno == logging.WARNING
    ]


# -- errors and repr ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        f"amqp://:{SECRET}@localhost/",
        f"amqp://guest:{SECRET}@localhost/",
        f"guest:{SECRET}@localhost:6379",  # no scheme://: not a URL redact_url can parse
        f"redis://:{SECRET}@localhost:port/0",  # redis-py would refuse it at start()
    ],
)
def test_a_url_that_cannot_be_served_is_a_one_line_error_without_the_password(url: str) -> None:
    with pytest.raises(BrokerConfigError) as caught:
        make_broker(url)
    message = str(caught.value)
    assert SECRET not in message and "***" in message
    assert "\n" not in message
    assert isinstance(caught.value, ValueError)  # callers that caught ValueError still do


def test_unknown_scheme_still_says_so() -> None:
    with pytest.raises(BrokerConfigError, match="unknown scheme 'amqp'"):
        make_broker("amqp://localhost/")
    with pytest.raises(BrokerConfigError, match="scheme://"):
        make_broker("localhost:6379")


def test_redis_url_without_the_redis_package_tells_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As if redis-py were not installed: its import fails (None in sys.modules), and our
    # module that imports it is to be imported again.
    for name in list(sys.modules):
        if name == "redis" or name.startswith("redis."):
            monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "redis", None)
    monkeypatch.delitem(sys.modules, "stargate.brokers.redis", raising=False)
    with pytest.raises(BrokerConfigError) as caught:
        make_broker(f"redis://:{SECRET}@127.0.0.1:6379/0")
    message = str(caught.value)
    assert message.endswith(
        "needs the redis package, which is not installed: python3 -m pip install redis"
    )
    assert "\n" not in message and SECRET not in message and "***" in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_memory_urls_need_no_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)
    assert not make_broker("memory://").spans_processes


@pytest.mark.parametrize("userinfo", [f":{SECRET}", f"user:{SECRET}", SECRET])
def test_repr_masks_the_password(userinfo: str) -> None:
    require_module("redis")
    broker = make_broker(with_password("redis://127.0.0.1:6379/0", userinfo))
    assert SECRET not in repr(broker)
    assert "127.0.0.1:6379" in repr(broker) and "***" in repr(broker)


# -- a Redis that cannot be reached -------------------------------------------------------------


@pytest.mark.asyncio
async def test_unreachable_redis_is_reported_once_at_start_then_the_broker_connects(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    from stargate.brokers.redis import RedisBroker

    caplog.set_level(logging.DEBUG, logger=LOGGER)
    redis_server.kill()  # its port is closed now
    loop = asyncio.get_running_loop()
    gaps: list[BrokerGap] = []
    broker = RedisBroker(
        with_password(redis_server.url), reconnect_delay=0.02, reconnect_max_delay=0.05
    )
    broker.start(loop, lambda channel, data: None, gaps.append)
    try:
        # No group has members yet and nothing was published: still, it is told now.
        await eventually(lambda: warnings(caplog))
        assert not broker.publisher_connected
        broker.publish("g:x", b"dropped")  # counted, reported once Redis is back
        await asyncio.sleep(0.5)  # many retries
        (warning,) = warnings(caplog)  # once, however many retries
        assert "unreachable" in warning
        assert f"redis://:***@127.0.0.1:{redis_server.port}/0" in warning
        # The reason: redis-py's "Error 111 connecting to 127.0.0.1:PORT. Connect call failed".
        assert f"connecting to 127.0.0.1:{redis_server.port}" in warning
        assert SECRET not in logged(caplog)

        redis_server.start()
        require_password(redis_server, SECRET)
        await eventually(lambda: broker.publisher_connected)
        assert any("connected to" in message for message in warnings(caplog))
        await eventually(lambda: gaps)
        assert gaps[0].dropped == 1 and gaps[0].channels == frozenset({"g:x"})
        assert SECRET not in logged(caplog)
    finally:
        await broker.close()


@pytest.mark.asyncio
async def test_a_closed_port_never_logs_the_password(caplog: pytest.LogCaptureFixture) -> None:
    require_module("redis")
    from stargate.brokers.redis import RedisBroker

    caplog.set_level(logging.DEBUG, logger=LOGGER)
    loop = asyncio.get_running_loop()
    broker = RedisBroker(
        f"redis://user:{SECRET}@127.0.0.1:{free_port()}/0",
        reconnect_delay=0.02,
        reconnect_max_delay=0.05,
    )
    broker.start(loop, lambda channel, data: None, lambda gap: None)
    try:
        broker.subscribe("g:room")  # the subscriber tries too, and fails
        await eventually(lambda: any("subscriber" in r.getMessage() for r in caplog.records))
        broker.publish("g:room", b"x")
        await asyncio.sleep(0.2)
        assert warnings(caplog)
        assert SECRET not in logged(caplog)
        assert SECRET not in repr(broker)
    finally:
        await broker.close()


@pytest.mark.asyncio
async def test_a_lost_connection_never_logs_the_password(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    from stargate.brokers.redis import RedisBroker

    caplog.set_level(logging.DEBUG, logger=LOGGER)
    require_password(redis_server, SECRET)
    loop = asyncio.get_running_loop()
    got: list[bytes] = []
    broker = RedisBroker(with_password(redis_server.url), reconnect_max_delay=0.2)
    broker.start(loop, lambda channel, data: got.append(data), lambda gap: None)
    try:
        broker.subscribe("g:room")
        await eventually(lambda: broker.is_subscribed("g:room"))
        broker.publish("g:room", b"hello")
        await eventually(lambda: got == [b"hello"])  # the password was right
        assert warnings(caplog) == []  # reachable at start: nothing to say
        redis_server.kill()
        await eventually(lambda: not broker.subscriber_connected)
        broker.publish("g:room", b"lost")
        await eventually(lambda: not broker.publisher_connected)
        lost = warnings(caplog)
        assert any("subscriber" in message and "lost" in message for message in lost)
        assert any("publisher" in message and "lost" in message for message in lost)
        assert all("redis://:***@" in message for message in lost)
        assert SECRET not in logged(caplog)
    finally:
        await broker.close()
