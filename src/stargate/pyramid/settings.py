"""WebSocket settings read from a Pyramid registry (``stargate.*``).

The names and their conversion are :mod:`stargate.settings`' (the same as the command line's
and ``[server:main]``'s); this module reads them with their ``stargate.`` prefix.

Every key is optional.  A group of keys that is absent leaves the server's own setting in force
(its :class:`~stargate.server.ServerConfig`, e.g. the ``stargate serve`` flags); a group with at
least one key present replaces it for the upgrades this app accepts, the other fields keeping
their defaults.

The keys: ``allowed_origins``, ``same_origin``, ``allow_missing_origin`` (the Origin
policy); ``max_message_size``, ``max_frame_size``, ``ping_interval``, ``ping_timeout``,
``close_timeout``, ``max_queue``, ``write_high_water``, ``max_send_buffer``, ``compression``
(the connection's options); ``subprotocols`` (this app's, in preference order).  What each
takes: :mod:`stargate.settings`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..settings import (
    LIMIT_KEYS,
    OPTION_KEYS,
    ORIGIN_KEYS,
    WEBSOCKET_KEYS,
    SettingsError,
    WebSocketSettings,
    as_bool,
    as_list,
    as_seconds,
    as_size,
    unknown_settings,
    websocket_settings,
)

__all__ = [
    "KEYS",
    "LIMIT_KEYS",
    "OPTION_KEYS",
    "ORIGIN_KEYS",
    "PREFIX",
    "REGISTRY_KEY",
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
#: Every key this module reads (without the prefix).
KEYS = WEBSOCKET_KEYS
#: Keys with the prefix read by :func:`stargate.pyramid.paste.app_factory`.
_READ_ELSEWHERE = frozenset({"app_factory", "pythonpath"})


def parse_settings(
    settings: Mapping[str, Any] | None, prefix: str = PREFIX, *, strict: bool = True
) -> WebSocketSettings:
    """Read the ``prefix``-ed keys (see the module documentation) of ``settings``.

    Raises :class:`SettingsError` naming the first key whose value is unusable, or, when
    ``strict``, the keys with the prefix that nothing reads (a typo would otherwise pass
    silently, as it does not in ``[server:main]``).
    """
    ours = {
        key[len(prefix) :]: value
        for key, value in (settings or {}).items()
        if isinstance(key, str) and key.startswith(prefix)
    }
    unknown = sorted(set(ours) - set(WEBSOCKET_KEYS) - _READ_ELSEWHERE)
    if unknown and strict:
        known = sorted({*WEBSOCKET_KEYS, *_READ_ELSEWHERE})
        raise unknown_settings([prefix + name for name in unknown], [prefix + k for k in known])
    values = {name: value for name, value in ours.items() if name in WEBSOCKET_KEYS}
    return websocket_settings(values, label=lambda name: prefix + name)


def get_websocket_settings(registry: Any) -> WebSocketSettings:
    """The parsed ``stargate.*`` settings of a Pyramid registry.

    ``config.include("stargate.pyramid")`` parses them once (a bad value or an unknown key
    fails at startup); an app that did not include it gets them parsed here on first use,
    where an unknown key is left aside (refused, it would fail every upgrade, not startup).
    """
    parsed = registry.get(REGISTRY_KEY)
    if isinstance(parsed, WebSocketSettings):
        return parsed
    parsed = parse_settings(getattr(registry, "settings", None), strict=False)
    registry[REGISTRY_KEY] = parsed
    return parsed
