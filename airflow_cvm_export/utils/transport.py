"""Transport helpers both hooks and the credential provider use: the CA bundle, and naming a failure.

Pure functions, importing nothing of the package, so every module that sends requests can use them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator


def tls_verify() -> str | bool:
    """The CA bundle both hooks verify TLS with: ``REQUESTS_CA_BUNDLE`` or ``CURL_CA_BUNDLE``, else certifi's."""
    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True


def causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception linked to it (causes, contexts, urllib3 reasons, args)."""
    pending: list[BaseException] = [exc]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        linked = [current.__context__, current.__cause__, getattr(current, "reason", None), *current.args]
        pending.extend(item for item in linked if isinstance(item, BaseException))


def reason(exc: BaseException) -> str:
    """The innermost cause of a transport exception, by type name: no URL, header or body."""
    return type(list(causes(exc))[-1]).__name__
