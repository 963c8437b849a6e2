"""The Redis broker: group messages between processes and hosts over Redis pub/sub.

``RedisBroker("redis://host:6379/0")`` (also ``rediss://`` for TLS and ``unix:///path``;
``?prefix=NAME:`` sets the channel prefix, ``stargate:`` by default, so that several apps
can share one Redis).  Needs the ``redis`` extra (redis-py's asyncio client).

A Redis that freezes or is cut off by the network leaves the subscribed connection open and
silent, so after ``ping_interval`` seconds without a word (5 by default) the
subscriber sends a PING, and takes the connection for lost, like a closed one, when no answer
comes within ``ping_timeout`` (5).  Both can also be given in the URL
(``?ping_interval=2&ping_timeout=3``; an interval of 0 turns the check off).

Two connections: one subscribed (its channels follow the hub's groups that have local
members), one that publishes, in order, from a bounded queue in pipelined batches.

Redis pub/sub is **at most once**: Redis keeps nothing for a subscriber that is not
connected.  When Redis goes away, local delivery goes on; what this process publishes
meanwhile is dropped (counted), and both connections come back by themselves, retrying
with exponential backoff and jitter.  Each return after a failure is reported to the hub as
a :class:`~stargate.brokers.BrokerGap`: messages may have been missed in between.

The publishing connection is opened at :meth:`~RedisBroker.start`, so that a Redis that
cannot be reached is logged (one WARNING, with the reason) when the server starts rather
than at the first group message; the broker keeps retrying meanwhile.  Log lines, the repr
and errors show the URL with its password masked (:func:`stargate.redact.redact_url`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import deque
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from . import Broker, BrokerConfigError, BrokerGap, _shown_url
from .envelope import DEFAULT_MAX_SIZE

__all__ = ["RedisBroker"]

logger = logging.getLogger("stargate.brokers.redis")

#: What a lost or refused connection raises.
_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError, EOFError)
#: Channels remembered per gap report; past this many the report says "unknown, maybe all".
_MAX_GAP_CHANNELS = 1024


class _Backoff:
    """Exponential delays with jitter: ``initial`` doubling up to ``maximum``."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial = initial
        self.maximum = maximum
        self.attempts = 0

    def reset(self) -> None:
        self.attempts = 0

    def next(self) -> float:
        delay: float = min(self.maximum, self.initial * 2.0 ** min(self.attempts, 30))
        self.attempts += 1
        return delay * random.uniform(0.5, 1.0)


#: Query parameters of the URL that are ours, not redis-py's.
_OWN_PARAMETERS = ("prefix", "ping_interval", "ping_timeout")


