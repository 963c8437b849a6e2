"""The RFC 6455 section 5.3 masking transform, and the choice of the C accelerator.

``apply_mask`` is its own inverse: it masks and unmasks.  The pure-Python fallback XORs the
payload as one big integer, which is still linear and loop-free, only slower.

:data:`speedups` is the C accelerator (``stargate._speedups``: masking, and the frame hot
path used by :mod:`stargate.frames`) or ``None``.  It is ``None`` where the extension is not
built, and wherever ``STARGATE_PURE_PYTHON=1`` is set in the environment, so that CI and the
benchmarks run every pure-Python fallback on a machine where the extension is built.  Each
accelerated function has a Python twin with identical results; the tests compare them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from types import ModuleType
from typing import TypeAlias

BytesLike: TypeAlias = bytes | bytearray | memoryview


def _apply_mask_python(data: BytesLike, mask: bytes) -> bytes:
    """XOR ``data`` with the 4-byte ``mask`` repeated (RFC 6455 section 5.3)."""
    if len(mask) != 4:  # checked first, as the C version does, whatever the data length
        raise ValueError("mask must be 4 bytes")
    payload = bytes(data)
    n = len(payload)
    if n == 0:
        return b""
    key = mask * (n // 4) + mask[: n % 4]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


#: Whether the environment asks for the pure-Python fallback (``STARGATE_PURE_PYTHON=1``).
PURE_PYTHON = os.environ.get("STARGATE_PURE_PYTHON", "").strip() not in ("", "0")

speedups: ModuleType | None
try:
    if PURE_PYTHON:
        raise ImportError("STARGATE_PURE_PYTHON is set")
    from . import _speedups as speedups
except ImportError:
    speedups = None

#: Whether the C accelerator is in use.
ACCELERATED = speedups is not None

apply_mask: Callable[[BytesLike, bytes], bytes] = (
    speedups.apply_mask if speedups is not None else _apply_mask_python
)

__all__ = ["ACCELERATED", "PURE_PYTHON", "BytesLike", "apply_mask", "speedups"]
