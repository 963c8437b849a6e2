"""A griffe extension for the reference pages: Stargate's docstrings as MkDocs renders them.

The docstrings are written for readers of the source (and Sphinx habits): inline roles such as
:class:`~stargate.server.WebSocket`, ``::`` before a literal block, and ``#:`` comments above a
dataclass field.  This turns each role into a link to the object's entry when the reference
renders it (an *optional* autoref: no link, and no warning, when it does not), ``::`` into
``:`` (the indented block stays a Markdown code block) and ``#:`` comments into the field's
docstring.  It only changes how the docs render, never the source.
"""

from __future__ import annotations

import ast
import html
import re
from functools import cache
from pathlib import Path
from typing import Any

import griffe

_ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj):`(~?)([^`]+)`")


@cache
def _lines(path: str) -> list[str]:
    return Path(path).read_text(encoding="utf-8").splitlines()


def _module_path(obj: griffe.Object) -> str:
    module = obj if obj.is_module else obj.module
    return str(module.path)


def _package_path(obj: griffe.Object) -> str:
    module = obj if obj.is_module else obj.module
    return str(module.path) if module.is_init_module else str(module.path).rpartition(".")[0]


def _target(obj: griffe.Object, name: str) -> str:
    """The full path a role names: relative names are resolved from the object's module."""
    if name.startswith("."):
        package = _package_path(obj)
        while name.startswith(".."):
            package = package.rpartition(".")[0]
            name = name[1:]
        return f"{package}{name}"
    if name.startswith("stargate"):
        return name
    return f"{_module_path(obj)}.{name}"


def _convert(obj: griffe.Object, text: str) -> str:
    def role(match: re.Match[str]) -> str:
        tilde, name = match.groups()
        shown = name.rpartition(".")[2] if tilde else name.lstrip(".")
        target = html.escape(_target(obj, name), quote=True)
        code = f"<code>{html.escape(shown)}</code>"
        return f'<autoref identifier="{target}" optional>{code}</autoref>'

    text = _ROLE.sub(role, text)
    return re.sub(r"::$", ":", text, flags=re.MULTILINE)


class SphinxRoles(griffe.Extension):
    """Roles to links, ``::`` to ``:``, ``#:`` comments to attribute docstrings."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _convert(obj, obj.docstring.value)

    def on_attribute_instance(
        self, *, node: ast.AST | griffe.ObjectNode, attr: griffe.Attribute, **kwargs: Any
    ) -> None:
        if attr.docstring is not None or attr.lineno is None or attr.filepath is None:
            return
        lines = _lines(str(attr.filepath))
        comment: list[str] = []
        index = attr.lineno - 2
        while index >= 0 and lines[index].strip().startswith("#:"):
            comment.insert(0, lines[index].strip()[2:].strip())
            index -= 1
        if comment:
            attr.docstring = griffe.Docstring(
                _convert(attr, "\n".join(comment)), lineno=index + 2, parent=attr
            )
