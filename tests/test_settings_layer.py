"""stargate.settings: one conversion of named settings, whoever wrote them (the command line,
an ini section, Pyramid's ``stargate.*``, a plain mapping).

Not ``test_settings.py``: tests/pyramid/test_settings.py has that basename, and tests/pyramid
cannot become a package (it would be named ``pyramid`` and shadow the real one).
"""

from __future__ import annotations

import re
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from stargate.brokers import BrokerConfigError
from stargate.extensions.permessage_deflate import PerMessageDeflateOffer
from stargate.handshake import OriginPolicy
from stargate.limits import Limits
from stargate.server import ServerConfig, WebSocketOptions
from stargate.settings import (
    SERVER_KEYS,
    WEBSOCKET_KEYS,
    ServeSettings,
    SettingsError,
    as_log_level,
    check_workers,
    parse_listen,
    serve_settings,
    server_config,
    ssl_context,
    websocket_settings,
)
from tests.machine import make_certificate, require_module


def test_nothing_given_is_the_server_defaults() -> None:
    assert serve_settings({}) == ServeSettings(ServerConfig(), (("127.0.0.1", 8000),), 1)
    assert server_config({"threads": None}) == ServerConfig()  # None: not given


def test_written_and_typed_values_convert_alike() -> None:
    written = server_config(
        {
            "host": "0.0.0.0", "port": "8080", "threads": "8", "websocket_threads": "4",
            "max_body_size": "1MiB", "max_header_size": "32k", "keepalive_timeout": "2.5",
            "legacy_protocols": "false", "access_log": "on", "access_log_format": "JSON",
            "trusted_proxies": "127.0.0.1, 10.0.0.0/8", "health_path": "/-/ready",
            "proxy_headers": " Forwarded ", "metrics_path": "off", "broker": "memory://",
            "compression": "false",
            "allowed_origins": "https://app.example\n*.app.example", "ping_interval": "off",
            "max_message_size": "64KiB",
        }
    )  # fmt: skip
    typed = server_config(
        {
            "host": "0.0.0.0", "port": 8080, "threads": 8, "websocket_threads": 4,
            "max_body_size": 1024**2, "max_header_size": 32768, "keepalive_timeout": 2.5,
            "legacy_protocols": False, "access_log": True, "access_log_format": "json",
            "trusted_proxies": ["127.0.0.1", "10.0.0.0/8"], "health_path": "/-/ready",
            "proxy_headers": "forwarded", "broker": "memory://", "compression": False,
            "allowed_origins": ["https://app.example", "*.app.example"], "ping_interval": 0,
            "max_message_size": 65536,
        }
    )  # fmt: skip
    assert written == typed
    assert (written.host, written.port, written.threads, written.max_body_size) == (
        "0.0.0.0",
        8080,
        8,
        1024**2,
    )
    assert written.legacy_protocols is False and written.access_log is True
    assert written.access_log_format == "json" and written.metrics_path is None
    assert written.trusted_proxies == ("127.0.0.1", "10.0.0.0/8")
    assert written.proxy_headers == "forwarded"
    assert written.origin_policy == OriginPolicy(allowed=("https://app.example", "*.app.example"))
    assert written.websocket == WebSocketOptions(
        limits=Limits(max_message_size=65536, max_frame_size=65536),
        compression=None,
        ping_interval=None,
    )
    assert written.broker_url == "memory://"


