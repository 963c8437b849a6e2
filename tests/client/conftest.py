"""Fixtures of the client tests: our own server around the test apps, a self-signed
certificate made with the ``openssl`` command line at test time."""

from __future__ import annotations

import inspect
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from stargate.testing import AppServer, serve_app
from tests.machine import make_certificate

from .support import app_routes

_HERE = Path(__file__).parent


def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> None:
    """Every ``async def`` test here runs on pytest-asyncio's loop (marked before the
    plugin turns the function into an item; sync tests stay unmarked)."""
    if collector.path.is_relative_to(_HERE) and inspect.iscoroutinefunction(obj):
        pytest.mark.asyncio(obj)


@pytest_asyncio.fixture
async def server() -> AsyncIterator[AppServer]:
    """Our server with the apps of :func:`support.app_routes` on a free port."""
    async with serve_app(app_routes(), shutdown_timeout=2.0) as running:
        yield running


@dataclass(frozen=True)
class Certificate:
    certfile: Path
    keyfile: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.certfile, self.keyfile)
        return context

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts this (self-signed) certificate."""
        return ssl.create_default_context(cafile=str(self.certfile))


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """A self-signed certificate for localhost and 127.0.0.1."""
    certfile, keyfile = make_certificate(tmp_path_factory.mktemp("tls"))
    return Certificate(certfile, keyfile)
