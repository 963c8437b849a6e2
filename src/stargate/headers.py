"""HTTP header fields for the opening handshake: a case-insensitive multi-dict and list parsers.

Why a multi-dict: RFC 7230 section 3.2.2 lets a field appear several times when its value is a
comma-separated list (``Connection``, ``Sec-WebSocket-Protocol``, ``Sec-WebSocket-Extensions``);
the occurrences combine in order, so keeping every value is the only faithful representation.
Field names are case-insensitive (RFC 7230 section 3.2); the original spelling is kept for output.
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Iterable, Iterator
from itertools import accumulate

from .errors import HandshakeError

__all__ = [
    "SECRET_FIELDS",
    "TCHAR",
    "Headers",
    "has_token",
    "is_token",
    "parse_extensions",
    "serialize_extension",
    "split_tokens",
]

#: ``tchar`` of RFC 9110 section 5.6.2 (RFC 7230 section 3.2.6), as a regular expression's
#: character class: the one spelling of it for every pattern that reads tokens.
TCHAR = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
_TOKEN_RE = re.compile(TCHAR + "+")
#: ``OWS`` of RFC 7230 section 3.2.3.
_OWS = " \t"
#: Fields whose values are credentials: masked in :meth:`Headers.__repr__`, which logs show.
SECRET_FIELDS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})

ExtensionParams = list[tuple[str, str | None]]


def is_token(value: str) -> bool:
    """Whether ``value`` is a non-empty RFC 7230 section 3.2.6 ``token``."""
    return _TOKEN_RE.fullmatch(value) is not None


class Headers:
    """An ordered, case-insensitive multi-dict of header fields that keeps the original case.

    ``len()`` counts fields (a name that occurs twice counts twice) and iteration yields one name
    per field, so ``zip(headers, values)`` lines up with :meth:`items`.
    """

    __slots__ = ("_ends", "_index", "_items", "_packed")

    _packed: str  # set by compact() only

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = list(items)
        # Lower-cased name -> values in order: O(1) look-ups however many fields there are.
        # Built on the first look-up, dropped by compact().
        self._index: dict[str, list[str]] | None = None
        #: Set by compact(): the fields are then one string (``_packed``), each name and
        #: value ending at the next of these offsets.
        self._ends: array[int] | None = None

    def _fields(self) -> list[tuple[str, str]]:
        ends = self._ends
        if ends is None:
            return self._items
        packed, fields, start = self._packed, [], 0
        for i in range(0, len(ends), 2):
            name_end, value_end = ends[i], ends[i + 1]
            fields.append((packed[start:name_end], packed[name_end:value_end]))
            start = value_end
        return fields

    def _lookup(self) -> dict[str, list[str]]:
        index = self._index
        if index is None:
            index = {}
            for name, value in self._fields():
                index.setdefault(name.lower(), []).append(value)
            if self._ends is None:  # compacted headers stay compact: look-ups are rare then
                self._index = index
        return index

    def compact(self) -> None:
        """Keep the fields as one string and no look-up index: for headers kept as long as a
        connection lives after the handshake read them, where a tuple and two strings per
        field, and the index, would cost a kilobyte or more.  Later look-ups scan."""
        if self._ends is not None:
            return
        parts = [part for field in self._items for part in field]
        self._packed = "".join(parts)
        self._ends = array("I", accumulate(map(len, parts)))
        self._index = None
        del self._items

    def add(self, name: str, value: str) -> None:
        """Append one field; earlier fields of the same name are kept (RFC 7230 section 3.2.2)."""
        if self._ends is not None:
            self._items = self._fields()
            self._ends = None
        self._items.append((name, value))
        if self._index is not None:
            self._index.setdefault(name.lower(), []).append(value)

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name``, or ``default`` when the field is absent."""
        values = (self._index or self._lookup()).get(name.lower())
        return values[0] if values else default

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name`` in order (an empty list when absent)."""
        # The index once built: a handshake makes a dozen look-ups, each a call less.
        values = (self._index or self._lookup()).get(name.lower())
        return values.copy() if values else []

    def items(self) -> list[tuple[str, str]]:
        """Every ``(name, value)`` pair in order, names as they were added."""
        return list(self._fields())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in (self._index or self._lookup())

    def __len__(self) -> int:
        return len(self._items) if self._ends is None else len(self._ends) // 2

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._fields())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        mine, theirs = self._fields(), other._fields()
        return [(n.lower(), v) for n, v in mine] == [(n.lower(), v) for n, v in theirs]

    def __repr__(self) -> str:
        """The fields, with the values of :data:`SECRET_FIELDS` masked (reprs end up in logs)."""
        shown = [(n, "***" if n.lower() in SECRET_FIELDS else v) for n, v in self._fields()]
        return f"Headers({shown!r})"


def split_tokens(values: Iterable[str]) -> list[str]:
    """Split the values of a ``#element`` list field into its elements, in order.

    RFC 7230 section 7: recipients MUST accept and ignore empty list elements and optional
    whitespace around the commas, and several fields of the same name form one list.  The case
    of each element is kept; compare with :func:`has_token` where the RFC says the comparison is
    case-insensitive.
    """
    return list(_elements(values))


def _elements(values: Iterable[str]) -> Iterator[str]:
    """The non-empty elements of a list field, OWS stripped, in order (see split_tokens)."""
    for value in values:
        for element in value.split(","):
            element = element.strip(_OWS)
            if element:
                yield element


def has_token(values: Iterable[str], token: str) -> bool:
    """Whether the list field ``values`` contains ``token``, compared ASCII case-insensitively.

    Connection options (RFC 7230 section 6.1) and upgrade protocol names (section 6.7, RFC 6455
    section 4.2.1 items 3 and 4) are case-insensitive: ``Connection: keep-alive, Upgrade`` (Firefox)
    and ``upgrade: WebSocket`` are both valid upgrade requests.
    """
    wanted = token.lower()
    if not wanted:
        return False  # "" is never an element
    # Plain loops, not _elements: three calls per handshake, and a generator costs more.
    for value in values:
        for element in value.lower().split(","):
            if element.strip(_OWS) == wanted:
                return True
    return False


def _skip_ows(text: str, pos: int) -> int:
    end = len(text)
    while pos < end and text[pos] in _OWS:
        pos += 1
    return pos


def _read_token(text: str, pos: int, what: str) -> tuple[str, int]:
    match = _TOKEN_RE.match(text, pos)
    if match is None:
        found = repr(text[pos]) if pos < len(text) else "end of header"
        raise HandshakeError(
            400, f"invalid Sec-WebSocket-Extensions header: expected {what}, found {found}"
        )
    return match.group(), match.end()


def _read_quoted_string(text: str, pos: int) -> tuple[str, int]:
    """Read an RFC 7230 section 3.2.6 ``quoted-string`` starting at the opening quote."""
    chars: list[str] = []
    pos += 1
    end = len(text)
    while pos < end:
        char = text[pos]
        if char == '"':
            return "".join(chars), pos + 1
        if char == "\\":
            pos += 1
            if pos == end:
                break
            char = text[pos]
        chars.append(char)
        pos += 1
    raise HandshakeError(400, "invalid Sec-WebSocket-Extensions header: unterminated quoted-string")


def parse_extensions(values: Iterable[str]) -> list[tuple[str, ExtensionParams]]:
    """Parse ``Sec-WebSocket-Extensions`` values into ``[(name, [(param, value | None)])]``.

    Grammar of RFC 6455 section 9.1::

        extension-list = 1#extension
        extension      = extension-token *( ";" extension-param )
        extension-param = token [ "=" (token | quoted-string) ]

    Offers keep the client's order because RFC 6455 section 9.1 makes it its preference order.
    A quoted value MUST be a token once unescaped (section 9.1), so anything else is refused.
    Empty list elements and optional whitespace are tolerated (RFC 7230 section 7).  Raises
    :class:`HandshakeError` 400 on malformed input.
    """
    result: list[tuple[str, ExtensionParams]] = []
    for text in values:
        pos = 0
        end = len(text)
        while True:
            pos = _skip_ows(text, pos)
            if pos == end:
                break
            if text[pos] == ",":
                pos += 1
                continue
            name, pos = _read_token(text, pos, "an extension name")
            params: ExtensionParams = []
            pos = _skip_ows(text, pos)
            while pos < end and text[pos] == ";":
                pos = _skip_ows(text, pos + 1)
                param, pos = _read_token(text, pos, f"a parameter name of {name!r}")
                pos = _skip_ows(text, pos)
                value: str | None = None
                if pos < end and text[pos] == "=":
                    pos = _skip_ows(text, pos + 1)
                    if pos < end and text[pos] == '"':
                        value, pos = _read_quoted_string(text, pos)
                        if not is_token(value):
                            raise HandshakeError(
                                400,
                                "invalid Sec-WebSocket-Extensions header: quoted value "
                                f"{value!r} of {param!r} is not a token (RFC 6455 section 9.1)",
                            )
                    else:
                        value, pos = _read_token(text, pos, f"a value for {param!r}")
                    pos = _skip_ows(text, pos)
                params.append((param, value))
            if pos < end and text[pos] != ",":
                raise HandshakeError(
                    400,
                    "invalid Sec-WebSocket-Extensions header: expected ',' or ';', "
                    f"found {text[pos]!r}",
                )
            result.append((name, params))
    return result


def serialize_extension(name: str, params: Iterable[tuple[str, str | None]] = ()) -> str:
    """Format one extension for ``Sec-WebSocket-Extensions`` (RFC 6455 section 9.1).

    Names and values must be tokens (the section 9.1 grammar allows nothing else, even quoted),
    so anything else is a programming error: :class:`ValueError`.
    """
    if not is_token(name):
        raise ValueError(f"extension name {name!r} is not a token")
    parts = [name]
    for param, value in params:
        if not is_token(param):
            raise ValueError(f"extension parameter name {param!r} is not a token")
        if value is None:
            parts.append(param)
        elif is_token(value):
            parts.append(f"{param}={value}")
        else:
            raise ValueError(f"extension parameter value {value!r} is not a token")
    return "; ".join(parts)
