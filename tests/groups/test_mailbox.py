"""Calls from other threads (stargate.groups.mailbox): in order, one wakeup per batch, and
consecutive sends to one group joined into one delivery."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from stargate.groups.mailbox import MAX_BATCH, MAX_DRAIN, Mailbox
from stargate.groups.members import GroupState, Message


def state(name: str) -> GroupState:
    return GroupState(name, None, lambda s, ws: None)


@pytest.mark.asyncio
async def test_posts_from_a_thread_run_in_order_with_sends_batched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loop = asyncio.get_running_loop()
    log: list[Any] = []
    batches: list[tuple[str, list[Message]]] = []
    box = Mailbox(loop, lambda s, name, messages: batches.append((name, list(messages))))
    a, b = state("a"), state("b")
    wakeups = 0
    schedule = loop.call_soon_threadsafe

    def counting(callback: Any, *args: Any) -> Any:
        nonlocal wakeups
        wakeups += 1
        return schedule(callback, *args)

    monkeypatch.setattr(loop, "call_soon_threadsafe", counting)

    def thread() -> None:
        box.post(log.append, ("first",))
        box.post_send(a, "a", "1")
        box.post_send(a, "a", "2")
        box.post_send(b, "b", "3")
        box.post_send(a, "a", "4")
        box.post(log.append, ("last",))

    worker = threading.Thread(target=thread)
    worker.start()
    worker.join()
    await asyncio.sleep(0.01)
    assert wakeups == 1
    assert batches == [("a", ["1", "2"]), ("b", ["3"]), ("a", ["4"])]
    assert log == ["first", "last"]


@pytest.mark.asyncio
async def test_a_backlog_is_worked_off_in_slices_the_loop_runs_between() -> None:
    """Threads do not wait for the loop: a backlog they piled up runs ``MAX_DRAIN`` items
    per pass, in order, and what else the loop has to do runs between the slices (one
    drain of a million items held the loop, and every connection, for seconds)."""
    loop = asyncio.get_running_loop()
    log: list[Any] = []
    box = Mailbox(loop, lambda s, name, messages: None)
    count = 2 * MAX_DRAIN + 10

    def thread() -> None:
        for i in range(count):
            box.post(log.append, (i,))

    worker = threading.Thread(target=thread)
    worker.start()
    worker.join()
    loop.call_soon(log.append, "the loop's own work")  # scheduled after the first drain
    while len(log) < count + 1:
        await asyncio.sleep(0.01)
    mark = log.index("the loop's own work")
    assert MAX_DRAIN <= mark < count
    log.remove("the loop's own work")
    assert log == list(range(count))


@pytest.mark.asyncio
async def test_a_batch_is_bounded_in_bytes() -> None:
    loop = asyncio.get_running_loop()
    batches: list[list[Message]] = []
    box = Mailbox(loop, lambda s, name, messages: batches.append(list(messages)))
    a = state("a")
    big = "x" * (MAX_BATCH // 2 + 1)
    for _ in range(3):
        box.post_send(a, "a", big)
    await asyncio.sleep(0.01)
    assert [len(batch) for batch in batches] == [1, 1, 1]


@pytest.mark.asyncio
async def test_a_failing_call_does_not_stop_the_rest(caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.get_running_loop()
    log: list[str] = []

    def fail() -> None:
        raise RuntimeError("boom")

    box = Mailbox(loop, lambda s, name, messages: None)
    box.post(fail, ())
    box.post(log.append, ("after",))
    await asyncio.sleep(0.01)
    assert log == ["after"]
    assert "boom" in caplog.text


def test_posting_to_a_closed_loop_drops_quietly() -> None:
    loop = asyncio.new_event_loop()
    loop.close()
    box = Mailbox(loop, lambda s, name, messages: None)
    box.post(print, ("never",))
    assert not box.items


@pytest.mark.asyncio
async def test_a_failing_send_loses_nothing_queued_after_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One batch failing on the loop is logged; the sends and calls queued after it (from
    the same thread, a join) still run."""
    loop = asyncio.get_running_loop()
    log: list[Any] = []

    def send_batch(s: GroupState, name: str, messages: list[Message]) -> None:
        if name == "bad":
            raise RuntimeError("boom")
        log.append((name, list(messages)))

    box = Mailbox(loop, send_batch)

    def thread() -> None:
        box.post_send(state("bad"), "bad", "x")
        box.post_send(state("good"), "good", "y")
        box.post(log.append, ("joined",))

    worker = threading.Thread(target=thread)
    worker.start()
    worker.join()
    await asyncio.sleep(0.01)
    assert log == [("good", ["y"]), "joined"]
    assert "a send to 'bad' failed" in caplog.text
