"""One server connection driven without a socket, the same way for every run of an input.

:class:`FuzzLoop` is an asyncio loop whose clock moves only when told: a run never waits on
real time, and every deadline the server sets (head, body, keep-alive, linger, pings, close)
can be reached at once by jumping to it.  :class:`FakeTransport` stands for the socket: it
records what the server writes and how it closes, and plays a client that sends its bytes
in pieces, reads slowly or at once, and may half-close.  :func:`drive` runs one connection
until it has ended, with bounds everywhere, so that a hang is a finding, not a stuck fuzzer.

What goes wrong on the loop is collected, not lost: the loop's exception handler records
every context (a callback that raised, a task destroyed while pending, a future whose
exception nobody retrieved), and :class:`LogRecorder` every record the ``stargate`` loggers
emit while an input runs.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

#: Loop iterations one settling may take: far more than any answer needs, few enough that a
#: callback rescheduling itself forever is reported instead of spinning.
MAX_STEPS = 5_000
#: Clock jumps (to the next deadline) before a connection must have ended.
MAX_JUMPS = 200
#: Real seconds a worker thread may take to answer (the apps answer in microseconds).
THREAD_GRACE = 30.0


class Hang(AssertionError):
    """The server would wait forever, or spin: a bound of :mod:`fuzzing.driver` was hit."""


class FuzzLoop(asyncio.SelectorEventLoop):
    """An event loop with a virtual clock, stepped by hand.

    Time stands still until :meth:`jump`; a method that is not thread-safe raises when a
    worker thread calls it (asyncio checks that only in debug mode, and only while the loop
    runs, which here is seldom); work handed to an executor is tracked so that
    :meth:`settle` returns only once every worker thread has answered and the loop has
    nothing left to run.  While :attr:`gate` is closed, work handed to an executor waits
    before it starts (an app that is slow to answer, deterministically: it answers when the
    gate opens, and :meth:`settle` then waits for it).
    """

    def __init__(self) -> None:
        super().__init__()
        self.now = 1_000_000.0
        self._owner = threading.get_ident()
        self.gate = threading.Event()
        self.gate.set()
        self.in_flight: set[asyncio.Future[Any]] = set()
        self.errors: list[dict[str, Any]] = []
        self.set_exception_handler(self._record_error)

    def time(self) -> float:
        return self.now

    def _check_owner(self) -> None:
        # asyncio's own check (debug mode) only runs while the loop runs; this one always.
        if threading.get_ident() != self._owner:
            raise RuntimeError("a loop method that is not thread-safe, called from a thread")

    def call_soon(self, callback: Any, *args: Any, context: Any = None) -> asyncio.Handle:  # type: ignore[override]
        self._check_owner()
        return super().call_soon(callback, *args, context=context)

    def call_at(  # type: ignore[override]
        self, when: float, callback: Any, *args: Any, context: Any = None
    ) -> asyncio.TimerHandle:
        self._check_owner()
        return super().call_at(when, callback, *args, context=context)

    def _record_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        self.errors.append(context)

    def pass_gate(self) -> None:
        """In a worker thread: wait while :attr:`gate` is closed (at most THREAD_GRACE)."""
        if not self.gate.wait(THREAD_GRACE):
            raise Hang(f"the gate stayed closed for {THREAD_GRACE} s")

    def run_in_executor(self, executor: Any, func: Any, *args: Any) -> asyncio.Future[Any]:  # type: ignore[override]
        def gated() -> Any:
            self.pass_gate()
            return func(*args)

        future = super().run_in_executor(executor, gated)
        self.in_flight.add(future)
        future.add_done_callback(self.in_flight.discard)
        return future

    @property
    def _pending_callbacks(self) -> int:
        ready: deque[asyncio.Handle] = self._ready  # type: ignore[attr-defined]
        return len(ready)

    def step(self) -> None:
        """One loop iteration: the callbacks ready now, I/O polled without waiting, and the
        timers due at the current virtual time."""
        self.call_soon(self.stop)
        self.run_forever()

    def settle(self) -> None:
        """Run until nothing is ready and no worker thread is still answering."""
        for _ in range(MAX_STEPS):
            if self._pending_callbacks:
                self.step()
                continue
            if not self.in_flight or not self.gate.is_set():
                return
            # A worker thread's answer comes back through call_soon_threadsafe.
            deadline = time.monotonic() + THREAD_GRACE
            while not self._pending_callbacks:
                if time.monotonic() > deadline:
                    raise Hang(f"a worker thread did not answer within {THREAD_GRACE} s")
                time.sleep(0.00005)
            self.step()
        raise Hang(f"the loop still had work after {MAX_STEPS} iterations")

    def next_deadline(self) -> float | None:
        """When the earliest live timer is due, if any."""
        scheduled: list[asyncio.TimerHandle] = self._scheduled  # type: ignore[attr-defined]
        live = [handle.when() for handle in scheduled if not handle.cancelled()]
        return min(live) if live else None

    def jump(self) -> bool:
        """Move the clock to the next deadline and run what is then due; False if none."""
        when = self.next_deadline()
        if when is None:
            return False
        self.now = max(self.now, when)
        self.step()
        self.settle()
        return True


class LogRecorder(logging.Handler):
    """Collects the ``stargate`` loggers' records (and fails on one that cannot be
    formatted: a broken log call is a bug too)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.broken: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            record.getMessage()
        except Exception as exc:  # any failure to format is the finding
            self.broken.append(f"{record.name}: {record.msg!r} % {record.args!r}: {exc!r}")
        self.records.append(record)

    @contextmanager
    def recording(self, name: str = "stargate") -> Iterator[LogRecorder]:
        """Attach to ``name`` at INFO (so that INFO-level formatting runs) for a block; the
        records stay here (a fuzzer's output is not the place for expected tracebacks)."""
        logger = logging.getLogger(name)
        level, propagate = logger.level, logger.propagate
        self.records.clear()
        self.broken.clear()
        logger.addHandler(self)
        logger.setLevel(logging.INFO)
        logger.propagate = False
        try:
            yield self
        finally:
            logger.removeHandler(self)
            logger.setLevel(level)
            logger.propagate = propagate


