"""A griffe extension for the reference pages: Stargate's docstrings as MkDocs renders them.

The docstrings are written for readers of the source (and Sphinx habits): inline roles such as
:class:`~stargate.server.WebSocket`, ``::`` before a literal block, and ``#:`` comments above a
dataclass field.  Once the package is loaded, this turns each role into a link to the object's
entry (an *optional* autoref: plain code, and no warning, when the reference does not render
that object), ``::`` into ``:`` (the indented block stays a Markdown code block) and ``#:``
comments into the field's docstring.  It only changes how the docs render, never the source.
"""

from __future__ import annotations

import ast
import html
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import griffe

#: ``:role:`target```, ``:role:`~target``` or ``:role:`title <target>```.
_ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj):`(~?)([^`<]+?)(?:\s*<([^`>]+)>)?`")


@cache
def _lines(path: str) -> list[str]:
    return Path(path).read_text(encoding="utf-8").splitlines()


def _module(obj: griffe.Object) -> griffe.Module:
    return obj if isinstance(obj, griffe.Module) else obj.module


def _member(scope: griffe.Object | griffe.Alias, dotted: str) -> str | None:
    """The canonical path of ``dotted`` looked up from ``scope``, if it is there."""
    current: Any = scope
    for part in dotted.split("."):
        target = _final(current) if current.is_alias else current
        members = target.all_members if isinstance(target, griffe.Class) else target.members
        if part not in members:
            return None
        current = members[part]
    return str(current.target_path if current.is_alias else current.path)


def _final(alias: griffe.Alias) -> Any:
    try:
        return alias.final_target
    except (griffe.AliasResolutionError, griffe.CyclicAliasError):
        return alias


def _target(obj: griffe.Object, name: str, root: griffe.Module) -> str | None:
    """The path a role names, resolved as Sphinx would from where the docstring is."""
    module = _module(obj)
    if name.startswith("."):
        package = module if module.is_init_module else module.parent
        while name.startswith("..") and package is not None:
            package = package.parent
            name = name[1:]
        return _member(package, name[1:]) if package is not None else None
    if name.split(".")[0] == root.name:
        return _member(root, name.partition(".")[2]) or name
    scopes: list[griffe.Object] = []
    if isinstance(obj, griffe.Class):
        scopes.append(obj)
    if obj.parent is not None and isinstance(obj.parent, griffe.Class):
        scopes.append(obj.parent)
    scopes.append(module)
    for scope in scopes:
        found = _member(scope, name)
        if found is not None:
            return found
    return None  # a builtin (ValueError), another package's name, or a name not in scope


_BORDER = re.compile(r"^=+(?: +=+)+$")
_UNDERLINE = re.compile(r"^(?:-{3,}|={3,}|~{3,})$")
_BULLET = re.compile(r"^(?:[*-] |\d+\. )")


def _cells(line: str, starts: list[int]) -> list[str]:
    ends = [*starts[1:], len(line) + 1]
    return [line[start:end].strip() for start, end in zip(starts, ends, strict=True)]


def _table(lines: list[str]) -> list[str]:
    """An RST simple table (``====  ====`` borders) as a Markdown table."""
    starts = [match.start() for match in re.finditer(r"=+", lines[0])]
    rows: list[list[str]] = []
    for line in lines[1:]:
        if _BORDER.match(line.strip()) or not line.strip():
            continue
        cells = _cells(line, starts)
        if rows and not cells[0]:  # a continuation line of the row above
            rows[-1] = [f"{old} {new}".strip() for old, new in zip(rows[-1], cells, strict=True)]
        else:
            rows.append(cells)
    if not rows:
        return lines
    head, *body = rows
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in body]
    return out


def _structure(text: str) -> str:
    """RST simple tables, definition lists and section titles as Markdown."""
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if _BORDER.match(line.strip()):
            end = i + 1
            borders = 1
            while end < len(lines) and borders < 3:
                borders += bool(_BORDER.match(lines[end].strip()))
                end += 1
            out += _table(lines[i:end])
            i = end
            continue
        if line.strip() and i + 1 < len(lines) and _UNDERLINE.match(lines[i + 1].strip()):
            out.append(f"**{line.strip()}**")
            i += 2
            continue
        definition = (
            line.strip()
            and not line.startswith(" ")
            and not _BULLET.match(line)
            and i + 1 < len(lines)
            and lines[i + 1].startswith("    ")
            and lines[i + 1].strip()
        )
        if definition:
            term = [line.strip()]
            while out and out[-1].strip() and not out[-1].startswith(("* ", " ")):
                term.insert(0, out.pop().strip())  # a term written over several lines
            body: list[str] = []
            i += 1
            while i < len(lines) and lines[i].startswith("    ") and lines[i].strip():
                body.append(lines[i].strip())
                i += 1
            out.append(f"* {' '.join(term)}: {' '.join(body)}")
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


def _convert(obj: griffe.Object, text: str, root: griffe.Module) -> str:
    def role(match: re.Match[str]) -> str:
        tilde, first, explicit = match.groups()
        name = (explicit or first).strip()
        shown = first.strip() if explicit else name.rpartition(".")[2] if tilde else name
        code = f"<code>{html.escape(shown.lstrip('.'))}</code>"
        target = _target(obj, name, root)
        if target is None:
            return code
        return f'<autoref identifier="{html.escape(target, quote=True)}" optional>{code}</autoref>'

    text = _structure(_ROLE.sub(role, text))
    return re.sub(r"::$", ":", text, flags=re.MULTILINE)


def _objects(obj: griffe.Object) -> Iterator[griffe.Object]:
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _objects(member)  # type: ignore[arg-type]


def _field_comment(attr: griffe.Attribute) -> griffe.Docstring | None:
    """The ``#:`` comment lines right above an attribute, as its docstring."""
    if attr.lineno is None or attr.filepath is None:
        return None
    lines = _lines(str(attr.filepath))
    comment: list[str] = []
    index = attr.lineno - 2
    while index >= 0 and lines[index].strip().startswith("#:"):
        comment.insert(0, lines[index].strip()[2:].strip())
        index -= 1
    if not comment:
        return None
    return griffe.Docstring("\n".join(comment), lineno=index + 2, parent=attr)


class SphinxRoles(griffe.Extension):
    """Roles to links, ``::`` to ``:``, ``#:`` comments to attribute docstrings."""

    def on_attribute_instance(
        self, *, node: ast.AST | griffe.ObjectNode, attr: griffe.Attribute, **kwargs: Any
    ) -> None:
        if attr.docstring is None:
            attr.docstring = _field_comment(attr)

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        for obj in _objects(pkg):
            if obj.docstring is not None:
                obj.docstring.value = _convert(obj, obj.docstring.value, pkg)
