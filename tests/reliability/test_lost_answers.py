"""A lost or unusable ExportImages answer, task retries with and without a task state store, killing a
deferred wait, and a skewed clock: the operator, sensor and trigger against the in-process emulator."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest
from airflow.sdk import PokeReturnValue

from airflow_cvm_export.emulator import Emulator
from airflow_cvm_export.hooks import client as hook_module
from airflow_cvm_export.hooks.cvm import CvmHook
from airflow_cvm_export.operators.cvm import INTENT_KEY, ExportImagesOperator
from airflow_cvm_export.sensors.cvm import ExportImagesSensor
from airflow_cvm_export.triggers import poller as triggers
from airflow_cvm_export.triggers.cvm import ExportImagesTrigger
from airflow_cvm_export.utils.errors import TencentCloudOutcomeUnknownError
from airflow_cvm_export.version_compat import AIRFLOW_V_3_3_PLUS
from tests.operators.conftest import BUCKET, CONN_ID, FakeTaskStateStore, fake_store, fake_ti, needs_task_state_store
from tests.reliability.conftest import BUSY, finished_once_busy

if TYPE_CHECKING:
    from airflow.sdk.definitions.context import Context

pytestmark = pytest.mark.reliability

IMAGES = ["img-centos02", "img-ubuntu01"]  # 2 + 3 disks


def operator(**kwargs: Any) -> ExportImagesOperator:
    args = {"image_ids": IMAGES, "bucket_name": BUCKET, "tencentcloud_conn_id": CONN_ID, **kwargs}
    return ExportImagesOperator(task_id="start_export", **args)


def wait_for(record: Mapping[str, Any], context: Context, seconds: float = 10) -> list[str]:
    """Poke the sensor until the export is complete; return its CosPaths."""
    sensor = ExportImagesSensor(task_id="wait", export=record, tencentcloud_conn_id=CONN_ID, poke_interval=0.05)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = sensor.poke(context)
        if isinstance(result, PokeReturnValue) and result.is_done:
            return list(result.xcom_value or [])
        time.sleep(0.05)
    raise AssertionError("the export did not complete")


def accepted(emulator: Emulator) -> list[dict[str, Any]]:
    return emulator.state()["exports"]


@pytest.mark.parametrize("prefixes", [None, ["nightly-20261126", "web-20261126"]], ids=["no-prefix", "prefix"])
def test_lost_answer_is_resolved_by_probing_not_by_a_second_send(
    start_emulator: Any, context: Context, prefixes: list[str] | None
) -> None:
    emulator = start_emulator(progression="manual")
    emulator.inject("ExportImages", "drop_after")  # the export starts, its answer is lost
    with finished_once_busy(emulator):
        record = operator(file_name_prefixes=prefixes, poll_interval=0.1).execute(context)

    (export,) = accepted(emulator)
    assert record["recovered"] is True and record["task_id"] is None
    assert record["cos_paths"] == export["CosPaths"]  # found under the documented names, in the API's order
    outcomes = emulator.state()["requests"]["ExportImages"]
    assert outcomes["fault:drop_after"] == 1 and "ok" not in outcomes  # never sent a second time
    assert outcomes[BUSY] >= 1  # DryRun: busy until the export finished
    assert wait_for(record, context) == export["CosPaths"]
    assert INTENT_KEY not in fake_store(context)


def test_a_lost_answer_of_a_fast_export_starts_no_second_export(emulator: Emulator, context: Context) -> None:
    """The export finishes before the probe: the image is free, but its files say it ran."""
    emulator.inject("ExportImages", "drop_after")  # exports finish as they are accepted (``immediate``)
    record = operator().execute(context)
    (export,) = accepted(emulator)
    assert record["cos_paths"] == export["CosPaths"]
    assert BUSY not in emulator.state()["requests"]["ExportImages"]


def test_recovered_export_ignores_older_and_foreign_objects(emulator: Emulator, context: Context) -> None:
    operator(image_ids=["img-centos02"]).execute(context)  # yesterday's export: same keys, older
    # Each run of the task has its own store.
    context["task_state_store"] = FakeTaskStateStore()  # type: ignore[typeddict-item]  # a test double
    operator(image_ids=["img-centos01"]).execute(context)  # another image in the same bucket
    emulator.finish()  # both exports done, their objects older than the next one's
    emulator.inject("ExportImages", "drop_after")
    context["task_state_store"] = FakeTaskStateStore()  # type: ignore[typeddict-item]  # a test double
    record = operator(image_ids=["img-centos02"], only_export_root_disk=True).execute(context)

    assert record["cos_paths"] == [accepted(emulator)[-1]["CosPaths"][0]] and "_system_" in record["cos_paths"][0]
    assert len(accepted(emulator)) == 3
    assert wait_for(record, context) == record["cos_paths"]


def test_lost_answer_of_a_request_that_did_not_start_uses_the_second_answer(
    emulator: Emulator, context: Context
) -> None:
    emulator.inject("ExportImages", "drop_before")
    record = operator().execute(context)

    (export,) = accepted(emulator)
    assert record["recovered"] is False
    assert (record["task_id"], record["cos_paths"]) == (export["TaskId"], export["CosPaths"])


def test_a_lost_answer_with_new_files_under_other_names_is_not_sent_again(emulator: Emulator, context: Context) -> None:
    """None of the documented names, but a new object under the export's prefix (as if Tencent Cloud
    named its files otherwise): the send may have started an export, so it fails saying so instead
    of sending again; once the object is moved away, a retry exports."""
    stray = "nightly_img-centos02_disk-0.raw"
    emulator.objects.put_object(BUCKET, stray, b"?", time.time() + 5)  # written "after" the send, by COS's clock
    emulator.inject("ExportImages", "drop_before")  # nothing started, but the operator cannot know
    start = operator(image_ids=["img-centos02"], file_name_prefixes=["nightly"])
    with pytest.raises(TencentCloudOutcomeUnknownError, match=f"but {stray} appeared under its prefixes"):
        start.execute(context)
    assert accepted(emulator) == []  # never sent a second time
    assert (INTENT_KEY in fake_store(context)) is AIRFLOW_V_3_3_PLUS  # before 3.3 any retry looks

    assert emulator.delete_object(BUCKET, stray)  # the user checked the bucket and cleared the task
    fake_ti(context).try_number = 2
    record = start.execute(context)
    (export,) = accepted(emulator)
    assert record["cos_paths"] == export["CosPaths"]


@pytest.mark.parametrize("then", ["drop_before", "http5xx", "internal", "throttle"])
def test_faults_while_probing_are_waited_out_in_the_same_try(
    emulator: Emulator, context: Context, then: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two unusable answers in a row used to fail the task: now the probes ride through them."""
    monkeypatch.setattr(hook_module, "_sleep", lambda seconds: time.sleep(seconds / 50))  # the hook's back-off
    emulator.inject("ExportImages", "drop_after", *[then] * 6)  # more than the hook's 5 attempts of one DryRun
    record = operator(poll_interval=0.1).execute(context)
    (export,) = accepted(emulator)
    assert record["cos_paths"] == export["CosPaths"]


