"""The per-process poller shared by every :class:`~airflow_cvm_export.triggers.cvm.ExportImagesTrigger`.

One :class:`ExportPoller` per event loop and (connection, region) serves all the exports waiting
there, through one :class:`~airflow_cvm_export.hooks.cvm.CvmAsyncHook`. Each cycle it reads the
image states of every due export with ``DescribeImages`` calls of at most 100 ids, sends a COS
``HEAD`` for each exported object not confirmed yet (stopping at the first missing one), and lets
the wait engine (:mod:`airflow_cvm_export.utils.waiting`) decide each export. The hook signs,
retries, corrects the clock and rate-limits every call (the process-wide limiter of
:func:`~airflow_cvm_export.utils.ratelimit.limiter_for`), so a triggerer holding 1,000 waiting
exports stays within the documented API limits.

Failures stay with the wait they belong to. A check that fails transiently is ridden out up to the
wait's ``max_outage`` (:class:`~airflow_cvm_export.utils.outage.Outage`, as in every other mode);
a check that raises unexpectedly (a malformed record, a bug) ends only its own wait; and a poller
whose loop dies is replaced by a new one for the waits it still held (up to :data:`MAX_RESTARTS`
times in a row without a completed cycle: then those waits end with ``error``, and their tasks'
retries run).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from dataclasses import dataclass, field
from typing import Any

from airflow_cvm_export.hooks.client import describe_batches
from airflow_cvm_export.hooks.cvm import MAX_IN_FLIGHT, CvmAsyncHook
from airflow_cvm_export.utils.completion import ExportProgress, assess, listing_prefixes
from airflow_cvm_export.utils.errors import TencentCloudError
from airflow_cvm_export.utils.outage import DEFAULT_MAX_OUTAGE, Outage
from airflow_cvm_export.utils.protocol import cos_key
from airflow_cvm_export.utils.records import ExportEvent, ExportRecord
from airflow_cvm_export.utils.waiting import error_event, export_label, failed_check_event, verdict

log = logging.getLogger(__name__)

# Replacements of a dying poller in a row (no completed cycle between them) before its waits end.
MAX_RESTARTS = 3


class FailedCheck(str):
    """A progress message saying a check failed and the wait goes on (the trigger logs it as a warning)."""

    __slots__ = ()


@dataclass(eq=False, slots=True)
class Waiter:
    """One export waiting in a poller.

    The poller posts progress messages (a ``str``, when the count of objects present changed) and
    finally one :class:`~airflow_cvm_export.utils.records.ExportEvent`; the trigger takes them with
    :meth:`take` after awaiting :meth:`posted`. A list and at most one future, not an
    ``asyncio.Queue`` (three deques, an event, a coroutine per get): 5,000 waits in a triggerer are
    5,000 of these, and every full pass of the garbage collector walks them all.
    """

    poller: ExportPoller
    export: ExportRecord
    poll_interval: float
    due: float
    outage: Outage
    confirmed: dict[str, dict[str, Any]] = field(default_factory=dict)
    progress: ExportProgress | None = None
    _posts: list[str | ExportEvent] = field(default_factory=list)
    _posted: asyncio.Future[None] | None = None

    @property
    def label(self) -> str:
        """``ExportImages task <TaskId>``, for messages."""
        return export_label(self.export)

    def pending_keys(self) -> list[str]:
        """Object keys not yet confirmed fresh in the bucket."""
        return [key for key in map(cos_key, self.export["cos_paths"]) if key not in self.confirmed]

    def post(self, report: str | ExportEvent) -> None:
        """Hand ``report`` to the trigger, waking it if it waits in :meth:`posted`."""
        self._posts.append(report)
        if self._posted is not None and not self._posted.done():
            self._posted.set_result(None)

    def posted(self) -> asyncio.Future[None]:
        """A future done once something was posted (at once if something is waiting)."""
        if self._posted is None or self._posted.done():
            self._posted = asyncio.get_running_loop().create_future()
        if self._posts:
            self._posted.set_result(None)
        return self._posted

    def take(self) -> list[str | ExportEvent]:
        """Everything posted since the last call, in order."""
        posts, self._posts = self._posts, []
        return posts


_POLLERS: dict[tuple[asyncio.AbstractEventLoop, str, str | None], ExportPoller] = {}


class ExportPoller:
    """Checks every export waiting on one (connection, region) in the running event loop.

    Use :meth:`join` and :meth:`leave`; the poller shuts down (closing its hook) when its last
    waiter leaves. A waiter is due ``poll_interval`` seconds after its last check; waiters due
    within half their interval of the earliest one are checked with it, so waits converge on
    shared cycles.

    :param conn_id: the ``tencentcloud`` connection every check uses.
    :param region: overrides the connection's region (None: the connection's).
    """

    def __init__(self, conn_id: str, region: str | None, *, restarts: int = 0) -> None:
        loop = asyncio.get_running_loop()
        self.conn_id = conn_id
        self.region = region
        self.hook = CvmAsyncHook(conn_id, region=region)
        self._key = (loop, conn_id, region)
        self._waiters: set[Waiter] = set()
        self._changed = asyncio.Event()
        self._restarts = restarts  # pollers before this one that died in a row
        # A fresh context: the poller's logs must not be attributed to the first trigger's task.
        self._task = loop.create_task(self._run(), name=f"cvm-export-poller:{conn_id}", context=contextvars.Context())

    @classmethod
    def join(
        cls,
        conn_id: str,
        region: str | None,
        export: ExportRecord,
        poll_interval: float,
        max_outage: float = DEFAULT_MAX_OUTAGE,
    ) -> Waiter:
        """Register ``export`` with the poller of (``conn_id``, ``region``), creating it if needed."""
        loop = asyncio.get_running_loop()
        poller = cls._of(loop, conn_id, region)
        waiter = Waiter(poller, export, poll_interval, due=loop.time() + poll_interval, outage=Outage(max_outage))
        poller._adopt(waiter)
        return waiter

    @classmethod
    def _of(cls, loop: asyncio.AbstractEventLoop, conn_id: str, region: str | None, restarts: int = 0) -> ExportPoller:
        """The running poller of (``conn_id``, ``region``) in ``loop``, created if there is none."""
        poller = _POLLERS.get((loop, conn_id, region))
        if poller is None:
            poller = _POLLERS[(loop, conn_id, region)] = cls(conn_id, region, restarts=restarts)
        return poller

    def _adopt(self, waiter: Waiter) -> None:
        waiter.poller = self
        self._waiters.add(waiter)
        self._changed.set()

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
            while batch := await self._due_waiters():
                await self._check(batch)
                self._restarts = 0
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._unregister()
            self._replace(exc)
        finally:
            await asyncio.shield(self.hook.aclose())

    def _replace(self, exc: Exception) -> None:
        """This poller died: hand its waits to a new poller, or after :data:`MAX_RESTARTS` deaths in a row end them."""
        waiters, self._waiters = list(self._waiters), set()
        n = len(waiters)
        if not n:
            return
        if self._restarts >= MAX_RESTARTS:
            log.error(
                "The export poller of connection %r died %d times in a row (%r); ending its %d wait(s)",
                self.conn_id,
                self._restarts + 1,
                exc,
                n,
            )
            for waiter in waiters:
                waiter.post(error_event(waiter.export, f"the triggerer's export poller kept failing ({exc!r})"))
            return
        log.exception("The export poller of connection %r died; a new one takes its %d wait(s)", self.conn_id, n)
        successor = self._of(asyncio.get_running_loop(), self.conn_id, self.region, self._restarts + 1)
        for waiter in waiters:
            successor._adopt(waiter)

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

        :data:`~airflow_cvm_export.hooks.cvm.MAX_IN_FLIGHT` workers take the exports one by one,
        so a cycle of 1,000 exports never schedules 1,000 tasks, nor judges them all, in one turn
        of the event loop.
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
                try:
                    await self._check_one(waiter, images, describe_errors)
                except Exception as exc:  # a bug or a record nobody foresaw: only this wait ends
                    log.exception("Checking %s failed unexpectedly; ending only this wait", waiter.label)
                    self._finish(waiter, error_event(waiter.export, f"unexpected error ({exc!r})"))

        await asyncio.gather(*(worker() for _ in range(min(MAX_IN_FLIGHT, len(batch)))))

    async def _check_one(
        self, waiter: Waiter, images: dict[str, dict[str, Any]], describe_errors: dict[str, Exception]
    ) -> None:
        """HEAD (or list) the export's pending objects and judge it, or count the failed check."""
        ids = waiter.export["image_ids"]
        error = next((describe_errors[i] for i in ids if i in describe_errors), None)
        if error is None:
            try:
                heads = await self._heads(waiter)
            except TencentCloudError as exc:
                error = exc
        if error is not None:
            self._failed(waiter, error)
        else:
            self._judge(waiter, [images[i] for i in ids if i in images], heads)

    def _failed(self, waiter: Waiter, error: Exception) -> None:
        """A check of ``waiter`` failed: go on while its outage is tolerated, else end the wait."""
        if waiter.outage.tolerates(error):
            waiter.post(FailedCheck(waiter.outage.describe(error)))
        else:
            self._finish(waiter, failed_check_event(waiter.export, waiter.outage, error))

    async def _describe_all(self, batch: list[Waiter]) -> tuple[dict[str, dict[str, Any]], dict[str, Exception]]:
        """Image states of every export in ``batch``, 100 ids per call; errors by image id.

        A call that fails (even unexpectedly) fails the check of the exports it covers, not the poller.
        """
        chunks = describe_batches([image_id for waiter in batch for image_id in waiter.export["image_ids"]])
        results = await asyncio.gather(
            *(self.hook.call("DescribeImages", params) for params in chunks), return_exceptions=True
        )
        images: dict[str, dict[str, Any]] = {}
        errors: dict[str, Exception] = {}
        for params, result in zip(chunks, results, strict=True):
            if isinstance(result, Exception):
                errors.update(dict.fromkeys(params["ImageIds"], result))
            elif isinstance(result, BaseException):
                raise result
            else:
                images.update((image["ImageId"], image) for image in result.get("ImageSet") or [])
        return images, errors

    def _judge(self, waiter: Waiter, image_set: list[dict[str, Any]], heads: dict[str, Any]) -> None:
        try:
            progress = assess(waiter.export, image_set, {**waiter.confirmed, **heads})
        except (KeyError, TypeError, ValueError) as exc:
            self._finish(waiter, error_event(waiter.export, f"malformed export record ({exc!r})"))
            return
        previous, waiter.progress = waiter.progress, progress
        lasted = waiter.outage.passed()
        if lasted is not None:
            waiter.post(f"the checks work again after failing for {lasted:.0f} s")
        waiter.confirmed.update(
            (obj["key"], {"size": obj["size"], "etag": obj["etag"], "last_modified": obj["last_modified"]})
            for obj in progress.objects
        )
        event = verdict(waiter.export, progress)
        if event is not None:
            self._finish(waiter, event)
        elif previous is None or len(previous.objects) != len(progress.objects):
            waiter.post(progress.describe())

    def _finish(self, waiter: Waiter, event: ExportEvent) -> None:
        """Post the final event and stop checking the waiter."""
        self._waiters.discard(waiter)
        waiter.post(event)

    async def _heads(self, waiter: Waiter) -> dict[str, dict[str, Any] | None]:
        """HEAD the pending objects in order up to the first missing one: the rest cannot complete it yet.

        A recovered export (no CosPaths) lists the bucket under each image's file name prefix instead.
        """
        bucket = waiter.export["bucket_name"]
        if waiter.export.get("recovered"):
            listed = [
                obj
                for prefix in listing_prefixes(waiter.export)
                for obj in await self.hook.list_cos_objects(bucket, prefix)
            ]
            return {obj["key"]: obj for obj in listed}
        heads: dict[str, dict[str, Any] | None] = {}
        for key in waiter.pending_keys():
            heads[key] = await self.hook.head_cos_object(bucket, key)
            if heads[key] is None:
                break
        return heads
