"""The client's exception classes (stargate.client.errors): what each one is, so that
callers may catch them as the standard exceptions too."""

from __future__ import annotations

import pytest

from stargate.client.errors import (
    ConnectError,
    ConnectionFailed,
    ConnectionRefused,
    DNSError,
    InvalidAccept,
    InvalidResponse,
    InvalidStatus,
    InvalidURL,
    OpenTimeout,
    RedirectError,
    TLSError,
)
from stargate.errors import InvalidHandshakeResponse, StargateError
from stargate.headers import Headers


@pytest.mark.parametrize(
    ("cls", "standard"),
    [
        (InvalidURL, ValueError),
        (DNSError, OSError),
        (ConnectionRefused, ConnectionRefusedError),
        (ConnectionFailed, OSError),
        (TLSError, OSError),
        (OpenTimeout, TimeoutError),
        (InvalidResponse, InvalidHandshakeResponse),
        (InvalidStatus, InvalidResponse),
        (RedirectError, InvalidStatus),
        (InvalidAccept, InvalidResponse),
    ],
)
def test_hierarchy(cls: type[Exception], standard: type[Exception]) -> None:
    assert issubclass(cls, ConnectError)
    assert issubclass(cls, StargateError)
    assert issubclass(cls, standard)


def test_os_errors_keep_their_message() -> None:
    error = DNSError("cannot resolve 'x'", "ws://x/", "x")
    assert str(error) == "cannot resolve 'x'"
    assert (error.url, error.host, error.errno) == ("ws://x/", "x", None)
    assert str(ConnectionRefused("refused", "ws://h/")) == "refused"
    timeout = OpenTimeout("late", "ws://h/", "tls")
    assert (str(timeout), timeout.phase) == ("late", "tls")
    assert TLSError("bad", "u", "self-signed certificate").verify_message == (
        "self-signed certificate"
    )


def test_invalid_status_shows_status_and_body() -> None:
    error = InvalidStatus(
        "the server refused the upgrade: 403 Forbidden",
        "ws://h/",
        status=403,
        headers=Headers([("Content-Type", "text/plain")]),
        body=b"go away\n",
    )
    assert str(error) == (
        "the server refused the upgrade: 403 Forbidden (status 403): ws://h/; body: 'go away'"
    )
    assert (error.status, error.body, error.reason) == (403, b"go away\n", error.reason)
    assert error.headers.get("content-type") == "text/plain"


def test_redirect_names_its_location() -> None:
    error = RedirectError("redirect", "ws://h/", status=301, location="wss://h/")
    assert error.location == "wss://h/"
    assert error.status == 301
    assert InvalidResponse("no").headers.items() == []
    assert str(InvalidResponse("no")) == "no"
