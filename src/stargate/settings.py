"""Settings by name: the one conversion from what people write to what the server takes.

Every way of configuring a server names its settings the same way and converts them here:
the command line (:mod:`stargate.cli`: ``--max-body-size`` is ``max_body_size``), an ini
``[server:main]`` section (``stargate serve x.ini`` and PasteDeploy's server factory,
:mod:`stargate.pyramid.paste`), Pyramid's ``stargate.*`` settings (the WebSocket names only,
:mod:`stargate.pyramid.settings`), and any plain mapping of names to values
(:func:`server_config`, for a gunicorn worker's environment).  Values may be typed or text
as written: sizes (``65536``, ``64KiB``, ``1M``), seconds, ``true``/``false``, lists
separated by whitespace or commas.  A value that cannot be used raises
:class:`SettingsError`, one line naming the setting as its source spells it (``label``).

Server names (:class:`~stargate.server.ServerConfig`):

``host``, ``port``, ``listen``
    Where to listen.  ``listen`` is one or more ``host:port`` separated by whitespace
    (``localhost:6543 [::1]:6543``); ``*:6543`` is every interface.  It replaces
    ``host``/``port``, which may not be given with it.
``threads``, ``websocket_threads``, ``max_connections``, ``max_pipelined``, ``max_headers``
    Whole numbers above zero.
``max_header_size``, ``max_body_size``, ``body_spool_size``, ``output_buffer_memory``,
``output_buffer_max``
    Bytes.
``header_timeout``, ``body_timeout``, ``write_timeout``, ``keepalive_timeout``,
``linger_timeout``, ``shutdown_timeout``
    Seconds.
``certfile``, ``keyfile``
    TLS (PEM files): https and wss.  The context is built here, once.
``legacy_protocols``, ``access_log``, ``upgrade_on_loop``
    true or false.
``access_log_format``
    ``text`` or ``json``.
``trusted_proxies``
    Addresses or CIDR networks whose forwarding headers are believed; ``*`` for any.
``proxy_headers``
    The forwarding headers they set: ``x-forwarded`` (the default) or ``forwarded``.
``metrics_path``, ``health_path``
    Paths the server answers itself (``/-/metrics``), or ``off``.
``broker``
    The group broker URL (``memory://``, ``redis://host:6379/0``).
``workers``
    Server processes sharing the listening sockets; more than one needs a broker that
    spans processes.

WebSocket names (:class:`~stargate.server.WebSocketOptions` and the Origin policy), also
an application's own (``stargate.*`` in Pyramid):

``allowed_origins``
    Origins (``https://example.com``), hosts (``example.com``) or host patterns
    (``*.example.com``), separated by whitespace, newlines or commas; ``*`` allows any.
``same_origin``, ``allow_missing_origin``
    true or false (both true by default).
``max_message_size``, ``max_frame_size``, ``write_high_water``, ``max_send_buffer``
    Bytes; the frame size follows the message size unless given.
``ping_interval``, ``ping_timeout``
    Seconds; ``0``, ``off`` or ``none`` turns keepalive off.
``close_timeout``
    Seconds.
``max_queue``
    Received messages waiting for the handler before reading pauses.
``compression``
    Whether permessage-deflate is offered (true).
``subprotocols``
    An application's subprotocols, in preference order (not a server setting).

A group of WebSocket names that is absent leaves the settings below it in force; a group
with one name present replaces them, its other fields keeping the library defaults.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import ssl
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .brokers import make_broker
from .extensions.permessage_deflate import PerMessageDeflateOffer
from .handshake import OriginPolicy
from .limits import Limits
from .server.access import FORMATS as ACCESS_LOG_FORMATS
from .server.config import (
    COUNT_FIELDS,
    SECONDS_FIELDS,
    SECONDS_OR_OFF_FIELDS,
    SIZE_FIELDS,
    ServerConfig,
    WebSocketOptions,
)
from .server.proxy import PROXY_HEADERS, TrustedProxies

__all__ = [
    "LIMIT_KEYS",
    "OPTION_KEYS",
    "ORIGIN_KEYS",
    "SERVER_KEYS",
    "WEBSOCKET_KEYS",
    "Address",
    "Label",
    "ServeSettings",
    "SettingsError",
    "WebSocketSettings",
    "as_bool",
    "as_count",
    "as_list",
    "as_log_level",
    "as_seconds",
    "as_size",
    "check_workers",
    "parse_listen",
    "serve_settings",
    "server_config",
    "ssl_context",
    "unknown_settings",
    "websocket_settings",
]

#: ``(host, port)``; the host ``""`` is every interface.
Address = tuple[str, int]
#: How a source spells a setting's name in its messages (``max_body_size`` ->
#: ``--max-body-size``, ``stargate.max_body_size`` ...).
Label = Callable[[str], str]

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
#: The names an application may set for its own WebSockets.
WEBSOCKET_KEYS = (*ORIGIN_KEYS, *LIMIT_KEYS, *OPTION_KEYS, "subprotocols")

_BOOL_KEYS = ("legacy_protocols", "access_log", "upgrade_on_loop")
_PATH_KEYS = ("metrics_path", "health_path")
_OTHER_KEYS = (
    "host",
    "port",
    "listen",
    "certfile",
    "keyfile",
    "access_log_format",
    "trusted_proxies",
    "proxy_headers",
    "broker",
    "workers",
)
#: Every name :func:`serve_settings` reads.
SERVER_KEYS = frozenset(
    (
        *COUNT_FIELDS,
        *SIZE_FIELDS,
        *SECONDS_FIELDS,
        *SECONDS_OR_OFF_FIELDS,
        *_BOOL_KEYS,
        *_PATH_KEYS,
        *_OTHER_KEYS,
        *ORIGIN_KEYS,
        *LIMIT_KEYS,
        *OPTION_KEYS,
    )
)

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

_TRUE = frozenset({"1", "true", "yes", "on", "y", "t"})
_FALSE = frozenset({"0", "false", "no", "off", "n", "f", ""})
_OFF = frozenset({"off", "none", "false", "no", ""})
_SIZE = re.compile(r"^\s*(\d+)\s*([kmg]?)(?:i?b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


class SettingsError(ValueError):
    """A setting whose value cannot be used: one line that names it and says what it
    expects, for the person who wrote it (a command line prints it instead of a traceback)."""


def _same(name: str) -> str:
    return name


# -- values --------------------------------------------------------------------------------------


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
    """Items separated by whitespace, newlines or commas (an .ini value spans lines; a
    repeated command-line option gives a list)."""
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
    if allow_off and text in _OFF:
        return None
    try:
        number = float(text)
    except ValueError:
        raise SettingsError(f"{key}: expected a number of seconds, not {value!r}") from None
    if number < 0 or number != number or number == float("inf"):
        raise SettingsError(f"{key}: must be a finite number, not negative: {value!r}")
    if number == 0:
        if allow_off:
            return None
        raise SettingsError(f"{key}: must be positive, not {value!r}")
    return number


def _as_seconds_or_off(value: object, key: str) -> float:
    """Seconds, or 0.0 for ``0``/``off``/``none`` (a keep-alive timeout of 0: no keep-alive)."""
    return as_seconds(value, key, allow_off=True) or 0.0


def unknown_settings(unknown: Sequence[str], known: Sequence[str]) -> SettingsError:
    """The error for names nothing reads (a typo must not pass silently), with the names
    that are read, each as its source spells it.  A prefix they all share up to a space
    is said once: "[server:main] a, b ...", not the section's name before each of 40."""
    head = known[0][: known[0].rfind(" ") + 1] if known else ""
    common = head if all(name.startswith(head) for name in known) else ""
    return SettingsError(
        f"unknown setting{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
        f"known: {common}{', '.join(name[len(common) :] for name in known)}"
    )


