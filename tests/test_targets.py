"""stargate.targets: ``module:app`` and ``.ini`` targets checked without importing, loaded,
and an ini's ``[server:main]`` read as written."""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from stargate.server import Routes
from stargate.targets import (
    TargetError,
    check_target,
    ini_server_settings,
    is_ini,
    load_app,
    load_target,
    use_current_directory,
)
from tests.machine import require_module

APP = """
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]

def make_app(global_config, **settings):
    return app

not_an_app = 42
routes = __import__("stargate.server", fromlist=["Routes"]).Routes()

def make_pyramid_app(global_config, **settings):
    from pyramid.config import Configurator

    with Configurator(settings=settings) as config:
        config.include("stargate.pyramid")
        config.add_settings({"stargate.max_mesage_size": "1"})  # a typo, after the include
        return config.make_wsgi_app()

def make_failing_app(global_config, **settings):
    from pyramid.config import Configurator

    with Configurator(settings=settings) as config:
        config.action("x", lambda: 1 / 0)
        return config.make_wsgi_app()
"""


@pytest.fixture
def app_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory with ``targets_app.py``, on sys.path, as the current directory."""
    (tmp_path / "targets_app.py").write_text(APP)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("targets_app", None)


def write_ini(directory: Path, text: str, name: str = "app.ini") -> Path:
    path = directory / name
    path.write_text(text)
    return path


def test_is_ini() -> None:
    assert is_ini("development.ini") and is_ini("dir/x.ini#main")
    assert not is_ini("module:app") and not is_ini("ini:app")


def test_check_target_imports_nothing(app_dir: Path) -> None:
    check_target("targets_app:app")
    check_target("no_such_module_anywhere:app")  # the shape only: workers import it
    assert "targets_app" not in sys.modules
    for bad in ("targets_app", ":app", "targets_app:"):
        with pytest.raises(
            TargetError, match=re.escape("TARGET must be module:attribute or a .ini")
        ):
            check_target(bad)


def test_load_app(app_dir: Path) -> None:
    assert load_app("targets_app:app")({"REQUEST_METHOD": "GET"}, lambda status, headers: None) == [
        b"hello"
    ]
    assert isinstance(load_app("targets_app:routes"), Routes)
    with pytest.raises(TargetError, match=r"not a WSGI app .* an object of type int"):
        load_app("targets_app:not_an_app")
    assert load_target("targets_app:not_an_app") == 42  # load_target does not judge


def test_an_import_error_inside_the_module_is_not_hidden(app_dir: Path) -> None:
    """A module that exists but imports what is missing: its own traceback helps more."""
    (app_dir / "broken_app.py").write_text("import no_such_dependency_here\n")
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_here"):
        load_target("broken_app:app")
    with pytest.raises(TargetError, match=r"cannot import 'missing_app'.*looked in"):
        load_target("missing_app:app")


def test_use_current_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", os.getcwd())])
    use_current_directory()
    assert sys.path[0] == str(tmp_path)
    use_current_directory()
    assert sys.path.count(str(tmp_path)) == 1


def test_ini_checks(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match=re.escape("no such .ini file: 'nope.ini'")):
        check_target("nope.ini")
    ini = write_ini(tmp_path, "[app:main]\nuse = call:targets_app:make_app\n")
    check_target(str(ini))
    check_target(f"{ini}#main")
    with pytest.raises(TargetError, match=r"has no \[app:other\] section .* it has \[app:main\]"):
        check_target(f"{ini}#other")
    pipeline = write_ini(tmp_path, "[pipeline:main]\npipeline = x\n", "pipeline.ini")
    check_target(str(pipeline))
    empty = write_ini(tmp_path, "[server:main]\nport = 1\n", "server-only.ini")
    with pytest.raises(TargetError, match=r"no \[app:main\] section .* add one"):
        check_target(str(empty))
    garbage = write_ini(tmp_path, "no section header\n", "garbage.ini")
    with pytest.raises(TargetError, match=re.escape("not an .ini file PasteDeploy can read")):
        check_target(str(garbage))


def test_load_an_ini_app(app_dir: Path) -> None:
    require_module("pyramid")
    ini = write_ini(app_dir, "[app:main]\nuse = call:targets_app:make_app\n")
    app = load_app(str(ini))
    assert app({"REQUEST_METHOD": "GET"}, lambda status, headers: None) == [b"hello"]


def test_a_stargate_setting_refused_at_the_commit_is_one_line(app_dir: Path) -> None:
    """A ``stargate.*`` setting added after the include is checked when Pyramid commits,
    which wraps the error: ``stargate serve`` still says it in one line.  Other errors of
    the commit stay as they are."""
    require_module("pyramid")
    from pyramid.exceptions import ConfigurationExecutionError

    ini = write_ini(app_dir, "[app:main]\nuse = call:targets_app:make_pyramid_app\n")
    with pytest.raises(TargetError, match=r"app\.ini: unknown setting stargate\.max_mesage_size"):
        load_app(str(ini))
    ini = write_ini(app_dir, "[app:main]\nuse = call:targets_app:make_failing_app\n", "bad.ini")
    with pytest.raises(ConfigurationExecutionError):
        load_app(str(ini))


def test_an_ini_app_without_pyramid_says_how_to_install_it(
    app_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As if pyramid were not installed (its import fails): the fix names the package
    itself, not a ``stargate[pyramid]`` that PyPI would answer with another project."""
    for name in [n for n in sys.modules if n == "pyramid" or n.startswith("pyramid.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "pyramid", None)
    ini = write_ini(app_dir, "[app:main]\nuse = call:targets_app:make_app\n")
    with pytest.raises(
        TargetError, match=re.escape("needs pyramid (python3 -m pip install pyramid)")
    ):
        load_app(str(ini))


def test_server_settings_as_written(tmp_path: Path) -> None:
    ini = write_ini(
        tmp_path,
        "[DEFAULT]\ndebug = true\n\n"
        "[app:main]\nuse = egg:myapp\n\n"
        "[server:main]\nuse = egg:stargate\nlisten = localhost:6543 [::1]:6543\n"
        "certfile = %(here)s/cert.pem\nMax_Body_Size = 1MiB\n",
    )
    assert ini_server_settings(str(ini)) == {
        "listen": "localhost:6543 [::1]:6543",
        "certfile": f"{tmp_path.resolve()}/cert.pem",
        "Max_Body_Size": "1MiB",  # as written: an unknown key is the settings' to refuse
    }
    assert ini_server_settings(f"{ini}#main") == ini_server_settings(str(ini))
    no_server = write_ini(tmp_path, "[app:main]\nuse = egg:myapp\n", "no-server.ini")
    assert ini_server_settings(str(no_server)) == {}


def test_another_servers_section_gives_where_to_listen(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """And says which of its keys are left aside: a waitress body limit must not silently
    become stargate's default."""
    ini = write_ini(
        tmp_path,
        "[app:main]\nuse = egg:myapp\n\n"
        "[server:main]\nuse = egg:waitress#main\nlisten = *:6543\nthreads = 4\n"
        "url_scheme = https\nmax_request_body_size = 1024\n",
    )
    with caplog.at_level(logging.WARNING, "stargate.targets"):
        assert ini_server_settings(str(ini)) == {"listen": "*:6543", "threads": "4"}
    assert caplog.messages == [
        f"{ini} [server:main] is for egg:waitress#main: its keys max_request_body_size, "
        "url_scheme are not stargate's, left aside (stargate's limits apply; see stargate "
        "serve --help)"
    ]
