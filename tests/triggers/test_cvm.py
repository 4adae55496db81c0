"""ExportImagesTrigger against the real emulator over loopback: events, sharing, rate limits, cancellation."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from airflow.sdk.module_loading import import_string

from airflow_cvm_export.emulator import Emulator
from airflow_cvm_export.emulator.catalog import REGION, WRITABLE_BUCKETS, extra_image_id
from airflow_cvm_export.emulator.faults import FaultInjector
from airflow_cvm_export.hooks.cvm import CvmAsyncHook, CvmHook
from airflow_cvm_export.triggers import poller as triggers
from airflow_cvm_export.triggers.cvm import ExportImagesTrigger
from airflow_cvm_export.triggers.poller import ExportPoller
from airflow_cvm_export.utils.records import ExportRecord
from tests.credentials import SECRET_ID, SECRET_KEY, rotate_key

BUCKET = WRITABLE_BUCKETS[0]
FAST_POLL = 0.05
RETRIABLE_FAULTS = ("throttle", "internal", "http5xx", "drop_before")


@pytest.fixture
def serve(tencentcloud_conn: Callable[..., str]) -> Iterator[Callable[..., tuple[Emulator, str]]]:
    """``serve(**emulator_settings)`` starts an emulator and returns it with a connection id to it."""
    started: list[Emulator] = []

    def start(**overrides: Any) -> tuple[Emulator, str]:
        settings = {"export_seconds": 0.5, "extra_images": 250, "max_running_exports": 100, **overrides}
        emu = Emulator(secret_id=SECRET_ID, secret_key=SECRET_KEY, **settings).start()
        started.append(emu)
        return emu, tencentcloud_conn("tc_trigger", endpoint=emu.url, region=REGION)

    yield start
    for emu in started:
        emu.stop()


def start_export(conn_id: str, image_ids: list[str]) -> ExportRecord:
    """Start a real export on the emulator and return its export record, as the operator pushes it."""
    started_at = datetime.now(UTC).isoformat()
    response = CvmHook(conn_id).export_images(image_ids=image_ids, bucket_name=BUCKET)
    return {
        "task_id": response["TaskId"],
        "cos_paths": response["CosPaths"],
        "image_ids": image_ids,
        "bucket_name": BUCKET,
        "region": REGION,
        "file_name_prefixes": None,
        "export_format": "RAW",
        "request_id": response["RequestId"],
        "started_at": started_at,
    }


async def first_event(trigger: ExportImagesTrigger) -> dict[str, Any]:
    """Run a trigger as the triggerer does, checking that it yields exactly one event."""
    events = [event.payload async for event in trigger.run()]
    await trigger.cleanup()
    assert len(events) == 1
    return events[0]


def run_all(trigger_list: list[ExportImagesTrigger]) -> list[dict[str, Any]]:
    """Run triggers concurrently in one event loop; the shared pollers must be gone afterwards."""

    async def main() -> list[dict[str, Any]]:
        events = await asyncio.gather(*(first_event(trigger) for trigger in trigger_list))
        assert not triggers._POLLERS
        return list(events)

    return asyncio.run(main())


def wait(conn_id: str, exports: list[ExportRecord], poll_interval: float = FAST_POLL) -> list[dict[str, Any]]:
    """The events of one trigger per export, all waiting at once."""
    return run_all(
        [ExportImagesTrigger(export=e, tencentcloud_conn_id=conn_id, poll_interval=poll_interval) for e in exports]
    )


def throttled(emu: Emulator) -> int:
    return sum(
        count
        for outcomes in emu.state()["requests"].values()
        for outcome, count in outcomes.items()
        if "RequestLimitExceeded" in outcome or "SlowDown" in outcome
    )


def test_serialize_round_trips_every_argument() -> None:
    export: ExportRecord = {"task_id": 1, "cos_paths": ["/a.raw"], "image_ids": ["img-centos01"], "bucket_name": BUCKET}
    kwargs: dict[str, Any] = {
        "export": export,
        "tencentcloud_conn_id": "tc",
        "region": "ap-shanghai",
        "poll_interval": 12.5,
        "end_time": 1_900_000_000.0,
        "max_outage": 900.0,
    }
    classpath, serialized = ExportImagesTrigger(**kwargs).serialize()
    assert serialized == kwargs
    assert import_string(classpath) is ExportImagesTrigger
    assert import_string(classpath)(**json.loads(json.dumps(serialized))).serialize() == (classpath, kwargs)


def test_success_event_carries_the_objects(serve: Callable[..., tuple[Emulator, str]]) -> None:
    _, conn_id = serve()
    export = start_export(conn_id, ["img-centos02"])  # two disks: two objects
    (event,) = wait(conn_id, [export])
    assert event["status"] == "success"
    assert f"ExportImages task {export['task_id']} finished: 2 of 2" in event["message"]
    assert event["cos_paths"] == export["cos_paths"]
    assert [obj["cos_path"] for obj in event["objects"]] == export["cos_paths"]
    assert all(obj["size"] > 0 and obj["etag"] for obj in event["objects"])
    assert len(json.dumps(event)) < 2048


def test_failed_export_gives_an_error_event(serve: Callable[..., tuple[Emulator, str]]) -> None:
    _, conn_id = serve(fail_rate=1.0)
    export = start_export(conn_id, ["img-centos01"])
    (event,) = wait(conn_id, [export])
    assert event == {
        "status": "failed",
        "message": f"ExportImages task {export['task_id']}: image img-centos01 is in state EXPORTFAILED: "
        "the export failed in Tencent Cloud",
    }


def test_deadline_gives_a_timeout_event(serve: Callable[..., tuple[Emulator, str]]) -> None:
    _, conn_id = serve(export_seconds=3600)
    export = start_export(conn_id, ["img-centos01"])
    trigger = ExportImagesTrigger(export=export, tencentcloud_conn_id=conn_id, end_time=time.time() - 1)
    (event,) = run_all([trigger])
    assert event["status"] == "timeout"
    assert event["message"].startswith(f"ExportImages task {export['task_id']} did not finish by ")
    assert event["message"].endswith(": not checked yet")


def test_missing_credentials_give_an_error_event(tencentcloud_conn: Callable[..., str]) -> None:
    conn = tencentcloud_conn("tc_no_secret", login=None, password=None, endpoint="http://127.0.0.1:9", region=REGION)
    export: ExportRecord = {"task_id": 7, "cos_paths": ["/a.raw"], "image_ids": ["img-centos01"], "bucket_name": BUCKET}
    (event,) = wait(conn, [export])
    assert event["status"] == "failed"  # permanent: the task fails at once, no retry
    assert "no credentials" in event["message"] and "tc_no_secret" in event["message"]


def test_cancellation_propagates_and_releases_the_poller(
    serve: Callable[..., tuple[Emulator, str]], caplog: pytest.LogCaptureFixture
) -> None:
    emulator, conn_id = serve(export_seconds=3600)
    export = start_export(conn_id, ["img-centos01"])
    trigger = ExportImagesTrigger(export=export, tencentcloud_conn_id=conn_id, poll_interval=FAST_POLL)

    async def main() -> None:
        task = asyncio.create_task(first_event(trigger))
        while "DescribeImages" not in emulator.state()["requests"]:
            await asyncio.sleep(FAST_POLL)
        (poller,) = triggers._POLLERS.values()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not triggers._POLLERS
        with pytest.raises(asyncio.CancelledError):
            await poller._task  # the shared client is closed with it
        await trigger.on_kill()

    with caplog.at_level(logging.WARNING, logger=ExportImagesTrigger.__module__):
        asyncio.run(main())
    assert any("no public API to cancel an image export" in r.getMessage() for r in caplog.records)


def test_transient_faults_are_retried(serve: Callable[..., tuple[Emulator, str]]) -> None:
    emulator, conn_id = serve()
    exports = [start_export(conn_id, [image_id]) for image_id in ("img-centos01", "img-ubuntu03")]
    emulator.faults = FaultInjector(0.3, seed=3, kinds=RETRIABLE_FAULTS)
    events = wait(conn_id, exports)
    assert [event["status"] for event in events] == ["success", "success"]
    faults = [o for outcomes in emulator.state()["requests"].values() for o in outcomes if o.startswith("fault:")]
    assert faults


def test_waits_share_describe_images_calls_of_at_most_100_ids(
    serve: Callable[..., tuple[Emulator, str]], mocker: Any
) -> None:
    emulator, conn_id = serve()
    image_ids = [extra_image_id(i) for i in range(1, 251)]
    exports = [start_export(conn_id, image_ids[start : start + 10]) for start in range(0, 250, 10)]
    emulator.reset_counters()
    check = mocker.spy(ExportPoller, "_check")
    call = mocker.spy(CvmAsyncHook, "call")
    events = wait(conn_id, exports, poll_interval=0.2)
    assert [event["status"] for event in events] == ["success"] * 25
    sizes = [len(c.args[2]["ImageIds"]) for c in call.call_args_list if c.args[1] == "DescribeImages"]
    assert max(sizes) <= 100
    batches = [call.args[1] for call in check.call_args_list]
    assert len(batches[0]) == 25  # the 25 waits started together share every cycle
    ids_per_cycle = [len({i for waiter in batch for i in waiter.export["image_ids"]}) for batch in batches]
    assert len(sizes) == sum(math.ceil(n / 100) for n in ids_per_cycle)
    assert emulator.state()["requests"]["DescribeImages"] == {"ok": len(sizes)}


def test_concurrent_pollers_share_one_rate_limiter(
    serve: Callable[..., tuple[Emulator, str]], tencentcloud_conn: Callable[..., str]
) -> None:
    emulator, _ = serve(rate_limits={"DescribeImages": 4, "ExportImages": 20}, export_seconds=3.0)
    limits = {"DescribeImages": 4, "COS HEAD": 100}
    conns = [tencentcloud_conn(f"tc_rl{n}", endpoint=emulator.url, region=REGION, rate_limits=limits) for n in range(4)]
    exports = [start_export(conns[0], [extra_image_id(i)]) for i in range(1, 13)]
    trigger_list = [
        ExportImagesTrigger(export=export, tencentcloud_conn_id=conns[n % 4], poll_interval=FAST_POLL)
        for n, export in enumerate(exports)
    ]
    events = run_all(trigger_list)
    assert [event["status"] for event in events] == ["success"] * 12
    assert emulator.state()["requests"]["DescribeImages"].get("ok", 0) > 4
    assert throttled(emulator) == 0


def test_recovered_export_is_found_by_listing(serve: Callable[..., tuple[Emulator, str]]) -> None:
    _, conn_id = serve()
    export = start_export(conn_id, ["img-centos02"])
    recovered: ExportRecord = {**export, "task_id": None, "cos_paths": [], "recovered": True}  # the answer was lost
    (event,) = wait(conn_id, [recovered])
    assert event["status"] == "success"
    assert sorted(event["cos_paths"]) == sorted(export["cos_paths"])


@pytest.fixture
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The poller's hook backs off 10 ms between attempts instead of 1 s: a failed check takes no 17 s."""
    monkeypatch.setattr(triggers, "CvmAsyncHook", functools.partial(CvmAsyncHook, retry_delay=0.01))