def as_count(value: object, key: str = "value") -> int:
    """A whole number above zero."""
    try:
        number = int(str(value).strip())
    except ValueError:
        raise SettingsError(f"{key}: expected a whole number, not {value!r}") from None
    if number <= 0:
        raise SettingsError(f"{key}: must be positive, not {value!r}")
    return number


def as_log_level(value: object, key: str = "log_level") -> int:
    """A logging level by name (``debug`` ... ``critical``)."""
    name = str(value).strip().lower()
    if name not in LOG_LEVELS:
        raise SettingsError(f"{key}: one of {', '.join(LOG_LEVELS)}, not {value!r}")
    level: int = logging.getLevelName(name.upper())
    return level


def _as_port(value: object, key: str) -> int:
    try:
        port = int(str(value).strip())
    except ValueError:
        raise SettingsError(f"{key}: expected a port number, not {value!r}") from None
    if not 0 <= port <= 65535:
        raise SettingsError(f"{key}: expected a port number (0 to 65535), not {value!r}")
    return port


def _as_path(value: object, key: str) -> str | None:
    text = str(value).strip()
    if text.lower() in _OFF:
        return None
    if not text.startswith("/") or any(c.isspace() for c in text):
        raise SettingsError(f"{key}: expected a path such as /-/ready, or off, not {value!r}")
    return text


