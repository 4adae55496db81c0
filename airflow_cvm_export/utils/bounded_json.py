"""JSON from untrusted text with a bound on nesting (pure; used by the argument checks and the emulator).

``json.loads`` of 5,000 nested brackets raises ``RecursionError``, and a value nested a few hundred
levels deep still breaks ``repr``, serialisation or the code walking it later. Every place that
parses JSON it did not write goes through :func:`loads`.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 32


class JsonTooDeepError(ValueError):
    """The value is nested deeper than allowed."""


def check_depth(value: Any, max_depth: int = MAX_DEPTH) -> Any:
    """Return ``value`` if its lists, tuples and dicts are nested at most ``max_depth`` levels (iteratively)."""
    pending = [(value, 1)]
    while pending:
        item, level = pending.pop()
        if isinstance(item, dict):
            children = list(item.values())
        elif isinstance(item, list | tuple):
            children = list(item)
        else:
            continue
        if level > max_depth:
            raise JsonTooDeepError(f"nested deeper than {max_depth} levels")
        pending.extend((child, level + 1) for child in children)
    return value


def loads(data: str | bytes, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` that raises :class:`ValueError` (never ``RecursionError``) and bounds the nesting."""
    try:
        value = json.loads(data)
    except RecursionError:
        raise JsonTooDeepError(f"nested deeper than {max_depth} levels") from None
    # Each level opens a bracket, so text with at most max_depth of them (string contents included)
    # cannot be nested deeper: the walk is needed only for the rest.
    brackets = data.count(b"[") + data.count(b"{") if isinstance(data, bytes) else data.count("[") + data.count("{")
    if brackets <= max_depth:
        return value
    return check_depth(value, max_depth)
