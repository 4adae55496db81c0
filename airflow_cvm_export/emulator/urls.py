"""The emulator's one routing table: which service answers a request, and the control API's paths.

Like moto's ``urls.py``: a virtual-hosted COS request is recognised by its Host header
(``<bucket>.cos.<region>.myqcloud.com``), API 3.0 is ``POST /`` on any other host (STS when the
action is one of STS's), the control API lives under ``/_emulator/``, the metadata service under
``/latest/meta-data/``, and everything else is path-style COS (``/<bucket>/<key>``).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from airflow_cvm_export.emulator.cos.responses import is_virtual_hosted
from airflow_cvm_export.emulator.httpserver import Request
from airflow_cvm_export.emulator.sts.responses import is_metadata, is_sts

# (service, test) in order: the first row whose test holds serves the request; path-style COS otherwise.
ROUTES: tuple[tuple[str, Callable[[Request], bool]], ...] = (
    ("cos", is_virtual_hosted),
    ("emulator", lambda request: request.path.startswith("/_emulator/")),
    ("sts", is_sts),
    ("cvm", lambda request: request.path == "/"),
    ("metadata", is_metadata),
)

# The control API: (method, path pattern) -> the ControlResponse method answering it.
CONTROL_PATHS: dict[tuple[str, str], str] = {
    ("GET", r"/_emulator/catalog"): "catalog",
    ("GET", r"/_emulator/state"): "state",
    ("POST", r"/_emulator/reset"): "reset",
    ("POST", r"/_emulator/progression"): "progression",
    ("POST", r"/_emulator/clock"): "clock",
    ("GET", r"/_emulator/faults"): "faults",
    ("POST", r"/_emulator/faults"): "add_fault",
    ("DELETE", r"/_emulator/faults"): "clear_faults",
    ("POST", r"/_emulator/exports/advance"): "advance",
    ("POST", r"/_emulator/exports/finish"): "finish",
    ("DELETE", r"/_emulator/images/(?P<image_id>[^/]+)"): "delete_image",
    ("PUT", r"/_emulator/objects/(?P<bucket>[^/]+)/(?P<key>.+)"): "put_object",
    ("DELETE", r"/_emulator/objects/(?P<bucket>[^/]+)/(?P<key>.+)"): "delete_object",
}
_CONTROL = [(method, re.compile(pattern + "/?$"), name) for (method, pattern), name in CONTROL_PATHS.items()]


def as_origin_form(request: Request) -> None:
    """Turn an absolute-form target (``GET http://host/path``, as sent to a proxy) into Host and path.

    So any HTTP client can reach the emulator as its proxy and keep the real host names.
    """
    scheme, sep, rest = request.path.partition("://")
    if sep and scheme.lower() in ("http", "https") and "/" not in scheme:
        host, slash, path = rest.partition("/")
        request.headers["host"] = host
        request.path = slash + path or "/"


def route(request: Request) -> str:
    """The service answering ``request``: ``cvm``, ``sts``, ``metadata``, ``cos`` or ``emulator`` (control)."""
    if not request.path.startswith("/"):
        as_origin_form(request)
    for service, test in ROUTES:
        if test(request):
            return service
    return "cos"


def control_route(request: Request) -> tuple[str | None, dict[str, str], bool]:
    """(ControlResponse method, path arguments, whether the path exists under another method)."""
    known = False
    for method, pattern, name in _CONTROL:
        match = pattern.match(request.path)
        if match is None:
            continue
        if method == request.method:
            return name, match.groupdict(), True
        known = True
    return None, {}, known
