"""The throwaway redis-server for application tests (stargate.brokers.testing): it starts,
answers, goes away and comes back on its port, and says clearly when it cannot run."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from stargate.brokers.testing import RedisServer, free_port


def fake_binary(tmp_path: Path, script: str) -> str:
    """An executable standing in for redis-server (a broken or hung one)."""
    path = tmp_path / "fake-redis-server"
    path.write_text("#!/bin/sh\n" + script + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_a_missing_binary_says_how_to_install_it() -> None:
    """Without redis-server the error names the package to install, not a bare ENOENT."""
    with pytest.raises(FileNotFoundError, match="apt-get install redis-server"):
        RedisServer("no-such-redis-server")


def test_starts_answers_and_comes_back_on_the_same_port(redis_server: RedisServer) -> None:
    """In a ``with`` block it answers PING at ``url``; ``kill`` takes it away at once (a
    crash), ``start`` brings it back on the same port; starting a running one is a no-op.
    (The fixture makes sure redis-server is installed: skipped without, failed under CI.)"""
    with RedisServer(redis_server.binary) as redis:
        assert redis.url == f"redis://127.0.0.1:{redis.port}/0"
        assert redis.ping()
        process = redis.process
        redis.start()
        assert redis.process is process  # already running: the same process
        redis.kill()
        assert not redis.ping() and redis.process is None
        redis.kill()  # nothing left to kill
        redis.start()
        assert redis.ping()
    assert not redis.ping()


def test_a_server_that_exits_at_once_is_reported(tmp_path: Path) -> None:
    """A redis-server that exits (bad flags, a port taken) is an error with its status,
    not a wait for the timeout."""
    with pytest.raises(RuntimeError, match="redis-server exited with 3"):
        RedisServer(fake_binary(tmp_path, "exit 3")).start(timeout=5)


def test_a_server_that_never_answers_is_killed_after_the_timeout(tmp_path: Path) -> None:
    """A binary that runs but does not listen (hung): TimeoutError naming the port, and the
    process is not left behind."""
    redis = RedisServer(fake_binary(tmp_path, "exec sleep 30"), port=free_port())
    with pytest.raises(TimeoutError, match=f"did not answer on port {redis.port}"):
        redis.start(timeout=0.3)
    assert redis.process is None