def outage_trigger(conn_id: str, export: ExportRecord, max_outage: float) -> ExportImagesTrigger:
    return ExportImagesTrigger(
        export=export, tencentcloud_conn_id=conn_id, poll_interval=FAST_POLL, max_outage=max_outage
    )


@pytest.mark.usefixtures("quick_retries")
def test_an_outage_shorter_than_max_outage_is_ridden_out(
    serve: Callable[..., tuple[Emulator, str]], caplog: pytest.LogCaptureFixture
) -> None:
    emulator, conn_id = serve()
    export = start_export(conn_id, ["img-centos01"])
    emulator.inject("DescribeImages", *["drop_before"] * 6)  # more than the hook's attempts: one check fails
    with caplog.at_level(logging.INFO, logger=ExportImagesTrigger.__module__):
        (event,) = run_all([outage_trigger(conn_id, export, max_outage=60)])
    assert event["status"] == "success"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("check failed" in m and "still waiting (max_outage 60 s)" in m for m in warnings), warnings
    assert any("the checks work again after failing for" in r.getMessage() for r in caplog.records)


@pytest.mark.usefixtures("quick_retries")
def test_an_outage_longer_than_max_outage_ends_the_wait_with_error(serve: Callable[..., tuple[Emulator, str]]) -> None:
    emulator, conn_id = serve()
    export = start_export(conn_id, ["img-centos01"])
    emulator.inject("DescribeImages", *["drop_before"] * 6)
    (event,) = run_all([outage_trigger(conn_id, export, max_outage=0)])
    assert event["status"] == "error"  # this try fails; the task's retries reattach
    assert event["message"].startswith(f"Could not check ExportImages task {export['task_id']}: ")
    assert "longer than max_outage 0 s" in event["message"]


