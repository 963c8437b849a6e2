"""Brokers: what carries group messages between processes.

The per-process :class:`~stargate.groups.Hub` owns group membership and every socket write;
a broker only moves opaque bytes (an :mod:`~stargate.brokers.envelope`) from one process to
the others on named channels.  The hub subscribes to a channel only while it has local
members for it and ignores its own messages when they come back.

Two brokers ship:

* :class:`~stargate.brokers.memory.MemoryBroker` (``memory://``), the embedded default: it
  never leaves the process (hubs in one process may share a named bus, ``memory://name``).
* :class:`~stargate.brokers.redis.RedisBroker` (``redis://host:6379/0``, ``rediss://``,
  ``unix://``), Redis pub/sub, for several processes and hosts; needs the ``redis`` extra.

Delivery across processes is **at most once, in order per publisher**: a message published
while the broker is unreachable, or while a subscriber is reconnecting, is lost for the other
processes (local members still get it).  The broker reports each such possible gap to the
hub, which tells the application (:meth:`stargate.groups.Hub.on_gap`).

A broker's methods are called on the event loop it was started on, except
:meth:`Broker.close`, a coroutine for that loop too.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from ..extras import install_hint
from ..redact import MASK, redact_url
from .envelope import DEFAULT_MAX_SIZE

__all__ = ["Broker", "BrokerConfigError", "BrokerGap", "OnGap", "OnMessage", "make_broker"]


class BrokerConfigError(ValueError):
    """A broker URL that cannot be served: malformed, of an unknown scheme, or naming a
    broker whose package is not installed.

    Its message is one line meant for the person who wrote the URL (password masked), so
    that a command line can print it instead of a traceback.  A :class:`ValueError`, which
    is what :func:`make_broker` raised before: callers catching that still do.
    """


def _shown_url(url: str) -> str:
    """``url`` as log lines, reprs and errors show it: the password masked.

    :func:`~stargate.redact.redact_url` only sees a password in a URL's authority; text
    without ``scheme://`` (a typo) that still has a ``user:password@`` is masked up to the
    ``@`` here, since an error message is exactly where a mistyped URL ends up.
    """
    shown = redact_url(url)
    if "@" in shown and "://" not in shown:
        shown = MASK + "@" + shown.rpartition("@")[2]
    return shown


@dataclass(frozen=True, slots=True)
class BrokerGap:
    """Messages between processes may have been lost.

    ``channels`` are the channels concerned (``None``: unknown, maybe all); ``dropped`` the
    messages this process knows it failed to publish (0 when only receiving was affected).
    """

    reason: str
    channels: frozenset[str] | None
    dropped: int = 0


#: ``on_message(channel, data)``: called on the broker's loop for each message received.
OnMessage = Callable[[str, bytes], object]
#: ``on_gap(gap)``: called on the broker's loop when messages may have been lost.
OnGap = Callable[[BrokerGap], object]


class Broker(abc.ABC):
    """Moves envelopes between processes on named channels.

    ``publish`` never blocks and never raises for a broker that is down: the message is
    dropped and the loss reported through ``on_gap`` (at most once).  It raises
    :class:`ValueError` for data over :attr:`max_message_size`.
    """

    #: Whether the broker reaches other processes (the in-memory one does not).
    spans_processes: ClassVar[bool] = False

    def __init__(self, *, max_message_size: int = DEFAULT_MAX_SIZE) -> None:
        self.max_message_size = max_message_size
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_message: OnMessage | None = None
        self._on_gap: OnGap | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop the broker was started on (``None`` before :meth:`start`)."""
        return self._loop

    @property
    def running(self) -> bool:
        return self._loop is not None and not self._loop.is_closed()

    @property
    def connected(self) -> bool:
        """Whether messages can cross processes now (readiness checks and metrics)."""
        return self.running

    def start(self, loop: asyncio.AbstractEventLoop, on_message: OnMessage, on_gap: OnGap) -> None:
        """Begin serving on ``loop`` (called on it); connects in the background."""
        self._loop = loop
        self._on_message = on_message
        self._on_gap = on_gap
        self._started()

    def _started(self) -> None:  # noqa: B027 (optional hook)
        """Subclasses start their background work here."""

    async def close(self) -> None:
        """Stop: unsubscribe, drop what was not published, release connections."""
        self._loop = None

    @abc.abstractmethod
    def subscribe(self, channel: str) -> None:
        """Receive ``channel``'s messages from now on (takes effect soon, see
        :meth:`is_subscribed`)."""

    @abc.abstractmethod
    def unsubscribe(self, channel: str) -> None:
        """Stop receiving ``channel``."""

    @abc.abstractmethod
    def is_subscribed(self, channel: str) -> bool:
        """Whether ``channel``'s messages published from now on reach this process."""

    @abc.abstractmethod
    def publish(self, channel: str, data: bytes) -> None:
        """Send ``data`` to every process subscribed to ``channel``; in order, at most once."""

    def _check_size(self, data: bytes) -> None:
        if len(data) > self.max_message_size:
            raise ValueError(
                f"message of {len(data)} bytes exceeds the broker's max_message_size "
                f"({self.max_message_size})"
            )


def make_broker(url: str | None, *, max_message_size: int = DEFAULT_MAX_SIZE) -> Broker:
    """The broker a URL names: ``None`` or ``memory://`` (the default, one process),
    ``memory://NAME`` (a bus shared by the hubs of one process), ``redis://``,
    ``rediss://`` or ``unix://`` (Redis pub/sub, see :class:`~.redis.RedisBroker`).

    Raises :class:`BrokerConfigError` for a URL it cannot serve, with a one-line message.
    """
    from .memory import MemoryBroker

    if url is None or url == "memory://" or url == "memory":
        return MemoryBroker(max_message_size=max_message_size)
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise BrokerConfigError(
            f"broker URL {_shown_url(url)!r}: expected scheme://..., e.g. redis://host:6379/0"
        )
    if scheme == "memory":
        return MemoryBroker(rest or None, max_message_size=max_message_size)
    if scheme in ("redis", "rediss", "unix"):
        try:
            from .redis import RedisBroker
        except ImportError as exc:
            if exc.name is not None and exc.name != "redis" and not exc.name.startswith("redis."):
                raise  # not the optional package: a bug to see in full
            raise BrokerConfigError(
                f"broker URL {_shown_url(url)!r} needs the redis package, which is not "
                f"installed: {install_hint('redis')}"
            ) from None
        return RedisBroker(url, max_message_size=max_message_size)
    raise BrokerConfigError(
        f"broker URL {_shown_url(url)!r}: unknown scheme {scheme!r} (memory, redis, rediss, unix)"
    )
