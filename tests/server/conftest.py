"""Fixtures of the server tests: the test's event loop (asyncio's, and uvloop's too for
tests marked ``both_loops``), on which ``start_server`` (``tests/conftest.py``) runs its
servers; and what ``wsgiref.validate`` finds in any test, reported as that test's failure."""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Callable, Iterator, Mapping

import pytest

from tests.machine import require_module

from .support import TIMEOUT, validated_iterators


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "both_loops: run the test on asyncio's event loop and on uvloop's (the one "
        "`stargate serve` runs on): transports differ in when they pause, drain and close",
    )


def _new_uvloop() -> asyncio.AbstractEventLoop:
    loop: asyncio.AbstractEventLoop = require_module("uvloop").new_event_loop()
    return loop


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """pytest-asyncio's loops: asyncio's for every test, uvloop's too for ``both_loops``."""
    factories: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
        "asyncio": asyncio.new_event_loop
    }
    if item.get_closest_marker("both_loops"):
        factories["uvloop"] = _new_uvloop
    return factories


class _ValidatorFindings(logging.Handler):
    """Keeps the log records whose exception the WSGI validator raised: the server logs
    what an app raises and answers 500, so a finding would otherwise pass unseen."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.findings: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info is None or record.exc_info[1] is None:
            return
        exc = record.exc_info[1]
        frames = traceback.extract_tb(exc.__traceback__)
        if isinstance(exc, AssertionError) and frames and "wsgiref" in frames[-1].filename:
            self.findings.append(f"{record.getMessage()}: {exc}")


@pytest.fixture(autouse=True)
def wsgi_validator_findings() -> Iterator[None]:
    """Fail the test if ``wsgiref.validate`` (see ``support.validated``) found fault with an
    environ or with how the server used a response, or if the server did not close an
    iterator the app returned (PEP 3333 requires it).

    Autouse, so it is set up before ``start_server`` and torn down after the servers stop.
    """
    findings = _ValidatorFindings()
    logger = logging.getLogger("stargate")
    logger.addHandler(findings)
    validated_iterators.clear()
    try:
        yield
    finally:
        logger.removeHandler(findings)
    # A worker thread may still be finishing a response whose client left: give it time.
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline and not all(
        getattr(it, "closed", True) for it in validated_iterators
    ):
        time.sleep(0.01)
    unclosed = sum(1 for it in validated_iterators if not getattr(it, "closed", True))
    validated_iterators.clear()
    assert not findings.findings, f"wsgiref.validate: {findings.findings}"
    assert not unclosed, f"{unclosed} app iterator(s) never closed by the server (PEP 3333)"
