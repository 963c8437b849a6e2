"""Bytes between a worker thread and a slow client, and request bodies: memory, then disk.

A worker thread must never wait on a client's network: :class:`OutputBuffer` takes a
response as fast as the app produces it, keeping ``memory_limit`` bytes in memory and the
rest in a temporary file (waitress's outbuf design), so the thread is free as soon as the
app's iterable is done.  Only past ``max_size`` buffered bytes does a thread wait, and then
for ``write_timeout`` at most.  :class:`RequestBody` does the same for uploads.
"""

from __future__ import annotations

import io
import tempfile
import threading
from collections import deque
from typing import IO


class OutputBuffer:
    """A FIFO of bytes, thread-safe: worker threads :meth:`append`, the loop :meth:`take`s.

    What does not fit in ``memory_limit`` goes to a temporary file, in order: once the file
    is in use every later append goes there too until it has been read to its end.
    """

    def __init__(self, memory_limit: int, max_size: int) -> None:
        self.memory_limit = memory_limit
        self.max_size = max_size
        self.cond = threading.Condition()
        self._chunks: deque[bytes] = deque()
        self._in_memory = 0
        self._file: IO[bytes] | None = None
        self._file_read = 0
        self._file_written = 0
        self.closed = False

    def __len__(self) -> int:
        """Bytes appended and not yet taken."""
        return self._in_memory + self._file_written - self._file_read

    @property
    def spilled(self) -> bool:
        """Whether part of the content is on disk now."""
        return self._file is not None

    def append(self, data: bytes) -> None:
        """Add ``data`` at the end (any thread); the caller decides whether to wait first."""
        with self.cond:
            if self.closed:
                return
            if self._file is None and self._in_memory + len(data) <= self.memory_limit:
                self._chunks.append(data)
                self._in_memory += len(data)
                return
            if self._file is None:
                self._file = tempfile.TemporaryFile()  # noqa: SIM115 (closed when drained)
            self._file.seek(self._file_written)
            self._file.write(data)
            self._file_written += len(data)

    def take(self, limit: int) -> bytes:
        """Up to ``limit`` bytes from the front (the loop); wakes threads waiting for room."""
        with self.cond:
            if self._chunks:
                parts: list[bytes] = []
                size = 0
                while self._chunks and size < limit:
                    chunk = self._chunks.popleft()
                    if size + len(chunk) > limit and parts:
                        self._chunks.appendleft(chunk)
                        break
                    parts.append(chunk)
                    size += len(chunk)
                self._in_memory -= size
                data = parts[0] if len(parts) == 1 else b"".join(parts)
            elif self._file is not None:
                self._file.seek(self._file_read)
                data = self._file.read(min(limit, self._file_written - self._file_read))
                self._file_read += len(data)
                if self._file_read == self._file_written:
                    self._file.close()
                    self._file = None
                    self._file_read = self._file_written = 0
            else:
                data = b""
            self.cond.notify_all()
            return data

    def wait_for_room(self, timeout: float) -> bool:
        """Block (a worker thread) while over ``max_size``; False if still full at timeout."""
        with self.cond:
            return self.cond.wait_for(lambda: self.closed or len(self) <= self.max_size, timeout)

    def close(self) -> None:
        """Drop the content (the connection is gone); waiting threads wake up."""
        with self.cond:
            self.closed = True
            self._chunks.clear()
            self._in_memory = 0
            if self._file is not None:
                self._file.close()
                self._file = None
            self._file_read = self._file_written = 0
            self.cond.notify_all()


class RequestBody:
    """A request body as it arrives: in memory up to ``spool_size``, then a temporary file."""

    def __init__(self, spool_size: int) -> None:
        self.spool_size = spool_size
        self.size = 0
        self._memory = bytearray()
        self._file: IO[bytes] | None = None

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self._file is not None:
            self._file.write(data)
        elif self.size > self.spool_size:
            self._file = tempfile.TemporaryFile()  # noqa: SIM115 (closed when drained)
            self._file.write(self._memory)
            self._file.write(data)
            self._memory = bytearray()
        else:
            self._memory += data

    def finish(self) -> IO[bytes]:
        """The whole body, readable from its start (``wsgi.input``)."""
        if self._file is not None:
            self._file.seek(0)
            return self._file
        return io.BytesIO(bytes(self._memory))
