"""Keeping secrets out of logs (stargate.redact)."""

from __future__ import annotations

import pytest

from stargate.redact import MASK, redact_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://:s3cret@host:6379/0", f"redis://:{MASK}@host:6379/0"),
        ("redis://user:s3cret@host/1", f"redis://user:{MASK}@host/1"),
        ("rediss://token@host", f"rediss://{MASK}@host"),
        ("redis://host:6379/0", "redis://host:6379/0"),
        ("memory://", "memory://"),
        (None, "None"),
        ("", ""),
        ("redis://a:b@c@host/0", f"redis://a:{MASK}@host/0"),
        # Not parseable as a URL (a broken IPv6 literal): masked whole if it has userinfo.
        ("redis://:s3cret@[::1/0", MASK),
        ("redis://[::1/0", "redis://[::1/0"),
    ],
)
def test_redact_url(url: str | None, expected: str) -> None:
    """A broker URL's password (or token) never reaches a log line, a repr or an error."""
    assert redact_url(url) == expected
    assert "s3cret" not in redact_url(url)
