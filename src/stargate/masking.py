"""The RFC 6455 section 5.3 masking transform, at C speed when the accelerator is built.

``apply_mask`` is its own inverse: it masks and unmasks.  The pure-Python fallback XORs the
payload as one big integer, which is still linear and loop-free, only slower.  Setting
``STARGATE_PURE_PYTHON=1`` in the environment skips the accelerator, so that CI and the
benchmarks run the fallback on a machine where the extension is built.
"""

from __future__ import annotations

import os
from collections.abc import Callable
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

apply_mask: Callable[[BytesLike, bytes], bytes]
try:
    if PURE_PYTHON:
        raise ImportError("STARGATE_PURE_PYTHON is set")
    from ._speedups import apply_mask
except ImportError:
    apply_mask = _apply_mask_python
    ACCELERATED = False
else:
    ACCELERATED = True

__all__ = ["ACCELERATED", "PURE_PYTHON", "BytesLike", "apply_mask"]
