"""Buffers between worker threads and slow clients (stargate.server.buffers): memory first,
then a temporary file, always in order; request bodies spooled the same way."""

from __future__ import annotations

import os
import threading
import time
import tracemalloc

import pytest

from stargate.server.buffers import OutputBuffer, RequestBody

#: Upper bound of every wait here: a bug fails a test, never hangs it.
TIMEOUT = 5.0


def drain(buffer: OutputBuffer, limit: int = 1 << 20) -> bytes:
    parts = []
    while len(buffer):
        data = buffer.take(limit)
        assert data, "take() returned nothing while len() says bytes are waiting"
        parts.append(data)
    return b"".join(parts)


def test_output_stays_in_memory_up_to_the_limit() -> None:
    buffer = OutputBuffer(memory_limit=10, max_size=100)
    buffer.append(b"12345")
    buffer.append(b"67890")
    assert len(buffer) == 10
    assert not buffer.spilled
    assert drain(buffer) == b"1234567890"
    assert len(buffer) == 0


def test_output_spills_to_a_file_and_keeps_the_order() -> None:
    """Past ``memory_limit`` bytes go to a file, and so does every later append, however
    small, until the file is read to its end: nothing overtakes what is on disk."""
    buffer = OutputBuffer(memory_limit=10, max_size=1000)
    buffer.append(b"a" * 6)
    buffer.append(b"b" * 3)
    buffer.append(b"c" * 5)  # 14 > 10: to the file
    assert buffer.spilled
    buffer.append(b"d")  # fits in memory, but goes after "c", so to the file too
    assert len(buffer) == 15
    assert buffer.take(100) == b"aaaaaabbb"  # memory first (older)
    assert len(buffer) == 6
    buffer.append(b"e")  # the file is still being read: appended to it
    assert buffer.take(100) == b"cccccde"
    assert not buffer.spilled  # read to its end: the file is gone
    assert len(buffer) == 0
    buffer.append(b"f")  # memory again
    assert not buffer.spilled
    assert buffer.take(100) == b"f"


def test_output_file_is_a_real_file_released_when_drained() -> None:
    block = os.urandom(64 * 1024)
    tracemalloc.start()
    try:
        buffer = OutputBuffer(memory_limit=1024, max_size=64 << 20)
        for _ in range(64):  # 4 MiB, 4,096 times the memory limit
            buffer.append(block)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 256 * 1024, peak  # the appended bytes are on disk, not kept in memory
    assert buffer.spilled
    assert len(buffer) == 64 * len(block)
    assert drain(buffer, 256 * 1024) == block * 64
    assert not buffer.spilled


def test_take_respects_its_limit() -> None:
    buffer = OutputBuffer(memory_limit=100, max_size=1000)
    for piece in (b"aa", b"bb", b"cc"):
        buffer.append(piece)
    assert buffer.take(4) == b"aabb"  # whole chunks up to the limit
    assert buffer.take(1) == b"cc"  # a chunk larger than the limit comes whole, not lost
    assert buffer.take(4) == b""
    buffer = OutputBuffer(memory_limit=0, max_size=1000)
    buffer.append(b"0123456789")  # on disk: cut exactly at the limit
    assert [buffer.take(4), buffer.take(4), buffer.take(4)] == [b"0123", b"4567", b"89"]


def test_wait_for_room_blocks_until_the_loop_takes_output() -> None:
    buffer = OutputBuffer(memory_limit=4, max_size=8)
    buffer.append(b"x" * 12)  # over max_size
    result: list[bool] = []
    waiter = threading.Thread(target=lambda: result.append(buffer.wait_for_room(TIMEOUT)))
    waiter.start()
    time.sleep(0.05)
    assert result == []  # still waiting
    buffer.take(4)  # 8 left: at max_size, which is room
    waiter.join(TIMEOUT)
    assert result == [True]


def test_wait_for_room_gives_up_at_its_timeout() -> None:
    buffer = OutputBuffer(memory_limit=4, max_size=8)
    buffer.append(b"x" * 9)
    started = time.monotonic()
    assert buffer.wait_for_room(0.05) is False
    assert time.monotonic() - started >= 0.04
    assert buffer.wait_for_room(0.0) is False


def test_close_wakes_waiters_and_drops_everything() -> None:
    buffer = OutputBuffer(memory_limit=4, max_size=8)
    buffer.append(b"m" * 4)
    buffer.append(b"f" * 20)  # memory and file
    result: list[bool] = []
    waiter = threading.Thread(target=lambda: result.append(buffer.wait_for_room(TIMEOUT)))
    waiter.start()
    time.sleep(0.05)
    buffer.close()
    waiter.join(TIMEOUT)
    assert result == [True]  # woken: the caller sees ``closed`` and stops
    assert buffer.closed
    assert len(buffer) == 0
    assert not buffer.spilled
    buffer.append(b"late")  # a worker thread that did not see the close yet: dropped
    assert len(buffer) == 0
    assert buffer.take(100) == b""


def test_concurrent_appends_and_takes_keep_every_byte_in_order() -> None:
    """Threads append while the loop takes, through memory and file alike."""
    buffer = OutputBuffer(memory_limit=1000, max_size=5000)
    pieces = [b"%06d|" % i for i in range(20_000)]
    expected = b"".join(pieces)

    def produce() -> None:
        for piece in pieces:
            if len(buffer) > buffer.max_size:
                assert buffer.wait_for_room(TIMEOUT)
            buffer.append(piece)

    producer = threading.Thread(target=produce)
    producer.start()
    received = bytearray()
    deadline = time.monotonic() + TIMEOUT
    while len(received) < len(expected) and time.monotonic() < deadline:
        received += buffer.take(777)
    producer.join(TIMEOUT)
    assert bytes(received) == expected


def test_request_body_in_memory_up_to_the_spool_size() -> None:
    body = RequestBody(spool_size=10)
    body.write(b"01234")
    body.write(b"56789")  # exactly the spool size: still memory
    assert body.size == 10
    stream = body.finish()
    assert stream.read() == b"0123456789"
    assert not _is_file(stream)


def _is_file(stream: object) -> bool:
    try:
        stream.fileno()  # type: ignore[attr-defined]
    except (OSError, ValueError, AttributeError):
        return False
    return True


def test_request_body_over_the_spool_size_goes_to_a_file() -> None:
    body = RequestBody(spool_size=10)
    body.write(b"0123456")
    body.write(b"789abc")  # crosses the spool size: what was in memory moves first
    body.write(b"def")
    assert body.size == 16
    stream = body.finish()
    assert _is_file(stream)
    assert os.fstat(stream.fileno()).st_size == 16
    assert stream.read(4) == b"0123"  # readable from its start, in order
    assert stream.readline() == b"456789abcdef"
    stream.close()


def test_large_request_body_costs_no_memory() -> None:
    """10 MiB written cost about the spool size in memory, not 10 MiB."""
    block = b"z" * 65536
    tracemalloc.start()
    try:
        body = RequestBody(spool_size=64 * 1024)
        for _ in range(160):  # 10 MiB
            body.write(block)
        stream = body.finish()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The spool size in memory, then moved to the file: a few hundred KiB at most.
    assert peak < 1 << 20, peak
    assert body.size == 160 * len(block)
    assert os.fstat(stream.fileno()).st_size == body.size
    assert stream.read(65536) == block
    stream.close()


@pytest.mark.parametrize("spool_size", [0, 1])
def test_tiny_spool_sizes(spool_size: int) -> None:
    body = RequestBody(spool_size=spool_size)
    body.write(b"ab")
    body.write(b"")
    assert body.finish().read() == b"ab"
