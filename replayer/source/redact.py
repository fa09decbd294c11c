"""Finds clientKey, appId and apiVersion in records and masks them in records and raw text;
cuts the query (a signed URL's credentials) off every http(s) URL shown or stored.

Pure: imports neither asyncio nor aiohttp, opens no files, and never raises for any input.
"""

from __future__ import annotations

import re
from typing import Any

from replayer.records import (
    REDACTED,
    SECRET_FIELDS,
    SECRET_NAMES_FOLDED,
    JSONObject,
    redact_text,
    secret_named_in,
)
from replayer.source.fields import SHOW_CHARS

_MAX_RAW_CHARS = 4096
_RAW_BYTES = 4 * _MAX_RAW_CHARS  # enough bytes for 4096 characters of UTF-8
_SECRET_FOLDED = frozenset(key.lower() for key in SECRET_FIELDS)
# An http(s) URL in free text (a store client's error) up to its query or fragment, then the
# query or fragment: up to whitespace, a quote or a bracket that would end the URL there.
_URL_QUERY = re.compile(r"(?i)\b(https?://[^\s?#'\"<>]*)[?#][^\s'\"<>]*")
# may_name_secret spells these out, for speed; this guards the spelling.
assert {"clientkey", "appid", "apiversion"} == set(SECRET_NAMES_FOLDED)


def may_name_secret(data: bytes) -> bool:
    """Whether a line may name a secret or configuration field anywhere: the names in any
    case, or a backslash-u escape (which can spell them). Lines without either skip the deep
    checks. (A one-byte search for the backslash first: two-byte needles are slow; then
    one lowering and three substring searches, a fifth of a case-blind regex.)"""
    if b"\\" in data and b"\\u" in data:
        return True
    lowered = data.lower()
    return b"clientkey" in lowered or b"appid" in lowered or b"apiversion" in lowered


def named_problem(name: str, path: str) -> tuple[str, str]:
    """The (kind, message) of a secret (clientKey) or configuration (appId, apiVersion) field."""
    if name.lower() in _SECRET_FOLDED:
        return "secret_field", f"{path}: a secret belongs in settings, not in records"
    return "config_field", f"{path}: configuration belongs in settings, not records"


def nested_secret_problems(record: JSONObject) -> list[tuple[str, str]]:
    """clientKey, appId or apiVersion below the top level (any case, in objects, arrays, or
    spelled inside a string such as userAttributes given as JSON text): one (kind, message)
    per kind (the caller ranks them), naming the first place and how many more."""
    found: dict[str, tuple[str, int]] = {}

    def seen(name: str, path: str) -> None:
        kind, message = named_problem(name, path)
        first, count = found.get(kind, (message, 0))
        found[kind] = (first, count + 1)

    # An explicit stack: a record may nest deeper (1024 levels) than Python recurses.
    stack: list[tuple[str, Any]] = []
    for key, value in record.items():
        name = None if key.lower() in SECRET_NAMES_FOLDED else secret_named_in(key)
        if name is not None:  # the top-level names themselves are checked by the caller
            seen(name, _shown_path(key))
        stack.append((_shown_path(key), value))
    while stack:
        path, value = stack.pop()
        if type(value) is dict:
            for key, item in value.items():
                name = key.lower() if key.lower() in SECRET_NAMES_FOLDED else secret_named_in(key)
                if name is not None:
                    seen(name, f"{path}.{_shown_path(key)}")
                stack.append((f"{path}.{_shown_path(key)}", item))
        elif type(value) is list:
            stack.extend((f"{path}[{i}]", item) for i, item in enumerate(value))
        elif type(value) is str:
            name = secret_named_in(value)
            if name is not None:
                seen(name, path)
    return [
        (kind, message + (f" (and {count - 1} more)" if count > 1 else ""))
        for kind, (message, count) in found.items()
    ]


def _shown_path(key: str) -> str:
    """A key as a part of a path in a message: cut short, any secret in it masked."""
    return redact_text(key[:SHOW_CHARS])


def redacted(value: Any) -> Any:
    """`value` with the value of every clientKey, appId or apiVersion key (any case, any depth)
    replaced, and any such name spelled with a value inside a string or a key masked.

    Only for values orjson can write back (at most 255 levels), so recursion is bounded.
    """
    if type(value) is dict:
        return {
            redact_text(key): REDACTED if key.lower() in SECRET_NAMES_FOLDED else redacted(item)
            for key, item in value.items()
        }
    if type(value) is list:
        return [redacted(item) for item in value]
    if type(value) is str:
        return redact_text(value)
    return value


def raw_text(data: bytes | memoryview, *, cut: bool) -> str:
    """The line's text for a failure row: at most 4096 characters, any secret masked."""
    text = bytes(data[:_RAW_BYTES]).decode("utf-8", errors="replace")
    cut = cut or len(data) > _RAW_BYTES or len(text) > _MAX_RAW_CHARS
    text = redact_text(text[:_MAX_RAW_CHARS])
    return text + "…[truncated]" if cut else text


def shown_url(path: str) -> str:
    """An input as every row, file, message and command shows it: an http(s) URL without
    its query and fragment (where a signed URL carries its signature, credential or SAS
    token: the same object signed afresh shows the same); any other path as it is."""
    scheme, sep, _ = path.partition("://")
    if sep and scheme.lower() in ("http", "https"):
        return path.partition("#")[0].partition("?")[0]
    return path


def has_query(path: str) -> bool:
    """Whether `path` is an http(s) URL that shown_url cuts (a query or fragment)."""
    return shown_url(path) != path


def redact_urls(text: str) -> str:
    """`text` (an error a store's client raised, say) with the query and fragment of every
    http(s) URL in it cut, as shown_url cuts them."""
    return _URL_QUERY.sub(r"\1", text)