def test_a_permanent_error_while_waiting_fails_at_once(serve: Callable[..., tuple[Emulator, str]]) -> None:

    emulator, conn_id = serve(export_seconds=3600)
    export = start_export(conn_id, ["img-centos01"])
    rotate_key(emulator)
    (event,) = run_all([outage_trigger(conn_id, export, max_outage=3600)])
    assert event["status"] == "failed"
    assert "AuthFailure" in event["message"]


def test_a_wait_whose_check_raises_unexpectedly_ends_alone(
    serve: Callable[..., tuple[Emulator, str]], mocker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    _, conn_id = serve()
    broken, sound = (start_export(conn_id, [image_id]) for image_id in ("img-centos01", "img-ubuntu03"))
    heads = ExportPoller._heads

    async def raising(self: ExportPoller, waiter: triggers.Waiter) -> dict[str, Any]:
        if waiter.export["task_id"] == broken["task_id"]:
            raise RuntimeError("a bug")
        return await heads(self, waiter)

    mocker.patch.object(ExportPoller, "_heads", raising)
    with caplog.at_level(logging.ERROR, logger=triggers.__name__):
        failed, done = wait(conn_id, [broken, sound])
    assert failed["status"] == "error" and "unexpected error (RuntimeError('a bug'))" in failed["message"]
    assert done["status"] == "success"
    assert any("ending only this wait" in r.getMessage() for r in caplog.records)


def test_a_dying_poller_is_replaced_for_the_remaining_waits(
    serve: Callable[..., tuple[Emulator, str]], mocker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    _, conn_id = serve()
    exports = [start_export(conn_id, [image_id]) for image_id in ("img-centos01", "img-ubuntu03")]
    due = ExportPoller._due_waiters
    deaths: Iterator[bool] = iter([True, True])  # the first two pollers die in their first cycle

    async def dying(self: ExportPoller) -> list[triggers.Waiter]:
        batch = await due(self)
        dies = bool(batch) and next(deaths, False)
        if dies:
            raise RuntimeError("the poller's loop broke")
        return batch

    mocker.patch.object(ExportPoller, "_due_waiters", dying)
    with caplog.at_level(logging.ERROR, logger=triggers.__name__):
        events = wait(conn_id, exports)
    assert [event["status"] for event in events] == ["success", "success"]
    assert sum("died; a new one takes its 2 wait(s)" in r.getMessage() for r in caplog.records) == 2


def test_a_poller_that_keeps_dying_ends_its_waits(serve: Callable[..., tuple[Emulator, str]], mocker: Any) -> None:
    _, conn_id = serve()
    export = start_export(conn_id, ["img-centos01"])

    async def dying(self: ExportPoller) -> list[triggers.Waiter]:
        raise RuntimeError("the poller's loop broke")

    mocker.patch.object(ExportPoller, "_due_waiters", dying)
    (event,) = wait(conn_id, [export])
    assert event["status"] == "error"
    assert "the triggerer's export poller kept failing" in event["message"]
