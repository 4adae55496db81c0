"""The emulator: one HTTP server for API 3.0, COS and the ``/_emulator/*`` control API.

Wiring only: one backend per service (:mod:`.cvm.models`, :mod:`.cos.models`), thin request
handlers (:mod:`.cvm.responses`, :mod:`.cos.responses`, :mod:`.control`), one routing table
(:mod:`.urls`); faults and request counts are decided here, around the handlers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from airflow_cvm_export.emulator import urls
from airflow_cvm_export.emulator.auth import Credentials, KeyRing
from airflow_cvm_export.emulator.catalog import REGION, Catalog
from airflow_cvm_export.emulator.control import ControlResponse
from airflow_cvm_export.emulator.cos.models import CosBackend, CosObject
from airflow_cvm_export.emulator.cos.responses import CosResponse
from airflow_cvm_export.emulator.cos.responses import error_response as cos_error_response
from airflow_cvm_export.emulator.cvm.models import CvmBackend, check_progression
from airflow_cvm_export.emulator.cvm.responses import CvmResponse
from airflow_cvm_export.emulator.cvm.responses import error_response as cvm_error_response
from airflow_cvm_export.emulator.errors import ApiError, CosError
from airflow_cvm_export.emulator.faults import (
    DEFAULT_RATE_LIMITS,
    FAULT_KINDS,
    FaultInjector,
    FaultRule,
    FaultRules,
    RateLimiter,
)
from airflow_cvm_export.emulator.httpserver import IDLE_TIMEOUT, MAX_CONNECTIONS, Request, Response, ThreadedHttpServer
from airflow_cvm_export.emulator.sts.models import (
    DEFAULT_CAM_ROLE,
    DEFAULT_CREDENTIAL_LIFETIME,
    StsBackend,
    check_lifetime,
)
from airflow_cvm_export.emulator.sts.responses import MetadataResponse, StsResponse

DEFAULT_MAX_RUNNING_EXPORTS = 10
# Codes of the answers the HTTP layer makes (malformed request, overload, a failure of the emulator).
_CVM_TRANSPORT_CODES = {
    411: "UnsupportedProtocol",
    413: "RequestSizeLimitExceeded",
    414: "RequestSizeLimitExceeded",
    431: "RequestSizeLimitExceeded",
    500: "InternalError",
    503: "RequestLimitExceeded",  # nothing was processed: safe to retry, as after throttling
    505: "UnsupportedProtocol",
}
_COS_TRANSPORT_CODES = {411: "MissingContentLength", 413: "EntityTooLarge", 500: "InternalError", 503: "SlowDown"}
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
    :param export_seconds: with the ``time`` progression, how long an export takes until its last object appears.
    :param fail_rate: share of accepted exports that fail.
    :param fault_rate: share of CVM and COS requests that get an injected fault.
    :param seed: seed of the failure and fault draws.
    :param max_running_exports: running export tasks allowed at once.
    :param extra_images: exportable images to add to the catalog (``img-x0000001``...).
    :param region: the catalog's region.
    :param rate_limits: requests/second per action and SecretId; 0 or None disables one, ``{}`` all.
    :param fault_kinds: restrict injected faults to these kinds (see ``faults.FAULT_KINDS``).
    :param progression: how accepted exports move on: ``time`` (by ``export_seconds``), ``manual``
        (only by :meth:`advance` / :meth:`finish`) or ``immediate`` (finished when accepted).
    :param idle_timeout: seconds a connection may stay silent before it is closed.
    :param max_connections: open connections at most (the longest-idle one makes room for a new one).
    :param cos_clock_offset: seconds COS's clock is ahead of the true time (negative: behind), as on a
        COS whose clock differs from the API's and this machine's: objects' ``Last-Modified`` and the
        ``Date`` of COS answers show it; API 3.0 keeps the true time.
    :param credential_lifetime: seconds every temporary credential issued (STS, metadata service) lives
        at most; CVM and COS refuse it after that (``AuthFailure.TokenFailure``).
    :param cam_role: the instance's CAM role the metadata service serves.
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
        progression: str = "time",
        idle_timeout: float = IDLE_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
        cos_clock_offset: float = 0.0,
        credential_lifetime: float = DEFAULT_CREDENTIAL_LIFETIME,
        cam_role: str = DEFAULT_CAM_ROLE,
    ) -> None:
        self.host = host
        self.port = port
        self.secret_id = secret_id
        self.secret_key = secret_key
        self.token = token
        self.region = region
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        keys = KeyRing(Credentials(secret_id, secret_key, token))
        self.credentials = StsBackend(keys, credential_lifetime, cam_role)
        self._catalog = Catalog(region, extra_images)
        self.objects = CosBackend(self._catalog, clock_offset=cos_clock_offset)
        self.exports = CvmBackend(
            self._catalog,
            self.objects,
            export_seconds=export_seconds,
            fail_rate=fail_rate,
            seed=seed,
            max_running_exports=max_running_exports,
            progression=progression,
        )
        self.objects.settle = self.exports.settle
        self._defaults: dict[str, Any] = {
            "progression": progression,
            "fail_rate": fail_rate,
            "export_seconds": export_seconds,
            "max_running_exports": max_running_exports,
        }
        self._cos_clock_default = cos_clock_offset
        self._credential_defaults = {"credential_lifetime": credential_lifetime, "cam_role": cam_role}
        self.faults = FaultInjector(fault_rate, seed, fault_kinds)
        self.rules = FaultRules(seed)
        limiter = RateLimiter(DEFAULT_RATE_LIMITS if rate_limits is None else rate_limits)
        self.cvm = CvmResponse(keys, self.exports, limiter)
        self.cos = CosResponse(keys, self.objects)
        self.sts = StsResponse(keys, self.credentials, limiter)
        self.metadata = MetadataResponse(self.credentials)
        self.control = ControlResponse(self)
        self._handlers: dict[str, CvmResponse | CosResponse | MetadataResponse] = {
            "cvm": self.cvm,
            "cos": self.cos,
            "sts": self.sts,
            "metadata": self.metadata,
        }
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
            self._server = ThreadedHttpServer(
                (self.host, self.port),
                self.handle,
                error=self.error_page,
                idle_timeout=self.idle_timeout,
                max_connections=self.max_connections,
            )
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

    # Documents

    def catalog(self) -> dict[str, list[dict[str, Any]]]:
        """The ``GET /_emulator/catalog`` document."""
        return self._catalog.to_json()

    def state(self) -> dict[str, Any]:
        """The ``GET /_emulator/state`` document: exports, request outcomes by action, and the controls."""
        with self._counts_lock:
            requests = {action: dict(outcomes) for action, outcomes in self._counts.items()}
        return {
            "exports": self.exports.to_json(),
            "requests": requests,
            "progression": self.progression,
            "faults": self.rules.to_json(),
            "deleted_images": self.exports.deleted_images(),
            "cos_clock_offset": self.cos_clock_offset,
            "credential_lifetime": self.credential_lifetime,
            "cam_role": self.cam_role,
        }

    # Control

    @property
    def progression(self) -> str:
        """How exports accepted from now on move on: ``time``, ``manual`` or ``immediate``."""
        return self.exports.progression

    @progression.setter
    def progression(self, value: str) -> None:
        self.exports.progression = check_progression(value)

    @property
    def cos_clock_offset(self) -> float:
        """Seconds COS's clock is ahead of the true time (negative: behind); objects written from now on
        are stamped by it and COS answers show it in their ``Date`` header."""
        return self.objects.clock_offset

    @cos_clock_offset.setter
    def cos_clock_offset(self, value: float) -> None:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ValueError(f"cos_clock_offset must be a number of seconds, got {value!r}")
        self.objects.clock_offset = float(value)

    @property
    def credential_lifetime(self) -> float:
        """Seconds every temporary credential issued from now on lives at most."""
        return self.credentials.credential_lifetime

    @credential_lifetime.setter
    def credential_lifetime(self, value: float) -> None:
        self.credentials.credential_lifetime = check_lifetime(value)

    @property
    def cam_role(self) -> str:
        """The instance's CAM role the metadata service serves (and STS lets be assumed)."""
        return self.credentials.cam_role

    @cam_role.setter
    def cam_role(self, value: str) -> None:
        if not isinstance(value, str) or not value or "/" in value:
            raise ValueError(f"cam_role must be a role name (no '/'), got {value!r}")
        self.credentials.cam_role = value

    def reset(self, progression: str | None = None) -> None:
        """Back to a freshly started emulator: no exports, empty buckets, no fault rules, no counts, every
        image back, no temporary credentials; progression, ``fail_rate``, ``export_seconds``,
        ``max_running_exports``, ``cos_clock_offset``, ``credential_lifetime`` and ``cam_role`` as
        constructed (progression: or ``progression``).

        TaskIds keep counting up, so an id is never given to two exports of one emulator.
        """
        new_progression = check_progression(progression or self._defaults["progression"])
        self.exports.reset()
        self.objects.reset()
        for name, value in self._defaults.items():
            setattr(self.exports, name, value)
        self.exports.progression = new_progression
        self.cos_clock_offset = self._cos_clock_default
        for name, value in self._credential_defaults.items():
            setattr(self, name, value)
        self.credentials.reset()
        self.clear_faults()
        self.reset_counters()

    def advance(self, task_id: int | None = None, objects: int = 1) -> list[dict[str, Any]]:
        """The next ``objects`` objects of export ``task_id`` (or of every running export) appear; an
        export whose last object appears is finished. Returns the exports moved, as ``state()`` shows them."""
        return self.exports.advance(task_id, objects)

    def finish(self, task_id: int | None = None, *, failed: bool = False) -> list[dict[str, Any]]:
        """Finish export ``task_id`` (or every running export) now: succeeded with all its objects, or
        ``failed`` (no more objects, image state ``EXPORTFAILED``). Returns the exports finished."""
        return self.exports.finish(task_id, failed=failed)

    def delete_image(self, image_id: str) -> None:
        """Delete a catalog image, as a user might mid-run (a running export of it fails)."""
        self.exports.delete_image(image_id)

    def put_object(self, bucket: str, key: str, body: bytes = b"") -> CosObject:
        """Put an object into a bucket, e.g. files someone else exported."""
        self.objects.bucket(bucket)
        return self.objects.put_object(bucket, key, body, time.time())

    def delete_object(self, bucket: str, key: str) -> bool:
        """Delete an object, as a user might mid-run; True if it existed."""
        self.objects.bucket(bucket)
        return self.objects.delete_object(bucket, key)

    def add_fault(
        self,
        kinds: Iterable[str] = (),
        *,
        service: str | None = None,
        action: str | None = None,
        rate: float = 1.0,
        count: int | None = None,
        latency: float = 0.0,
    ) -> dict[str, Any]:
        """Add a runtime fault rule (see :class:`~airflow_cvm_export.emulator.faults.FaultRule`); returns it.

        Rules are tried in the order added, before the random faults of ``fault_rate``.
        """
        if isinstance(kinds, str):
            kinds = (kinds,)
        rule = FaultRule(tuple(kinds), service, action, rate, count, latency)
        return self.rules.add(rule).to_json()

    def clear_faults(self) -> None:
        """Remove every fault rule (``fault_rate`` stays)."""
        self.rules.clear()

    def inject(self, action: str, *kinds: str) -> None:
        """Give the next requests of ``action`` (``ExportImages``, ``COS HEAD``...) these faults, in order.

        Planned faults come before the random ones of ``fault_rate``; each kind is one of
        ``faults.FAULT_KINDS`` (``slow`` waits the longest of its range).
        """
        unknown = sorted(set(kinds) - set(FAULT_KINDS))
        if unknown:
            raise ValueError(f"fault kinds must be among {', '.join(FAULT_KINDS)}, got {unknown}")
        for kind in kinds:
            self.rules.add(FaultRule((kind,), action=action, count=1))

    def reset_counters(self) -> None:
        """Forget the request counts (exports and objects stay)."""
        with self._counts_lock:
            self._counts.clear()

    # Serving

    def handle(self, request: Request) -> Response:
        """Answer one request (the server calls this from its connection threads)."""
        service = urls.route(request)
        if service == "emulator":
            return self.control.handle(request)
        handler = self._handlers[service]
        action = handler.action_name(request)
        fault = self.rules.draw(service, action) or self.faults.draw()
        outcome, response = self._serve(handler, request, fault)
        if service == "cos":
            response.date = self.objects.now()  # COS answers show COS's clock
        with self._counts_lock:
            outcomes = self._counts.setdefault(action, {})
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        return response

    def error_page(self, status: int, message: str, method: str, path: str) -> Response:
        """The answer to a request the HTTP layer refuses, in its service's format (COS XML or API 3.0 JSON)."""
        if path.startswith("/") and path != "/" and not path.startswith("/_emulator/"):
            error = CosError(status, _COS_TRANSPORT_CODES.get(status, "InvalidRequest"), message)
            return cos_error_response(error, path, method == "HEAD")
        response = cvm_error_response(ApiError(_CVM_TRANSPORT_CODES.get(status, "InvalidParameter"), message))
        response.status = status
        return response

    @staticmethod
    def _serve(
        handler: CvmResponse | CosResponse | MetadataResponse, request: Request, fault: tuple[str | None, float] | None
    ) -> tuple[str, Response]:
        if fault is None:
            return handler.handle(request)
        kind, delay = fault
        if delay:
            time.sleep(delay)
        if kind in (None, "slow"):
            return f"fault:{kind or 'latency'}", handler.handle(request)[1]
        outcome = f"fault:{kind}"
        if kind == "drop_after":
            handler.handle(request)
        if kind in ("drop_before", "drop_after"):
            return outcome, Response(drop=True)
        if kind == "http5xx":
            return outcome, Response(502, _BAD_GATEWAY, [("Content-Type", "text/html")])
        return outcome, handler.fault_response(kind, request)
