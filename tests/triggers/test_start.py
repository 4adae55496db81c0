"""ExportStartTrigger against the emulator over loopback: it waits out a busy image or a full queue
with DryRuns only, fires at its deadline naming the reason, and never starts an export itself."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from airflow.sdk.module_loading import import_string

from airflow_cvm_export.emulator import Emulator
from airflow_cvm_export.hooks.cvm import CvmHook
from airflow_cvm_export.triggers.start import ExportStartTrigger
from tests.credentials import SECRET_ID, SECRET_KEY
from tests.operators.conftest import BUCKET, REGION

REQUEST = {"image_ids": ["img-centos01"], "bucket_name": BUCKET, "export_format": "QCOW2"}


@pytest.fixture
def serve(tencentcloud_conn: Callable[..., str]) -> Iterator[Callable[..., tuple[Emulator, str]]]:
    started: list[Emulator] = []

    def start(**settings: Any) -> tuple[Emulator, str]:
        emu = Emulator(secret_id=SECRET_ID, secret_key=SECRET_KEY, **settings).start()
        started.append(emu)
        return emu, tencentcloud_conn("tc_start", endpoint=emu.url, region=REGION)

    yield start
    for emu in started:
        emu.stop()


def fire(trigger: ExportStartTrigger) -> dict[str, Any]:
    async def main() -> list[dict[str, Any]]:
        return [event.payload async for event in trigger.run()]

    (event,) = asyncio.run(asyncio.wait_for(main(), 30))
    return event


def trigger(conn_id: str, seconds: float, **kwargs: Any) -> ExportStartTrigger:
    return ExportStartTrigger(
        request=REQUEST, tencentcloud_conn_id=conn_id, poll_interval=0.2, end_time=time.time() + seconds, **kwargs
    )


@pytest.mark.parametrize("blocked_by", ["busy image", "full queue"])
def test_fires_once_the_images_can_be_exported_without_exporting(
    serve: Callable[..., tuple[Emulator, str]], blocked_by: str
) -> None:
    emulator, conn_id = serve(export_seconds=1.5, max_running_exports=1)
    other = "img-centos01" if blocked_by == "busy image" else "img-centos02"
    CvmHook(conn_id).export_images(image_ids=[other], bucket_name=BUCKET)  # someone else's export
    began = time.monotonic()
    event = fire(trigger(conn_id, 20, reason="scripted", pending={"started_at": "x"}))

    assert event == {
        "status": "free",
        "end_time": pytest.approx(event["end_time"]),
        "pending": {"started_at": "x"},
        "not_before": 0.0,
    }
    assert time.monotonic() - began >= 1.0
    outcomes = emulator.state()["requests"]["ExportImages"]
    refusal = (
        "InvalidParameterValue.InvalidImageState"
        if blocked_by == "busy image"
        else "LimitExceeded.ExportImageTaskLimitExceeded"
    )
    assert outcomes[refusal] >= 1 and outcomes["DryRunOperation"] == 1
    assert len(emulator.state()["exports"]) == 1  # only the other export: the trigger never sends one


def test_fires_at_its_deadline_with_the_reason(serve: Callable[..., tuple[Emulator, str]]) -> None:
    _, conn_id = serve(export_seconds=60)
    CvmHook(conn_id).export_images(image_ids=["img-centos01"], bucket_name=BUCKET)
    event = fire(trigger(conn_id, 0.5))
    assert event["status"] == "timeout" and "[InvalidParameterValue.InvalidImageState]" in event["reason"]


def test_free_images_prove_nothing_while_an_unanswered_send_may_still_arrive(
    serve: Callable[..., tuple[Emulator, str]],
) -> None:
    """The worker and the trigger share the rule (utils.starting.in_flight_reason): free images before
    ``not_before`` are no reason to resume and send again; at the deadline it says why it waited."""
    emulator, conn_id = serve()
    not_before = time.time() + 1.0
    event = fire(trigger(conn_id, 20, pending={"started_at": "x"}, not_before=not_before))
    assert event["status"] == "free" and time.time() >= not_before and event["not_before"] == not_before
    assert emulator.state()["requests"]["ExportImages"]["DryRunOperation"] > 1  # it kept checking

    event = fire(trigger(conn_id, 0.5, pending={"started_at": "x"}, not_before=time.time() + 60))
    assert event["status"] == "timeout" and "may still reach the cloud" in event["reason"]
    assert emulator.state()["exports"] == []


def test_a_final_error_is_reported_at_once(serve: Callable[..., tuple[Emulator, str]]) -> None:
    _, conn_id = serve()
    gone = ExportStartTrigger(
        request={**REQUEST, "image_ids": ["img-zzzzzzzz"]}, tencentcloud_conn_id=conn_id, end_time=time.time() + 20
    )
    event = fire(gone)
    assert event["status"] == "error" and "InvalidImageId.NotFound" in event["message"]


def test_serializes_every_argument_and_no_secret() -> None:
    original = ExportStartTrigger(
        request=REQUEST, tencentcloud_conn_id="tc", region=REGION, end_time=1.0, reason="r", not_before=2.0
    )
    path, kwargs = original.serialize()
    rebuilt = import_string(path)(**kwargs)
    assert rebuilt.serialize() == (path, kwargs)
    assert SECRET_KEY not in repr(kwargs)