def test_an_unresolved_lost_answer_fails_after_start_timeout_and_the_retry_resumes_the_search(
    start_emulator: Any, context: Context
) -> None:
    emulator = start_emulator(progression="manual")  # the export runs until the test finishes it
    emulator.inject("ExportImages", "drop_after")
    with pytest.raises(TencentCloudOutcomeUnknownError, match="could not be told within start_timeout \\(1 s\\)"):
        operator(start_timeout=1, poll_interval=0.2).execute(context)
    # So the retry looks before sending anything: the intent on 3.3+; before, any retry looks.
    assert (INTENT_KEY in fake_store(context)) is AIRFLOW_V_3_3_PLUS
    emulator.finish()
    fake_ti(context).try_number = 2
    record = operator(poll_interval=0.2).execute(context)
    (export,) = accepted(emulator)
    assert record["cos_paths"] == export["CosPaths"]


def test_deferred_wait_of_a_recovered_export(emulator: Emulator, context: Context) -> None:
    emulator.inject("ExportImages", "drop_after")
    record = operator().execute(context)
    sensor = ExportImagesSensor(task_id="wait", export=record, tencentcloud_conn_id=CONN_ID)
    trigger = ExportImagesTrigger(export=sensor.export_record, tencentcloud_conn_id=CONN_ID, poll_interval=0.05)

    async def first_event() -> dict[str, Any]:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("no event")

    event = asyncio.run(asyncio.wait_for(first_event(), 10))
    (export,) = accepted(emulator)
    assert event["status"] == "success" and event["cos_paths"] == export["CosPaths"]
    assert "COS LIST" in emulator.state()["requests"] and "COS HEAD" not in emulator.state()["requests"]


# -- task retries -----------------------------------------------------------------------------


@needs_task_state_store
def test_retry_with_a_stored_record_returns_it(emulator: Emulator, context: Context) -> None:
    first = operator().execute(context)
    fake_ti(context).try_number = 2
    again = operator().execute(context)  # same task state store: a retry
    assert again == first and len(accepted(emulator)) == 1


