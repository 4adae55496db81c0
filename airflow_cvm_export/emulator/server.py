"""The emulator: one HTTP server for API 3.0, COS and ``/_emulator/*``, with faults and counters."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from airflow_cvm_export.emulator import cos, cvm
from airflow_cvm_export.emulator.auth import Credentials
from airflow_cvm_export.emulator.catalog import REGION, Catalog
from airflow_cvm_export.emulator.errors import ApiError
from airflow_cvm_export.emulator.exports import ExportManager
from airflow_cvm_export.emulator.faults import (
    DEFAULT_RATE_LIMITS,
    FAULT_KINDS,
    SLOW_SECONDS,
    FaultInjector,
    RateLimiter,
)
from airflow_cvm_export.emulator.httpserver import Request, Response, ThreadedHttpServer

DEFAULT_MAX_RUNNING_EXPORTS = 10
_BAD_GATEWAY = (
    b"<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>"
)


class Emulator:
    """Offline Tencent Cloud CVM API 3.0 and COS, for tests and demos (``with Emulator() as emu: emu.url``).

    :param host: address to listen on.
    :param port: port to listen on; 0 picks a free one.
    :param secret_id: the only SecretId accepted.
    :param secret_key: its SecretKey.
    :param token: if set, CVM requests must send it in ``X-TC-Token`` and COS requests in
        ``x-cos-security-token``.
    :param export_seconds: how long an export takes until its last object appears.
    :param fail_rate: share of accepted exports that fail.
    :param fault_rate: share of CVM and COS requests that get an injected fault.
    :param seed: seed of the failure and fault draws.
    :param max_running_exports: running export tasks allowed at once.
    :param extra_images: exportable images to add to the catalog (``img-x0000001``...).
    :param region: the catalog's region.
    :param rate_limits: requests/second per action and SecretId; 0 or None disables one, ``{}`` all.
    :param fault_kinds: restrict injected faults to these kinds (see ``faults.FAULT_KINDS``).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        secret_id: str = "AKIDEMULATOR",
        secret_key: str = "emulator-secret-key",
        token: str | None = None,
        export_seconds: float = 2.0,
        fail_rate: float = 0.0,
        fault_rate: float = 0.0,
        seed: int = 0,
        max_running_exports: int = DEFAULT_MAX_RUNNING_EXPORTS,
        extra_images: int = 0,
        region: str = REGION,
        rate_limits: Mapping[str, float | None] | None = None,
        fault_kinds: Iterable[str] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        credentials = Credentials(secret_id, secret_key, token)
        self._catalog = Catalog(region, extra_images)
        self.exports = ExportManager(
            self._catalog,
            export_seconds=export_seconds,
            fail_rate=fail_rate,
            seed=seed,
            max_running_exports=max_running_exports,
        )
        self.faults = FaultInjector(fault_rate, seed, fault_kinds)
        limiter = RateLimiter(DEFAULT_RATE_LIMITS if rate_limits is None else rate_limits)
        self.cvm = cvm.CvmApi(credentials, self._catalog, self.exports, limiter)
        self.cos = cos.CosApi(credentials, self._catalog, self.exports)
        self._planned: dict[str, list[str]] = {}
        self._counts: dict[str, dict[str, int]] = {}
        self._counts_lock = threading.Lock()
        self._server: ThreadedHttpServer | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123`` (API 3.0 at ``/``, COS at ``/<bucket>/<key>``)."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> Emulator:
        """Start serving in a background thread."""
        if self._server is None:
            self._server = ThreadedHttpServer((self.host, self.port), self.handle)
            self.port = self._server.server_address[1]
            self._server.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every connection."""
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def catalog(self) -> dict[str, list[dict[str, str]]]:
        """The ``GET /_emulator/catalog`` document."""
        return self._catalog.to_json()

    def state(self) -> dict[str, Any]:
        """The ``GET /_emulator/state`` document: exports and request outcomes by action."""
        with self._counts_lock:
            requests = {action: dict(outcomes) for action, outcomes in self._counts.items()}
        return {"exports": self.exports.to_json(), "requests": requests}

    def inject(self, action: str, *kinds: str) -> None:
        """Give the next requests of ``action`` (``ExportImages``, ``COS HEAD``...) these faults, in order.

        Planned faults come before the random ones of ``fault_rate``; each kind is one of
        ``faults.FAULT_KINDS`` (``slow`` waits the longest of its range).
        """
        unknown = sorted(set(kinds) - set(FAULT_KINDS))
        if unknown:
            raise ValueError(f"fault kinds must be among {', '.join(FAULT_KINDS)}, got {unknown}")
        with self._counts_lock:
            self._planned.setdefault(action, []).extend(kinds)

    def _next_fault(self, action: str) -> tuple[str, float] | None:
        with self._counts_lock:
            planned = self._planned.get(action)
            kind = planned.pop(0) if planned else None
        if kind is None:
            return self.faults.draw()
        return kind, SLOW_SECONDS[1] if kind == "slow" else 0.0

    def reset_counters(self) -> None:
        """Forget the request counts (exports and objects stay)."""
        with self._counts_lock:
            self._counts.clear()

    def handle(self, request: Request) -> Response:
        """Answer one request (the server calls this from its connection threads)."""
        if request.path.startswith("/_emulator/"):
            return self._admin(request)
        is_cvm = request.path == "/"
        action = cvm.action_name(request) if is_cvm else cos.action_name(request)
        outcome, response = self._serve(request, is_cvm, self._next_fault(action))
        with self._counts_lock:
            outcomes = self._counts.setdefault(action, {})
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        return response

    def _serve(self, request: Request, is_cvm: bool, fault: tuple[str, float] | None) -> tuple[str, Response]:
        api: cvm.CvmApi | cos.CosApi = self.cvm if is_cvm else self.cos
        if fault is None:
            return api.handle(request)
        kind, delay = fault
        outcome = f"fault:{kind}"
        if kind == "slow":
            time.sleep(delay)
            return outcome, api.handle(request)[1]
        if kind == "drop_after":
            api.handle(request)
        if kind in ("drop_before", "drop_after"):
            return outcome, Response(drop=True)
        if kind == "http5xx":
            return outcome, Response(502, _BAD_GATEWAY, [("Content-Type", "text/html")])
        if is_cvm:
            code = "RequestLimitExceeded" if kind == "throttle" else "InternalError"
            return outcome, cvm.error_response(ApiError(code))
        status, code = (503, "SlowDown") if kind == "throttle" else (500, "InternalError")
        message = "Please reduce your request rate." if kind == "throttle" else "Internal error."
        return outcome, cos.error_response(status, code, message, request.path, request.method == "HEAD")

    def _admin(self, request: Request) -> Response:
        documents = {"/_emulator/catalog": self.catalog, "/_emulator/state": self.state}
        document = documents.get(request.path.rstrip("/"))
        if request.method != "GET" or document is None:
            return cvm.json_response({"error": f"no such emulator endpoint: {request.method} {request.path}"}, 404)
        return cvm.json_response(document())