def parse_listen(
    value: object, key: str = "listen", *, port: int | None = None
) -> tuple[Address, ...]:
    """``localhost:6543 [::1]:6543 *:6543`` -> ``(("localhost", 6543), ("::1", 6543),
    ("", 6543))``: one or more addresses separated by whitespace or commas, as waitress and
    cookiecutter-pyramid write them.  ``*`` is every interface; a host without a port takes
    ``port`` when one is given."""
    addresses: list[Address] = []
    for entry in as_list(value):
        if entry.startswith("["):
            host, bracket, rest = entry[1:].partition("]")
            if not bracket or (rest and not rest.startswith(":")):
                raise SettingsError(f"{key}: expected [IPv6]:port, not {entry!r}")
            port_text = rest[1:]
            try:
                ipaddress.IPv6Address(host)
            except ValueError:
                raise SettingsError(f"{key}: {host!r} is not an IPv6 address") from None
        elif entry.count(":") == 1:
            host, _, port_text = entry.partition(":")
        elif ":" in entry:
            raise SettingsError(f"{key}: write an IPv6 address in brackets ([{entry}]:port)")
        else:
            host, port_text = entry, ""
        if not port_text:
            if port is None:
                raise SettingsError(f"{key}: expected host:port, not {entry!r}")
            number = port
        else:
            number = _as_port(port_text, key)
        addresses.append(("" if host in ("*", "") else host, number))
    if not addresses:
        raise SettingsError(f"{key}: expected one or more host:port")
    return tuple(addresses)


def ssl_context(
    certfile: str | None, keyfile: str | None = None, *, label: Label = _same
) -> ssl.SSLContext | None:
    """The server's TLS context of a PEM certificate (and key), or ``None`` without one."""
    if not certfile:
        if keyfile:
            raise SettingsError(f"{label('keyfile')} needs {label('certfile')}")
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        # A callback, not None: OpenSSL would prompt for an encrypted key's passphrase on
        # the terminal (a server started by systemd waits for ever).
        context.load_cert_chain(certfile, keyfile or None, password=_refuse_passphrase)
    except _EncryptedKey:
        raise SettingsError(
            f"{label('keyfile') if keyfile else label('certfile')}: the private key in "
            f"{keyfile or certfile!r} is encrypted; give an unencrypted one (`openssl pkey "
            "-in key.pem -out plain-key.pem` decrypts it), readable only by the server's user"
        ) from None
    except FileNotFoundError as exc:
        missing = exc.filename or (keyfile if keyfile else certfile)
        raise SettingsError(
            f"{label('certfile')}: no such file: {str(missing)!r} "
            f"(a PEM certificate, and its key in it or in {label('keyfile')})"
        ) from None
    except (OSError, ssl.SSLError) as exc:
        hint = ""
        if not keyfile and not _holds_private_key(certfile):
            hint = f" (no private key in it: give {label('keyfile')})"
        raise SettingsError(
            f"{label('certfile')}: cannot load {certfile!r}"
            + (f" with the key {keyfile!r}" if keyfile else "")
            + f": {exc.strerror or exc}{hint}"
        ) from None
    return context


