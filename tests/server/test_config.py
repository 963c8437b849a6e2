"""ServerConfig (stargate.server.config) refuses what no server could run with when made."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from stargate.server import ServerConfig


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("port", -1, "port must be 0 to 65535"),
        ("port", 70000, "port must be 0 to 65535"),
        ("threads", 0, "threads must be a whole number above 0"),
        ("max_body_size", 1.5, "max_body_size must be a whole number above 0"),
        ("max_connections", True, "max_connections must be a whole number above 0"),
        ("keepalive_timeout", -1, "keepalive_timeout must be a finite number of seconds"),
        ("header_timeout", float("nan"), "header_timeout must be a finite number of seconds"),
        ("write_timeout", float("inf"), "write_timeout must be a finite number of seconds"),
        ("access_log_format", "xml", "access_log_format must be one of text, json"),
        ("proxy_headers", "x-real-ip", "proxy_headers must be one of x-forwarded, forwarded"),
    ],
)
def test_unusable_values_are_refused_when_made(field: str, value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ServerConfig(**{field: value})
    with pytest.raises(ValueError, match=message):
        replace(ServerConfig(), **{field: value})


def test_zero_is_meaningful_where_documented() -> None:
    config = ServerConfig(port=0, keepalive_timeout=0, linger_timeout=0)
    assert (config.port, config.keepalive_timeout, config.linger_timeout) == (0, 0, 0)