class _SSLContextStandIn:
    """What ``get_extra_info("sslcontext")`` returns for a TLS-like connection."""


class FakeTransport(asyncio.Transport):
    """The socket, as the server's protocols see it, and the client behind it.

    Semantics follow asyncio's selector transports where the server could tell: ``write``
    after ``write_eof`` raises RuntimeError, ``close`` lets written bytes reach the client
    before ``connection_lost``, ``abort`` does not wait, a transport that is closing reads no
    more, TLS (``secure``) cannot half-close.  ``high_water`` set: the client reads only when
    it has nothing left to send (:meth:`drain`), and above that many unread bytes the
    protocol is told to pause writing.
    """

    def __init__(
        self, loop: FuzzLoop, protocol: asyncio.Protocol, *, secure: bool, high_water: int | None
    ) -> None:
        super().__init__()
        self.loop = loop
        self.protocol: asyncio.Protocol | asyncio.BufferedProtocol = protocol
        self.secure = secure
        self.high_water = high_water
        self.written = bytearray()
        #: Offset in ``written`` where the protocol changed (``set_protocol``): the bytes
        #: before are HTTP, the ones after belong to the WebSocket.
        self.switched_at: int | None = None
        self.unread = 0
        self.writing_paused = False
        self.reading_paused = False
        self.closing = False
        self.aborted = False
        self.eof_written = False
        self.lost = False
        self.writes_after_lost = 0
        self.buffer_limits: tuple[int | None, int | None] = (None, None)

    # -- what the server calls -------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.eof_written:
            raise RuntimeError("Cannot call write() after write_eof()")  # as asyncio's
        if self.lost:
            self.writes_after_lost += 1
            return
        self.written += data
        if self.high_water is None:
            return
        self.unread += len(data)
        if self.unread > self.high_water and not self.writing_paused and not self.closing:
            self.writing_paused = True
            self.protocol.pause_writing()

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def write_eof(self) -> None:
        if self.closing or self.eof_written:
            return
        self.eof_written = True

    def can_write_eof(self) -> bool:
        return not self.secure

    def close(self) -> None:
        if self.closing:
            return
        self.closing = True
        if not self.unread:
            self.loop.call_soon(self._connection_lost)

    def abort(self) -> None:
        self.aborted = True
        if self.lost:
            return
        already = self.closing and not self.unread
        self.closing = True
        self.unread = 0
        if not already:
            self.loop.call_soon(self._connection_lost)

    def is_closing(self) -> bool:
        return self.closing

    def pause_reading(self) -> None:
        if not self.closing:
            self.reading_paused = True

    def resume_reading(self) -> None:
        if not self.closing:
            self.reading_paused = False

    def is_reading(self) -> bool:
        return not self.reading_paused and not self.closing

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        assert isinstance(protocol, (asyncio.Protocol, asyncio.BufferedProtocol))
        self.protocol = protocol
        if self.switched_at is None:
            self.switched_at = len(self.written)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self.protocol

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return ("127.0.0.1", 50_000)
        if name == "sockname":
            return ("127.0.0.1", 8000)
        if name == "sslcontext" and self.secure:
            return _SSLContextStandIn()
        return default

    def get_write_buffer_size(self) -> int:
        return self.unread

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.buffer_limits = (high, low)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        high = self.high_water or 0
        return (high // 4, high)

    def _connection_lost(self) -> None:
        if self.lost:
            return
        self.lost = True
        self.closing = True
        self.protocol.connection_lost(None)

    # -- what the client does --------------------------------------------------------------

    @property
    def accepts_data(self) -> bool:
        return not self.closing and not self.reading_paused

    def deliver(self, data: bytes) -> None:
        """Hand ``data`` to the protocol as the loop would: into its buffer, a buffer's
        length at a time, for a buffered protocol (an upgraded connection's)."""
        protocol = self.protocol
        if not isinstance(protocol, asyncio.BufferedProtocol):
            protocol.data_received(data)
            return
        view = memoryview(data)
        while view and not self.lost:
            buffer = memoryview(protocol.get_buffer(len(view)))
            n = min(len(buffer), len(view))
            buffer[:n] = view[:n]
            view = view[n:]
            protocol.buffer_updated(n)

    def deliver_eof(self) -> None:
        if not self.protocol.eof_received():
            self.close()

    def reset_by_peer(self) -> None:
        """The client is gone without a word (a reset)."""
        if not self.lost:
            self.lost = True
            self.closing = True
            self.protocol.connection_lost(ConnectionResetError("reset by the fuzzing client"))

    def drain(self) -> bool:
        """The client reads everything written so far; False if there was nothing."""
        if not self.unread:
            return False
        self.unread = 0
        if self.writing_paused and not self.lost:
            self.writing_paused = False
            self.protocol.resume_writing()
        if self.closing and not self.lost:
            self.loop.call_soon(self._connection_lost)
        return True


def pieces(data: bytes, seed: int) -> list[bytes]:
    """``data`` as the client sends it: whole (seed 0), else in pieces whose sizes cycle
    through a pattern chosen by ``seed`` (1 to 64 bytes)."""
    if seed == 0 or not data:
        return [data] if data else []
    sizes = [1 + ((seed * 37) >> shift) % 64 for shift in (0, 3, 6, 9)]
    chunks = []
    pos = i = 0
    while pos < len(data):
        n = sizes[i % 4]
        chunks.append(data[pos : pos + n])
        pos += n
        i += 1
    return chunks


@dataclass(frozen=True)
class Client:
    """How the client behaves (a server input's byte 2, bit by bit)."""

    #: Reads only when it has nothing left to send (the server's writes pause).
    slow_reader: bool = False
    #: Half-closes after its last byte.
    eof: bool = False
    #: Speaks over TLS (as far as the server can tell: no half-close, ``sslcontext``).
    tls: bool = False
    #: The app answers only once the client has sent all it can (work waits at the gate).
    slow_app: bool = False
    #: Disappears (a reset) after its last byte, without reading the answers.
    reset: bool = False

    @classmethod
    def from_byte(cls, byte: int) -> Client:
        return cls(*(bool(byte >> bit & 1) for bit in range(5)))


def drive(loop: FuzzLoop, transport: FakeTransport, chunks: list[bytes], client: Client) -> None:
    """Play the client until the connection has ended; raise :class:`Hang` if it never does.

    The client sends its pieces while the server reads; half-closes or disappears after the
    last one, if it does; reads what it was sent when it cannot send (reading paused) or
    has sent everything; then falls silent, and the clock jumps from deadline to deadline.
    Every state of a connection has a deadline, so it must end; then the remaining timers
    run out (none may reschedule itself forever).
    """
    queue = deque(chunks)
    eof_sent = False
    jumps = 0
    rounds = 0
    try:
        while True:
            rounds += 1
            if rounds > 4 * len(chunks) + 10 * MAX_JUMPS:
                raise Hang(f"the client and the server were still busy after {rounds} rounds")
            loop.settle()
            if queue and transport.accepts_data:
                if client.slow_app:
                    loop.gate.clear()
                transport.deliver(queue.popleft())
                continue
            if not queue and client.eof and not eof_sent and not transport.closing:
                eof_sent = True
                transport.deliver_eof()
                continue
            if not queue and client.reset and not transport.lost:
                transport.reset_by_peer()
                continue
            if not loop.gate.is_set():
                loop.gate.set()  # the app answers now
                continue
            if transport.drain():
                continue
            if transport.lost:
                break
            if jumps == MAX_JUMPS:
                raise Hang(f"the connection had not ended after {MAX_JUMPS} deadlines")
            jumps += 1
            if not loop.jump():
                if transport.switched_at is not None:
                    # An idle WebSocket without keepalive (hixie has no ping) may stay open
                    # for as long as its peer: the client goes away.
                    transport.reset_by_peer()
                    continue
                state = "reading paused" if transport.reading_paused else "idle"
                raise Hang(f"the HTTP connection is open ({state}) and no deadline is set")
    finally:
        loop.gate.set()
    for _ in range(MAX_JUMPS):
        if not loop.jump():
            break
    else:
        raise Hang(f"timers still rescheduled {MAX_JUMPS} jumps after the connection ended")
    loop.settle()
