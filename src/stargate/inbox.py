"""The messages a connection received and its application has not read yet.

One :class:`Inbox` serves both roles (server and client) and both kinds of reader (a
coroutine, or a thread behind the blocking facade); it is also where reading pauses when the
application lags behind (``max_queue``), and where the close frame that came after unread
messages waits for them to be read (:meth:`Inbox.call_when_read`).
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Callable

#: A message as the application gets it: ``str`` for text, ``bytes`` for binary.
Message = str | bytes

_UNBOUNDED = sys.maxsize


class Inbox:
    """The messages received and not read yet: one for both roles and both kinds of reader.

    The loop puts whole messages (the sans-I/O connection reassembles fragments and checks
    UTF-8); a coroutine takes them with :meth:`get`, a thread with :meth:`get_blocking`.
    The inbox decides when reading pauses: at ``max_queue`` messages it calls ``pause``, and
    ``resume`` once a reader brought it down to half of that, so a reader that lags behind
    bounds what the peer can make us hold.  Once the connection closes, reading must go on
    (the peer's close frame is behind what it sent before): past ``max_queue`` messages are
    dropped instead (:meth:`closing`).  It also tells when the reader has taken every
    message that came before a close (:meth:`call_when_read`), the moment to send a close
    frame held back so that the application could still answer them.

    Every method but :meth:`get_blocking` is called on the loop's thread.  A thread may read
    only after :meth:`allow_blocking`: from then on the loop and the reader share a lock, so
    connections read by coroutines pay nothing for threads.  One reader at a time.
    """

    __slots__ = (
        "_closed",
        "_closed_error",
        "_cond",
        "_high",
        "_limit",
        "_loop",
        "_low",
        "_max_queue",
        "_owed",
        "_pause",
        "_read_through",
        "_resume",
        "messages",
        "paused",
        "waiter",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        max_queue: int,
        *,
        pause: Callable[[], object],
        resume: Callable[[], object],
        closed_error: Callable[[], Exception],
    ) -> None:
        self._loop = loop
        #: The messages not read yet, oldest first (read-only outside: a hot path may test
        #: it without calling ``len``).  A list, not a deque: an empty deque costs 700
        #: bytes, for each connection, and the queue stays short (reading pauses at
        #: max_queue).
        self.messages: list[Message] = []
        self._max_queue = max_queue
        #: Reading pauses at this many messages (never once closing) ...
        self._high = max_queue
        #: ... and resumes at this many.
        self._low = max_queue // 2
        #: Past this many, a message is dropped (closing: ``max_queue``; nobody reads: 0).
        self._limit = _UNBOUNDED
        self._pause = pause
        self._resume = resume
        self._closed_error = closed_error
        self._closed = False
        #: Shared with blocking readers (see :meth:`allow_blocking`).
        self._cond: threading.Condition | None = None
        #: Messages the reader must still take before ``_read_through`` is called; -1: none.
        self._owed = -1
        self._read_through: Callable[[], object] | None = None
        #: Whether reading is paused because the inbox is full (read-only outside).
        self.paused = False
        #: The future a coroutine waiting in :meth:`get` waits on, else ``None`` (read-only
        #: outside: a message is for that coroutine rather than for a callback).
        self.waiter: asyncio.Future[None] | None = None

    def __len__(self) -> int:
        return len(self.messages)

    def allow_blocking(self) -> None:
        """Let threads read with :meth:`get_blocking`; on the loop, before the first one."""
        if self._cond is None:
            self._cond = threading.Condition()

    # -- the loop's side -----------------------------------------------------------------

    def put(self, message: Message) -> None:
        """Queue ``message`` and wake its reader; pause reading if the inbox is full.  The
        receive hot path: no call but the wake-up."""
        queue = self.messages
        if len(queue) >= self._limit:
            return
        cond = self._cond
        if cond is None:
            queue.append(message)
            waiter = self.waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
            if len(queue) >= self._high and not self.paused:
                self.paused = True
                self._pause()
            return
        with cond:
            queue.append(message)
            cond.notify()
            if len(queue) >= self._high and not self.paused:
                # Under the lock: a thread that takes a message meanwhile sees the pause
                # and lifts it, so reading cannot stay paused on an empty inbox.
                self.paused = True
                self._pause()
        waiter = self.waiter  # a coroutine may read too (the facade's ws.receive())
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def closing(self) -> None:
        """The closing handshake started: read on whatever the reader does (the peer's close
        frame is behind its messages); past ``max_queue`` messages are dropped instead."""
        with self._locked():
            self._high = _UNBOUNDED
            self._limit = min(self._limit, self._max_queue)
            resume = self.paused
            self.paused = False
        if resume:
            self._resume()

    def take_all(self) -> list[Message]:
        """Every queued message at once, on the loop (for a callback installed after they
        came); unlike :meth:`discard`, the inbox goes on taking messages."""
        return self._take_queued(reading_on=True)

    def discard(self) -> list[Message]:
        """Nobody reads any more: return what is queued and drop whatever comes next."""
        return self._take_queued(reading_on=False)

    def _take_queued(self, *, reading_on: bool) -> list[Message]:
        with self._locked():
            messages = self.messages.copy()
            self.messages.clear()
            if not reading_on:
                self._limit = 0
                self._owed = -1
                self._read_through = None
            elif self._owed > 0:
                self._owed = max(0, self._owed - len(messages))
            resume = self.paused
            self.paused = False
        if resume:
            self._resume()
        return messages

    def close(self, closed_error: Callable[[], Exception] | None = None) -> None:
        """No message will come any more: wake every reader (each raises the connection's
        :class:`~stargate.errors.ConnectionClosed` once the queue is empty).

        ``closed_error``, the connection's final error, replaces the one given at
        construction, and reading is no longer paused or resumed: the callbacks given then
        are the connection's methods, which would keep it and this inbox in a reference
        cycle that only the cycle collector frees.
        """
        if closed_error is not None:
            self._closed_error = closed_error
        self._pause = self._resume = _ignore
        with self._locked():
            self._closed = True
            self._owed = -1
            self._read_through = None
            if self._cond is not None:
                self._cond.notify_all()
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def call_when_read(self, callback: Callable[[], object]) -> bool:
        """Call ``callback`` on the loop once the reader has taken every message queued now
        and asks for the next one (it had its chance to answer them all); ``False`` if none
        is queued (then it is never called).  Replaces an earlier callback."""
        with self._locked():
            if not self.messages:
                return False
            self._owed = len(self.messages)
            self._read_through = callback
            return True

    def _locked(self) -> threading.Condition | _NoLock:
        return self._cond if self._cond is not None else _NO_LOCK

    # -- the readers' side ---------------------------------------------------------------

    async def get(self) -> Message:
        """The next message, for a coroutine on the loop; raises the connection's
        :class:`~stargate.errors.ConnectionClosed` once it is closed and every message
        received before was taken."""
        if self._owed == 0:
            self._answered()
        queue = self.messages
        while True:
            if queue:
                cond = self._cond
                if cond is None:
                    message = queue.pop(0)
                    if self._owed > 0:
                        self._owed -= 1
                    if self.paused and len(queue) <= self._low:
                        self.paused = False
                        self._resume()
                    return message
                with cond:
                    if queue:
                        return self._take(on_loop=True)
            if self._closed:
                raise self._closed_error()
            waiter = self.waiter = self._loop.create_future()
            try:
                await waiter
            finally:
                self.waiter = None

    def get_blocking(self, timeout: float | None = None) -> Message:
        """The next message, for a thread (after :meth:`allow_blocking`), waiting at most
        ``timeout`` seconds: raises ``TimeoutError`` then, and the connection's
        :class:`~stargate.errors.ConnectionClosed` once it is closed and every message
        received before was taken."""
        cond = self._cond
        if cond is None:
            raise RuntimeError("blocking reads need Inbox.allow_blocking() first")
        queue = self.messages
        with cond:
            if self._owed == 0:
                self._owed = -1
                self._loop.call_soon_threadsafe(self._answered)
            if not queue and not self._closed:
                cond.wait_for(lambda: bool(queue) or self._closed, timeout)
            if queue:
                return self._take(on_loop=False)
            if self._closed:
                raise self._closed_error()
        raise TimeoutError("no message within the timeout")

    def _take(self, *, on_loop: bool) -> Message:
        """Pop the next message under the lock, count it against a held close, and lift a
        pause once the inbox is half empty (from a thread: on the loop, see below)."""
        queue = self.messages
        message = queue.pop(0)
        if self._owed > 0:
            self._owed -= 1
        if self.paused and len(queue) <= self._low:
            self.paused = False
            if on_loop:
                self._resume()
            else:
                self._loop.call_soon_threadsafe(self._resume_unless_paused)
        return message

    def _resume_unless_paused(self) -> None:
        """On the loop, after a thread lifted the pause: the rest of a read being delivered
        meanwhile may have filled the inbox again (then reading stays paused)."""
        if not self.paused:
            self._resume()

    def _answered(self) -> None:
        """On the loop: the reader came back after taking every message that preceded a
        close (see :meth:`call_when_read`)."""
        callback, self._read_through = self._read_through, None
        self._owed = -1
        if callback is not None:
            callback()


def _ignore() -> None:
    """Pausing or resuming the reading of a closed connection."""


class _NoLock:
    """The lock of an inbox that no thread reads: none."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_NO_LOCK = _NoLock()
