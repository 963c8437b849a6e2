"""WebSocket settings read from a Pyramid registry (``stargate.*``) or a ``[server:main]`` section.

Every key is optional.  A group of keys that is absent leaves the server's own setting in force
(its :class:`~stargate.server.ServerConfig`, e.g. the ``stargate serve`` flags); a group with at
least one key present replaces it for the upgrades this app accepts, the other fields keeping
their defaults.

Origin (:class:`~stargate.handshake.OriginPolicy`):

``allowed_origins``
    Origins (``https://example.com``), hosts (``example.com``) or host patterns
    (``*.example.com``), separated by whitespace, newlines or commas; ``*`` allows any origin.
``same_origin``
    Whether an Origin matching the request's ``Host`` passes (true).
``allow_missing_origin``
    Whether a request without an Origin (not a browser) passes (true).

Connection (:class:`~stargate.server.WebSocketOptions`, :class:`~stargate.limits.Limits`):

``max_message_size``, ``max_frame_size``
    Bytes; a plain number or with a ``KiB``/``MiB``/``GiB`` (or ``K``/``M``/``G``) suffix.
``ping_interval``, ``ping_timeout``
    Seconds; ``0``, ``off`` or ``none`` turns keepalive off.
``close_timeout``
    Seconds.
``max_queue``
    Received messages waiting for the handler before reading pauses.
``write_high_water``, ``max_send_buffer``
    Bytes (see :class:`~stargate.server.WebSocketOptions`).
``compression``
    Whether permessage-deflate is offered to clients that ask for it (true, with the
    defaults of :class:`~stargate.extensions.permessage_deflate.PerMessageDeflateOffer`).

Handshake:

``subprotocols``
    Subprotocols this app speaks, in preference order (whitespace or comma separated).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..extensions.permessage_deflate import PerMessageDeflateOffer
from ..handshake import OriginPolicy
from ..limits import Limits
from ..server.config import WebSocketOptions

__all__ = [
    "PREFIX",
    "SettingsError",
    "WebSocketSettings",
    "as_bool",
    "as_list",
    "as_seconds",
    "as_size",
    "get_websocket_settings",
    "parse_settings",
]

#: The prefix of the keys in a Pyramid registry's settings.
PREFIX = "stargate."
#: Where ``config.include("stargate.pyramid")`` keeps the parsed settings in the registry.
REGISTRY_KEY = "stargate.websocket_settings"

ORIGIN_KEYS = ("allowed_origins", "same_origin", "allow_missing_origin")
LIMIT_KEYS = ("max_message_size", "max_frame_size")
OPTION_KEYS = (
    "ping_interval",
    "ping_timeout",
    "close_timeout",
    "max_queue",
    "write_high_water",
    "max_send_buffer",
    "compression",
)
#: Every key this module reads (without the prefix).
KEYS = (*ORIGIN_KEYS, *LIMIT_KEYS, *OPTION_KEYS, "subprotocols")

_TRUE = frozenset({"1", "true", "yes", "on", "y", "t"})
_FALSE = frozenset({"0", "false", "no", "off", "n", "f", ""})
_SIZE = re.compile(r"^\s*(\d+)\s*([kmg]?)(?:i?b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names the key."""


def as_bool(value: object, key: str = "value") -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise SettingsError(f"{key}: expected true or false, not {value!r}")


def as_list(value: object) -> tuple[str, ...]:
    """Items separated by whitespace, newlines or commas (an .ini value spans lines)."""
    if isinstance(value, list | tuple):
        items: list[str] = [str(item) for item in value]
    else:
        items = [str(value)]
    return tuple(part for item in items for part in re.split(r"[\s,]+", item) if part)