def test_a_keepalive_timeout_of_0_or_off_is_no_keep_alive() -> None:
    for value in ("0", "off", 0):
        assert server_config({"keepalive_timeout": value}).keepalive_timeout == 0.0
    with pytest.raises(SettingsError, match="keepalive_timeout: must be a finite number"):
        server_config({"keepalive_timeout": "-1"})


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"threads": "0"}, "threads: must be positive"),
        ({"threads": "many"}, "threads: expected a whole number"),
        ({"port": "http"}, "port: expected a port number"),
        ({"port": "70000"}, "port: expected a port number (0 to 65535)"),
        ({"max_body_size": "huge"}, "max_body_size: expected a size in bytes"),
        ({"body_timeout": "-1"}, "body_timeout: must be a finite number"),
        ({"write_timeout": "inf"}, "write_timeout: must be a finite number"),
        ({"access_log": "maybe"}, "access_log: expected true or false"),
        ({"access_log_format": "xml"}, "access_log_format: one of text, json"),
        ({"trusted_proxies": "10.0.0.300"}, "trusted_proxies: trusted proxy '10.0.0.300'"),
        ({"proxy_headers": "x-real-ip"}, "proxy_headers: one of x-forwarded, forwarded"),
        ({"health_path": "ready"}, "health_path: expected a path"),
        ({"ping_interval": "soon"}, "ping_interval: expected a number of seconds"),
        ({"workers": "0"}, "workers: must be positive"),
        ({"workers": "2"}, "workers 2 needs a broker that spans processes"),
        ({"listen": "localhost:x"}, "listen: expected a port number, not 'x'"),
        ({"listen": "127.0.0.1:8000", "host": "x"}, "listen and host both given"),
        ({"ping_intervall": "5"}, "unknown setting ping_intervall; known: "),
        ({"keyfile": "key.pem"}, "keyfile needs certfile"),
        (
            {"allowed_origins": "https://a.example/app"},
            "allowed_origins: allowed origin 'https://a.example/app' can never match",
        ),
    ],
)
def test_errors_name_the_setting(values: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        serve_settings(values)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_errors_name_the_setting_as_its_source_spells_it() -> None:
    with pytest.raises(SettingsError, match=r"^--max-body-size: expected a size"):
        serve_settings({"max_body_size": "x"}, label=lambda key: "--" + key.replace("_", "-"))
    with pytest.raises(SettingsError, match=r"^STARGATE_PING_TIMEOUT: "):
        serve_settings({"ping_timeout": "x"}, label=lambda key: f"STARGATE_{key.upper()}")


def test_an_unusable_broker_is_refused_with_its_password_masked() -> None:
    with pytest.raises(BrokerConfigError, match="unknown scheme 'amqp'") as caught:
        serve_settings({"broker": "amqp://guest:s3cret@host/"})
    assert "s3cret" not in str(caught.value)


def test_workers_need_a_broker_that_spans_processes() -> None:
    require_module("redis")
    settings = serve_settings({"workers": "2", "broker": "redis://127.0.0.1:6379/0"})
    assert settings.workers == 2 and settings.broker_url == "redis://127.0.0.1:6379/0"
    check_workers(1, None)
    with pytest.raises(SettingsError, match="at least 1"):
        check_workers(0, None)
    with pytest.raises(SettingsError, match="silently reach only"):
        check_workers(2, "memory://")


@pytest.mark.parametrize(
    ("value", "addresses"),
    [
        ("localhost:6543", (("localhost", 6543),)),
        ("*:6543", (("", 6543),)),
        ("[::1]:6543", (("::1", 6543),)),
        ("127.0.0.1:1 [::1]:2\n*:3", (("127.0.0.1", 1), ("::1", 2), ("", 3))),
        ("a.example:80, b.example:81", (("a.example", 80), ("b.example", 81))),
        (["127.0.0.1:1", "[::]:2"], (("127.0.0.1", 1), ("::", 2))),
    ],
)
def test_listen(value: str | list[str], addresses: tuple[tuple[str, int], ...]) -> None:
    assert parse_listen(value) == addresses


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("::1:6543", "IPv6 address in brackets"),
        ("[::1:6543", "expected [IPv6]:port"),
        ("[nothere]:80", "is not an IPv6 address"),
        ("host:port", "expected a port number"),
        ("host", "expected host:port"),
        ("", "one or more host:port"),
    ],
)
def test_listen_errors(value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace("[", r"\[")):
        parse_listen(value)


