"""The in-memory broker: the embedded default, within one process.

Each :class:`MemoryBroker` is one hub's attachment to a :class:`MemoryBus`.  A broker made
without a name has a bus of its own (a single hub: nothing ever crosses it, and a
publisher never hears its own messages); brokers made
with one name share that process-wide bus, which is how tests and embedded setups run
several hubs (several "processes") side by side.  Delivery is in order per publisher and
never lost, but it never leaves the process: more than one server process with this broker
splits every group (``stargate serve --workers N`` refuses it).
"""

from __future__ import annotations

import asyncio
import threading
import weakref

from . import Broker
from .envelope import DEFAULT_MAX_SIZE

__all__ = ["MemoryBroker", "MemoryBus"]


class MemoryBus:
    """Channels shared by the brokers attached to it; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: dict[str, set[MemoryBroker]] = {}

    def _subscribe(self, channel: str, broker: MemoryBroker) -> None:
        with self._lock:
            self._subscribers.setdefault(channel, set()).add(broker)

    def _unsubscribe(self, channel: str, broker: MemoryBroker) -> None:
        with self._lock:
            brokers = self._subscribers.get(channel)
            if brokers is not None:
                brokers.discard(broker)
                if not brokers:
                    del self._subscribers[channel]

    def _publish(self, channel: str, data: bytes, publisher: MemoryBroker | None = None) -> None:
        with self._lock:
            brokers = self._subscribers.get(channel)
            if not brokers:
                return
            # Not back to the publisher: its hub delivered to its own members already and
            # drops its own envelopes (Redis echoes them; nothing needs this one's).  On a
            # broker's bus of its own, that is every message.
            targets = [broker for broker in brokers if broker is not publisher]
        for broker in targets:
            broker._deliver_soon(channel, data)  # bus and brokers: one module's pair


_buses: weakref.WeakValueDictionary[str, MemoryBus] = weakref.WeakValueDictionary()
_buses_lock = threading.Lock()


def _named_bus(name: str) -> MemoryBus:
    with _buses_lock:
        bus = _buses.get(name)
        if bus is None:
            bus = _buses[name] = MemoryBus()
        return bus


class MemoryBroker(Broker):
    """One hub's attachment to an in-process bus (``name``: a shared, named bus)."""

    spans_processes = False

    def __init__(
        self, bus: str | MemoryBus | None = None, *, max_message_size: int = DEFAULT_MAX_SIZE
    ) -> None:
        super().__init__(max_message_size=max_message_size)
        if bus is None:
            bus = MemoryBus()
        elif isinstance(bus, str):
            bus = _named_bus(bus)
        self.bus = bus
        self._channels: set[str] = set()

    def __repr__(self) -> str:
        return f"<MemoryBroker channels={len(self._channels)}>"

    def subscribe(self, channel: str) -> None:
        if channel not in self._channels:
            self._channels.add(channel)
            self.bus._subscribe(channel, self)

    def unsubscribe(self, channel: str) -> None:
        if channel in self._channels:
            self._channels.discard(channel)
            self.bus._unsubscribe(channel, self)

    def is_subscribed(self, channel: str) -> bool:
        return channel in self._channels

    def publish(self, channel: str, data: bytes) -> None:
        self._check_size(data)
        self.bus._publish(channel, data, self)

    def _deliver_soon(self, channel: str, data: bytes) -> None:
        """Called by the bus on the publisher's thread: deliver on our own loop, later (a
        publish never re-enters the publisher's hub)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        try:
            if running is loop:
                loop.call_soon(self._deliver, channel, data)
            else:
                loop.call_soon_threadsafe(self._deliver, channel, data)
        except RuntimeError:  # the loop closed meanwhile
            pass

    def _deliver(self, channel: str, data: bytes) -> None:
        if channel in self._channels and self._on_message is not None:
            self._on_message(channel, data)

    async def close(self) -> None:
        for channel in list(self._channels):
            self.unsubscribe(channel)
        await super().close()
