"""The messages received and not read yet (stargate.inbox): one inbox for both roles.

The :class:`~stargate.inbox.Inbox` is driven here as the loop and the readers drive it,
with a stand-in for the transport's pause and resume; its users (the server's and the
client's WebSocket objects) are tested end to end in tests/server, tests/client and
tests/test_endpoint.py.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from stargate.errors import ConnectionClosed
from stargate.inbox import Inbox, Message

pytestmark = pytest.mark.asyncio

#: Upper bound of every wait: a bug makes a test fail, never hang.
TIMEOUT = 5.0


class Reading:
    """What the inbox makes of the transport: whether it reads, and how often it switched."""

    def __init__(self) -> None:
        self.reading = True
        self.pauses = 0
        self.resumes = 0

    def pause(self) -> None:
        self.reading = False
        self.pauses += 1

    def resume(self) -> None:
        self.reading = True
        self.resumes += 1


def make_inbox(max_queue: int = 4) -> tuple[Inbox, Reading]:
    reading = Reading()
    inbox = Inbox(
        asyncio.get_running_loop(),
        max_queue,
        pause=reading.pause,
        resume=reading.resume,
        closed_error=lambda: ConnectionClosed(1001, "going away"),
    )
    return inbox, reading


async def test_messages_come_out_in_order_of_any_type() -> None:
    inbox, _ = make_inbox()
    inbox.put("text")
    inbox.put(b"binary")
    assert len(inbox) == 2
    assert await inbox.get() == "text"
    assert await inbox.get() == b"binary"
    assert len(inbox) == 0


async def test_a_waiting_coroutine_is_woken_by_a_put() -> None:
    inbox, _ = make_inbox()
    getter = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    assert inbox.waiter is not None  # a message now is for that coroutine
    inbox.put("hello")
    assert await asyncio.wait_for(getter, TIMEOUT) == "hello"
    assert inbox.waiter is None


async def test_reading_pauses_when_full_and_resumes_at_half() -> None:
    inbox, reading = make_inbox(max_queue=4)
    for i in range(3):
        inbox.put(str(i))
    assert reading.reading and not inbox.paused
    inbox.put("3")
    assert not reading.reading and inbox.paused
    inbox.put("4")  # the rest of the read that filled it: kept, no second pause
    assert (len(inbox), reading.pauses) == (5, 1)
    for expected in "01":
        assert await inbox.get() == expected
        assert not reading.reading  # 4, then 3 left: more than half of max_queue
    assert await inbox.get() == "2"  # down to 2 == 4 // 2
    assert reading.reading and not inbox.paused
    assert reading.resumes == 1


async def test_closing_reads_on_and_drops_past_max_queue() -> None:
    inbox, reading = make_inbox(max_queue=2)
    inbox.put("a")
    inbox.put("b")
    assert not reading.reading
    inbox.closing()  # the peer's close frame is behind what it sent: read on
    assert reading.reading and not inbox.paused
    inbox.put("c")  # past max_queue while closing: dropped, and no pause
    assert reading.reading
    assert [await inbox.get(), await inbox.get()] == ["a", "b"]
    assert len(inbox) == 0


async def test_discard_returns_what_was_queued_and_drops_the_rest() -> None:
    inbox, reading = make_inbox(max_queue=2)
    inbox.put("a")
    inbox.put("b")
    assert inbox.discard() == ["a", "b"]
    assert reading.reading  # nobody reads: the pause is lifted
    inbox.put("c")
    assert len(inbox) == 0


async def test_take_all_empties_the_queue_and_the_inbox_goes_on() -> None:
    """A callback installed late takes what waits; unlike discard, later messages are
    still queued for a reader, and what was taken counts as read before a held close."""
    inbox, reading = make_inbox(max_queue=2)
    inbox.put("a")
    inbox.put("b")
    assert not reading.reading
    fired: list[int] = []
    assert inbox.call_when_read(lambda: fired.append(1))
    assert inbox.take_all() == ["a", "b"]
    assert reading.reading and len(inbox) == 0
    inbox.put("c")
    assert await inbox.get() == "c"  # the two taken were owed: the reader is through
    assert fired == [1]


async def test_close_can_give_the_final_error_and_stops_calling_back() -> None:
    """The connection hands its final error over at close, so the inbox keeps no reference
    to it (the callbacks given at construction are its methods: a reference cycle)."""
    inbox, reading = make_inbox(max_queue=1)
    for message in ("a", "b", "c"):
        inbox.put(message)
    assert reading.pauses == 1
    inbox.close(lambda: ConnectionClosed(1000, "done"))
    for message in ("a", "b", "c"):
        assert await inbox.get() == message
    assert reading.resumes == 0  # nothing to resume once the connection is gone
    with pytest.raises(ConnectionClosed) as info:
        await inbox.get()
    assert (info.value.code, info.value.reason) == (1000, "done")


async def test_after_close_what_came_before_is_read_then_the_error() -> None:
    inbox, _ = make_inbox()
    waiting = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    inbox.close()
    with pytest.raises(ConnectionClosed) as info:
        await asyncio.wait_for(waiting, TIMEOUT)
    assert (info.value.code, info.value.reason) == (1001, "going away")

    inbox, _ = make_inbox()
    inbox.put("last")
    inbox.close()
    assert await inbox.get() == "last"
    with pytest.raises(ConnectionClosed):
        await inbox.get()


async def test_call_when_read_fires_when_the_reader_comes_back_for_more() -> None:
    """The moment to send a close held back: every message that came before it was taken
    and the reader asks for the next one (it had its chance to answer the last)."""
    inbox, _ = make_inbox()
    fired: list[int] = []
    assert not inbox.call_when_read(lambda: fired.append(1))  # nothing unread: send now
    inbox.put("one")
    inbox.put("two")
    assert inbox.call_when_read(lambda: fired.append(2))
    assert await inbox.get() == "one"
    assert await inbox.get() == "two"
    assert fired == []  # the reader may still be answering "two"
    inbox.close()  # (the transport ends once the close is sent)
    asked = asyncio.create_task(inbox.get())
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(asked, TIMEOUT)
    assert fired == []  # closed first: nothing is owed any more

    inbox, _ = make_inbox()
    inbox.put("one")
    assert inbox.call_when_read(lambda: fired.append(3))
    assert await inbox.get() == "one"
    next_one = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    assert fired == [3]
    inbox.put("after")
    assert await asyncio.wait_for(next_one, TIMEOUT) == "after"
    assert fired == [3]  # once


# -- blocking readers ------------------------------------------------------------------------


async def test_a_blocking_read_needs_allow_blocking() -> None:
    inbox, _ = make_inbox()
    with pytest.raises(RuntimeError, match="allow_blocking"):
        inbox.get_blocking(0)


async def test_a_blocking_read_times_out_then_gets_what_comes() -> None:
    inbox, _ = make_inbox()
    inbox.allow_blocking()
    with pytest.raises(TimeoutError):
        await asyncio.to_thread(inbox.get_blocking, 0.05)
    reader = asyncio.ensure_future(asyncio.to_thread(inbox.get_blocking, TIMEOUT))
    await asyncio.sleep(0.05)
    inbox.put("for the thread")
    assert await asyncio.wait_for(reader, TIMEOUT) == "for the thread"


async def test_a_blocking_reader_is_woken_by_close() -> None:
    inbox, _ = make_inbox()
    inbox.allow_blocking()
    inbox.put("before")
    assert await asyncio.to_thread(inbox.get_blocking, TIMEOUT) == "before"
    reader = asyncio.ensure_future(asyncio.to_thread(inbox.get_blocking, TIMEOUT))
    await asyncio.sleep(0.05)
    inbox.close()
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(reader, TIMEOUT)


async def test_a_blocking_reader_lifts_the_pause_on_the_loop() -> None:
    inbox, reading = make_inbox(max_queue=4)
    inbox.allow_blocking()
    for i in range(4):
        inbox.put(str(i))
    assert not reading.reading
    taken = [await asyncio.to_thread(inbox.get_blocking, TIMEOUT) for _ in range(2)]
    assert taken == ["0", "1"]
    # The thread lifted the pause; the transport is resumed on the loop's thread, and only
    # if nothing filled the inbox meanwhile.
    await asyncio.sleep(0)
    assert reading.reading and reading.resumes == 1


async def test_a_pause_that_comes_back_before_the_resume_runs_stands() -> None:
    """A thread lifts the pause while the loop is still delivering the read that filled
    the inbox; if that read fills it again, the resume the thread scheduled must not start
    reading again."""
    inbox, reading = make_inbox(max_queue=4)
    inbox.allow_blocking()
    for i in range(4):
        inbox.put(str(i))
    for _ in range(2):
        await asyncio.to_thread(inbox.get_blocking, TIMEOUT)
    # The resume is scheduled, not run: the same read delivers two more messages.
    inbox.put("4")
    inbox.put("5")
    assert inbox.paused and not reading.reading
    await asyncio.sleep(0)  # the scheduled resume runs now
    assert not reading.reading


async def test_blocking_reader_and_loop_never_leave_reading_paused_on_an_empty_inbox() -> None:
    """The loop puts reads of a few messages while reading is on; a thread takes them one
    by one.  If a pause decided by the loop and a take by the thread ever crossed, reading
    would stay paused with nothing left to read, and this would stop short."""
    inbox, reading = make_inbox(max_queue=1)
    inbox.allow_blocking()
    total = 3000
    got: list[Message] = []
    done = threading.Event()

    def read_all() -> None:
        while len(got) < total:
            got.append(inbox.get_blocking(TIMEOUT))
        done.set()

    thread = threading.Thread(target=read_all)
    thread.start()
    sent = 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 4 * TIMEOUT
    while sent < total:
        assert loop.time() < deadline, f"reading stayed paused after {sent} messages"
        if reading.reading:
            for _ in range(min(1 + sent % 3, total - sent)):  # one read: 1 to 3 messages
                inbox.put(str(sent))
                sent += 1
        await asyncio.sleep(0)
    thread.join(TIMEOUT)
    assert done.is_set()
    assert got == [str(i) for i in range(total)]


async def test_call_when_read_from_a_blocking_reader_fires_on_the_loop() -> None:
    inbox, _ = make_inbox()
    inbox.allow_blocking()
    fired: list[int] = []
    inbox.put("only")
    assert inbox.call_when_read(lambda: fired.append(threading.get_ident()))
    assert await asyncio.to_thread(inbox.get_blocking, TIMEOUT) == "only"
    with pytest.raises(TimeoutError):
        await asyncio.to_thread(inbox.get_blocking, 0.01)  # comes back for more
    await asyncio.sleep(0)
    assert fired == [threading.get_ident()]  # on the loop's thread


async def test_a_coroutine_reads_an_inbox_that_threads_may_read_too() -> None:
    """Once threads may read (a blocking facade exists), a coroutine on the loop still reads
    in order under the shared lock and lifts the pause itself, at half of max_queue;
    allowing blocking reads twice keeps the one lock."""
    inbox, reading = make_inbox(max_queue=4)
    inbox.allow_blocking()
    lock = inbox._cond
    inbox.allow_blocking()
    assert inbox._cond is lock is not None
    for i in range(4):
        inbox.put(str(i))
    assert inbox.paused and not reading.reading
    assert await inbox.get() == "0"
    assert not reading.reading  # 3 left: more than half
    assert await inbox.get() == "1"
    assert reading.reading and reading.resumes == 1  # on the loop: at once
    assert await asyncio.to_thread(inbox.get_blocking, TIMEOUT) == "2"
    assert await inbox.get() == "3"
    waiting = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    inbox.put("4")
    assert await asyncio.wait_for(waiting, TIMEOUT) == "4"