def test_listen_takes_the_port_for_a_bare_host() -> None:
    assert parse_listen("localhost [::1]:9", port=7) == (("localhost", 7), ("::1", 9))
    settings = serve_settings({"listen": "localhost *:9", "port": "7"})
    assert settings.listen == (("localhost", 7), ("", 9))
    assert (settings.config.host, settings.config.port) == ("localhost", 7)
    assert serve_settings({"listen": "localhost"}).listen == (("localhost", 8000),)


def test_host_star_is_every_interface() -> None:
    assert serve_settings({"host": "*", "port": "1"}).listen == (("", 1),)
    assert serve_settings({"host": "[::1]", "port": "1"}).listen == (("::1", 1),)


@pytest.mark.parametrize(
    ("level", "value"), [("debug", 10), ("INFO", 20), (" warning ", 30), ("critical", 50)]
)
def test_log_levels(level: str, value: int) -> None:
    assert as_log_level(level) == value


def test_a_bad_log_level() -> None:
    with pytest.raises(SettingsError, match="--log-level: one of debug, info, warning, error, cr"):
        as_log_level("loud", "--log-level")
    with pytest.raises(SettingsError):
        as_log_level("notset")  # a level, but one that silences nothing


def test_websocket_settings_groups() -> None:
    assert websocket_settings({}) == websocket_settings(None)
    parsed = websocket_settings({"ping_interval": "5", "subprotocols": "b.v2, a.v1"})
    assert parsed.options == WebSocketOptions(ping_interval=5.0)
    assert parsed.origin_policy is None  # that group was not given: the server's stands
    assert parsed.subprotocols == ("b.v2", "a.v1")
    parsed = websocket_settings({"same_origin": "no", "compression": "yes"})
    assert parsed.origin_policy == OriginPolicy(same_origin=False)
    assert parsed.options == WebSocketOptions(compression=PerMessageDeflateOffer())


def test_the_names_are_one_list() -> None:
    """Every WebSocket name an app may set is a server setting too, but subprotocols."""
    assert set(WEBSOCKET_KEYS) - SERVER_KEYS == {"subprotocols"}


# -- TLS -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate and its key, made with the openssl command line."""
    return make_certificate(tmp_path_factory.mktemp("tls"), days=2)


def test_ssl_context(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    assert ssl_context(None) is None
    context = ssl_context(str(cert), str(key))
    assert isinstance(context, ssl.SSLContext)
    config = server_config({"certfile": str(cert), "keyfile": str(key)})
    assert isinstance(config.ssl_context, ssl.SSLContext)


def test_ssl_errors_are_one_line(certificate: tuple[Path, Path], tmp_path: Path) -> None:
    cert, key = certificate
    with pytest.raises(
        SettingsError, match=re.escape("certfile: no such file: '/nonexistent/cert.pem'")
    ):
        ssl_context("/nonexistent/cert.pem")
    with pytest.raises(SettingsError, match=re.escape("no such file: '/nonexistent/key.pem'")):
        ssl_context(str(cert), "/nonexistent/key.pem")
    with pytest.raises(SettingsError, match=r"\(no private key in it: give keyfile\)$"):
        ssl_context(str(cert))  # no key in the certificate file
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello\n")
    with pytest.raises(SettingsError, match=r"^--certfile: cannot load") as caught:
        ssl_context(str(not_pem), str(key), label=lambda name: "--" + name)
    assert "\n" not in str(caught.value)


def test_an_encrypted_key_is_refused_without_a_prompt(
    certificate: tuple[Path, Path], tmp_path: Path
) -> None:
    """OpenSSL would ask for the passphrase on the terminal (twice, then fail): a server
    under systemd would wait there for ever.  It is one line naming the key instead."""
    cert, key = certificate
    openssl = shutil.which("openssl")
    assert openssl is not None  # the certificate fixture needed it too
    encrypted = tmp_path / "encrypted.pem"
    subprocess.run(
        [openssl, "pkey", "-in", str(key), "-aes256", "-passout", "pass:secret",
         "-out", str(encrypted)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    with pytest.raises(SettingsError, match=r"^keyfile: the private key in .* is encrypted"):
        ssl_context(str(cert), str(encrypted))
