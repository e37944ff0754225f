"""The one JSON reader for client input: bounded nesting, finite numbers, storable text.

Python's ``json`` recurses once per nesting level, so a body nested 1,000 deep raises
RecursionError (a 500) in the parser or in whatever walks the value next (serializers,
jsonb encoding). It also reads ``1e400`` as infinity and ``NaN`` as a float, and keeps
``"\\ud800"`` (a lone surrogate) and ``"\\u0000"``, which PostgreSQL text and jsonb refuse.
`loads` refuses all of these with a ``ValueError`` that names the problem; `JSONParser` is the
DRF parser built on it (settings ``REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"]``), answering 400.
Views that read JSON themselves call `loads`.
"""

from __future__ import annotations

import codecs
import json
import math
import re
from typing import Any

from django.conf import settings
from rest_framework import parsers, serializers
from rest_framework.exceptions import ParseError

# Deeper than any document the service reads (a verifiable presentation nests about 10).
MAX_DEPTH = 64

_WHOLE_TEXT = re.compile(r"\s*[+-]?[0-9]+(?:\.0*)?\s*")

# A \u escape of a NUL or a surrogate, not preceded by an escaped backslash.
_RISKY_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})")


class JSONRefused(ValueError):
    """Client JSON the service will not read (the message says why)."""


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JSONRefused(f"the number {text[:40]} is out of range")
    return value


def _constant(name: str) -> Any:
    raise JSONRefused(f"{name} is not a JSON number")


def _check(value: Any, *, strings: bool) -> None:
    """Nesting depth (iteratively: the check must not recurse either) and, when the text
    held risky escapes, that every string is storable."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
            if strings:
                _check_strings(item.keys())
        elif isinstance(item, list):
            children = item
        else:
            if strings and isinstance(item, str):
                _check_strings((item,))
            continue
        if depth > MAX_DEPTH:
            raise JSONRefused(f"it is nested more than {MAX_DEPTH} levels deep")
        for child in children:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))
            elif strings and isinstance(child, str):
                _check_strings((child,))


def _check_strings(texts: Any) -> None:
    for text in texts:
        if "\x00" in text:
            raise JSONRefused("a string holds a NUL character (\\u0000)")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise JSONRefused("a string holds an unpaired surrogate (\\ud800-\\udfff)") from None


def loads(text: str | bytes) -> Any:
    """Parse client JSON, or raise JSONRefused (a ValueError) naming the problem."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    try:
        value = json.loads(text, parse_float=_finite, parse_constant=_constant)
    except RecursionError:
        raise JSONRefused(f"it is nested more than {MAX_DEPTH} levels deep") from None
    _check(value, strings=bool(_RISKY_ESCAPE.search(text)))
    return value


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser on `loads`: a body it refuses is a 400 that says why."""

    def parse(
        self, stream: Any, media_type: str | None = None, parser_context: Any = None
    ) -> Any:
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = codecs.getreader(encoding)(stream).read() if stream is not None else ""
            return loads(text)
        except ValueError as error:  # JSONDecodeError, JSONRefused, UnicodeDecodeError
            raise ParseError(f"JSON parse error - {error}") from None


class WholeNumberField(serializers.IntegerField):
    """DRF's IntegerField reading only ASCII digits from text (its int() also reads "١٢" as
    12 and "1_0" as 10)."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, str) and not _WHOLE_TEXT.fullmatch(data):
            self.fail("invalid")
        return int(super().to_internal_value(data))