@needs_task_state_store
@pytest.mark.parametrize("finished", [False, True], ids=["still-running", "finished"])
def test_retry_after_a_crash_before_the_record_was_stored(
    start_emulator: Any, context: Context, finished: bool
) -> None:
    emulator = start_emulator(progression="manual")
    first = operator().execute(context)
    store = fake_store(context)
    del store[ExportImagesOperator.external_id_key]  # killed between the answer and storing it:
    store[INTENT_KEY] = {"started_at": first["started_at"], "request": {}, "baseline": first["baseline"]}
    fake_ti(context).try_number = 2
    if finished:
        emulator.finish()
    with finished_once_busy(emulator):
        record = operator(poll_interval=0.2).execute(context)

    (export,) = accepted(emulator)
    assert record["recovered"] is True and record["started_at"] == first["started_at"]
    assert record["cos_paths"] == export["CosPaths"]
    outcomes = emulator.state()["requests"]["ExportImages"]
    assert outcomes["ok"] == 1
    assert (BUSY in outcomes) is not finished


def test_retry_without_a_task_state_store_detects_the_running_export(start_emulator: Any, context: Context) -> None:
    emulator = start_emulator(progression="manual")
    del context["task_state_store"]  # Airflow < 3.3, or durable=False
    context["dag_run"] = type("DagRun", (), {"start_date": datetime.now(UTC)})()
    operator().execute(context)
    fake_ti(context).try_number = 2
    with finished_once_busy(emulator):
        record = operator(poll_interval=0.1).execute(context)
    assert record["recovered"] is True and len(accepted(emulator)) == 1
    assert emulator.state()["requests"]["ExportImages"][BUSY] >= 1  # found it running


def test_retry_of_a_try_that_started_nothing_exports(emulator: Emulator, context: Context) -> None:
    context["task_state_store"] = FakeTaskStateStore({INTENT_KEY: {"started_at": datetime.now(UTC).isoformat()}})  # type: ignore[typeddict-item]  # a test double
    record = operator().execute(context)
    (export,) = accepted(emulator)
    assert record["task_id"] == export["TaskId"] and record["recovered"] is False


# -- killing a deferred wait ------------------------------------------------------------------


def test_on_kill_while_waiting_releases_the_poller_and_says_exports_cannot_be_cancelled(
    start_emulator: Any, context: Context, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture
) -> None:
    emulator = start_emulator(progression="manual")  # the export runs until the test ends
    record = operator().execute(context)
    emulator.reset_counters()
    trigger = ExportImagesTrigger(export=record, tencentcloud_conn_id=CONN_ID, poll_interval=0.05)

    async def main() -> None:
        task = asyncio.ensure_future(anext(aiter(trigger.run())))
        while "DescribeImages" not in emulator.state()["requests"]:
            await asyncio.sleep(0.05)
        (poller,) = triggers._POLLERS.values()
        await trigger.on_kill()  # the triggerer calls this, then cancels the run
        assert not triggers._POLLERS and not poller._waiters
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    caplog.set_level(logging.WARNING)
    asyncio.run(main())
    assert "no public API to cancel an image export" in caplog.text + capsys.readouterr().out


# -- clock skew against the emulator ----------------------------------------------------------


class SkewedClock:
    """The hook module's ``time``, ``offset`` seconds off; everything else keeps the real clock."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def time(self) -> float:
        return time.time() + self.offset

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


@pytest.fixture
def skewed(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(hook_module, "time", SkewedClock(+900))
    yield


def test_skewed_clock_is_corrected_once_for_api_and_cos(
    emulator: Emulator,
    context: Context,
    skewed: None,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    record = operator().execute(context)  # DescribeImages is refused once, then everything is re-signed
    assert wait_for(record, context) == accepted(emulator)[0]["CosPaths"]
    requests = emulator.state()["requests"]
    assert requests["DescribeImages"]["AuthFailure.SignatureExpire"] >= 1
    assert "AuthFailure.SignatureExpire" not in requests["ExportImages"]
    assert {"ok"} <= set(requests["COS HEAD"]) <= {"ok", "NoSuchKey"}  # never AccessDenied (skewed q-sign-time)
    assert "clock is off by +9" in caplog.text + capsys.readouterr().out


def test_hook_with_a_skewed_clock_says_by_how_much(emulator: Emulator, skewed: None) -> None:
    hook = CvmHook(CONN_ID, retry_limit=1)
    assert hook.describe_images(["img-centos01"])[0]["ImageId"] == "img-centos01"
    assert -920 < hook._clock_offset < -880
