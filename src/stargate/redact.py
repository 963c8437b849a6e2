"""Keeping secrets out of logs: URLs with a password in them are shown without it.

Broker URLs (``redis://:password@host:6379/0``) travel through settings, log lines, reprs
and error messages; every one of those goes through :func:`redact_url`.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

#: What stands in place of a password (or of a username used as a token).
MASK = "***"


def redact_url(url: str | None) -> str:
    """``url`` with the password of its userinfo (``user:password@``) replaced by ``***``.

    A userinfo without a colon (``redis://token@host``) is masked whole: some services take
    the token as the username.  Text that is not a URL with an authority comes back as is.
    """
    if not url:
        return str(url)
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK if "@" in url else url
    if "@" not in parts.netloc:
        return url
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, colon, _password = userinfo.partition(":")
    masked = f"{user}:{MASK}" if colon else MASK
    return urlunsplit(parts._replace(netloc=f"{masked}@{hostport}"))