def as_size(value: object, key: str = "value") -> int:
    """A positive number of bytes: ``65536``, ``64KiB``, ``64k``, ``1MiB``, ``1M``."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        match = _SIZE.match(str(value))
        if match is None:
            raise SettingsError(
                f"{key}: expected a size in bytes (e.g. 65536, 64KiB), not {value!r}"
            )
        number = int(match.group(1)) * _UNITS[match.group(2).lower()]
    if number <= 0:
        raise SettingsError(f"{key}: must be positive, not {value!r}")
    return number


def as_seconds(value: object, key: str = "value", *, allow_off: bool = False) -> float | None:
    """Seconds as a float; ``0``/``off``/``none`` give None where ``allow_off``."""
    text = str(value).strip().lower()
    if allow_off and text in ("off", "none", "false", "no", ""):
        return None
    try:
        number = float(text)
    except ValueError:
        raise SettingsError(f"{key}: expected a number of seconds, not {value!r}") from None
    if number < 0 or number != number:  # negative or NaN
        raise SettingsError(f"{key}: must not be negative, not {value!r}")
    if number == 0:
        if allow_off:
            return None
        raise SettingsError(f"{key}: must be positive, not {value!r}")
    return number


def _as_count(value: object, key: str) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise SettingsError(f"{key}: expected a whole number, not {value!r}") from None
    if number <= 0:
        raise SettingsError(f"{key}: must be positive, not {value!r}")
    return number


@dataclass(frozen=True, slots=True)
class WebSocketSettings:
    """What an app's settings say about its WebSockets; None means "the server's"."""

    subprotocols: tuple[str, ...] = ()
    origin_policy: OriginPolicy | None = None
    options: WebSocketOptions | None = None


def parse_settings(settings: Mapping[str, Any] | None, prefix: str = PREFIX) -> WebSocketSettings:
    """Read the ``prefix``-ed keys (see the module documentation) of ``settings``.

    Raises :class:`SettingsError` naming the first key whose value is unusable.
    """
    settings = settings or {}

    def get(name: str) -> Any:
        return settings.get(prefix + name)

    def present(names: tuple[str, ...]) -> bool:
        return any(get(name) is not None for name in names)

    origin_policy: OriginPolicy | None = None
    if present(ORIGIN_KEYS):
        allowed = as_list(get("allowed_origins") or ())
        origin_policy = OriginPolicy(
            allowed=("*",) if "*" in allowed else allowed,
            same_origin=as_bool(
                get("same_origin") if get("same_origin") is not None else True,
                prefix + "same_origin",
            ),
            allow_missing=as_bool(
                get("allow_missing_origin") if get("allow_missing_origin") is not None else True,
                prefix + "allow_missing_origin",
            ),
        )

    options: WebSocketOptions | None = None
    if present(LIMIT_KEYS) or present(OPTION_KEYS):
        limit_values: dict[str, int] = {
            name: as_size(get(name), prefix + name) for name in LIMIT_KEYS if get(name) is not None
        }
        if "max_message_size" in limit_values and "max_frame_size" not in limit_values:
            # As the CLI does: one frame may carry a whole message unless told otherwise.
            limit_values["max_frame_size"] = limit_values["max_message_size"]
        try:
            limits = Limits(**limit_values)
        except ValueError as exc:
            raise SettingsError(str(exc)) from None
        option_values: dict[str, Any] = {"limits": limits}
        for name in ("ping_interval", "ping_timeout"):
            if get(name) is not None:
                option_values[name] = as_seconds(get(name), prefix + name, allow_off=True)
        if get("close_timeout") is not None:
            option_values["close_timeout"] = as_seconds(
                get("close_timeout"), prefix + "close_timeout"
            )
        if get("max_queue") is not None:
            option_values["max_queue"] = _as_count(get("max_queue"), prefix + "max_queue")
        for name in ("write_high_water", "max_send_buffer"):
            if get(name) is not None:
                option_values[name] = as_size(get(name), prefix + name)
        if get("compression") is not None:
            option_values["compression"] = (
                PerMessageDeflateOffer()
                if as_bool(get("compression"), prefix + "compression")
                else None
            )
        if "max_send_buffer" not in option_values:
            # One message, however large, may wait for the peer on top of the usual budget.
            option_values["max_send_buffer"] = max(
                WebSocketOptions().max_send_buffer, 2 * limits.max_message_size
            )
        options = WebSocketOptions(**option_values)

    subprotocols: tuple[str, ...] = ()
    if get("subprotocols") is not None:
        subprotocols = as_list(get("subprotocols"))

    return WebSocketSettings(subprotocols, origin_policy, options)


def get_websocket_settings(registry: Any) -> WebSocketSettings:
    """The parsed ``stargate.*`` settings of a Pyramid registry.

    ``config.include("stargate.pyramid")`` parses them once (a bad value fails at startup);
    an app that did not include it gets them parsed here on first use.
    """
    parsed = registry.get(REGISTRY_KEY)
    if isinstance(parsed, WebSocketSettings):
        return parsed
    parsed = parse_settings(getattr(registry, "settings", None))
    registry[REGISTRY_KEY] = parsed
    return parsed