def _split_url(url: str) -> tuple[str, dict[str, str]]:
    """``(url for redis-py, our parameters)``: the query parameters of
    :data:`_OWN_PARAMETERS` taken out (redis-py would refuse or misread them)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    own: dict[str, str] = {}
    kept = []
    for key, value in query:
        if key in _OWN_PARAMETERS:
            own[key] = value
        else:
            kept.append((key, value))
    return urlunsplit(parts._replace(query=urlencode(kept))), own


def _seconds(own: dict[str, str], name: str, default: float, *, zero: bool = False) -> float:
    """A positive number of seconds (or 0 where ``zero`` allows it) from the URL's
    parameters, or ``default``."""
    value = default
    if name in own:
        try:
            value = float(own[name])
        except ValueError:
            raise ValueError(f"{name} must be a number of seconds, not {own[name]!r}") from None
    if not (value > 0 or (zero and value == 0)) or value == float("inf"):
        least = "0 or a positive" if zero else "a positive"
        raise ValueError(f"{name} must be {least} number of seconds, not {value!r}")
    return value


def _reason(exc: BaseException) -> str:
    """What a failed connection says (some exceptions have no text of their own)."""
    return str(exc) or type(exc).__name__


class RedisBroker(Broker):
    """Redis pub/sub (see the module's docstring for the guarantees)."""

    spans_processes = True

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        channel_prefix: str = "stargate:",
        max_message_size: int = DEFAULT_MAX_SIZE,
        max_pending: int = 10_000,
        reconnect_delay: float = 0.1,
        reconnect_max_delay: float = 5.0,
        connect_timeout: float = 2.0,
        poll_interval: float = 0.05,
        command_timeout: float = 10.0,
        ping_interval: float = 5.0,
        ping_timeout: float = 5.0,
    ) -> None:
        super().__init__(max_message_size=max_message_size)
        try:
            self.url, own = _split_url(url)
            parse_url(self.url)  # what redis-py will refuse at start(), refused now
            #: After this many seconds without a word from Redis, the subscriber sends a
            #: PING; without an answer ``ping_timeout`` later, the connection is
            #: taken for dead and rebuilt (0: never).  A Redis that is frozen or cut off by
            #: the network leaves TCP open and silent: without this, the process would stop
            #: hearing the others without noticing (TCP keepalive takes hours).
            self.ping_interval = _seconds(own, "ping_interval", ping_interval, zero=True)
            self.ping_timeout = _seconds(own, "ping_timeout", ping_timeout)
        except ValueError as exc:
            raise BrokerConfigError(f"broker URL {_shown_url(url)!r}: {exc}") from None
        #: The URL as logs and errors show it (password masked).
        self.shown_url = _shown_url(self.url)
        self.channel_prefix = own.get("prefix", channel_prefix)
        self._prefix = self.channel_prefix.encode("utf-8")
        #: Messages waiting to be published; past this many, new ones are dropped.
        self.max_pending = max_pending
        self.reconnect_delay = reconnect_delay
        self.reconnect_max_delay = reconnect_max_delay
        #: How long one read waits before the subscriber looks at subscription changes
        #: (messages are handed over as soon as they arrive).
        self.poll_interval = poll_interval
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self._client: aioredis.Redis | None = None  # subscribes
        self._publisher_client: aioredis.Redis | None = None  # publishes (a pool of its own)
        self._tasks: list[asyncio.Task[None]] = []
        # Subscriptions: what the hub wants, and what Redis confirmed.
        self._wanted: set[str] = set()
        self._confirmed: set[str] = set()
        self._changed = asyncio.Event()
        # Publishing.
        self._queue: deque[tuple[str, bytes]] = deque()
        self._wake = asyncio.Event()
        self._publisher_up = True
        self._dropped = 0
        self._dropped_channels: set[str] | None = set()
        #: Whether the subscribed connection is up (``False`` while reconnecting).
        self.subscriber_connected = False
        #: Possible gaps reported so far.
        self.gaps = 0
        # Redis was reported unreachable at start and nothing has connected since: the
        # subscriber's failures are that same news, not worth a warning each.
        self._unreachable = False

    def __repr__(self) -> str:
        state = "connected" if self.subscriber_connected else "disconnected"
        return f"<RedisBroker {self.shown_url!r} {state} channels={len(self._wanted)}>"

    @property
    def publisher_connected(self) -> bool:
        return self._publisher_up

    @property
    def connected(self) -> bool:
        """Publishing works and, if any channel is wanted, the subscription is up (an idle
        process subscribes to nothing, and is not "disconnected" for it)."""
        return (
            self.running and self._publisher_up and (self.subscriber_connected or not self._wanted)
        )

    # -- lifetime ------------------------------------------------------------------------------

    def _started(self) -> None:
        assert self._loop is not None
        self._client = self._new_client()
        self._publisher_client = self._new_client()
        self._changed = asyncio.Event()
        self._wake = asyncio.Event()
        if self._wanted:
            self._changed.set()
        self._tasks = [
            self._loop.create_task(self._subscriber(), name="stargate-redis-subscriber"),
            self._loop.create_task(self._publisher(), name="stargate-redis-publisher"),
        ]

    def _new_client(self) -> aioredis.Redis:
        # No retries inside redis-py: a failure must reach us, to be reported as a gap.
        return aioredis.Redis.from_url(
            self.url,
            retry=Retry(NoBackoff(), 0),
            socket_connect_timeout=self.connect_timeout,
            socket_timeout=self.command_timeout,
            socket_keepalive=True,
        )

    async def close(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if tasks:
            # Bounded: a stop must not hang on a connection that does not answer.
            await asyncio.wait(tasks, timeout=self.connect_timeout)
        self._queue.clear()
        self._confirmed.clear()
        self.subscriber_connected = False
        for client in (self._client, self._publisher_client):
            if client is not None:
                with contextlib.suppress(*_ERRORS):
                    await client.aclose()
        self._client = self._publisher_client = None
        await super().close()

    # -- subscribing ---------------------------------------------------------------------------

    def subscribe(self, channel: str) -> None:
        if channel not in self._wanted:
            self._wanted.add(channel)
            self._changed.set()

    def unsubscribe(self, channel: str) -> None:
        if channel in self._wanted:
            self._wanted.discard(channel)
            self._changed.set()

    def is_subscribed(self, channel: str) -> bool:
        return channel in self._confirmed and channel in self._wanted

    def _redis_channel(self, channel: str) -> bytes:
        return self._prefix + channel.encode("utf-8")

    async def _subscriber(self) -> None:
        """Keep one subscribed connection whose channels follow ``_wanted``; rebuild it after
        any failure, with backoff, and report the gap once it is back.

        One task does everything on that connection, reading and (un)subscribing in turn:
        redis-py's asyncio PubSub is not safe for a command sent while another task reads.
        """
        loop = asyncio.get_running_loop()
        backoff = _Backoff(self.reconnect_delay, self.reconnect_max_delay)
        lost: set[str] | None = None  # channels wanted while the connection was down
        while True:
            while not self._wanted:
                self._changed.clear()
                await self._changed.wait()
            assert self._client is not None
            pubsub = self._client.pubsub()
            try:
                self._changed.clear()
                requested = set(self._wanted)
                await pubsub.subscribe(*(self._redis_channel(c) for c in requested))
                self.subscriber_connected = True
                self._unreachable = False
                if lost is not None:
                    logger.warning("redis subscriber reconnected to %s", self.shown_url)
                    self._report(BrokerGap("subscriber reconnected", frozenset(lost | requested)))
                    lost = None
                backoff.reset()
                heard = loop.time()  # the last word from Redis on this connection
                pinged: float | None = None  # when an unanswered PING was sent
                while True:
                    if self._changed.is_set():
                        self._changed.clear()
                        wanted = set(self._wanted)
                        if not wanted:
                            break  # nothing to hear: close the connection until there is
                        add, drop = wanted - requested, requested - wanted
                        if drop:
                            await pubsub.unsubscribe(*(self._redis_channel(c) for c in drop))
                            self._confirmed -= drop
                        if add:
                            await pubsub.subscribe(*(self._redis_channel(c) for c in add))
                        requested = wanted
                    message = await pubsub.get_message(timeout=self.poll_interval)
                    now = loop.time()
                    if message is not None:
                        heard, pinged = now, None
                        self._handle(message)
                    elif pinged is not None:
                        if now - pinged > self.ping_timeout:
                            raise ConnectionError(f"no answer to PING in {self.ping_timeout:g} s")
                    elif self.ping_interval and now - heard >= self.ping_interval:
                        await pubsub.ping()  # its answer comes as a message
                        pinged = now
            except _ERRORS as exc:
                if lost is None:
                    logger.log(
                        logging.DEBUG if self._unreachable else logging.WARNING,
                        "redis subscriber to %s lost (%s); local delivery goes on, "
                        "retrying with backoff",
                        self.shown_url,
                        _reason(exc),
                    )
                    lost = set()
                lost |= self._wanted
            except Exception:
                # Not a connection's failure (a bug, an unexpected reply): the subscriber
                # must not die of it, or this process would stop hearing the others for
                # good.  Rebuilt like a lost connection, and the gap told.
                logger.exception("redis subscriber to %s failed; rebuilding it", self.shown_url)
                lost = (lost or set()) | self._wanted
            finally:
                self.subscriber_connected = False
                self._confirmed.clear()
                with contextlib.suppress(*_ERRORS):
                    await pubsub.aclose()
            if lost is not None:
                await asyncio.sleep(backoff.next())

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        channel_bytes = message["channel"]
        if not isinstance(channel_bytes, bytes) or not channel_bytes.startswith(self._prefix):
            return
        channel = channel_bytes[len(self._prefix) :].decode("utf-8", "replace")
        if kind == "message":
            data = message["data"]
            if (
                isinstance(data, bytes)
                and channel in self._wanted  # not after unsubscribe() returned
                and self._on_message is not None
            ):
                try:
                    self._on_message(channel, data)
                except Exception:
                    logger.exception("%r: message handler failed", self)
        elif kind == "subscribe":
            self._confirmed.add(channel)
        elif kind == "unsubscribe":
            self._confirmed.discard(channel)

    # -- publishing ----------------------------------------------------------------------------

    def publish(self, channel: str, data: bytes) -> None:
        self._check_size(data)
        if not self._publisher_up or len(self._queue) >= self.max_pending:
            self._note_dropped(channel, 1)
            return
        self._queue.append((channel, data))
        self._wake.set()

    def _note_dropped(self, channel: str | None, count: int) -> None:
        self._dropped += count
        channels = self._dropped_channels
        if channels is not None:
            if channel is None or len(channels) >= _MAX_GAP_CHANNELS:
                self._dropped_channels = None
            else:
                channels.add(channel)

    def _report_dropped(self, reason: str) -> None:
        if self._dropped:
            channels = self._dropped_channels
            gap = BrokerGap(
                reason, None if channels is None else frozenset(channels), self._dropped
            )
            self._dropped = 0
            self._dropped_channels = set()
            self._report(gap)

    async def _publisher(self) -> None:
        backoff = _Backoff(self.reconnect_delay, self.reconnect_max_delay)
        await self._connect_publisher(backoff)
        queue = self._queue
        while True:
            while not queue:
                self._wake.clear()
                await self._wake.wait()
            batch = [queue.popleft() for _ in range(min(len(queue), 512))]
            try:
                try:
                    await self._send(batch)
                except _ERRORS:
                    # A connection that died with the Redis before (restarted since) fails
                    # once: try again on a fresh one.  If the first try did reach Redis, the
                    # receivers drop the duplicates by their sequence numbers.
                    await self._reset_publisher()
                    await self._send(batch)
            except _ERRORS as exc:
                self._publisher_up = False
                logger.warning(
                    "redis publisher to %s lost (%s); dropping messages for other processes "
                    "until it is back",
                    self.shown_url,
                    _reason(exc),
                )
                for channel, _ in batch:
                    self._note_dropped(channel, 1)
                await self._publisher_down(backoff, "reconnected to")
            else:
                self._report_dropped("publish queue full")

    async def _connect_publisher(self, backoff: _Backoff) -> None:
        """Connect at start: a Redis that is down or misconfigured is told now, once, when
        whoever started the server is looking, not at the first group message (which may
        come much later, or be lost in between without a word)."""
        assert self._publisher_client is not None
        try:
            await self._publisher_client.ping()
        except _ERRORS as exc:
            self._publisher_up = False
            self._unreachable = True
            logger.warning(
                "redis broker %s unreachable at start (%s); local delivery goes on, messages "
                "for other processes are dropped until it is reachable; retrying with backoff",
                self.shown_url,
                _reason(exc),
            )
            await self._publisher_down(backoff, "connected to")

    async def _publisher_down(self, backoff: _Backoff, back: str) -> None:
        """The publisher cannot reach Redis: drop (and count) what waits, retry until it is
        back, then report what was dropped."""
        queue = self._queue
        while queue:
            self._note_dropped(queue.popleft()[0], 1)
        await self._reconnect_publisher(backoff)
        self._publisher_up = True
        self._unreachable = False
        logger.warning("redis publisher %s %s", back, self.shown_url)
        self._report_dropped("publish failed while redis was unreachable")

    async def _send(self, batch: list[tuple[str, bytes]]) -> None:
        assert self._publisher_client is not None
        pipe = self._publisher_client.pipeline(transaction=False)
        for channel, data in batch:
            pipe.publish(self._redis_channel(channel), data)
        await pipe.execute()

    async def _reset_publisher(self) -> None:
        """Drop the publisher's idle connections: they may be to a Redis that is gone."""
        assert self._publisher_client is not None
        with contextlib.suppress(*_ERRORS):
            await self._publisher_client.connection_pool.disconnect()

    async def _reconnect_publisher(self, backoff: _Backoff) -> None:
        backoff.reset()
        while True:
            await asyncio.sleep(backoff.next())
            await self._reset_publisher()
            assert self._publisher_client is not None
            try:
                await self._publisher_client.ping()
            except _ERRORS:
                continue
            return

    def _report(self, gap: BrokerGap) -> None:
        self.gaps += 1
        if self._on_gap is not None:
            try:
                self._on_gap(gap)
            except Exception:
                logger.exception("%r: gap handler failed", self)
