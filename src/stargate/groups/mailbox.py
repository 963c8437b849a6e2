"""What other threads ask of one event loop, in order, with one wakeup per batch.

A send from a worker thread (a WSGI view, a ``def`` handler) is queued in the loop's
:class:`Mailbox` rather than scheduled on its own: the loop is woken once for whatever has
accumulated, and consecutive sends to one group go out as **one write per member** (the
frames of every message, each encoded once per frame family, joined).  Joins and leaves go
through the same queue, so the operations of one thread keep their order.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from .members import GroupState, Message

logger = logging.getLogger("stargate.groups")

#: A combined write of messages sent from other threads carries at most this many bytes
#: (past it, the next messages go in another write).
MAX_BATCH = 64 * 1024

#: At most this many queued items are run per pass of the loop: a backlog that threads
#: piled up (they do not wait for the loop) is worked off in slices, the loop serving its
#: connections, timers and other callbacks between them.
MAX_DRAIN = 1024

#: ``send_batch(state, name, messages)``: deliver several messages to one group at once.
SendBatch = Callable[[GroupState, str, list[Message]], None]


class Mailbox:
    """One event loop's queue of calls and group sends from other threads."""

    __slots__ = ("items", "loop", "scheduled", "send_batch")

    def __init__(self, loop: asyncio.AbstractEventLoop, send_batch: SendBatch) -> None:
        self.loop = loop
        self.send_batch = send_batch
        #: ``(func, args)``; ``func`` is ``None`` for a group send ``(state, name, message)``.
        self.items: deque[tuple[Callable[..., object] | None, tuple[Any, ...]]] = deque()
        self.scheduled = False

    def post(self, func: Callable[..., object], args: tuple[Any, ...]) -> None:
        """Run ``func(*args)`` on the loop, after everything posted before."""
        self._put(func, args)

    def post_send(self, state: GroupState, name: str, message: Message) -> None:
        """Send ``message`` to ``state``'s members on the loop, batched with its neighbours."""
        self._put(None, (state, name, message))

    def _put(self, func: Callable[..., object] | None, args: tuple[Any, ...]) -> None:
        self.items.append((func, args))
        if not self.scheduled:
            # Read after the append: a drain that already cleared the flag also takes this
            # item, or we schedule another (harmless if it finds nothing).
            self.scheduled = True
            try:
                self.loop.call_soon_threadsafe(self.drain)
            except RuntimeError:  # the loop is closed: its connections are gone with it
                self.items.clear()

    def drain(self) -> None:
        """On the loop: run what accumulated (at most ``MAX_DRAIN`` items, the rest in the
        next pass), in order, joining consecutive group sends."""
        self.scheduled = False
        items = self.items
        if len(items) > MAX_DRAIN:
            self.scheduled = True
            self.loop.call_soon(self.drain)
        batch: list[Message] = []
        batch_state: GroupState | None = None
        batch_name = ""
        size = 0
        for _ in range(min(len(items), MAX_DRAIN)):
            func, args = items.popleft()
            if func is None:
                state, name, message = args
                if state is batch_state and size + len(message) <= MAX_BATCH:
                    batch.append(message)
                    size += len(message)
                    continue
                if batch_state is not None:
                    self._send(batch_state, batch_name, batch)
                batch_state, batch_name, batch, size = state, name, [message], len(message)
                continue
            if batch_state is not None:
                self._send(batch_state, batch_name, batch)
                batch_state, batch = None, []
            try:
                func(*args)
            except Exception:
                logger.exception("mailbox of %r: %r failed", self.loop, func)
        if batch_state is not None:
            self._send(batch_state, batch_name, batch)

    def _send(self, state: GroupState, name: str, messages: list[Message]) -> None:
        """One batch; a failure is logged and stays its own: what was queued after it (other
        sends, a join) still runs."""
        try:
            self.send_batch(state, name, messages)
        except Exception:
            logger.exception("mailbox of %r: a send to %r failed", self.loop, name)
