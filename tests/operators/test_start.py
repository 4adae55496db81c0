"""Starting an export when the image is busy with someone else's export or the queue is full: wait
with back-off in the worker or defer to the start trigger, give up at start_timeout naming the
images and the reason, never take the other export for this task's."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest

from airflow_cvm_export.emulator import Emulator
from airflow_cvm_export.emulator.faults import FaultRule
from airflow_cvm_export.hooks.cvm import CvmHook
from airflow_cvm_export.operators.cvm import INTENT_KEY, ExportImagesOperator
from airflow_cvm_export.triggers.start import ExportStartTrigger
from airflow_cvm_export.utils.errors import TencentCloudBusyError, TencentCloudOutcomeUnknownError
from airflow_cvm_export.utils.starting import IN_FLIGHT_MARGIN
from airflow_cvm_export.version_compat import AIRFLOW_V_3_3_PLUS, TaskDeferred
from tests.operators.conftest import BUCKET, CONN_ID, fake_store, fake_ti

if TYPE_CHECKING:
    from airflow.sdk.definitions.context import Context

IMAGE = "img-centos01"


def operator(**kwargs: Any) -> ExportImagesOperator:
    args = {
        "image_ids": [IMAGE],
        "bucket_name": BUCKET,
        "tencentcloud_conn_id": CONN_ID,
        "file_name_prefixes": ["mine"],
        "export_format": "QCOW2",
        "poll_interval": 0.2,
        "deferrable": False,
        **kwargs,
    }
    return ExportImagesOperator(task_id="start_export", **args)


async def first_event(trigger: ExportStartTrigger) -> dict[str, Any]:
    async for event in trigger.run():
        return event.payload
    raise AssertionError("no event")


def someone_elses_export(image_id: str = IMAGE) -> dict[str, Any]:
    return CvmHook(CONN_ID).export_images(image_ids=[image_id], bucket_name=BUCKET, file_name_prefixes=["theirs"])


@pytest.mark.parametrize("blocked_by", ["busy image", "full queue"])
def test_waits_in_the_worker_until_it_can_export_its_own_files(
    start_emulator: Any, context: Context, blocked_by: str
) -> None:
    emulator = start_emulator(progression="manual", max_running_exports=1)
    theirs = someone_elses_export(IMAGE if blocked_by == "busy image" else "img-centos02")
    began = time.monotonic()
    their_end = threading.Timer(0.5, emulator.finish)  # the other export is over while this task waits
    their_end.start()
    try:
        record = operator().execute(context)
    finally:
        their_end.join()

    assert time.monotonic() - began >= 0.5  # it waited for the other export
    other, mine = emulator.state()["exports"]
    assert other["CosPaths"] == theirs["CosPaths"]
    assert record["task_id"] == mine["TaskId"] and record["cos_paths"] == mine["CosPaths"]
    assert all(path.startswith("/mine_") and path.endswith(".qcow2") for path in record["cos_paths"])
    refusal = "InvalidParameterValue.InvalidImageState" if blocked_by == "busy image" else "LimitExceeded"
    assert any(code.startswith(refusal) for code in emulator.state()["requests"]["ExportImages"])
    assert INTENT_KEY not in fake_store(context)  # a refused send leaves no intent behind


def test_gives_up_at_start_timeout_naming_the_image_and_the_reason(start_emulator: Any, context: Context) -> None:
    emulator = start_emulator(progression="manual")
    someone_elses_export()
    began = time.monotonic()
    with pytest.raises(TencentCloudBusyError) as raised:
        operator(start_timeout=1).execute(context)

    assert 0.9 <= time.monotonic() - began < 5
    message = str(raised.value)
    assert f"could not start exporting {IMAGE} to {BUCKET} within start_timeout (1 s)" in message
    assert "[InvalidParameterValue.InvalidImageState]" in message
    assert len(emulator.state()["exports"]) == 1 and INTENT_KEY not in fake_store(context)
    # The retry of that refused start does not "reattach" to the other export: it waits, then exports.
    # Without a task state store (before 3.3) the retry cannot know the earlier send was refused: it
    # waits for the image to find out whether that send started an export, and says so.
    fake_ti(context).try_number = 2
    with pytest.raises(TencentCloudBusyError if AIRFLOW_V_3_3_PLUS else TencentCloudOutcomeUnknownError):
        operator(start_timeout=0.5).execute(context)
    assert len(emulator.state()["exports"]) == 1


def test_deferrable_start_waits_in_the_triggerer_and_resumes_to_export(start_emulator: Any, context: Context) -> None:
    emulator = start_emulator(progression="manual")
    someone_elses_export()
    task = operator(deferrable=True)
    with pytest.raises(TaskDeferred) as deferred:
        task.execute(context)

    trigger = deferred.value.trigger
    assert isinstance(trigger, ExportStartTrigger) and deferred.value.method_name == "execute_start"
    assert trigger.request["image_ids"] == [IMAGE] and "InvalidImageState" in trigger.reason
    assert trigger.pending is None and INTENT_KEY not in fake_store(context)
    emulator.finish()  # the other export is over: what the trigger waits for
    event = {"status": "free", "end_time": trigger.end_time, "pending": None}
    record = operator(deferrable=True).execute_start(context, event)
    assert record["task_id"] == emulator.state()["exports"][1]["TaskId"]


def test_a_start_deadline_passed_in_the_triggerer_fails_as_in_the_worker(emulator: Emulator, context: Context) -> None:
    event = {"status": "timeout", "end_time": time.time() - 1, "reason": "[LimitExceeded.X] full", "pending": None}
    with pytest.raises(TencentCloudBusyError, match="within start_timeout \\(60 s\\): \\[LimitExceeded.X\\] full"):
        operator(deferrable=True, start_timeout=60).execute_start(context, event)
    pending = {**event, "pending": {"started_at": "2026-12-01T00:00:00+00:00"}}
    with pytest.raises(TencentCloudOutcomeUnknownError, match="whether it started could not be told"):
        operator(deferrable=True, start_timeout=60).execute_start(context, pending)
    assert emulator.state()["exports"] == []


@pytest.mark.parametrize("deferrable", [False, True], ids=["worker", "deferred"])
def test_a_retry_waits_while_the_unanswered_send_may_still_arrive_and_recovers_its_export(
    emulator: Emulator, context: Context, deferrable: bool
) -> None:
    """The fault suite's duplicate: the worker died with ExportImages held in flight by the cloud. Its retry
    finds the intent (before 3.3: any retry looks), a free image and nothing written. Deciding "nothing
    started" then sent a second ExportImages, and the held one started a second export. Now the retry waits
    until the send can no longer arrive (its time plus the hook's longest send), sees the export and
    recovers it: one export."""
    emulator.rules.add(FaultRule(action="ExportImages", latency=2.0, count=1))  # the cloud holds the send 2 s
    request = operator()._args.request()
    sent_at = datetime.now(UTC)
    fake_store(context).set(INTENT_KEY, {"started_at": sent_at.isoformat(), "request": request, "baseline": {}})
    held = threading.Thread(target=lambda: CvmHook(CONN_ID).export_images(**request))  # the dead worker's send
    held.start()
    deadline = time.monotonic() + 10
    while emulator.rules.to_json():  # the rule fired on the held send, not on one of the retry's DryRuns
        assert time.monotonic() < deadline, "the send never reached the emulator"
        time.sleep(0.01)
    fake_ti(context).try_number = 2  # the worker's death was detected: a retry
    retry = operator(deferrable=deferrable)
    retry.hook.timeout, retry.hook.retry_limit = (1.0, 2.0), 1  # a send is in flight 3 s at most (+ margin)
    if deferrable:
        # Free image, nothing written: the retry defers, and the trigger fires no earlier than not_before.
        with pytest.raises(TaskDeferred) as deferred:
            retry.execute(context)
        trigger = deferred.value.trigger
        assert isinstance(trigger, ExportStartTrigger) and trigger.pending is not None
        assert trigger.not_before >= time.time() + 1.0  # at most the 2 s latency since the send
        assert trigger.not_before == pytest.approx(sent_at.timestamp() + 3.0 + IN_FLIGHT_MARGIN, abs=0.1) or (
            not AIRFLOW_V_3_3_PLUS  # before 3.3 nothing tells when the earlier try sent: from the retry's start
        )
        event = asyncio.run(asyncio.wait_for(first_event(trigger), 30))
        assert event["status"] == "free" and time.time() >= trigger.not_before
        retry = operator(deferrable=True)
        record = retry.execute_start(context, event)
    else:
        record = retry.execute(context)
    held.join()

    (export,) = emulator.state()["exports"]  # before the fix: two, the retry's and the held send's
    assert record["recovered"] is True and record["cos_paths"] == export["CosPaths"]
    outcomes = emulator.state()["requests"]["ExportImages"]
    assert outcomes["fault:latency"] == 1 and "ok" not in outcomes  # the held send; the retry sent DryRuns only