class _EncryptedKey(Exception):
    pass


def _refuse_passphrase() -> str:
    raise _EncryptedKey


def _holds_private_key(path: str) -> bool:
    try:
        with open(path, "rb") as file:
            return b"PRIVATE KEY-----" in file.read(1 << 20)
    except OSError:
        return False


def check_workers(workers: int, broker_url: str | None, *, label: Label = _same) -> None:
    """More than one worker needs a broker that spans processes: with the in-memory broker
    every worker would have groups of its own, and a group message would silently reach
    only the clients of the worker that sent it."""
    if workers < 1:
        raise SettingsError(f"{label('workers')} must be at least 1, not {workers}")
    if workers > 1 and not make_broker(broker_url).spans_processes:
        raise SettingsError(
            f"{label('workers')} {workers} needs a broker that spans processes, e.g. "
            f"{label('broker')} redis://127.0.0.1:6379/0: with the in-memory broker every "
            "worker would have groups of its own, and a group message would silently reach "
            "only the clients of the worker that sent it"
        )


# -- WebSocket settings ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WebSocketSettings:
    """What settings say about WebSockets; ``None`` means "the settings below these"."""

    #: ``subprotocols``: an application's, in preference order.
    subprotocols: tuple[str, ...] = ()
    #: From ``allowed_origins``, ``same_origin``, ``allow_missing_origin``.
    origin_policy: OriginPolicy | None = None
    #: From the limits and the per-connection names (``ping_interval`` ...).
    options: WebSocketOptions | None = None


def websocket_settings(
    values: Mapping[str, Any] | None, *, label: Label = _same
) -> WebSocketSettings:
    """The WebSocket names of ``values`` (see the module's documentation)."""
    values = values or {}

    def get(name: str) -> Any:
        return values.get(name)

    def present(names: tuple[str, ...]) -> bool:
        return any(get(name) is not None for name in names)

    origin_policy: OriginPolicy | None = None
    if present(ORIGIN_KEYS):
        allowed = as_list(get("allowed_origins") or ())
        same = get("same_origin")
        missing = get("allow_missing_origin")
        try:
            origin_policy = OriginPolicy(
                allowed=("*",) if "*" in allowed else allowed,
                same_origin=True if same is None else as_bool(same, label("same_origin")),
                allow_missing=True
                if missing is None
                else as_bool(missing, label("allow_missing_origin")),
            )
        except ValueError as exc:
            raise SettingsError(f"{label('allowed_origins')}: {exc}") from None

    options: WebSocketOptions | None = None
    if present(LIMIT_KEYS) or present(OPTION_KEYS):
        limit_values = {
            name: as_size(get(name), label(name)) for name in LIMIT_KEYS if get(name) is not None
        }
        if "max_message_size" in limit_values and "max_frame_size" not in limit_values:
            # One frame may carry a whole message unless told otherwise.
            limit_values["max_frame_size"] = limit_values["max_message_size"]
        try:
            limits = Limits(**limit_values)
        except ValueError as exc:
            raise SettingsError(str(exc)) from None
        option_values: dict[str, Any] = {"limits": limits}
        for name in ("ping_interval", "ping_timeout"):
            if get(name) is not None:
                option_values[name] = as_seconds(get(name), label(name), allow_off=True)
        if get("close_timeout") is not None:
            option_values["close_timeout"] = as_seconds(
                get("close_timeout"), label("close_timeout")
            )
        if get("max_queue") is not None:
            option_values["max_queue"] = as_count(get("max_queue"), label("max_queue"))
        for name in ("write_high_water", "max_send_buffer"):
            if get(name) is not None:
                option_values[name] = as_size(get(name), label(name))
        if get("compression") is not None:
            on = as_bool(get("compression"), label("compression"))
            option_values["compression"] = PerMessageDeflateOffer() if on else None
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


