"""Wait for CVM image exports in the triggerer, sharing the API calls of every waiting export.

One :class:`ExportPoller` per event loop and (connection, region) serves all the exports waiting
there. Each cycle it reads the image states of every due export with ``DescribeImages`` calls of
at most 100 ids, sends a COS ``HEAD`` for each exported object not confirmed yet (stopping at the
first missing one), and lets :func:`~airflow_cvm_export.utils.completion.assess` decide each
export. Every call goes through the process-wide rate limiter
(:func:`~airflow_cvm_export.utils.ratelimit.limiter_for`), so a triggerer holding 1,000 waiting
exports stays within the documented API limits.

Requests are built, signed and parsed by :mod:`airflow_cvm_export.utils.protocol`; only sending
them (``httpx``, which Airflow already ships) lives here.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from airflow.sdk import BaseHook
from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_cvm_export.hooks.cvm import DESCRIBE_BATCH, RETRYABLE, _mask
from airflow_cvm_export.utils.completion import ExportProgress, assess, listing_prefixes
from airflow_cvm_export.utils.connection import DEFAULT_CONN_ID, ClientConfig, config_from_connection
from airflow_cvm_export.utils.errors import TencentCloudConnectError, TencentCloudError, TencentCloudNetworkError
from airflow_cvm_export.utils.protocol import (
    PreparedRequest,
    bucket_listing_params,
    build_api_request,
    build_cos_request,
    cos_error,
    cos_key,
    parse_api_response,
    parse_bucket_listing,
    parse_head,
)
from airflow_cvm_export.utils.ratelimit import limiter_for
from airflow_cvm_export.version_compat import AirflowNotFoundException

log = logging.getLogger(__name__)

DEFAULT_POLL_INTERVAL = 60.0
# Rate-limit key of COS object checks in the connection extra ``rate_limits`` (off unless set).
COS_HEAD_ACTION = "COS HEAD"
COS_LIST_ACTION = "COS LIST"
# Consecutive checks failing with a transient error (throttled, 5xx, network) before giving up.
MAX_FAILED_CHECKS = 10
# HTTP requests in flight per poller (also the connection pool size).
MAX_IN_FLIGHT = 20
HTTP_TIMEOUT = httpx.Timeout(30.0, connect=10.0, pool=None)
FINAL_STATUSES = frozenset({"success", "error", "timeout"})


@dataclass(eq=False)
class Waiter:
    """One export waiting in a poller; the poller posts ``{"status", "message", ...}`` reports to it.

    ``status`` is ``waiting`` (progress changed) or ``retrying`` (a check failed), else one of
    :data:`FINAL_STATUSES`.
    """

    poller: ExportPoller
    export: dict[str, Any]
    poll_interval: float
    due: float
    reports: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    confirmed: dict[str, dict[str, Any]] = field(default_factory=dict)
    progress: ExportProgress | None = None
    failed_checks: int = 0

    @property
    def label(self) -> str:
        """``ExportImages task <TaskId>``, for messages."""
        return f"ExportImages task {self.export.get('task_id')}"

    def pending_keys(self) -> list[str]:
        """Object keys not yet confirmed fresh in the bucket."""
        return [key for key in map(cos_key, self.export["cos_paths"]) if key not in self.confirmed]


_POLLERS: dict[tuple[asyncio.AbstractEventLoop, str, str | None], ExportPoller] = {}


class ExportPoller:
    """Checks every export waiting on one (connection, region) in the running event loop.

    Use :meth:`join` and :meth:`leave`; the poller loads the connection on first use, keeps one
    ``httpx.AsyncClient``, and shuts down (closing the client) when its last waiter leaves.
    A waiter is due ``poll_interval`` seconds after its last check; waiters due within half their
    interval of the earliest one are checked with it, so waits converge on shared cycles.

    :param conn_id: the ``tencentcloud`` connection every check uses.
    :param region: overrides the connection's region (None: the connection's).
    """

    def __init__(self, conn_id: str, region: str | None) -> None:
        loop = asyncio.get_running_loop()
        self.conn_id = conn_id
        self.region = region
        self._key = (loop, conn_id, region)
        self._waiters: set[Waiter] = set()
        self._changed = asyncio.Event()
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._config: ClientConfig | None = None
        self._client: httpx.AsyncClient | None = None
        # A fresh context: the poller's logs must not be attributed to the first trigger's task.
        self._task = loop.create_task(self._run(), name=f"cvm-export-poller:{conn_id}", context=contextvars.Context())

    @classmethod
    def join(cls, conn_id: str, region: str | None, export: dict[str, Any], poll_interval: float) -> Waiter:
        """Register ``export`` with the poller of (``conn_id``, ``region``), creating it if needed."""
        loop = asyncio.get_running_loop()
        poller = _POLLERS.get((loop, conn_id, region))
        if poller is None:
            poller = _POLLERS[(loop, conn_id, region)] = cls(conn_id, region)
        waiter = Waiter(poller, export, poll_interval, due=loop.time() + poll_interval)
        poller._waiters.add(waiter)
        poller._changed.set()
        return waiter

    def leave(self, waiter: Waiter) -> None:
        """Stop checking ``waiter``; the last waiter to leave shuts the poller down."""
        self._waiters.discard(waiter)
        if not self._waiters:
            self._unregister()
            self._task.cancel()

    def _unregister(self) -> None:
        if _POLLERS.get(self._key) is self:
            del _POLLERS[self._key]

    async def _run(self) -> None:
        try:
            self._config = await self._load_config()
            # Building a client loads the CA bundle (tens of ms): not on the event loop.
            async with await asyncio.to_thread(_new_client) as client:
                self._client = client
                while batch := await self._due_waiters():
                    await self._check(batch)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._unregister()
            if isinstance(exc, TencentCloudError):
                message = str(exc)
            else:
                log.exception("The export poller of connection %r stopped", self.conn_id)
                message = f"the export poller stopped unexpectedly: {exc!r}"
            for waiter in list(self._waiters):
                self._finish(waiter, "error", f"Could not check {waiter.label}: {message}")
        finally:
            self._client = None

    async def _load_config(self) -> ClientConfig:
        """Read the connection the async way (sync ``get_connection`` breaks in the triggerer)."""
        try:
            conn = await BaseHook.aget_connection(self.conn_id)
        except AirflowNotFoundException:
            conn = None
        config = config_from_connection(
            login=conn.login if conn else None,
            password=conn.password if conn else None,
            extra=conn.extra if conn else None,
            conn_id=self.conn_id,
            region=self.region,
        )
        _mask(config)
        return config

    async def _due_waiters(self) -> list[Waiter]:
        """Sleep until some waiters are due and return them; [] once no waiter is left."""
        loop = asyncio.get_running_loop()
        while self._waiters:
            now = loop.time()
            if min(waiter.due for waiter in self._waiters) <= now:
                return [waiter for waiter in self._waiters if waiter.due - waiter.poll_interval / 2 <= now]
            self._changed.clear()
            wake = min(waiter.due for waiter in self._waiters)
            try:
                await asyncio.wait_for(self._changed.wait(), wake - now)
            except TimeoutError:
                pass
        self._unregister()  # synchronously with the emptiness check: a new join gets a new poller
        return []

    async def _check(self, batch: list[Waiter]) -> None:
        """One cycle: coalesced DescribeImages, then HEADs and a verdict per export.

        :data:`MAX_IN_FLIGHT` workers take the exports one by one, so a cycle of 1,000 exports
        never schedules 1,000 tasks, nor judges them all, in one turn of the event loop.
        """
        now = asyncio.get_running_loop().time()
        for waiter in batch:
            waiter.due = now + waiter.poll_interval
        images, describe_errors = await self._describe_all(batch)
        queue = iter(batch)

        async def worker() -> None:
            for waiter in queue:
                if waiter not in self._waiters:
                    continue  # left while the cycle ran
                ids = waiter.export["image_ids"]
                error = next((describe_errors[i] for i in ids if i in describe_errors), None)
                if error is None:
                    try:
                        heads = await self._heads(waiter)
                    except TencentCloudError as exc:
                        error = exc
                if error is not None:
                    self._check_failed(waiter, error)
                else:
                    self._judge(waiter, [images[i] for i in ids if i in images], heads)

        await asyncio.gather(*(worker() for _ in range(min(MAX_IN_FLIGHT, len(batch)))))

    async def _describe_all(
        self, batch: list[Waiter]
    ) -> tuple[dict[str, dict[str, Any]], dict[str, TencentCloudError]]:
        """Image states of every export in ``batch``, 100 ids per call; errors by image id."""
        image_ids = list(dict.fromkeys(image_id for waiter in batch for image_id in waiter.export["image_ids"]))
        chunks = [image_ids[start : start + DESCRIBE_BATCH] for start in range(0, len(image_ids), DESCRIBE_BATCH)]
        results = await asyncio.gather(*(self._describe(chunk) for chunk in chunks), return_exceptions=True)
        images: dict[str, dict[str, Any]] = {}
        errors: dict[str, TencentCloudError] = {}
        for chunk, result in zip(chunks, results, strict=True):
            if isinstance(result, TencentCloudError):
                errors.update(dict.fromkeys(chunk, result))
            elif isinstance(result, BaseException):
                raise result
            else:
                images.update((image["ImageId"], image) for image in result)
        return images, errors

    def _judge(self, waiter: Waiter, image_set: list[dict[str, Any]], heads: dict[str, Any]) -> None:
        try:
            progress = assess(waiter.export, image_set, {**waiter.confirmed, **heads})
        except (KeyError, TypeError, ValueError) as exc:
            self._finish(waiter, "error", f"Could not check {waiter.label}: malformed export record ({exc!r})")
            return
        previous, waiter.progress = waiter.progress, progress
        waiter.failed_checks = 0
        waiter.confirmed.update(
            (obj["key"], {"size": obj["size"], "etag": obj["etag"], "last_modified": obj["last_modified"]})
            for obj in progress.objects
        )
        if progress.error:
            self._finish(waiter, "error", f"{waiter.label}: {progress.error}")  # as the sensor's poke mode says
        elif progress.done:
            self._finish(
                waiter,
                "success",
                f"{waiter.label} finished: {progress.describe()}",
                cos_paths=[obj["cos_path"] for obj in progress.objects],
                objects=progress.objects,
            )
        elif previous is None or len(previous.objects) != len(progress.objects):
            waiter.reports.put_nowait({"status": "waiting", "message": progress.describe()})

    def _check_failed(self, waiter: Waiter, error: TencentCloudError) -> None:
        if not isinstance(error, RETRYABLE):
            self._finish(waiter, "error", f"Could not check {waiter.label}: {error}")
            return
        waiter.failed_checks += 1
        if waiter.failed_checks >= MAX_FAILED_CHECKS:
            message = f"Could not check {waiter.label}: {MAX_FAILED_CHECKS} checks in a row failed, the last: {error}"
            self._finish(waiter, "error", message)
            return
        message = f"check {waiter.failed_checks} of at most {MAX_FAILED_CHECKS} failed, retrying: {error}"
        waiter.reports.put_nowait({"status": "retrying", "message": message})

    def _finish(self, waiter: Waiter, status: str, message: str, **fields: Any) -> None:
        """Post the final report and stop checking the waiter."""
        self._waiters.discard(waiter)
        waiter.reports.put_nowait({"status": status, "message": message, **fields})

    async def _describe(self, image_ids: list[str]) -> list[dict[str, Any]]:
        assert self._config is not None
        params = {"ImageIds": image_ids, "Limit": len(image_ids)}
        request = build_api_request(self._config, "DescribeImages", params)
        response = await self._send(request, "DescribeImages")
        return parse_api_response("DescribeImages", response.status_code, response.content).get("ImageSet") or []

    async def _heads(self, waiter: Waiter) -> dict[str, dict[str, Any] | None]:
        """HEAD the pending objects in order up to the first missing one: the rest cannot complete it yet.

        A recovered export (no CosPaths) lists the bucket under each image's file name prefix instead.
        """
        bucket = waiter.export["bucket_name"]
        if waiter.export.get("recovered"):
            listed = [obj for prefix in listing_prefixes(waiter.export) for obj in await self._list(bucket, prefix)]
            return {obj["key"]: obj for obj in listed}
        heads: dict[str, dict[str, Any] | None] = {}
        for key in waiter.pending_keys():
            heads[key] = await self._head(bucket, key)
            if heads[key] is None:
                break
        return heads

    async def _list(self, bucket: str, prefix: str) -> list[dict[str, Any]]:
        """Every object under ``prefix`` (COS ``GET Bucket``, following markers)."""
        assert self._config is not None
        objects: list[dict[str, Any]] = []
        marker = ""
        while True:
            request = build_cos_request(self._config, "GET", bucket, "", bucket_listing_params(prefix, marker))
            response = await self._send(request, COS_LIST_ACTION)
            if response.status_code != 200:
                raise cos_error(response.status_code, bucket, prefix, response.content)
            page, next_marker = parse_bucket_listing(response.content)
            objects.extend(page)
            if not next_marker:
                return objects
            marker = next_marker

    async def _head(self, bucket: str, key: str) -> dict[str, Any] | None:
        assert self._config is not None
        response = await self._send(build_cos_request(self._config, "HEAD", bucket, key), COS_HEAD_ACTION)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise cos_error(response.status_code, bucket, key, response.content)
        return parse_head(response.headers)

    async def _send(self, request: PreparedRequest, action: str) -> httpx.Response:
        """Send through the rate limiter, at most :data:`MAX_IN_FLIGHT` at a time."""
        assert self._config is not None and self._client is not None
        limiter = limiter_for(self._config.secret_id, action, self._config.rate_limits.get(action))
        async with self._slots:
            if limiter is not None:
                await limiter.await_slot()
            try:
                return await self._client.request(
                    request.method, request.url, headers=request.headers, content=request.body or None
                )
            except httpx.ConnectError as exc:
                raise TencentCloudConnectError(f"could not connect: {type(exc).__name__}", action=action) from None
            except httpx.TransportError as exc:
                raise TencentCloudNetworkError(f"no answer: {type(exc).__name__}", action=action) from None


class ExportImagesTrigger(BaseTrigger):
    """Fire once a CVM image export is complete, has failed, or ran past its deadline.

    Completion is decided by :func:`~airflow_cvm_export.utils.completion.assess`, as in the
    sensor's poke mode. Checks of all exports waiting in one triggerer on the same connection and
    region are shared (see :class:`ExportPoller`). Only the connection id is serialized, never
    credentials.

    Fires exactly one event:

    - ``{"status": "success", "message", "cos_paths", "objects"}``: every object is in the bucket;
    - ``{"status": "error", "message"}``: the export failed, or it cannot be checked;
    - ``{"status": "timeout", "message"}``: ``end_time`` passed first.

    :param export: the export record pushed by the operator (``task_id``, ``cos_paths``,
        ``image_ids``, ``bucket_name``, ``region``, ``file_name_prefixes``, ``export_format``,
        ``only_export_root_disk``, ``request_id``, ``started_at`` as an ISO UTC time, ``recovered``).
    :param tencentcloud_conn_id: the ``tencentcloud`` connection to check with.
    :param region: overrides the connection's ``region`` extra; defaults to the export's region.
    :param poll_interval: seconds between checks.
    :param end_time: deadline as a Unix timestamp (the sensor's ``timeout``, the operator's
        ``wait_timeout``), or None for none.
    """

    def __init__(
        self,
        *,
        export: dict[str, Any],
        tencentcloud_conn_id: str = DEFAULT_CONN_ID,
        region: str | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        end_time: float | None = None,
    ) -> None:
        super().__init__()
        self.export = export
        self.tencentcloud_conn_id = tencentcloud_conn_id
        self.region = region
        self.poll_interval = poll_interval
        self.end_time = end_time
        self._waiter: Waiter | None = None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Class path and every constructor argument."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "export": self.export,
                "tencentcloud_conn_id": self.tencentcloud_conn_id,
                "region": self.region,
                "poll_interval": self.poll_interval,
                "end_time": self.end_time,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Wait in the shared poller and yield one event."""
        region = self.region or self.export.get("region")
        self._waiter = ExportPoller.join(self.tencentcloud_conn_id, region, self.export, self.poll_interval)
        try:
            event = await self._wait(self._waiter)
        finally:
            self._leave()
        yield TriggerEvent(event)

    async def _wait(self, waiter: Waiter) -> dict[str, Any]:
        self.log.info(
            "Waiting for %s (%s) every %ss%s",
            waiter.label,
            ", ".join(self.export["cos_paths"]),
            self.poll_interval,
            f" until {_iso(self.end_time)}" if self.end_time is not None else "",
        )
        while True:
            timeout = None if self.end_time is None else max(0.0, self.end_time - time.time())
            try:
                report = await asyncio.wait_for(waiter.reports.get(), timeout)
            except TimeoutError:
                seen = waiter.progress.describe() if waiter.progress else "not checked yet"
                return {
                    "status": "timeout",
                    "message": f"{waiter.label} did not finish by {_iso(self.end_time)}: {seen}",
                }
            if report["status"] in FINAL_STATUSES:
                return report
            level = logging.WARNING if report["status"] == "retrying" else logging.INFO
            self.log.log(level, "%s: %s", waiter.label, report["message"])

    def _leave(self) -> None:
        if self._waiter is not None:
            self._waiter.poller.leave(self._waiter)
            self._waiter = None

    async def cleanup(self) -> None:
        """Release this export's place in the shared poller (idempotent)."""
        self._leave()

    async def on_kill(self) -> None:
        """The task was killed while waiting: stop checking; the export itself cannot be cancelled."""
        self.log.warning(
            "Stopped waiting for ExportImages task %s. Tencent Cloud has no public API to cancel an image export: "
            "it keeps running and may still write %s to bucket %s.",
            self.export.get("task_id"),
            ", ".join(self.export.get("cos_paths", [])),
            self.export.get("bucket_name"),
        )
        self._leave()


def _new_client() -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=MAX_IN_FLIGHT, max_keepalive_connections=MAX_IN_FLIGHT)
    return httpx.AsyncClient(timeout=HTTP_TIMEOUT, limits=limits, follow_redirects=False)


def _iso(timestamp: float | None) -> str:
    return "-" if timestamp is None else datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")
