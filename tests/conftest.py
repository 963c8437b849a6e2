"""Fixtures shared by every test directory."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from stargate.brokers.testing import RedisServer


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A redis-server of this test's own; skipped without the binary, failed under CI."""
    try:
        import redis  # noqa: F401

        server = RedisServer()
    except (ImportError, FileNotFoundError) as exc:
        if in_ci():
            pytest.fail(f"{exc} (CI is set: the Redis tests must run)", pytrace=False)
        pytest.skip(str(exc))
    server.start()
    try:
        yield server
    finally:
        server.stop()