# -- server settings -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServeSettings:
    """What to serve with: the server's settings, where to listen, how many processes."""

    #: The server's settings.
    config: ServerConfig = field(default_factory=ServerConfig)
    #: Every address to listen on; ``config.host``/``config.port`` are the first one.
    listen: tuple[Address, ...] = (("127.0.0.1", 8000),)
    #: Server processes sharing the listening sockets.
    workers: int = 1

    @property
    def broker_url(self) -> str | None:
        """The group broker's URL (``config.broker_url``)."""
        return self.config.broker_url


def serve_settings(values: Mapping[str, Any], *, label: Label = _same) -> ServeSettings:
    """``values`` (names of :data:`SERVER_KEYS` to typed or written values; ``None`` is
    "not given") -> :class:`ServeSettings`; a name not given keeps
    :class:`~stargate.server.ServerConfig`'s default.

    Raises :class:`SettingsError` for an unknown name (a typo must not pass silently) or a
    value that cannot be used, naming it with ``label``.
    """
    given = {key: value for key, value in values.items() if value is not None}
    unknown = sorted(set(given) - SERVER_KEYS)
    if unknown:
        raise unknown_settings(
            [label(key) for key in unknown], [label(key) for key in sorted(SERVER_KEYS)]
        )
    defaults = ServerConfig()
    config: dict[str, Any] = {}
    converters: tuple[tuple[Iterable[str], Callable[[Any, str], Any]], ...] = (
        (COUNT_FIELDS, as_count),
        (SIZE_FIELDS, as_size),
        (SECONDS_FIELDS, as_seconds),
        (SECONDS_OR_OFF_FIELDS, _as_seconds_or_off),
        (_BOOL_KEYS, as_bool),
        (_PATH_KEYS, _as_path),
    )
    for keys, convert in converters:
        for key in keys:
            if key in given:
                config[key] = convert(given[key], label(key))
    for key, choices in (
        ("access_log_format", ACCESS_LOG_FORMATS),
        ("proxy_headers", PROXY_HEADERS),
    ):
        if key in given:
            choice = str(given[key]).strip().lower()
            if choice not in choices:
                raise SettingsError(
                    f"{label(key)}: one of {', '.join(choices)}, not {given[key]!r}"
                )
            config[key] = choice
    if "trusted_proxies" in given:
        proxies = as_list(given["trusted_proxies"])
        try:
            TrustedProxies(proxies)
        except ValueError as exc:
            raise SettingsError(f"{label('trusted_proxies')}: {exc}") from None
        config["trusted_proxies"] = proxies
    if "broker" in given:
        url = str(given["broker"]).strip()
        make_broker(url)  # BrokerConfigError: an unknown scheme, a package missing
        config["broker_url"] = url

    listen = _addresses(given, defaults, label)
    config["host"], config["port"] = listen[0]
    config["ssl_context"] = ssl_context(given.get("certfile"), given.get("keyfile"), label=label)

    websocket = websocket_settings(given, label=label)
    if websocket.options is not None:
        config["websocket"] = websocket.options
    if websocket.origin_policy is not None:
        config["origin_policy"] = websocket.origin_policy

    workers = as_count(given["workers"], label("workers")) if "workers" in given else 1
    check_workers(workers, config.get("broker_url"), label=label)
    return ServeSettings(ServerConfig(**config), listen, workers)


def _addresses(
    given: Mapping[str, Any], defaults: ServerConfig, label: Label
) -> tuple[Address, ...]:
    port = _as_port(given["port"], label("port")) if "port" in given else defaults.port
    if "listen" in given:
        if "host" in given:
            raise SettingsError(
                f"{label('listen')} and {label('host')} both given: use {label('listen')} alone"
            )
        return parse_listen(given["listen"], label("listen"), port=port)
    host = str(given.get("host", defaults.host)).strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return (("" if host == "*" else host, port),)


def server_config(values: Mapping[str, Any], *, label: Label = _same) -> ServerConfig:
    """A :class:`~stargate.server.ServerConfig` of a plain mapping of setting names to
    values (see :func:`serve_settings`): what a gunicorn worker, or any embedding, reads
    from its own configuration."""
    return serve_settings(values, label=label).config
